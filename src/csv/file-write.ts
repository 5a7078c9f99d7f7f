import { pageAlignedBytes } from "../storage/direct-file.js";
import type { FileChunk } from "./file-batch.js";
import type { FileMap } from "./volume.js";

/*
 * `file-write` on a node's control socket: the node writes a file on the
 * volume from its start, in chunks of `bs` bytes, each chunk holding the
 * pattern of `seed` (a VM's large sequential I/O), and answers how long it
 * took. `hvlab bench csv` asks four node processes at once and reads the
 * LUN file back to check every byte.
 *
 * By default (`batch`) the chunks go to the node's I/O thread in batches,
 * written back to back and fenced there (ClusterNode.writeFileBatch); with
 * `batch: false`, one write at a time each through the event loop's write
 * fence, `iodepth` in flight on libuv's thread pool, as before the I/O
 * thread (kept so that the two can be compared in one run).
 */

/** Bytes of one batch a `file-write` hands to the node's I/O thread at most. */
export const FILE_WRITE_BATCH_BYTES = 64 << 20;
/** Chunks of one batch at most (a chunk may cover several extents; a batch takes 4096 LUN writes). */
export const FILE_WRITE_BATCH_CHUNKS = 256;

/** Largest chunk a `file-write` takes: the target protocol's largest I/O. */
export const MAX_FILE_WRITE_BS = 1 << 20;
/** Writes in flight per node at most. */
export const MAX_FILE_WRITE_DEPTH = 64;

/** `file-write` arguments. */
export interface FileWrite {
  /** The file on the volume (it must exist and hold `bytes`). */
  readonly name: string;
  /** Bytes to write from offset 0, a whole number of chunks. */
  readonly bytes: number;
  readonly bs: number;
  /** Writes in flight on the thread pool when not batched. */
  readonly iodepth: number;
  readonly seed: number;
  /** Batches on the node's I/O thread (default), or one write at a time through the write fence. */
  readonly batch: boolean;
}

/** What a `file-write` did. */
export interface FileWritten {
  readonly name: string;
  readonly bytes: number;
  /** Wall-clock milliseconds from the first write sent to the last acknowledged. */
  readonly ms: number;
  /**
   * When the first write was sent and the last acknowledged, on
   * {@link machineClockMs}, so that the writes of several node processes
   * on one machine lie on one time line: `hvlab bench csv` times the
   * nodes' I/O together from the earliest start to the latest end,
   * without the control request and the file's open that come before it.
   */
  readonly startedAt: number;
  readonly endedAt: number;
  readonly directWrites: number;
  readonly redirectedWrites: number;
}

/**
 * Milliseconds on the machine's monotonic clock (CLOCK_MONOTONIC, through
 * `process.hrtime`), which every process of the machine reads alike. Not
 * `performance.timeOrigin + performance.now()`: each process fixes its
 * origin from the wall clock when it starts, and the two clocks drift
 * apart, so processes started at different times disagree by milliseconds
 * (measured: 9 to 14 ms between the benchmark and its node processes).
 */
export function machineClockMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** `file-write`'s arguments are not what it takes; the message names the field. */
export class FileWriteArgumentError extends RangeError {
  override name = "FileWriteArgumentError";
}

function whole(value: unknown, what: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max)
    throw new FileWriteArgumentError(
      `file-write: ${what} must be a whole number from ${min} to ${max}, not ${JSON.stringify(value)}`,
    );
  return value;
}

function flag(value: unknown, what: string): boolean {
  if (typeof value !== "boolean")
    throw new FileWriteArgumentError(
      `file-write: ${what} must be true or false, not ${JSON.stringify(value)}`,
    );
  return value;
}

/** Checks `file-write` arguments field by field. */
export function parseFileWrite(args: unknown): FileWrite {
  if (typeof args !== "object" || args === null || Array.isArray(args))
    throw new FileWriteArgumentError(
      "file-write needs arguments {name, bytes, bs, iodepth, seed, batch?}",
    );
  const a = args as Record<string, unknown>;
  if (typeof a.name !== "string" || a.name.length === 0 || Buffer.byteLength(a.name) > 128)
    throw new FileWriteArgumentError("file-write: name must be a string of 1 to 128 bytes");
  const bs = whole(a.bs, "bs", 512, MAX_FILE_WRITE_BS);
  const bytes = whole(a.bytes, "bytes", bs, 2 ** 40);
  if (bytes % bs !== 0)
    throw new FileWriteArgumentError(
      `file-write: bytes ${bytes} is not a whole number of ${bs}-byte chunks`,
    );
  return {
    name: a.name,
    bytes,
    bs,
    iodepth: whole(a.iodepth, "iodepth", 1, MAX_FILE_WRITE_DEPTH),
    seed: whole(a.seed, "seed", 0, 0xffff_ffff),
    batch: a.batch === undefined ? true : flag(a.batch, "batch"),
  };
}

/** Fills `chunk` with the pattern of `seed`: every byte depends on its position and the seed. */
export function fillPattern(chunk: Uint8Array, seed: number): void {
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 131 + seed * 17 + (i >>> 12)) & 0xff;
}

let lastChunk: { bs: number; seed: number; chunk: Uint8Array } | undefined;

/**
 * A page-aligned chunk of `bs` bytes of shared memory holding the pattern of `seed`, kept
 * for the next call with the same size and seed: the pattern is not the
 * I/O being timed (filling 256 KiB byte by byte costs milliseconds on a
 * busy machine, where the one-process peer's chunk is filled once). Page-
 * aligned, so a node on an unbuffered path (--lun-direct) writes it
 * without a bounce; shared, so the node's I/O thread writes it without a
 * copy. Nothing writes into it once filled.
 */
function patternChunk(bs: number, seed: number): Uint8Array {
  if (lastChunk?.bs !== bs || lastChunk.seed !== seed) {
    const chunk = pageAlignedBytes(bs, true);
    fillPattern(chunk, seed);
    lastChunk = { bs, seed, chunk };
  }
  return lastChunk.chunk;
}

/** What `file-write` needs of a node. */
export interface FileWriter {
  metadata(request: { op: "open"; name: string }): Promise<FileMap | undefined>;
  writeFile(file: FileMap, offset: number, data: Uint8Array): Promise<void>;
  writeFileBatch(file: FileMap, chunks: readonly FileChunk[]): Promise<void>;
  readonly io: { readonly directWrites: number; readonly redirectedWrites: number };
}

/** Runs a checked `file-write` on `node`. */
export async function runFileWrite(node: FileWriter, w: FileWrite): Promise<FileWritten> {
  const file = await node.metadata({ op: "open", name: w.name });
  if (!file || file.size < w.bytes)
    throw new FileWriteArgumentError(
      `file-write: ${w.name} holds ${file?.size ?? 0} bytes, fewer than the ${w.bytes} to write`,
    );
  const chunk = patternChunk(w.bs, w.seed);
  const before = { ...node.io };
  const started = machineClockMs();
  if (w.batch) {
    const perBatch = Math.max(
      1,
      Math.min(FILE_WRITE_BATCH_CHUNKS, Math.floor(FILE_WRITE_BATCH_BYTES / w.bs)),
    );
    for (let at = 0; at < w.bytes; ) {
      const chunks: FileChunk[] = [];
      for (; at < w.bytes && chunks.length < perBatch; at += w.bs)
        chunks.push({ offset: at, data: chunk });
      await node.writeFileBatch(file, chunks);
    }
  } else {
    let next = 0;
    // iodepth writers, each taking the next chunk: a VM's queue of I/O.
    const writer = async () => {
      for (let at = next; at < w.bytes; at = next) {
        next += w.bs;
        await node.writeFile(file, at, chunk);
      }
    };
    await Promise.all(Array.from({ length: w.iodepth }, writer));
  }
  const ended = machineClockMs();
  return {
    name: w.name,
    bytes: w.bytes,
    ms: ended - started,
    startedAt: started,
    endedAt: ended,
    directWrites: node.io.directWrites - before.directWrites,
    redirectedWrites: node.io.redirectedWrites - before.redirectedWrites,
  };
}
