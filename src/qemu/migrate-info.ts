/*
 * QEMU's query-migrate answer (qapi/migration.json: MigrationInfo), read
 * defensively: every field is checked before it is trusted, and a field
 * QEMU did not send reads as absent, never as a wrong number.
 */

/** The parts of MigrationInfo hvlab records. */
export interface QemuMigrationInfo {
  readonly status: string;
  readonly "total-time"?: number;
  readonly "expected-downtime"?: number;
  readonly downtime?: number;
  readonly "setup-time"?: number;
  readonly "cpu-throttle-percentage"?: number;
  readonly ram?: Readonly<Record<string, number>>;
  readonly "xbzrle-cache"?: Readonly<Record<string, number>>;
  readonly "error-desc"?: string;
}

/** A query-migrate answer that is not a MigrationInfo. */
export class MigrationInfoError extends Error {
  override name = "MigrationInfoError";
}

function numbers(value: unknown, where: string): Record<string, number> | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new MigrationInfoError(`query-migrate: ${where} is not an object`);
  const out: Record<string, number> = {};
  for (const [key, v] of Object.entries(value))
    if (typeof v === "number" && Number.isFinite(v)) out[key] = v;
  return out;
}

/** Checks a query-migrate return value. */
export function parseMigrationInfo(value: unknown): QemuMigrationInfo {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new MigrationInfoError("query-migrate did not return an object");
  const v = value as Record<string, unknown>;
  // Before any migration QEMU returns {} (no status at all).
  const status = v.status === undefined ? "none" : v.status;
  if (typeof status !== "string")
    throw new MigrationInfoError("query-migrate: status is not a string");
  const num = (key: string): number | undefined => {
    const x = v[key];
    if (x === undefined) return undefined;
    if (typeof x !== "number" || !Number.isFinite(x))
      throw new MigrationInfoError(`query-migrate: ${key} is not a number`);
    return x;
  };
  const info: Record<string, unknown> = { status };
  for (const key of [
    "total-time",
    "expected-downtime",
    "downtime",
    "setup-time",
    "cpu-throttle-percentage",
  ]) {
    const x = num(key);
    if (x !== undefined) info[key] = x;
  }
  const ram = numbers(v.ram, "ram");
  if (ram) info.ram = ram;
  const xbzrle = numbers(v["xbzrle-cache"], "xbzrle-cache");
  if (xbzrle) info["xbzrle-cache"] = xbzrle;
  if (typeof v["error-desc"] === "string") info["error-desc"] = v["error-desc"];
  return info as unknown as QemuMigrationInfo;
}

/** Statuses after which a migration does not change any more. */
export const FINAL_STATUSES: ReadonlySet<string> = new Set(["completed", "failed", "cancelled"]);
