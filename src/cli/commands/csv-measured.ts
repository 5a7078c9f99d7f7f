import { readFileSync, statSync } from "node:fs";
import { UsageError } from "../options.js";

/** Largest result file read: a csv bench result is kilobytes; this bounds a wrong file. */
const MAX_RESULT_BYTES = 64 * 1024 * 1024;

/**
 * The LUN move a cluster run measured (the JSON of `hvlab csv bench
 * --json`: `planned.pauseMs`, the disk resource released on one node and
 * reserved and mounted on another), for `hvlab quick-migrate
 * --failover-from`, where it replaces the assumed failover wait.
 */
export function readMeasuredLunMove(path: string): number {
  let text: string;
  try {
    const bytes = statSync(path).size;
    if (bytes > MAX_RESULT_BYTES)
      throw new UsageError(
        `--failover-from ${path}: ${bytes} bytes is too large for a csv bench result`,
      );
    text = readFileSync(path, "utf8");
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`--failover-from ${path}: ${(error as Error).message}`);
  }
  let result: unknown;
  try {
    result = JSON.parse(text);
  } catch {
    throw new UsageError(
      `--failover-from ${path}: not JSON (the output of hvlab csv bench --json)`,
    );
  }
  const planned = (result as { planned?: unknown } | null)?.planned;
  const ms = (planned as { pauseMs?: unknown } | null | undefined)?.pauseMs;
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0 || ms > 3_600_000)
    throw new UsageError(
      `--failover-from ${path}: planned.pauseMs is missing or not 0 to 3600000 ms (run hvlab csv bench without --no-planned)`,
    );
  return ms;
}
