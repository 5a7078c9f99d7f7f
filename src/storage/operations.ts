import { renameSync, statSync, unlinkSync } from "node:fs";
import type { Region } from "../memory/region.js";
import { FdFile } from "./block-file.js";
import { openDestination } from "./destination.js";
import { type DiskImage, type MapExtent, RawImage } from "./disk-image.js";
import { DestinationIsSourceError } from "./errors.js";
import { DEFAULT_BLOCK_BYTES, VHD_EPOCH_SECONDS, type VhdType } from "./format.js";
import { defaultKernels, type StorageKernels } from "./kernels.js";
import { openImage } from "./open.js";
import { VhdImage } from "./vhd.js";

/** What convert, merge and compact did. */
export interface CopyStats {
  /** Virtual size of the disk. */
  readonly size: number;
  /** Bytes read from extents the source stores. */
  readonly bytesRead: number;
  /** Bytes written to the destination. */
  readonly bytesWritten: number;
  /** Chunks skipped because they were all zero. */
  readonly zeroChunks: number;
}

/** Reports progress: bytes of the disk walked so far, of the total. */
export type ProgressFn = (done: number, total: number) => void;

/**
 * Bytes of chunks a copy keeps in flight: two 2 MiB chunks, one read ahead
 * of the one being written. Writes go out one at a time, and a 2 MiB read
 * from the page cache takes less than a 2 MiB write, so one read ahead keeps
 * the writer busy; more only costs memory the kernel must fault in on the
 * first read into it. qemu-img convert keeps 8 requests of 2 MiB in flight
 * (qemu-img.c, img_convert: `-m` defaults to 8 coroutines, `bufsectors` to
 * 4096); here 16 MiB of fresh buffers were 3,100 of a convert's 7,700 page
 * faults, each some 10 to 40 µs on a virtual machine (docs/storage.md).
 */
const IN_FLIGHT_BYTES = 4 * 1024 * 1024;
/** Most chunks in flight, whatever their size. */
const MAX_IN_FLIGHT = 8;

/** The chunks of a copy: pieces of the stored extents, aligned to the chunk size. */
function* chunksOf(extents: readonly MapExtent[], chunk: number): Generator<[number, number]> {
  for (const e of extents) {
    if (!e.data) continue;
    // Aligned to the chunk size, so that each lands in one destination block.
    for (let at = e.start; at < e.start + e.length; ) {
      const n = Math.min(chunk - (at % chunk), e.start + e.length - at);
      yield [at, n];
      at += n;
    }
  }
}

/**
 * Copies every stored, non-zero extent of `src` into `dst`, chunk by chunk
 * through buffers in the shared memory, skipping extents the source does
 * not store (they read as zeros, which a new destination already is) and
 * chunks the zero-detection kernel finds empty. Up to `depth` chunks are
 * read at once, off this thread where the source can; their writes go out
 * in the disk's order, one at a time, each once the one before is done (as
 * qemu-img convert's in-order writes, qemu-img.c convert_co_do_copy): the
 * writes, which the destination's file system takes one at a time anyway,
 * do not contend, and a new dynamic destination's blocks lie in the same
 * order, its file holding the same bytes, as a copy one chunk at a time
 * would give.
 */
export async function copyExtents(
  src: DiskImage,
  dst: DiskImage,
  extents: readonly MapExtent[],
  options: {
    kernels?: StorageKernels;
    chunk?: number;
    /** Chunks in flight at once (default: 16 MiB of them, at most 8). */
    depth?: number;
    progress?: ProgressFn;
    /** Write all-zero chunks too (where zeros hide a parent's data). */
    keepZeros?: boolean;
  } = {},
): Promise<CopyStats> {
  const kernels = options.kernels ?? defaultKernels();
  const chunk = options.chunk ?? DEFAULT_BLOCK_BYTES;
  const depth =
    options.depth ?? Math.max(1, Math.min(MAX_IN_FLIGHT, Math.floor(IN_FLIGHT_BYTES / chunk)));
  if (!(Number.isInteger(depth) && depth >= 1 && depth <= 64)) {
    throw new RangeError(`copy depth must be 1-64 chunks in flight, not ${depth}`);
  }
  const free: Region[] = [];
  let bytesRead = 0;
  let bytesWritten = 0;
  let zeroChunks = 0;
  const inFlight = new Set<Promise<void>>();
  // The first chunk, in the disk's order, that failed: chunks before it are still written, none after.
  const first: { failure?: { at: number; error: unknown } } = {};
  // Resolved when the previous chunk's write is done: writes go out in order, one at a time.
  let previousWritten: Promise<void> = Promise.resolve();
  try {
    for (let i = 0; i < depth; i++) free.push(kernels.borrow(chunk));
    for (const [at, n] of chunksOf(extents, chunk)) {
      while (free.length === 0 && !first.failure) await Promise.race(inFlight);
      if (first.failure) break;
      const buffer = free.pop() as Region;
      const turn = previousWritten;
      let written!: () => void;
      previousWritten = new Promise((resolve) => {
        written = resolve;
      });
      const task = (async () => {
        try {
          const part = buffer.bytes(kernels.memory).subarray(0, n);
          await src.readAsync(at, part);
          bytesRead += n;
          const zero = !options.keepZeros && kernels.kernel.isZero(buffer, 0, n);
          await turn;
          if (first.failure && first.failure.at < at) return;
          if (zero) zeroChunks++;
          else {
            await dst.writeAsync(at, part);
            bytesWritten += n;
          }
          options.progress?.(at + n, src.size);
        } catch (error) {
          if (!first.failure || at < first.failure.at) first.failure = { at, error };
        } finally {
          written();
          free.push(buffer);
        }
      })();
      inFlight.add(task);
      void task.then(() => inFlight.delete(task));
    }
    await Promise.all(inFlight);
    if (first.failure) throw first.failure.error;
  } finally {
    // Every task has settled (they catch their own errors): no buffer is still in use.
    for (const buffer of free) kernels.release(buffer);
  }
  return { size: src.size, bytesRead, bytesWritten, zeroChunks };
}

/** Target formats of {@link convertImage}. */
export type ConvertTarget = "raw" | "fixed" | "dynamic";

/** Options for {@link convertImage}. */
export interface ConvertOptions {
  readonly to: ConvertTarget;
  readonly blockSize?: number;
  readonly kernels?: StorageKernels;
  readonly progress?: ProgressFn;
  /**
   * fdatasync the destination before returning. Off by default, as
   * qemu-img convert's destination cache mode is "unsafe" (qemu-img.c,
   * img_convert): the new file is in the page cache, durable once the
   * system writes it back or the caller syncs it.
   */
  readonly flush?: boolean;
  /** Direct I/O (O_DIRECT) on the source and the destination: around the host's page cache. */
  readonly direct?: boolean;
}

/**
 * Converts an image (raw or any VHD, detected from its bytes; a differencing
 * disk is read through its chain) into a new raw file, fixed VHD or dynamic
 * VHD, skipping all-zero blocks.
 */
export async function convertImage(
  srcPath: string,
  dstPath: string,
  options: ConvertOptions,
): Promise<CopyStats> {
  const kernels = options.kernels ?? defaultKernels();
  const direct = options.direct ?? false;
  const src = openImage(srcPath, { kernels, direct });
  try {
    const size = src.size;
    refuseSourceAsDestination(src, srcPath, dstPath);
    const file = openDestination(dstPath, { direct });
    let dst: DiskImage;
    try {
      if (options.to === "raw") {
        file.truncate(size);
        dst = new RawImage(file, true);
      } else {
        dst = VhdImage.create(file, {
          type: options.to,
          size,
          kernels,
          ...(options.blockSize ? { blockSize: options.blockSize } : {}),
        });
      }
    } catch (error) {
      file.close();
      throw error;
    }
    try {
      const chunk =
        options.to === "dynamic" ? (options.blockSize ?? DEFAULT_BLOCK_BYTES) : DEFAULT_BLOCK_BYTES;
      const stats = await copyExtents(src, dst, src.map(), {
        kernels,
        chunk,
        ...(options.progress ? { progress: options.progress } : {}),
      });
      if (options.flush) dst.flush();
      return stats;
    } finally {
      dst.close();
    }
  } finally {
    src.close();
  }
}

/** What becomes of the child once {@link mergeImage} has folded it into its parent. */
export type MergedChild = "emptied" | "deleted";

/**
 * Folds a differencing disk into its parent: every sector the child holds is
 * written into the parent (qemu-img commit's job). The parent's data, and so
 * its modification time, change, which would leave the child pointing at a
 * parent it no longer matches; so the child is then, by default, emptied as
 * qemu-img commit empties the image it commits (no block allocated, the
 * parent's new time stamp recorded, its unique id kept): the chain and the
 * parent alone read the same merged data, and the child takes new writes.
 * With `child: "deleted"` it is removed instead, as Hyper-V's Merge-VHD
 * removes the disks it merged. The emptied child is written beside the old
 * one and renamed over it, so a crash leaves either the old child or the
 * new one, never half of each.
 */
export async function mergeImage(
  childPath: string,
  options: { kernels?: StorageKernels; progress?: ProgressFn; child?: MergedChild } = {},
): Promise<CopyStats & { parent: string; child: MergedChild }> {
  const kernels = options.kernels ?? defaultKernels();
  const child = openImage(childPath, { kernels });
  let stats: CopyStats;
  let parentPath: string;
  let blockSize: number;
  let uniqueId: Uint8Array;
  let timestamp: number;
  try {
    if (!(child instanceof VhdImage) || child.type !== "differencing" || !child.parentPath) {
      throw new TypeError(`${childPath} is not a differencing VHD: there is nothing to merge`);
    }
    parentPath = child.parentPath;
    blockSize = child.blockBytes;
    uniqueId = child.footer.uniqueId;
    timestamp = child.footer.timestamp;
    const own = child.map().filter((e) => e.depth === 0 && e.data);
    const parent = openImage(parentPath, { kernels, writable: true });
    try {
      stats = await copyExtents(child, parent, own, {
        kernels,
        chunk: child.blockBytes,
        keepZeros: true,
        ...(options.progress ? { progress: options.progress } : {}),
      });
      parent.flush();
    } finally {
      parent.close();
    }
  } finally {
    child.close();
  }
  const fate = options.child ?? "emptied";
  if (fate === "deleted") {
    unlinkSync(childPath);
    return { ...stats, parent: parentPath, child: fate };
  }
  // The parent is closed: its modification time is final, and the new child records it.
  const tmp = `${childPath}.merge-${process.pid}`;
  const parent = openImage(parentPath, { kernels });
  try {
    if (!(parent instanceof VhdImage)) throw new TypeError(`${parentPath} is not a VHD`);
    const file = new FdFile(tmp, "wx+");
    try {
      VhdImage.create(file, {
        type: "differencing",
        blockSize,
        kernels,
        path: childPath,
        uniqueId,
        now: (timestamp + VHD_EPOCH_SECONDS) * 1000,
        parent: { image: parent, path: parentPath, mtimeMs: statSync(parentPath).mtimeMs },
      }).close();
    } catch (error) {
      file.close();
      throw error;
    }
    renameSync(tmp, childPath);
  } catch (error) {
    try {
      unlinkSync(tmp);
    } catch {}
    throw error;
  } finally {
    parent.close();
  }
  return { ...stats, parent: parentPath, child: fate };
}

/**
 * Rewrites a dynamic or differencing VHD without the blocks it does not
 * need: all-zero blocks of a dynamic disk, and blocks of a differencing disk
 * whose bitmaps hold no sector. The disk keeps its unique id, block size and
 * parent; the new file replaces the old one only when complete.
 */
export async function compactImage(
  path: string,
  options: { kernels?: StorageKernels; progress?: ProgressFn } = {},
): Promise<CopyStats & { before: number; after: number }> {
  const kernels = options.kernels ?? defaultKernels();
  const before = statSync(path).size;
  const src = openImage(path, { kernels });
  const tmp = `${path}.compact-${process.pid}`;
  try {
    if (!(src instanceof VhdImage) || src.type === "fixed") {
      throw new TypeError(
        `${path} is not a dynamic or differencing VHD: there is nothing to compact`,
      );
    }
    const parentPath = src.parentPath;
    const header = src.header;
    const file = new FdFile(tmp, "wx+");
    let dst: VhdImage;
    try {
      dst = VhdImage.create(file, {
        type: src.type,
        size: src.size,
        blockSize: src.blockBytes,
        kernels,
        path,
        uniqueId: src.footer.uniqueId,
        now: (src.footer.timestamp + VHD_EPOCH_SECONDS) * 1000,
        ...(src.parent && parentPath && header
          ? {
              parent: {
                image: src.parent,
                path: parentPath,
                mtimeMs: (header.parentTimestamp + VHD_EPOCH_SECONDS) * 1000,
              },
            }
          : {}),
      });
    } catch (error) {
      file.close();
      throw error;
    }
    let stats: CopyStats;
    try {
      const own = src.map().filter((e) => e.depth === 0 && e.data);
      // Every sector a differencing disk holds matters, zeros included.
      stats = await copyExtents(src, dst, own, {
        kernels,
        chunk: src.blockBytes,
        keepZeros: src.type === "differencing",
        ...(options.progress ? { progress: options.progress } : {}),
      });
      dst.flush();
    } finally {
      dst.close();
    }
    renameSync(tmp, path);
    return { ...stats, before, after: statSync(path).size };
  } catch (error) {
    try {
      unlinkSync(tmp);
    } catch {}
    throw error;
  } finally {
    src.close();
  }
}

/** The VHD type names `--type` accepts. */
export const VHD_TYPES: readonly VhdType[] = ["fixed", "dynamic", "differencing"];

/**
 * Refuses a destination that is the source or one of its parents (by device
 * and inode, so another name of the same file counts): emptying it for the
 * copy would destroy the data the copy reads.
 */
function refuseSourceAsDestination(src: DiskImage, srcPath: string, dstPath: string): void {
  const dst = statSync(dstPath, { throwIfNoEntry: false });
  if (!dst) return;
  const chain: string[] = [srcPath];
  for (let image: DiskImage | undefined = src; image instanceof VhdImage; image = image.parent) {
    if (image.parentPath !== undefined) chain.push(image.parentPath);
  }
  for (const path of chain) {
    const read = statSync(path, { throwIfNoEntry: false });
    if (read && read.dev === dst.dev && read.ino === dst.ino) {
      throw new DestinationIsSourceError(
        `${dstPath} is ${path === srcPath ? "the source itself" : `${path}, a parent of the source`}: convert writes a new file and would empty it first`,
      );
    }
  }
}
