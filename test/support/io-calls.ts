import { readFileSync } from "node:fs";

/** This thread's read and write system calls so far (proc(5), /proc/thread-self/io: syscr, syscw). */
export function ioCalls(): { reads: number; writes: number } {
  const text = readFileSync("/proc/thread-self/io", "utf8");
  const field = (name: string) => Number(new RegExp(`${name}: (\\d+)`).exec(text)?.[1]);
  return { reads: field("syscr"), writes: field("syscw") };
}

/**
 * The read and write system calls `run` makes on this thread, refused ones
 * included (the kernel counts a call before its file system answers), less
 * those of reading the counters themselves.
 */
export function callsOf(run: () => void): { reads: number; writes: number } {
  const a = ioCalls();
  const b = ioCalls();
  const before = ioCalls();
  run();
  const after = ioCalls();
  return {
    reads: after.reads - before.reads - (b.reads - a.reads),
    writes: after.writes - before.writes - (b.writes - a.writes),
  };
}
