import { readFileSync } from "node:fs";
import { formatBytes } from "../util/units.js";

const GiB = 1024 ** 3;

/**
 * Address space V8 reserves for one shared wasm32 memory, up front: a shared
 * memory cannot move, so its whole 4 GiB maximum is reserved at creation,
 * with guard regions around it (V8 src/objects/backing-store.cc,
 * kFullGuardSize). Measured on Node.js 20 x64: 10.0 GiB of VmSize per memory.
 */
export const SHARED_MEMORY_RESERVATION_BYTES = 10 * GiB;

/**
 * Address space one pool worker thread takes: its isolate's code range and
 * heap reservations, its stack and its allocator arena. Measured on Node.js
 * 20 x64: 0.6 to 0.85 GiB of VmSize per worker; counted as 1 GiB.
 */
export const WORKER_RESERVATION_BYTES = GiB;

/** The process's address-space limit and use, where the system says (Linux's /proc). */
export interface AddressSpace {
  /** RLIMIT_AS in bytes (null: unlimited or unknown). */
  readonly limit: number | null;
  /** Virtual memory in use now, bytes (null: unknown). */
  readonly used: number | null;
}

/** Not enough address space for what is about to be reserved; the message says how much is needed. */
export class AddressSpaceError extends RangeError {
  override name = "AddressSpaceError";
}

/** Parses /proc/self/limits and /proc/self/status (their text given, for tests). */
export function parseAddressSpace(limits: string, status: string): AddressSpace {
  const limit = /^Max address space\s+(\S+)/m.exec(limits)?.[1];
  const used = /^VmSize:\s+(\d+)\s+kB/m.exec(status)?.[1];
  return {
    limit: limit === undefined || !/^\d+$/.test(limit) ? null : Number(limit),
    used: used === undefined ? null : Number(used) * 1024,
  };
}

/** This process's address space now (both null where /proc is not there). */
export function addressSpace(): AddressSpace {
  try {
    return parseAddressSpace(
      readFileSync("/proc/self/limits", "utf8"),
      readFileSync("/proc/self/status", "utf8"),
    );
  } catch {
    return { limit: null, used: null };
  }
}

/**
 * Checks that `bytes` more of address space fit under the process's limit
 * before they are reserved: V8 aborts the whole process ("Fatal process OOM")
 * when a worker cannot get its own, and says only "could not allocate
 * memory" for a wasm memory.
 *
 * @throws AddressSpaceError saying what needs how much, what is left, and
 *   the limit that would do.
 */
export function checkAddressSpace(
  bytes: number,
  what: string,
  space: AddressSpace = addressSpace(),
): void {
  if (space.limit === null || space.used === null) return;
  const left = Math.max(0, space.limit - space.used);
  if (bytes <= left) return;
  throw new AddressSpaceError(
    `${what} needs ${formatBytes(bytes)} of address space, and only ${formatBytes(left)} is left under this process's limit of ${formatBytes(space.limit)} (ulimit -v): raise the limit to at least ${formatBytes(space.used + bytes)}`,
  );
}
