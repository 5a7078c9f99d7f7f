import type { MemoryLayout } from "../memory/layout.js";
import { Region, type RegionDescriptor } from "../memory/region.js";
import {
  FlushScope,
  WALK_CONTEXT_BYTES,
  type WalkCounters,
  type WalkKernel,
  type WalkMode,
  type WalkReference,
  walkCacheBytes,
} from "../wasm/walk.js";
import { PagingError } from "./errors.js";
import type { PhysicalWindow } from "./physical.js";
import { type CacheGeometry, checkGeometry, type TranslationCaches } from "./presets.js";

/** How the hardware translates: natively, through SLAT (nested), or over shadow tables. */
export type { WalkMode, WalkReference } from "../wasm/walk.js";

/** What stopped a translation. */
export const FAULTS = [
  "ok",
  "guest-not-present",
  "guest-protection",
  "guest-reserved",
  "ept-violation",
  "ept-misconfig",
  "bad-table",
] as const;
/** A fault name. */
export type FaultName = (typeof FAULTS)[number];

/** Access kind bits of a trace record (its low 12 bits). */
export const ACCESS = { write: 1, execute: 2, user: 4 } as const;

/** A fault a translation stopped at. */
export interface Fault {
  readonly code: FaultName;
  /** The level (1-5) of the entry that faulted. */
  readonly level: number;
  /** The virtual address (guest faults) or guest-physical address (EPT faults), or the table's address. */
  readonly address: number;
  /** The trace record index it stopped at (for `run`). */
  readonly index: number;
  /** The access kind bits. */
  readonly kind: number;
}

/** The hardware counters of a context (the walk kernel's, named). */
export type MmuCounters = WalkCounters;

/** What a context is built from: where everything lies and what is cached. */
export interface MmuContextDescriptor {
  readonly context: RegionDescriptor;
  readonly caches: RegionDescriptor;
}

/** The cache slots of a context, in the kernel's order. */
function cacheSlots(caches: TranslationCaches): (CacheGeometry | null)[] {
  return [
    caches.l1["4K"],
    caches.l1["2M"],
    caches.l1["1G"],
    caches.l2,
    caches.l2OneGig,
    caches.pwcGuest[2],
    caches.pwcGuest[3],
    caches.pwcGuest[4],
    caches.pwcGuest[5],
    caches.pwcHost[2],
    caches.pwcHost[3],
    caches.pwcHost[4],
    caches.pwcHost[5],
    caches.nestedTlb,
    caches.l1i["4K"],
    caches.l1i["2M"],
  ];
}

/** Bytes the cache arrays of `caches` take. */
export function cacheBytes(caches: TranslationCaches): number {
  return walkCacheBytes(cacheSlots(caches));
}

/** Refuses a virtual address the walk cannot take, as a paging error (what the user typed). */
function checkVirtualAddress(va: number): void {
  if (!Number.isInteger(va) || va < 0 || va >= 2 ** 57) {
    throw new PagingError(`virtual address ${va} is outside 57 bits`);
  }
  // Past 2^53 a number is exact only in coarser steps: a page address still is, an offset is not.
  if (va > Number.MAX_SAFE_INTEGER && va % 4096 !== 0) {
    throw new PagingError(
      `virtual address ${va} past 2^53 must be page-aligned (pass the offset apart)`,
    );
  }
}

/** Options of a {@link MmuContext}. */
export interface MmuOptions {
  readonly mode: WalkMode;
  readonly guestLevels: 4 | 5;
  readonly hostLevels: 4 | 5;
  readonly caches: TranslationCaches;
  /** Set accessed/dirty bits in guest entries as the hardware does (default true). */
  readonly setAccessedDirty?: boolean;
  /** EPT accessed/dirty flags (EPTP bit 6). */
  readonly eptAccessedDirty?: boolean;
  /** Count walk references by table level and dimension (for the per-cache-level cost model). */
  readonly countByLevel?: boolean;
}

/**
 * One configuration's translation hardware: a kernel context (roots, counters,
 * the fault of the last stop) and its TLB, page-walk-cache and nested-TLB
 * arrays, all in the shared memory, driven through the walk kernel.
 */
export class MmuContext {
  private readonly region: Region;

  constructor(
    readonly memory: WebAssembly.Memory,
    readonly kernel: WalkKernel,
    readonly regions: MmuContextDescriptor,
    readonly window: PhysicalWindow,
    readonly options: MmuOptions,
  ) {
    this.region = new Region(regions.context);
    const slots = cacheSlots(options.caches);
    for (const [i, geometry] of slots.entries()) checkGeometry(`cache ${i}`, geometry);
    kernel.setUp(this.region, new Region(regions.caches), {
      mode: options.mode,
      guestLevels: options.guestLevels,
      hostLevels: options.hostLevels,
      setAccessedDirty: options.setAccessedDirty !== false,
      eptAccessedDirty: options.eptAccessedDirty === true,
      l2OneGig: options.caches.l2OneGig !== null,
      oneGigAsTwoMeg: !options.caches.l1["1G"],
      l2Holds2M: options.caches.l2Holds2M === true,
      countByLevel: options.countByLevel === true,
      nestedTlbAtLeafSize: options.caches.nestedTlbAtLeafSize === true,
      window: { base: window.base, bytes: window.bytes, arena: window.arena },
      caches: slots,
    });
  }

  /** Lays out a context and its caches in `layout`. */
  static regions(
    layout: MemoryLayout,
    name: string,
    caches: TranslationCaches,
  ): MmuContextDescriptor {
    return {
      context: layout.allocate(`${name} context`, WALK_CONTEXT_BYTES).toDescriptor(),
      caches: layout.allocate(`${name} caches`, Math.max(64, cacheBytes(caches))).toDescriptor(),
    };
  }

  /** The context's address in the shared memory. */
  get address(): number {
    return this.region.offset;
  }

  /** Sets the root: a guest CR3 (guest-physical; native and nested) or a shadow root (host-physical). */
  setRoot(root: number): void {
    this.kernel.setRoot(this.region, root);
  }

  /** The root the hardware walks from. */
  get root(): number {
    return this.kernel.root(this.region);
  }

  /** Sets the EPT root (host-physical). */
  setEptRoot(root: number): void {
    this.kernel.setEptRoot(this.region, root);
  }

  /** Sets the delta added to a native table's physical address to find its bytes. */
  setNativeDelta(delta: number): void {
    this.kernel.setNativeDelta(this.region, delta);
  }

  /** The current address-space tag (PCID or ASID); 0 when untagged. */
  get asid(): number {
    return this.kernel.asid(this.region);
  }

  set asid(tag: number) {
    this.kernel.setAsid(this.region, tag);
  }

  /**
   * Translates records `[from, to)` of the trace in `trace` (record 0 at its
   * first byte); returns where it stopped (`to`, or a faulting record: see {@link fault}).
   */
  run(trace: Region, from: number, to: number): number {
    return this.kernel.run(this.region, trace, from, to);
  }

  /** Translates one address; returns the host-physical address or the fault. */
  translate(va: number, kind: number): { hpa: number } | { fault: Fault } {
    checkVirtualAddress(va);
    const code = this.kernel.translate(this.region, va, kind);
    return this.outcome(code);
  }

  /** The fault of the last stop. */
  fault(): Fault {
    const f = this.kernel.fault(this.region);
    return { ...f, code: FAULTS[f.code] ?? "bad-table" };
  }

  private outcome(code: number): { hpa: number } | { fault: Fault } {
    if (code === 0) return { hpa: this.kernel.translated(this.region) };
    return { fault: this.fault() };
  }

  /** INVLPG of `va` in the current address space. */
  invalidatePage(va: number): void {
    this.kernel.invalidatePage(this.region, va);
  }

  /** Drops the nested TLB's translations of guest-physical `gpa` (an EPT violation on it does this). */
  invalidateGuestPhysical(gpa: number): void {
    if (!Number.isSafeInteger(gpa) || gpa < 0 || gpa >= 2 ** 52) {
      throw new PagingError(`guest-physical address ${gpa} is outside 52 bits`);
    }
    this.kernel.invalidateGuestPhysical(this.region, gpa);
  }

  /** Flushes the TLBs and guest page-walk caches of the current address space (a CR3 load without tags). */
  flushAddressSpace(): void {
    this.kernel.flush(this.region, FlushScope.addressSpace);
  }

  /** Flushes everything the TLBs and guest page-walk caches hold, for every address space. */
  flushAll(): void {
    this.kernel.flush(this.region, FlushScope.all);
  }

  /** Flushes the TLBs of every address space, keeping page-walk caches and the nested TLB. */
  flushTlbs(): void {
    this.kernel.flush(this.region, FlushScope.tlbs);
  }

  /** INVEPT: flushes the nested TLB and host page-walk caches. */
  flushNested(): void {
    this.kernel.flush(this.region, FlushScope.nested);
  }

  /** The counters so far. */
  counters(): MmuCounters {
    return this.kernel.counters(this.region);
  }

  /** The sum of every translated hPA so far (mod 2^64): a checksum of a run's translations. */
  get checksum(): bigint {
    return this.kernel.checksum(this.region);
  }

  /** Zeroes the counters and checksum. */
  resetCounters(): void {
    this.kernel.resetCounters(this.region);
  }

  /**
   * Translates `va` recording every reference into `log` (24 bytes each) and
   * returns them with the outcome: the `hvlab paging walk` explanation.
   */
  explain(
    va: number,
    kind: number,
    log: Region,
  ): { references: WalkReference[]; outcome: { hpa: number } | { fault: Fault } } {
    checkVirtualAddress(va);
    const { code, references } = this.kernel.explain(this.region, va, kind, log);
    return { references, outcome: this.outcome(code) };
  }
}
