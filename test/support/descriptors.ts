import { constants, readdirSync, readFileSync, readlinkSync } from "node:fs";

/**
 * Descriptors this process holds open on `path`, from /proc/self/fd (Linux,
 * proc(5)); with `direct`, only those opened with O_DIRECT, read from the
 * `flags` line of /proc/self/fdinfo.
 */
export function descriptorsOn(path: string, options: { direct?: boolean } = {}): number {
  let n = 0;
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) !== path) continue;
      if (options.direct) {
        const flags = /flags:\s*([0-7]+)/.exec(
          readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"),
        )?.[1];
        if (flags === undefined) continue;
        if ((Number.parseInt(flags, 8) & (constants.O_DIRECT ?? 0)) === 0) continue;
      }
      n++;
    } catch {
      // The descriptor closed while the directory was read.
    }
  }
  return n;
}
