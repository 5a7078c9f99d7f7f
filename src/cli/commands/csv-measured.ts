import { readFileSync, statSync } from "node:fs";
import { UsageError } from "../options.js";

/** Largest result file read: a csv bench result is kilobytes; this bounds a wrong file. */
const MAX_RESULT_BYTES = 64 * 1024 * 1024;

/**
 * The LUN move a cluster run measured (the JSON of `hvlab csv vms --json`:
 * `quick.lunMoveMs`; or of `hvlab csv bench
 * --json`: `planned.pauseMs`, the disk resource released on one node and
 * reserved and mounted on another), for `hvlab quick-migrate
 * --failover-from`, where it replaces the assumed failover wait.
 */
export function readMeasuredLunMove(path: string): number {
  const result = readResult(
    "--failover-from",
    path,
    "hvlab csv vms --json or hvlab csv bench --json",
  );
  // hvlab csv vms: the LUN moved under a VM's quick migration, offline on
  // the source to online on the destination, as the migrating side saw it.
  const quick = (result as { quick?: unknown } | null)?.quick;
  const moved = (quick as { lunMoveMs?: unknown } | null | undefined)?.lunMoveMs;
  if (quick !== undefined) {
    if (!inRange(moved))
      throw new UsageError(
        `--failover-from ${path}: quick.lunMoveMs is missing or not 0 to 3600000 ms (the output of hvlab csv vms --json)`,
      );
    return moved;
  }
  // hvlab csv bench: its planned move of the role is the same LUN move.
  const planned = (result as { planned?: unknown } | null)?.planned;
  const ms = (planned as { pauseMs?: unknown } | null | undefined)?.pauseMs;
  if (!inRange(ms))
    throw new UsageError(
      `--failover-from ${path}: quick.lunMoveMs (hvlab csv vms --json) or planned.pauseMs is missing or not 0 to 3600000 ms (run hvlab csv bench without --no-planned)`,
    );
  return ms;
}

/**
 * The storage handover a cluster run measured under a VM's live migration
 * (the JSON of `hvlab csv vms --json`: `live.downtimeMs`, from the stop
 * asked on the source, through the VHD closed and flushed there and opened
 * on the destination through the coordinator, to the first I/O due on the
 * destination), for `--handover-from` of `hvlab migrate`, where it joins
 * the switchover counted in downtime, and of `hvlab migrate-live` (and
 * `hvlab migrate --to`), whose source pauses the guest that long inside
 * the blackout, so the downtime measured on the wire holds it.
 */
export function readMeasuredHandover(path: string): number {
  const result = readResult("--handover-from", path, "hvlab csv vms --json");
  const live = (result as { live?: unknown } | null)?.live;
  const ms = (live as { downtimeMs?: unknown } | null | undefined)?.downtimeMs;
  if (!inRange(ms))
    throw new UsageError(
      `--handover-from ${path}: live.downtimeMs is missing or not 0 to 3600000 ms (the output of hvlab csv vms --json)`,
    );
  return ms;
}

/** A measured pause in range: 0 to an hour, in ms. */
function inRange(ms: unknown): ms is number {
  return typeof ms === "number" && Number.isFinite(ms) && ms >= 0 && ms <= 3_600_000;
}

/** Reads a cluster run's JSON result, bounded in size, for the option `flag`. */
function readResult(flag: string, path: string, what: string): unknown {
  let text: string;
  try {
    const bytes = statSync(path).size;
    if (bytes > MAX_RESULT_BYTES)
      throw new UsageError(`${flag} ${path}: ${bytes} bytes is too large for a cluster result`);
    text = readFileSync(path, "utf8");
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new UsageError(`${flag} ${path}: ${(error as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new UsageError(`${flag} ${path}: not JSON (the output of ${what})`);
  }
}
