import type { RegionDescriptor } from "../memory/region.js";
import type { IoSpec } from "./io-spec.js";

/**
 * One disk's guest I/O on a pool worker. The worker opens the image, runs the
 * workload until its run time ends or the disk is removed, and closes it.
 *
 * Control slots (Int32, at `control`), shared with the main thread:
 *
 *   0 state      0 running, 1 removal asked (main), 2 removed (worker: file closed)
 *   1 started    set to 1 once the image is open and the first request is due
 *   2 completed  I/Os completed so far
 */
export interface IoTask {
  readonly type: "storage.io";
  readonly disk: string;
  readonly path: string;
  readonly spec: IoSpec;
  /** The request buffer (bs bytes). */
  readonly buffer: RegionDescriptor;
  /** u32 generation per I/O block of the disk (the verify table). */
  readonly gens: RegionDescriptor;
  readonly control: RegionDescriptor;
  /** Where the worker's image borrows bitmap caches. */
  readonly arena: RegionDescriptor;
  /** Timeline bucket width in milliseconds. */
  readonly intervalMs: number;
  /**
   * When set, the image is not opened at `path` (then only its name) but
   * through this mailbox, served by the thread that owns the file's real
   * path (see channel-file.ts): a VHD on a Cluster Shared Volume.
   */
  readonly channel?: RegionDescriptor;
}

/** Warms a worker up (domain loaded, kernels instantiated) before timing starts. */
export interface ReadyTask {
  readonly type: "storage.ready";
}

/** What one disk's I/O did. */
export interface IoResult {
  readonly disk: string;
  readonly reads: number;
  readonly writes: number;
  readonly bytes: number;
  /** Requests that failed with DiskRemovedError (queued when the disk went). */
  readonly failed: number;
  readonly failedError?: string;
  /** Reads whose data was not what the verify table says (offsets of the first few). */
  readonly verifyErrors: number;
  readonly verifyErrorOffsets: readonly number[];
  /** Wall-clock times (epoch ms) of the first request, the last completion, and the removal ack. */
  readonly startedAtMs: number;
  readonly lastCompletionAtMs: number;
  readonly removedAtMs?: number;
  readonly elapsedMs: number;
  /** Completion latency histogram (HdrHistogram, nanoseconds), compressed. */
  readonly histogram: string;
  /** Completed I/Os per timeline bucket. */
  readonly timeline: readonly number[];
}

/** Control slot indices. */
export const IoControl = { state: 0, started: 1, completed: 2 } as const;
export const IO_CONTROL_SLOTS = 4;
export const IoState = { running: 0, removeAsked: 1, removed: 2 } as const;

declare module "../pool/registry.js" {
  /** The storage domain's task types: a disk's guest I/O. */
  interface TaskRegistry {
    "storage.io": { task: IoTask; result: IoResult };
    "storage.ready": { task: ReadyTask; result: number };
  }
}
