import type { BatchStop } from "./fenced-batch.js";
import type { LunWrite } from "./io-thread.js";
import type { VolumeLayout } from "./layout.js";
import { ReservationConflictError } from "./target-client.js";
import { type FileMap, mapFileRange } from "./volume.js";

/*
 * A node's chunks of file data as one batch of LUN writes (a chunk at a
 * file's offset becomes one write per extent it covers), and what the
 * batch's outcome means for the chunks: a chunk is acknowledged when every
 * write of it is.
 */

/** One chunk of a file to write: `data` at the file's `offset`. */
export interface FileChunk {
  readonly offset: number;
  readonly data: Uint8Array;
}

/** The LUN writes of `chunks` in order, and after how many of them each chunk is whole. */
export function chunkWrites(
  layout: VolumeLayout,
  file: FileMap,
  chunks: readonly FileChunk[],
): { writes: LunWrite[]; ends: number[] } {
  const writes: LunWrite[] = [];
  const ends: number[] = [];
  for (const c of chunks) {
    for (const r of mapFileRange(layout, file, c.offset, c.data.length))
      writes.push({
        lunOffset: r.lunOffset,
        data: c.data.subarray(r.bufferOffset, r.bufferOffset + r.length),
      });
    ends.push(writes.length);
  }
  return { writes, ends };
}

/** Per chunk, whether every write of it is acknowledged. */
export function chunksAcknowledged(
  ends: readonly number[],
  acknowledged: readonly boolean[],
): boolean[] {
  return ends.map((end, i) => {
    for (let w = i === 0 ? 0 : (ends[i - 1] as number); w < end; w++)
      if (acknowledged[w] !== true) return false;
    return true;
  });
}

/**
 * A batch of direct writes stopped by an I/O error: {@link acknowledged}
 * chunks landed and are acknowledged; the failed write may have landed in
 * part; the others are not acknowledged.
 */
export class DirectWriteError extends Error {
  override name = "DirectWriteError";

  constructor(
    message: string,
    /** Chunks acknowledged. */
    readonly acknowledged: number,
    /** The errno name of the failure (EIO, ENOSPC, ...), when it has one. */
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

/**
 * The error a stopped batch gives its caller: RESERVATION CONFLICT for a
 * write the board refused or did not acknowledge (as the write fence
 * gives), {@link DirectWriteError} for one that failed. Each names the
 * write, and how many of the batch's chunks were acknowledged.
 */
export function batchStopError(
  stop: BatchStop,
  acknowledgedChunks: number,
  writes: readonly LunWrite[],
  chunks: number,
  lunName: string,
): Error {
  const w = writes[stop.at];
  const what = `WRITE of ${w?.data.length ?? 0} bytes at ${w?.lunOffset ?? 0} on ${lunName}`;
  const done = acknowledgedChunks;
  const tally = `${done} of ${chunks} chunks acknowledged; the batch stopped, no write issued after it on its thread`;
  if (stop.cause === "io")
    return new DirectWriteError(
      `${what} failed${stop.code ? ` (${stop.code})` : ""}: ${stop.reason}; ${tally}${stop.bytesWritten === undefined ? "" : `; ${stop.bytesWritten} of its bytes went out`}`,
      done,
      stop.code,
    );
  return new ReservationConflictError(`${what}: ${stop.reason}; ${tally}`);
}
