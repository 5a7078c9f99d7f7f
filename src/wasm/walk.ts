import { RegionBoundsError } from "../memory/errors.js";
import type { Region } from "../memory/region.js";
import { compileKernel, instantiateKernel } from "./loader.js";

/** The raw exports of assembly/walk.ts (see that file for the context layout). */
export interface WalkExports {
  run(ctx: number, trace: number, from: number, to: number): number;
  translate(ctx: number, vaLow: number, vaHigh: number, kind: number): number;
  invalidatePage(ctx: number, vaLow: number, vaHigh: number): void;
  invalidateGuestPhysical(ctx: number, gpaLow: number, gpaHigh: number): void;
  flush(ctx: number, what: number): void;
}

/** Bytes of a walk context (drawn in assembly/walk.ts). */
export const WALK_CONTEXT_BYTES = 1024;
/** Bytes of a trace record: u64 virtual page address | access kind in the low 12 bits. */
export const TRACE_RECORD_BYTES = 8;
/** What a flush drops (assembly/walk.ts `flush`). */
export const FlushScope = { addressSpace: 1, all: 2, nested: 4, tlbs: 8 } as const;
/** A flush scope. */
export type FlushScope = (typeof FlushScope)[keyof typeof FlushScope];

const VA_LIMIT = 2 ** 57;
const FLUSH_SCOPES: ReadonlySet<number> = new Set(Object.values(FlushScope));

function contextAt(context: Region): number {
  return context.check(0, WALK_CONTEXT_BYTES, "walk context");
}

function checkAddress(va: number): void {
  if (!Number.isInteger(va) || va < 0 || va >= VA_LIMIT) {
    throw new RangeError(`virtual address ${va} is outside 57 bits`);
  }
  // Past 2^53 a number is exact in coarser steps: a page address (5-level paging) still is.
  if (va > Number.MAX_SAFE_INTEGER && va % 4096 !== 0) {
    throw new RangeError(`virtual address ${va} past 2^53 is not page-aligned`);
  }
}

function checkKind(kind: number): void {
  if (!Number.isInteger(kind) || kind < 0 || kind > 0xfff) {
    throw new RangeError(`access kind ${kind} is not a 12-bit value`);
  }
}

/**
 * Typed, bounds-checked calls into the address-translation kernel: the
 * context and the trace records a call names are checked against their
 * regions before wasm runs. (What the context points at, its table window
 * and cache arrays, is laid out and checked by whoever writes the context;
 * the kernel refuses a table outside the window with a fault.)
 */
export class WalkKernel {
  constructor(
    readonly memory: WebAssembly.Memory,
    private readonly k: WalkExports,
  ) {}

  /** Instantiates the kernel on a shared memory. */
  static on(memory: WebAssembly.Memory): WalkKernel {
    return new WalkKernel(memory, instantiateKernel<WalkExports>(compileKernel("walk"), memory));
  }

  /**
   * Translates records `[from, to)` of the trace in `trace` (record 0 at its
   * first byte); returns where it stopped: `to`, or the record that faulted.
   */
  run(context: Region, trace: Region, from: number, to: number): number {
    const at = contextAt(context);
    if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 0 || to < from) {
      throw new RegionBoundsError(trace.name, "trace records", `[${from}, ${to}) is not a range`);
    }
    if (to >= 2 ** 32) {
      throw new RegionBoundsError(trace.name, "trace records", `end ${to} is not a u32`);
    }
    const records = trace.check(0, to * TRACE_RECORD_BYTES, "trace records");
    return this.k.run(at, records, from, to) >>> 0;
  }

  /** Translates one address; returns the fault code (0: translated, the hPA then in the context). */
  translate(context: Region, va: number, kind: number): number {
    const at = contextAt(context);
    checkAddress(va);
    checkKind(kind);
    return this.k.translate(at, va % 2 ** 32, Math.floor(va / 2 ** 32), kind) >>> 0;
  }

  /** INVLPG of `va` in the context's current address space. */
  invalidatePage(context: Region, va: number): void {
    const at = contextAt(context);
    checkAddress(va);
    this.k.invalidatePage(at, va % 2 ** 32, Math.floor(va / 2 ** 32));
  }

  /** Drops the nested TLB's translations of guest-physical `gpa` (what an EPT violation on it does). */
  invalidateGuestPhysical(context: Region, gpa: number): void {
    const at = contextAt(context);
    if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa >= 2 ** 52) {
      throw new RangeError(`guest-physical address ${gpa} is outside 52 bits`);
    }
    this.k.invalidateGuestPhysical(at, gpa % 2 ** 32, Math.floor(gpa / 2 ** 32));
  }

  /** Drops what `scope` names from the context's TLBs and caches. */
  flush(context: Region, scope: FlushScope): void {
    const at = contextAt(context);
    if (!FLUSH_SCOPES.has(scope)) {
      throw new RangeError(`flush scope ${scope} is not one of ${Object.values(FlushScope)}`);
    }
    this.k.flush(at, scope);
  }
}
