import type { MemoryLayout } from "../memory/layout.js";
import { Region, type RegionDescriptor } from "../memory/region.js";
import { FlushScope, WALK_CONTEXT_BYTES, type WalkKernel } from "../wasm/walk.js";
import { PagingError } from "./errors.js";
import type { PhysicalWindow } from "./physical.js";
import { type CacheGeometry, checkGeometry, type TranslationCaches } from "./presets.js";

/** How the hardware translates: natively, through SLAT (nested), or over shadow tables. */
export type WalkMode = "native" | "nested" | "shadow" | "agile";
const MODE_CODES: Readonly<Record<WalkMode, number>> = {
  native: 0,
  nested: 1,
  shadow: 2,
  agile: 3,
};

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

/** The hardware counters of a context. */
export interface MmuCounters {
  accesses: number;
  l1Hits: number;
  l2Hits: number;
  walks: number;
  references: number;
  guestReferences: number;
  hostReferences: number;
  pwcGuestHits: number;
  pwcHostHits: number;
  nestedTlbHits: number;
  nestedTlbLookups: number;
  pwcGuestLookups: number;
  pwcHostLookups: number;
  /** L1 ITLB hits (instruction fetches), and fetch lookups. `l1Hits` counts the L1 DTLBs alone. */
  itlbHits: number;
  itlbLookups: number;
  /** Data lookups of the L1 DTLBs. */
  dtlbLookups: number;
  /** Writes that hit a TLB entry whose dirty bit was clear, and walked again to set it. */
  dirtyAssists: number;
  /** Walk references by level (index 0 = level 1, the PT), guest (or shadow) dimension. */
  guestReferencesByLevel: number[];
  /** The same for the host (EPT) dimension. */
  hostReferencesByLevel: number[];
}

// Context byte offsets (assembly/walk.ts draws the layout).
const C = {
  mode: 0,
  gLevels: 4,
  hLevels: 8,
  flags: 12,
  root: 16,
  eptRoot: 24,
  windowBase: 32,
  windowBytes: 40,
  arena: 48,
  asid: 52,
  nativeDelta: 56,
  counters: 64,
  sum: 152,
  faultCode: 192,
  faultLevel: 196,
  faultAddr: 200,
  faultIndex: 208,
  faultKind: 212,
  result: 224,
  log: 240,
  logCap: 244,
  logLen: 248,
  caches: 256,
} as const;
const ENTRY_BYTES = 32;
const LOG_RECORD_BYTES = 24;
const COUNTER_ORDER = [
  "accesses",
  "l1Hits",
  "l2Hits",
  "walks",
  "references",
  "guestReferences",
  "hostReferences",
  "pwcGuestHits",
  "pwcHostHits",
  "nestedTlbHits",
  "nestedTlbLookups",
] as const;

const FLAG_SET_AD = 1;
const FLAG_EPT_AD = 2;
const FLAG_L2_1G = 4;
const FLAG_1G_AS_2M = 8;
const FLAG_L2_2M = 16;
const FLAG_LEVEL_REFS = 32;
const FLAG_NTLB_LEAF = 64;

/** One reference of an explained walk. */
export interface WalkReference {
  /** guest: an x86-64 table of the guest (or shadow) dimension; host: an EPT table. */
  readonly dimension: "guest" | "host";
  readonly level: number;
  /** The entry's address: guest-physical for guest tables in nested mode, else host-physical. */
  readonly address: number;
  readonly entry: bigint;
}

/** What a context is built from: where everything lies and what is cached. */
export interface MmuContextDescriptor {
  readonly context: RegionDescriptor;
  readonly caches: RegionDescriptor;
}

/** The 16 cache slots of a context, in the kernel's order. */
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
  return cacheSlots(caches).reduce((sum, g) => sum + (g ? g.entries * ENTRY_BYTES : 0), 0);
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
  private cachedView?: DataView;
  private readonly region: Region;

  constructor(
    readonly memory: WebAssembly.Memory,
    readonly kernel: WalkKernel,
    readonly regions: MmuContextDescriptor,
    readonly window: PhysicalWindow,
    readonly options: MmuOptions,
  ) {
    this.region = new Region(regions.context);
    this.region.check(0, WALK_CONTEXT_BYTES, "MMU context");
    const cacheRegion = new Region(regions.caches);
    const slots = cacheSlots(options.caches);
    const v = this.view();
    v.setUint32(C.mode, MODE_CODES[options.mode], true);
    v.setUint32(C.gLevels, options.guestLevels, true);
    v.setUint32(C.hLevels, options.hostLevels, true);
    let flags = 0;
    if (options.setAccessedDirty !== false) flags |= FLAG_SET_AD;
    if (options.eptAccessedDirty) flags |= FLAG_EPT_AD;
    if (options.caches.l2OneGig) flags |= FLAG_L2_1G;
    if (!options.caches.l1["1G"]) flags |= FLAG_1G_AS_2M;
    if (options.caches.l2Holds2M) flags |= FLAG_L2_2M;
    if (options.countByLevel) flags |= FLAG_LEVEL_REFS;
    if (options.caches.nestedTlbAtLeafSize) flags |= FLAG_NTLB_LEAF;
    v.setUint32(C.flags, flags, true);
    v.setBigUint64(C.windowBase, BigInt(window.base), true);
    v.setBigUint64(C.windowBytes, BigInt(window.bytes), true);
    v.setUint32(C.arena, window.arena.offset, true);
    let at = 0;
    for (const [i, geometry] of slots.entries()) {
      checkGeometry(`cache ${i}`, geometry);
      const d = C.caches + i * 16;
      const entries = geometry?.entries ?? 0;
      const base = cacheRegion.check(at, entries * ENTRY_BYTES, "cache array");
      v.setUint32(d, base, true);
      v.setUint32(d + 4, geometry && entries > 0 ? entries / geometry.ways : 0, true);
      v.setUint32(d + 8, geometry && entries > 0 ? geometry.ways : 0, true);
      at += entries * ENTRY_BYTES;
    }
    new Uint8Array(memory.buffer, cacheRegion.offset, at).fill(0);
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

  private view(): DataView {
    if (!this.cachedView || this.cachedView.buffer !== this.memory.buffer) {
      this.cachedView = new DataView(this.memory.buffer, this.region.offset, WALK_CONTEXT_BYTES);
    }
    return this.cachedView;
  }

  /** The context's address in the shared memory. */
  get address(): number {
    return this.region.offset;
  }

  /** Sets the root: a guest CR3 (guest-physical; native and nested) or a shadow root (host-physical). */
  setRoot(root: number): void {
    this.view().setBigUint64(C.root, BigInt(root), true);
  }

  /** The root the hardware walks from. */
  get root(): number {
    return Number(this.view().getBigUint64(C.root, true));
  }

  /** Sets the EPT root (host-physical). */
  setEptRoot(root: number): void {
    this.view().setBigUint64(C.eptRoot, BigInt(root), true);
  }

  /** Sets the delta added to a native table's physical address to find its bytes. */
  setNativeDelta(delta: number): void {
    this.view().setBigUint64(C.nativeDelta, BigInt(delta), true);
  }

  /** The current address-space tag (PCID or ASID); 0 when untagged. */
  get asid(): number {
    return this.view().getUint32(C.asid, true);
  }

  set asid(tag: number) {
    if (!Number.isInteger(tag) || tag < 0 || tag > 0x7fff) {
      throw new RangeError(`address-space tag must be 0 to 32767, not ${tag}`);
    }
    this.view().setUint32(C.asid, tag, true);
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
    if (!Number.isInteger(va) || va < 0 || va >= 2 ** 57) {
      throw new PagingError(`virtual address ${va} is outside 57 bits`);
    }
    // Past 2^53 a number is exact only in coarser steps: a page address still is, an offset is not.
    if (va > Number.MAX_SAFE_INTEGER && va % 4096 !== 0) {
      throw new PagingError(
        `virtual address ${va} past 2^53 must be page-aligned (pass the offset apart)`,
      );
    }
    const code = this.kernel.translate(this.region, va, kind);
    if (code === 0) return { hpa: Number(this.view().getBigUint64(C.result, true)) };
    return { fault: this.fault() };
  }

  /** The fault of the last stop. */
  fault(): Fault {
    const v = this.view();
    return {
      code: FAULTS[v.getUint32(C.faultCode, true)] ?? "bad-table",
      level: v.getUint32(C.faultLevel, true),
      address: Number(v.getBigUint64(C.faultAddr, true)),
      index: v.getUint32(C.faultIndex, true),
      kind: v.getUint32(C.faultKind, true),
    };
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
    const v = this.view();
    const out = {} as MmuCounters;
    for (const [i, name] of COUNTER_ORDER.entries()) {
      out[name] = Number(v.getBigUint64(C.counters + i * 8, true));
    }
    out.pwcGuestLookups = Number(v.getBigUint64(160, true));
    out.pwcHostLookups = Number(v.getBigUint64(168, true));
    out.itlbHits = Number(v.getBigUint64(176, true));
    out.itlbLookups = Number(v.getBigUint64(184, true));
    out.dtlbLookups = Number(v.getBigUint64(592, true));
    out.dirtyAssists = Number(v.getBigUint64(600, true));
    out.guestReferencesByLevel = [0, 1, 2, 3, 4].map((l) =>
      Number(v.getBigUint64(512 + 8 * l, true)),
    );
    out.hostReferencesByLevel = [0, 1, 2, 3, 4].map((l) =>
      Number(v.getBigUint64(552 + 8 * l, true)),
    );
    return out;
  }

  /** The sum of every translated hPA so far (mod 2^64): a checksum of a run's translations. */
  get checksum(): bigint {
    return this.view().getBigUint64(C.sum, true);
  }

  /** Zeroes the counters and checksum. */
  resetCounters(): void {
    const v = this.view();
    for (let at = C.counters; at < C.faultCode; at += 8) v.setBigUint64(at, 0n, true);
    for (let at = 512; at < 608; at += 8) v.setBigUint64(at, 0n, true);
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
    const cap = Math.floor(log.byteLength / LOG_RECORD_BYTES);
    const v = this.view();
    v.setUint32(C.log, log.offset, true);
    v.setUint32(C.logCap, cap, true);
    v.setUint32(C.logLen, 0, true);
    let outcome: { hpa: number } | { fault: Fault };
    try {
      outcome = this.translate(va, kind);
    } finally {
      v.setUint32(C.log, 0, true);
    }
    const n = v.getUint32(C.logLen, true);
    const records = new DataView(this.memory.buffer, log.offset, n * LOG_RECORD_BYTES);
    const references: WalkReference[] = [];
    for (let i = 0; i < n; i++) {
      const what = records.getUint32(i * LOG_RECORD_BYTES, true);
      references.push({
        dimension: what >> 8 === 1 ? "host" : "guest",
        level: what & 0xff,
        address: Number(records.getBigUint64(i * LOG_RECORD_BYTES + 8, true)),
        entry: records.getBigUint64(i * LOG_RECORD_BYTES + 16, true),
      });
    }
    return { references, outcome };
  }
}
