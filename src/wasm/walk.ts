import { RegionBoundsError } from "../memory/errors.js";
import type { Region } from "../memory/region.js";
import { checkKernelLayout } from "./kernel-layout.js";
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

/**
 * The context layout (drawn in assembly/walk.ts), byte offsets. The module
 * exports the same values as LAYOUT_ globals, checked at load.
 */
const C = {
  MODE: 0,
  GLEVELS: 4,
  HLEVELS: 8,
  FLAGS: 12,
  ROOT: 16,
  EPT_ROOT: 24,
  WINDOW_BASE: 32,
  WINDOW_BYTES: 40,
  ARENA: 48,
  ASID: 52,
  NATIVE_DELTA: 56,
  ACCESSES: 64,
  SUM: 152,
  PWC_GUEST_LOOKUPS: 160,
  PWC_HOST_LOOKUPS: 168,
  ITLB_HITS: 176,
  ITLB_LOOKUPS: 184,
  FAULT_CODE: 192,
  FAULT_LEVEL: 196,
  FAULT_ADDR: 200,
  FAULT_INDEX: 208,
  FAULT_KIND: 212,
  RESULT: 224,
  LOG: 240,
  LOG_CAP: 244,
  LOG_LEN: 248,
  CACHES: 256,
  LEVEL_REFS: 512,
  DTLB_LOOKUPS: 592,
  D_ASSISTS: 600,
} as const;

/** Bytes of one TLB, page-walk-cache or nested-TLB entry. */
export const WALK_CACHE_ENTRY_BYTES = 32;
/** Bytes of one record of a walk explanation's log. */
export const WALK_LOG_RECORD_BYTES = 24;
/** Cache slots of a context (L1 4K/2M/1G, L2, L2 1G, guest PWC 2-5, host PWC 2-5, nested TLB, L1 ITLB 4K/2M). */
export const WALK_CACHE_SLOTS = 16;

/** How the hardware translates: natively, through SLAT (nested), or over shadow tables. */
export type WalkMode = "native" | "nested" | "shadow";
const MODE_CODES: Readonly<Record<WalkMode, number>> = { native: 0, nested: 1, shadow: 2 };

/** Context flag bits (assembly/walk.ts lists what each does). */
const FLAG = {
  SET_AD: 1,
  EPT_AD: 2,
  L2_1G: 4,
  "1G_AS_2M": 8,
  L2_2M: 16,
  LEVEL_REFS: 32,
  NTLB_LEAF: 64,
} as const;

const WALK_LAYOUT: Readonly<Record<string, number>> = {
  ...Object.fromEntries(Object.entries(C)),
  CACHE_ENTRY_BYTES: WALK_CACHE_ENTRY_BYTES,
  LOG_RECORD_BYTES: WALK_LOG_RECORD_BYTES,
  CACHE_SLOTS: WALK_CACHE_SLOTS,
  MODE_NATIVE: MODE_CODES.native,
  MODE_NESTED: MODE_CODES.nested,
  MODE_SHADOW: MODE_CODES.shadow,
  ...Object.fromEntries(Object.entries(FLAG).map(([name, bit]) => [`FLAG_${name}`, bit])),
};

/** Order of the first eleven u64 counters from {@link C.ACCESSES}. */
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

/** The hardware counters of a context. */
export interface WalkCounters {
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

/** The fault of a context's last stop, as the kernel wrote it (the code is a number: 0 none). */
export interface WalkFaultRecord {
  readonly code: number;
  readonly level: number;
  readonly address: number;
  readonly index: number;
  readonly kind: number;
}

/** One reference of an explained walk. */
export interface WalkReference {
  /** guest: an x86-64 table of the guest (or shadow) dimension; host: an EPT table. */
  readonly dimension: "guest" | "host";
  readonly level: number;
  /** The entry's address: guest-physical for guest tables in nested mode, else host-physical. */
  readonly address: number;
  readonly entry: bigint;
}

/** A cache's shape: entries in sets of `ways`; null or 0 entries: no such cache. */
export interface WalkCacheGeometry {
  readonly entries: number;
  readonly ways: number;
}

/** Everything a context is set up with. */
export interface WalkSetup {
  readonly mode: WalkMode;
  readonly guestLevels: 4 | 5;
  readonly hostLevels: 4 | 5;
  /** Set accessed/dirty bits in guest entries as the hardware does. */
  readonly setAccessedDirty: boolean;
  /** EPT accessed/dirty flags (EPTP bit 6). */
  readonly eptAccessedDirty: boolean;
  /** The second-level TLB holds 1 GiB entries (Ice Lake). */
  readonly l2OneGig: boolean;
  /** No L1 1 GiB TLB: large pages fall back to 2 MiB entries (Nehalem). */
  readonly oneGigAsTwoMeg: boolean;
  /** The second level holds 2 MiB entries as well as 4 KiB ones. */
  readonly l2Holds2M: boolean;
  /** Count walk references by table level and dimension. */
  readonly countByLevel: boolean;
  /** The nested TLB caches at the EPT leaf's size (else at 4 KiB). */
  readonly nestedTlbAtLeafSize: boolean;
  /** The host-physical window of table frames and the region that holds its bytes. */
  readonly window: { readonly base: number; readonly bytes: number; readonly arena: Region };
  /** {@link WALK_CACHE_SLOTS} geometries in the kernel's order. */
  readonly caches: readonly (WalkCacheGeometry | null)[];
}

/** Bytes the cache arrays of `geometries` take. */
export function walkCacheBytes(geometries: readonly (WalkCacheGeometry | null)[]): number {
  return geometries.reduce((sum, g) => sum + (g ? g.entries * WALK_CACHE_ENTRY_BYTES : 0), 0);
}

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

function checkPhysical(address: number, what: string): number {
  if (!Number.isSafeInteger(address) || address < 0) {
    throw new RangeError(`${what} ${address} is not a physical address`);
  }
  return address;
}

function checkKind(kind: number): void {
  if (!Number.isInteger(kind) || kind < 0 || kind > 0xfff) {
    throw new RangeError(`access kind ${kind} is not a 12-bit value`);
  }
}

/**
 * Typed, bounds-checked calls into the address-translation kernel: the
 * context and the trace records a call names are checked against their
 * regions before wasm runs, and the context is written and read here alone:
 * {@link setUp} checks the table window against its arena and every cache
 * array against the cache region before it writes their addresses (the
 * kernel refuses a table outside the window with a fault).
 */
export class WalkKernel {
  private readonly views = new WeakMap<Region, DataView>();

  constructor(
    readonly memory: WebAssembly.Memory,
    private readonly k: WalkExports,
  ) {
    checkKernelLayout("walk", k, WALK_LAYOUT);
  }

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
  /**
   * Writes a context: mode, levels, flags, the table window and the cache
   * descriptors (each array laid out in `caches`, one after another, and
   * zeroed). Clears roots, tag, counters and fault.
   *
   * @throws RangeError (RegionBoundsError for regions) naming what does not fit.
   */
  setUp(context: Region, caches: Region, setup: WalkSetup): void {
    contextAt(context);
    if (!(setup.mode in MODE_CODES)) throw new RangeError(`walk mode '${setup.mode}' is unknown`);
    for (const [what, levels] of [
      ["guest", setup.guestLevels],
      ["host", setup.hostLevels],
    ] as const) {
      if (levels !== 4 && levels !== 5) {
        throw new RangeError(`${what} paging levels must be 4 or 5, not ${levels}`);
      }
    }
    const { base, bytes, arena } = setup.window;
    if (!Number.isSafeInteger(base) || base < 0 || !Number.isSafeInteger(bytes) || bytes < 0) {
      throw new RangeError(`table window [${base}, +${bytes}) is not a range of whole bytes`);
    }
    const arenaAt = arena.check(0, bytes, "table window");
    if (setup.caches.length !== WALK_CACHE_SLOTS) {
      throw new RangeError(
        `a walk context has ${WALK_CACHE_SLOTS} cache slots, not ${setup.caches.length}`,
      );
    }
    const descriptors: [number, number, number][] = [];
    let at = 0;
    for (const [i, geometry] of setup.caches.entries()) {
      const entries = geometry?.entries ?? 0;
      const ways = geometry?.ways ?? 0;
      if (
        entries !== 0 &&
        (!Number.isSafeInteger(entries) ||
          entries < 0 ||
          !Number.isSafeInteger(ways) ||
          ways < 1 ||
          entries % ways !== 0)
      ) {
        throw new RangeError(`cache slot ${i}: ${entries} entries in ${ways} ways is no geometry`);
      }
      const bytesOf = entries * WALK_CACHE_ENTRY_BYTES;
      const arrayAt = caches.check(at, bytesOf, `cache array ${i}`);
      descriptors.push(entries > 0 ? [arrayAt, entries / ways, ways] : [arrayAt, 0, 0]);
      at += bytesOf;
    }
    new Uint8Array(this.memory.buffer, caches.offset, at).fill(0);
    new Uint8Array(this.memory.buffer, context.offset, WALK_CONTEXT_BYTES).fill(0);
    let flags = 0;
    if (setup.setAccessedDirty) flags |= FLAG.SET_AD;
    if (setup.eptAccessedDirty) flags |= FLAG.EPT_AD;
    if (setup.l2OneGig) flags |= FLAG.L2_1G;
    if (setup.oneGigAsTwoMeg) flags |= FLAG["1G_AS_2M"];
    if (setup.l2Holds2M) flags |= FLAG.L2_2M;
    if (setup.countByLevel) flags |= FLAG.LEVEL_REFS;
    if (setup.nestedTlbAtLeafSize) flags |= FLAG.NTLB_LEAF;
    const v = this.view(context);
    v.setUint32(C.MODE, MODE_CODES[setup.mode], true);
    v.setUint32(C.GLEVELS, setup.guestLevels, true);
    v.setUint32(C.HLEVELS, setup.hostLevels, true);
    v.setUint32(C.FLAGS, flags, true);
    v.setBigUint64(C.WINDOW_BASE, BigInt(base), true);
    v.setBigUint64(C.WINDOW_BYTES, BigInt(bytes), true);
    v.setUint32(C.ARENA, arenaAt, true);
    for (const [i, [arrayAt, sets, ways]] of descriptors.entries()) {
      v.setUint32(C.CACHES + i * 16, arrayAt, true);
      v.setUint32(C.CACHES + i * 16 + 4, sets, true);
      v.setUint32(C.CACHES + i * 16 + 8, ways, true);
    }
  }

  /** Sets the root: a guest CR3 (guest-physical; native and nested) or a shadow root (host-physical). */
  setRoot(context: Region, root: number): void {
    this.view(context).setBigUint64(C.ROOT, BigInt(checkPhysical(root, "root")), true);
  }

  /** The root the hardware walks from. */
  root(context: Region): number {
    return Number(this.view(context).getBigUint64(C.ROOT, true));
  }

  /** Sets the EPT root (host-physical). */
  setEptRoot(context: Region, root: number): void {
    this.view(context).setBigUint64(C.EPT_ROOT, BigInt(checkPhysical(root, "EPT root")), true);
  }

  /** Sets the delta added to a native table's physical address to find its bytes. */
  setNativeDelta(context: Region, delta: number): void {
    this.view(context).setBigUint64(
      C.NATIVE_DELTA,
      BigInt(checkPhysical(delta, "native delta")),
      true,
    );
  }

  /** The current address-space tag (PCID or ASID); 0 when untagged. */
  asid(context: Region): number {
    return this.view(context).getUint32(C.ASID, true);
  }

  /** Sets the address-space tag (0 to 32767). */
  setAsid(context: Region, tag: number): void {
    if (!Number.isInteger(tag) || tag < 0 || tag > 0x7fff) {
      throw new RangeError(`address-space tag must be 0 to 32767, not ${tag}`);
    }
    this.view(context).setUint32(C.ASID, tag, true);
  }

  /** The host-physical address of the last successful {@link translate}. */
  translated(context: Region): number {
    return Number(this.view(context).getBigUint64(C.RESULT, true));
  }

  /** The fault of the context's last stop. */
  fault(context: Region): WalkFaultRecord {
    const v = this.view(context);
    return {
      code: v.getUint32(C.FAULT_CODE, true),
      level: v.getUint32(C.FAULT_LEVEL, true),
      address: Number(v.getBigUint64(C.FAULT_ADDR, true)),
      index: v.getUint32(C.FAULT_INDEX, true),
      kind: v.getUint32(C.FAULT_KIND, true),
    };
  }

  /** The context's counters so far. */
  counters(context: Region): WalkCounters {
    const v = this.view(context);
    const u64 = (at: number) => Number(v.getBigUint64(at, true));
    const out = {} as WalkCounters;
    for (const [i, name] of COUNTER_ORDER.entries()) out[name] = u64(C.ACCESSES + i * 8);
    out.pwcGuestLookups = u64(C.PWC_GUEST_LOOKUPS);
    out.pwcHostLookups = u64(C.PWC_HOST_LOOKUPS);
    out.itlbHits = u64(C.ITLB_HITS);
    out.itlbLookups = u64(C.ITLB_LOOKUPS);
    out.dtlbLookups = u64(C.DTLB_LOOKUPS);
    out.dirtyAssists = u64(C.D_ASSISTS);
    out.guestReferencesByLevel = [0, 1, 2, 3, 4].map((l) => u64(C.LEVEL_REFS + 8 * l));
    out.hostReferencesByLevel = [0, 1, 2, 3, 4].map((l) => u64(C.LEVEL_REFS + 40 + 8 * l));
    return out;
  }

  /** The sum of every translated hPA so far (mod 2^64). */
  checksum(context: Region): bigint {
    return this.view(context).getBigUint64(C.SUM, true);
  }

  /** Zeroes the counters, by-level references and checksum. */
  resetCounters(context: Region): void {
    const v = this.view(context);
    for (let at = C.ACCESSES; at < C.FAULT_CODE; at += 8) v.setBigUint64(at, 0n, true);
    for (let at = C.LEVEL_REFS; at < C.D_ASSISTS + 8; at += 8) v.setBigUint64(at, 0n, true);
  }

  /**
   * Translates `va` recording every reference into `log` (as many as it
   * holds, {@link WALK_LOG_RECORD_BYTES} each); returns the fault code (0:
   * translated) and the references.
   */
  explain(
    context: Region,
    va: number,
    kind: number,
    log: Region,
  ): { code: number; references: WalkReference[] } {
    const cap = Math.floor(log.byteLength / WALK_LOG_RECORD_BYTES);
    const logAt = log.check(0, cap * WALK_LOG_RECORD_BYTES, "walk log");
    const v = this.view(context);
    v.setUint32(C.LOG, logAt, true);
    v.setUint32(C.LOG_CAP, cap, true);
    v.setUint32(C.LOG_LEN, 0, true);
    let code: number;
    try {
      code = this.translate(context, va, kind);
    } finally {
      v.setUint32(C.LOG, 0, true);
    }
    const n = Math.min(v.getUint32(C.LOG_LEN, true), cap);
    const records = new DataView(this.memory.buffer, logAt, n * WALK_LOG_RECORD_BYTES);
    const references: WalkReference[] = [];
    for (let i = 0; i < n; i++) {
      const at = i * WALK_LOG_RECORD_BYTES;
      const what = records.getUint32(at, true);
      references.push({
        dimension: what >> 8 === 1 ? "host" : "guest",
        level: what & 0xff,
        address: Number(records.getBigUint64(at + 8, true)),
        entry: records.getBigUint64(at + 16, true),
      });
    }
    return { code, references };
  }

  /** A view of a context, checked against its region (kept per region while the memory's buffer stays). */
  private view(context: Region): DataView {
    const cached = this.views.get(context);
    if (cached && cached.buffer === this.memory.buffer) return cached;
    const view = new DataView(this.memory.buffer, contextAt(context), WALK_CONTEXT_BYTES);
    this.views.set(context, view);
    return view;
  }
}
