import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { TraceError } from "./errors.js";
import type { UtilizationTrace } from "./trace.js";

/** Busy and total jiffies of each processor, from one read of /proc/stat. */
export interface CpuTimes {
  readonly busy: readonly number[];
  readonly total: readonly number[];
}

/**
 * Reads the per-processor lines of /proc/stat (proc(5): user nice system
 * idle iowait irq softirq steal ...). Busy is everything but idle and iowait.
 */
export function parseProcStat(text: string): CpuTimes {
  const busy: number[] = [];
  const total: number[] = [];
  for (const line of text.split("\n")) {
    const match = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!match) continue;
    const fields = (match[2] ?? "").trim().split(/\s+/).map(Number);
    if (fields.length < 4 || fields.some((f) => !Number.isFinite(f) || f < 0)) {
      throw new TraceError(`/proc/stat: cannot read the line for cpu${match[1]}`);
    }
    // guest and guest_nice (fields 9 and 10) are already counted in user and nice.
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] =
      fields;
    busy.push(user + nice + system + irq + softirq + steal);
    total.push(user + nice + system + idle + iowait + irq + softirq + steal);
  }
  if (busy.length === 0) throw new TraceError("/proc/stat has no per-processor lines");
  return { busy, total };
}

/**
 * Samples this machine's per-processor utilization from /proc/stat every
 * `intervalMs` for `samples` samples.
 */
export async function recordUtilization(
  samples: number,
  intervalMs: number,
  onSample?: (done: number) => void,
): Promise<UtilizationTrace> {
  const read = async () => parseProcStat(await readFile("/proc/stat", "utf8"));
  let before = await read();
  const started = performance.now();
  const cpus = before.busy.length;
  const times = new Float64Array(samples);
  const values = new Float64Array(samples * cpus);
  for (let s = 0; s < samples; s++) {
    // A timer can fire up to a millisecond before its delay has passed by
    // this clock (libuv truncates the delay to whole milliseconds and counts
    // from the time it cached at the loop's turn): sleep again until the
    // interval's end has passed, so each sample covers its whole interval.
    const due = started + (s + 1) * intervalMs;
    while (performance.now() < due) await sleep(Math.ceil(due - performance.now()));
    const now = await read();
    times[s] = (performance.now() - started) / 1000;
    for (let c = 0; c < cpus; c++) {
      const dt = (now.total[c] ?? 0) - (before.total[c] ?? 0);
      const db = (now.busy[c] ?? 0) - (before.busy[c] ?? 0);
      values[s * cpus + c] = dt > 0 ? Math.min(1, Math.max(0, db / dt)) : 0;
    }
    before = now;
    onSample?.(s + 1);
  }
  return { columns: cpus, times, values };
}
