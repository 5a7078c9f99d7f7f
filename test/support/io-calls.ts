import { readFileSync } from "node:fs";

/**
 * This thread's I/O so far (proc(5), /proc/thread-self/io): read and write
 * system calls (syscr, syscw) and the bytes its write calls passed (wchar).
 */
export interface IoCounters {
  reads: number;
  writes: number;
  writtenBytes: number;
}

/** Reads this thread's {@link IoCounters}. */
export function ioCalls(): IoCounters {
  const text = readFileSync("/proc/thread-self/io", "utf8");
  const field = (name: string) => Number(new RegExp(`${name}: (\\d+)`).exec(text)?.[1]);
  return { reads: field("syscr"), writes: field("syscw"), writtenBytes: field("wchar") };
}

/** The smallest logical block size: every write a DirectFile makes is a multiple of it. */
const BLOCK = 512;
/** Bytes of one wake of libuv's event loop on Linux: an eventfd takes a 64-bit count (eventfd(2)). */
const WAKE = 8;

/**
 * The write calls between two readings that were not wakes of the event
 * loop. Code running on this thread can make write calls it never asked
 * for: when V8 queues a task for the main thread (a garbage collection
 * step, say) Node's platform calls uv_async_send, which writes 8 bytes to
 * the loop's eventfd, at most once until the loop next turns. A test that
 * counted those would see a request's calls one too many, or, if one came
 * while the counters themselves were read, one too few. The requests
 * counted here write whole blocks, so the bytes that are not a whole
 * number of blocks are the wakes'.
 *
 * @throws Error when those bytes are not a whole number of wakes: then
 *   something else wrote, and no count would be honest.
 */
export function writesBetween(before: IoCounters, after: IoCounters): number {
  const stray = (after.writtenBytes - before.writtenBytes) % BLOCK;
  if (stray % WAKE !== 0) {
    throw new Error(
      `${stray} bytes written that are neither whole ${BLOCK}-byte blocks nor ${WAKE}-byte wakes of the event loop`,
    );
  }
  return after.writes - before.writes - stray / WAKE;
}

/**
 * The read and write system calls `run` makes on this thread, refused ones
 * included (the kernel counts a call before its file system answers), less
 * those of reading the counters themselves and the event loop's wakes
 * ({@link writesBetween}). Reads need no such care: the loop reads its
 * eventfd only when it turns, never inside `run`.
 */
export function callsOf(run: () => void): { reads: number; writes: number } {
  const a = ioCalls();
  const b = ioCalls();
  const before = ioCalls();
  run();
  const after = ioCalls();
  return {
    reads: after.reads - before.reads - (b.reads - a.reads),
    writes: writesBetween(before, after) - writesBetween(a, b),
  };
}
