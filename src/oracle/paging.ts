import type { MmuContext, MmuCounters } from "../paging/mmu.js";
import type { CacheGeometry, TranslationCaches } from "../paging/presets.js";

/*
 * The walk kernel's oracle: the same TLBs, page-walk caches, nested TLB and
 * walks in plain TypeScript, one access at a time, with BigInt keys and
 * entries. It reads the same tables (and sets the same accessed/dirty bits),
 * and keeps its own caches, so that a property test can hold its counters and
 * checksum equal to the kernel's over a twin machine.
 */

const P = 1n;
const RW = 2n;
const US = 4n;
const A = 0x20n;
const D = 0x40n;
const PS = 0x80n;
const NX = 1n << 63n;
const ADDR = 0x000f_ffff_ffff_f000n;
/** Agile paging: a shadow entry whose table is the guest's own (bit 11, ignored by the processor). */
const AGILE_NESTED = 0x800n;
/** A guest page-walk cache value's mark: the walk is nested from this table on. */
const PWC_NESTED = 8n;
const EPT_R = 1n;
const EPT_W = 2n;
const EPT_X = 4n;
const EPT_LARGE = 0x80n;
const EPT_A = 0x100n;
const EPT_D = 0x200n;
const TLB_DIRTY = 0x40n;

/** A fault the oracle stopped at. */
export interface OracleFault {
  readonly code: string;
  readonly level: number;
  readonly address: bigint;
}

class OracleCache {
  readonly keys: bigint[];
  readonly values: bigint[];
  readonly stamps: number[];
  readonly sets: number;
  readonly ways: number;
  constructor(geometry: CacheGeometry | null) {
    const entries = geometry?.entries ?? 0;
    this.ways = entries > 0 && geometry ? geometry.ways : 0;
    this.sets = entries > 0 && geometry ? entries / geometry.ways : 0;
    this.keys = new Array<bigint>(entries).fill(0n);
    this.values = new Array<bigint>(entries).fill(0n);
    this.stamps = new Array<number>(entries).fill(0);
  }
}

/** The kernel's translation hardware, one access at a time in TypeScript. */
export class MmuOracle {
  readonly counters: MmuCounters = {
    accesses: 0,
    l1Hits: 0,
    l2Hits: 0,
    walks: 0,
    references: 0,
    guestReferences: 0,
    hostReferences: 0,
    pwcGuestHits: 0,
    pwcHostHits: 0,
    nestedTlbHits: 0,
    nestedTlbLookups: 0,
    pwcGuestLookups: 0,
    pwcHostLookups: 0,
    itlbHits: 0,
    itlbLookups: 0,
    dtlbLookups: 0,
    dirtyAssists: 0,
    guestReferencesByLevel: [0, 0, 0, 0, 0],
    hostReferencesByLevel: [0, 0, 0, 0, 0],
  };
  /** Sum of translated addresses mod 2^64. */
  checksum = 0n;
  private clock = 0;
  private readonly caches: OracleCache[];
  private readonly view: DataView;
  private readonly windowBase: bigint;
  private readonly windowBytes: bigint;
  private readonly cfg: TranslationCaches;

  /** An oracle over the same tables as `mmu` (read its roots and window), with its own empty caches. */
  constructor(readonly mmu: MmuContext) {
    const c = mmu.options.caches;
    this.cfg = c;
    this.caches = [
      c.l1["4K"],
      c.l1["2M"],
      c.l1["1G"],
      c.l2,
      c.l2OneGig,
      c.pwcGuest[2],
      c.pwcGuest[3],
      c.pwcGuest[4],
      c.pwcGuest[5],
      c.pwcHost[2],
      c.pwcHost[3],
      c.pwcHost[4],
      c.pwcHost[5],
      c.nestedTlb,
      c.l1i["4K"],
      c.l1i["2M"],
    ].map((g) => new OracleCache(g));
    this.view = new DataView(mmu.memory.buffer, mmu.window.arena.offset, mmu.window.bytes);
    this.windowBase = BigInt(mmu.window.base);
    this.windowBytes = BigInt(mmu.window.bytes);
  }

  private lookup(id: number, key: bigint, index: bigint): number {
    const c = this.caches[id] as OracleCache;
    if (c.sets === 0) return -1;
    const set = Number(index % BigInt(c.sets)) * c.ways;
    for (let w = 0; w < c.ways; w++) {
      if (c.keys[set + w] === key) {
        c.stamps[set + w] = ++this.clock;
        return set + w;
      }
    }
    return -1;
  }

  private insert(id: number, key: bigint, index: bigint, value: bigint): void {
    const c = this.caches[id] as OracleCache;
    if (c.sets === 0) return;
    const set = Number(index % BigInt(c.sets)) * c.ways;
    let victim = set;
    let oldest = Number.POSITIVE_INFINITY;
    for (let w = 0; w < c.ways; w++) {
      const k = c.keys[set + w] as bigint;
      if (k === key) {
        victim = set + w;
        break;
      }
      const s = k === 0n ? 0 : (c.stamps[set + w] as number);
      if (s < oldest) {
        oldest = s;
        victim = set + w;
      }
    }
    c.keys[victim] = key;
    c.values[victim] = value;
    c.stamps[victim] = ++this.clock;
  }

  private tag(n: bigint): bigint {
    return (n << 16n) | (BigInt(this.mmu.asid) << 1n) | 1n;
  }

  private read(hpa: bigint): { at: number; entry: bigint } | null {
    const off = hpa - this.windowBase;
    if (off < 0n || off >= this.windowBytes) return null;
    return { at: Number(off), entry: this.view.getBigUint64(Number(off), true) };
  }

  /**
   * Guest-physical to host-physical. A write needs a writable leaf and, with
   * EPT A/D, a dirty one: a cached translation that is neither is walked again.
   */
  private host(
    gpa: bigint,
    write: boolean,
  ): { hpa: bigint; size: number; w: boolean; d: boolean } | OracleFault {
    const eptAd = this.mmu.options.eptAccessedDirty === true;
    const leafSize = this.cfg.nestedTlbAtLeafSize;
    const hasNtlb = (this.caches[13]?.sets ?? 0) > 0;
    if (hasNtlb) {
      this.counters.nestedTlbLookups++;
      for (let sz = 0; sz < (leafSize ? 3 : 1); sz++) {
        const tag = gpa >> BigInt(12 + 9 * sz);
        const hit = this.lookup(13, ((tag << 2n) | BigInt(sz)) + 1n, tag);
        if (hit < 0) continue;
        const v = this.caches[13]?.values[hit] as bigint;
        const w = (v & 4n) !== 0n;
        const d = (v & 8n) !== 0n;
        if (write && (!w || (eptAd && !d))) break;
        this.counters.nestedTlbHits++;
        const mask = (1n << BigInt(12 + 9 * sz)) - 1n;
        return { hpa: (v & ADDR & ~mask) | (gpa & mask), size: Number(v & 3n), w, d };
      }
    }
    const m = this.mmu.options.hostLevels;
    let table = this.eptRoot() & ADDR;
    let level = m;
    for (let l = 2; l <= m; l++) {
      if ((this.caches[9 + l - 2]?.sets ?? 0) === 0) continue;
      const tag = gpa >> BigInt(12 + 9 * (l - 1));
      this.counters.pwcHostLookups++;
      const e = this.lookup(9 + l - 2, tag + 1n, tag);
      if (e >= 0) {
        this.counters.pwcHostHits++;
        table = this.caches[9 + l - 2]?.values[e] as bigint;
        level = l - 1;
        break;
      }
    }
    for (;;) {
      const shift = BigInt(12 + 9 * (level - 1));
      const at = table + (((gpa >> shift) & 511n) << 3n);
      const r = this.read(at);
      if (!r) return { code: "bad-table", level, address: at };
      const entry = r.entry;
      this.counters.references++;
      this.counters.hostReferences++;
      if (this.mmu.options.countByLevel) {
        this.counters.hostReferencesByLevel[level - 1] =
          (this.counters.hostReferencesByLevel[level - 1] ?? 0) + 1;
      }
      if ((entry & (EPT_R | EPT_W | EPT_X)) === 0n)
        return { code: "ept-violation", level, address: gpa };
      if ((entry & (EPT_R | EPT_W)) === EPT_W)
        return { code: "ept-misconfig", level, address: gpa };
      const large = level > 1 && (entry & EPT_LARGE) !== 0n;
      if (large && level > 3) return { code: "ept-misconfig", level, address: gpa };
      if (level === 1 || large) {
        if (write && (entry & EPT_W) === 0n) return { code: "ept-violation", level, address: gpa };
        let leaf = entry;
        if (eptAd) {
          leaf = entry | EPT_A | (write ? EPT_D : 0n);
          if (leaf !== entry) this.view.setBigUint64(r.at, leaf, true);
        }
        const size = level - 1;
        const mask = (1n << BigInt(12 + 9 * size)) - 1n;
        const hpa = (entry & ADDR & ~mask) | (gpa & mask);
        const w = (entry & EPT_W) !== 0n;
        const d = !eptAd || (leaf & EPT_D) !== 0n;
        const sz = leafSize ? size : 0;
        const tag = gpa >> BigInt(12 + 9 * sz);
        const smask = (1n << BigInt(12 + 9 * sz)) - 1n;
        this.insert(
          13,
          ((tag << 2n) | BigInt(sz)) + 1n,
          tag,
          (hpa & ADDR & ~smask) | BigInt(size) | (w ? 4n : 0n) | (d ? 8n : 0n),
        );
        return { hpa, size, w, d };
      }
      if (eptAd && (entry & EPT_A) === 0n) this.view.setBigUint64(r.at, entry | EPT_A, true);
      table = entry & ADDR;
      const tag = gpa >> BigInt(12 + 9 * (level - 1));
      this.insert(9 + level - 2, tag + 1n, tag, table);
      level--;
    }
  }

  /** An EPT violation drops what the nested TLB cached for the address, at every size. */
  private dropNested(gpa: bigint): void {
    const c = this.caches[13] as OracleCache;
    for (let sz = 0; sz < 3; sz++) {
      const tag = gpa >> BigInt(12 + 9 * sz);
      const e = this.lookup(13, ((tag << 2n) | BigInt(sz)) + 1n, tag);
      if (e >= 0) c.keys[e] = 0n;
    }
  }

  private eptRoot(): bigint {
    return new DataView(this.mmu.memory.buffer, this.mmu.address, 64).getBigUint64(24, true);
  }

  private nativeDelta(): bigint {
    return new DataView(this.mmu.memory.buffer, this.mmu.address, 64).getBigUint64(56, true);
  }

  private walk(
    va: bigint,
    kind: number,
  ): { hpa: bigint; size: number; perms: number } | OracleFault {
    const mode = this.mmu.options.mode;
    const n = this.mmu.options.guestLevels;
    const write = (kind & 1) !== 0;
    const agile = mode === "agile";
    let nested = mode === "nested";
    this.counters.walks++;
    let table = BigInt(this.mmu.root) & ADDR;
    let level = n;
    let perms = RW | US;
    for (let l = 2; l <= n; l++) {
      if ((this.caches[5 + l - 2]?.sets ?? 0) === 0) continue;
      const tag = va >> BigInt(12 + 9 * (l - 1));
      this.counters.pwcGuestLookups++;
      const e = this.lookup(5 + l - 2, this.tag(tag), tag);
      if (e >= 0) {
        this.counters.pwcGuestHits++;
        const v = this.caches[5 + l - 2]?.values[e] as bigint;
        table = v & ADDR;
        perms = v & (RW | US | NX);
        if (agile) nested = (v & PWC_NESTED) !== 0n;
        level = l - 1;
        break;
      }
    }
    const delta = this.nativeDelta();
    const setAdOption = this.mmu.options.setAccessedDirty !== false;
    // With EPT A/D, the walker's table accesses are writes for EPT purposes.
    const tableWrite = this.mmu.options.eptAccessedDirty === true;
    for (;;) {
      const setAd = setAdOption && (!agile || nested);
      const shift = BigInt(12 + 9 * (level - 1));
      const at = table + (((va >> shift) & 511n) << 3n);
      let hat = at;
      let tableWritable = true;
      if (nested) {
        const h = this.host(at, tableWrite);
        if ("code" in h) return h;
        hat = h.hpa;
        tableWritable = h.w;
      } else if (mode === "native") {
        hat = at + delta;
      }
      const r = this.read(hat);
      if (!r) return { code: "bad-table", level, address: hat };
      const entry = r.entry;
      this.counters.references++;
      this.counters.guestReferences++;
      if (this.mmu.options.countByLevel) {
        this.counters.guestReferencesByLevel[level - 1] =
          (this.counters.guestReferencesByLevel[level - 1] ?? 0) + 1;
      }
      if ((entry & P) === 0n) return { code: "guest-not-present", level, address: va };
      perms = (perms & (entry | NX) & (RW | US | NX)) | (entry & NX);
      const large = level > 1 && (entry & PS) !== 0n;
      if (large && level > 3) return { code: "guest-reserved", level, address: va };
      if (level === 1 || large) {
        if (write && (perms & RW) === 0n) return { code: "guest-protection", level, address: va };
        if ((kind & 4) !== 0 && (perms & US) === 0n)
          return { code: "guest-protection", level, address: va };
        if ((kind & 2) !== 0 && (perms & NX) !== 0n)
          return { code: "guest-protection", level, address: va };
        let dirty = !setAd || (entry & D) !== 0n;
        if (setAd) {
          const want = entry | A | (write ? D : 0n);
          if (want !== entry) {
            if (!tableWritable) {
              this.dropNested(at);
              return { code: "ept-violation", level, address: at };
            }
            this.view.setBigUint64(r.at, want, true);
          }
          dirty = (want & D) !== 0n;
        }
        const gsize = level - 1;
        const mask = (1n << BigInt(12 + 9 * gsize)) - 1n;
        const frame = gsize === 0 ? entry & ADDR : entry & ADDR & ~mask;
        const gpa = frame | (va & mask);
        let size = gsize;
        let hpa = gpa;
        let w = Number((perms & RW) >> 1n);
        if (nested) {
          const h = this.host(gpa, write);
          if ("code" in h) return h;
          hpa = h.hpa;
          if (h.size < size) size = h.size;
          if (!h.w) w = 0;
          if (!h.d) dirty = false;
        }
        const p =
          w |
          Number((perms & US) >> 1n) |
          (Number(perms >> 63n) << 2) |
          (dirty ? Number(TLB_DIRTY) : 0) |
          // A fragment of a larger guest page carries the guest page's size code.
          (size < gsize ? gsize << 7 : 0);
        return { hpa, size, perms: p };
      }
      if (setAd && (entry & A) === 0n) {
        if (!tableWritable) {
          this.dropNested(at);
          return { code: "ept-violation", level, address: at };
        }
        this.view.setBigUint64(r.at, entry | A, true);
      }
      table = entry & ADDR;
      if (agile && !nested && (entry & AGILE_NESTED) !== 0n) nested = true;
      const tag = va >> BigInt(12 + 9 * (level - 1));
      const v = table | (perms & (RW | US | NX)) | (agile && nested ? PWC_NESTED : 0n);
      this.insert(5 + level - 2, this.tag(tag), tag, v);
      level--;
    }
  }

  private fillL1(va: bigint, value: bigint, exec: boolean): void {
    let v = value;
    let size = Number((v >> 3n) & 3n);
    if (size === 2 && (exec || !this.cfg.l1["1G"])) {
      size = 1;
      v = (v & ~(0x3fe00000n | 0x18n | 0x180n)) | (va & 0x3fe00000n) | 8n | (2n << 7n);
    }
    if (exec) {
      if (size === 0) this.insert(14, this.tag(va >> 12n), va >> 12n, v);
      else this.insert(15, this.tag(va >> 21n), va >> 21n, v);
      return;
    }
    if (size === 0) this.insert(0, this.tag(va >> 12n), va >> 12n, v);
    else if (size === 1) this.insert(1, this.tag(va >> 21n), va >> 21n, v);
    else this.insert(2, this.tag(va >> 30n), va >> 30n, v);
  }

  private tlb(va: bigint, exec: boolean): bigint {
    const v4 = va >> 12n;
    const v2 = va >> 21n;
    const v1 = va >> 30n;
    const first: readonly (readonly [number, bigint])[] = exec
      ? [
          [14, v4],
          [15, v2],
        ]
      : [
          [0, v4],
          [1, v2],
          [2, v1],
        ];
    if (exec) this.counters.itlbLookups++;
    else this.counters.dtlbLookups++;
    for (const [id, n] of first) {
      const e = this.lookup(id, this.tag(n), n);
      if (e >= 0) {
        if (exec) this.counters.itlbHits++;
        else this.counters.l1Hits++;
        return this.caches[id]?.values[e] as bigint;
      }
    }
    let id = 3;
    let e = this.lookup(3, this.tag(v4 << 2n), v4);
    if (e < 0) e = this.lookup(3, this.tag((v2 << 2n) | 1n), v2);
    if (e < 0) {
      id = 4;
      e = this.lookup(4, this.tag(v1), v1);
    }
    if (e >= 0) {
      this.counters.l2Hits++;
      const v = this.caches[id]?.values[e] as bigint;
      this.fillL1(va, v, exec);
      return v;
    }
    return 0n;
  }

  /** Translates one access (page address | kind bits); returns the address or the fault. */
  translate(va: bigint, kind: number): bigint | OracleFault {
    const exec = (kind & 2) !== 0;
    const v = this.tlb(va, exec);
    const permitted =
      v !== 0n &&
      !((kind & 1) !== 0 && (v & 1n) === 0n) &&
      !((kind & 4) !== 0 && (v & 2n) === 0n) &&
      !((kind & 2) !== 0 && (v & 4n) !== 0n);
    // A write to an entry whose D is clear walks again to set it.
    const ok = permitted && ((kind & 1) === 0 || (v & TLB_DIRTY) !== 0n);
    if (permitted && !ok) this.counters.dirtyAssists++;
    if (ok) {
      const size = (v >> 3n) & 3n;
      const mask = (1n << (12n + 9n * size)) - 1n;
      return (v & ADDR & ~mask) | (va & mask);
    }
    const w = this.walk(va, kind);
    if ("code" in w) return w;
    const mask = (1n << BigInt(12 + 9 * w.size)) - 1n;
    const value = (w.hpa & ~mask) | BigInt(w.perms) | (BigInt(w.size) << 3n) | 0x20n;
    if (w.size === 0) this.insert(3, this.tag((va >> 12n) << 2n), va >> 12n, value);
    else if (w.size === 1 && this.cfg.l2Holds2M) {
      this.insert(3, this.tag(((va >> 21n) << 2n) | 1n), va >> 21n, value);
    } else if (w.size === 2 && this.cfg.l2OneGig)
      this.insert(4, this.tag(va >> 30n), va >> 30n, value);
    this.fillL1(va, value, exec);
    return w.hpa;
  }

  /**
   * Runs trace records (pairs of u32 words) until one faults; returns how
   * many translated. The checksum adds every translated address.
   */
  run(words: Uint32Array, count: number): { done: number; fault: OracleFault | null } {
    for (let i = 0; i < count; i++) {
      const low = words[2 * i] as number;
      const high = words[2 * i + 1] as number;
      const va = (BigInt(high) << 32n) | BigInt(low & ~0xfff);
      const r = this.translate(va, low & 0xfff);
      if (typeof r !== "bigint") return { done: i, fault: r };
      this.counters.accesses++;
      this.checksum = (this.checksum + r) & 0xffff_ffff_ffff_ffffn;
    }
    return { done: count, fault: null };
  }
}

/**
 * The reference translator: a plain walk of the guest's tables (no caches, no
 * side effects) giving the guest-physical address of `va`, or null when the
 * guest does not map it. The figure every mode must agree with.
 */
export function referenceTranslate(
  readEntry: (gpa: number) => bigint,
  cr3: number,
  levels: 4 | 5,
  va: number,
): number | null {
  let table = cr3;
  for (let level: number = levels; level >= 1; level--) {
    const index = Math.floor(va / 2 ** (12 + 9 * (level - 1))) % 512;
    const entry = readEntry(table + index * 8);
    if ((entry & P) === 0n) return null;
    const large = level > 1 && level <= 3 && (entry & PS) !== 0n;
    if (level === 1 || large) {
      const bytes = 2 ** (12 + 9 * (level - 1));
      const frame = Number(entry & ADDR & ~BigInt(bytes - 1));
      return frame + (va % bytes);
    }
    table = Number(entry & ADDR);
  }
  return null;
}
