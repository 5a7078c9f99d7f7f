// Address translation: the native walk, the two-dimensional nested (SLAT)
// walk and the shadow walk, behind set-associative TLBs, page-walk caches in
// both dimensions and a nested TLB. Every memory reference a walk makes is
// counted; a fault is a result (a code, a level and an address), never a trap.
//
// Entries are real x86-64 paging entries (guest and shadow tables) and real
// Intel EPT entries (host tables), read from the shared memory. Physical
// addresses are host-physical; the bytes of page-table frames live in a
// "window" of host-physical memory backed by a region ("arena"):
//
//   host-physical:  windowBase                       windowBase + windowBytes
//                   +--------------------------------+
//                   |  table frames (EPT, shadow,    |   any other hPA: a
//                   |  guest page tables)            |   frame without bytes
//                   +--------------------------------+
//   memory:         arena                            arena + windowBytes
//
// A table pointer outside the window (a corrupted entry) stops the walk with
// FAULT_BAD_TABLE: nothing outside the arena is ever read or written.
//
// Context (one per configuration, 1 KiB, little-endian):
//
//   byte   0 +-----------+-----------+-----------+-----------+
//            | mode u32  | gLevels   | hLevels   | flags u32 |  mode: 0 native,
//         16 +-----------+-----------+-----------+-----------+  1 nested, 2 shadow, 3 agile
//            | root u64 (CR3 / shadow root) | eptRoot u64    |
//         32 +-----------------------+-----------------------+
//            | windowBase u64        | windowBytes u64       |
//         48 +-----------+-----------+-----------------------+
//            | arena u32 | asid u32  | nativeDelta u64       |  native: table hPA =
//         64 +-----------+-----------+-----------------------+    gPA + nativeDelta
//            | counters: 16 x u64 (see C_* below)            |
//        192 +-----------------------------------------------+
//            | fault: code u32, level u32, addr u64, index u32, kind u32
//        216 | clock u64 (LRU stamp) | result hPA u64 | size u32 | perms u32
//        240 | log u32 | logCap u32 | logLen u32 | pad      |  walk explanation
//        256 +-----------------------------------------------+
//            | cache descriptors: 16 x {base u32, sets u32, ways u32, pad}
//        512 +-----------------------------------------------+
//            | references by level: guest 1-5, host 1-5 (10 x u64)
//        592 +-----------------------------------------------+
//            | L1 DTLB lookups u64 | D assists u64 | host leaf u32 |
//        612 | fragments u32 |
//        616 +-----------------------------------------------+
//
// Counters at 64 (u64 each): accesses, L1 DTLB hits, L2 hits, walks,
// references, guest references, host references, guest PWC hits, host PWC
// hits, nested TLB hits, nested TLB lookups, checksum, guest PWC lookups,
// host PWC lookups, L1 ITLB hits, L1 ITLB lookups. A "D assist" is a write
// that hits a TLB entry whose dirty bit is clear (filled by a read): the
// processor walks again to set D (Intel SDM vol. 3A 4.8), so it is a walk.
// "host leaf" is scratch: bit 0 the last EPT leaf was writable, bit 1 its D
// bit was set (or EPT A/D is off). "fragments" is set once a TLB entry
// smaller than its guest page was cached (INVLPG must then find them all).
//
// Flags: bit 0 set accessed/dirty in guest entries, bit 1 EPT A/D (EPTP bit
// 6), bit 2 TLB holds 1 GiB entries in the second level (Ice Lake), bit 3
// large pages in the L1 fall back to 2 MiB entries (no 1 GiB TLB: Nehalem),
// bit 4 the second level holds 2 MiB entries as well as 4 KiB ones, bit 5
// count references by level (for the per-cache-level cost model), bit 6 the
// nested TLB caches at the EPT leaf's size (without it, at 4 KiB: splintered).
//
// Cache entry (32 bytes): key u64 (0 = empty), value u64, stamp u64, pad u64.
// TLB value: page base hPA | W<<0 | U<<1 | NX<<2 | size<<3 (0 4K, 1 2M, 2 1G)
// | 1<<5 (valid) | D<<6 (the leaf's dirty bit was set when it was filled)
// | guest size<<7 (0, or the size code of the larger guest page this entry is
// a fragment of: a 2 MiB guest page over 4 KiB host pages, or a 1 GiB page
// held as 2 MiB L1 entries).
// Nested TLB value: page base hPA | size<<0 | W<<2 | D<<3 (of the EPT leaf).
// Instruction fetches look up the L1 ITLB, data accesses the L1 DTLB; both
// fill from, and miss to, the shared second level.

@inline const C_MODE: usize = 0;
@inline const C_GLEVELS: usize = 4;
@inline const C_HLEVELS: usize = 8;
@inline const C_FLAGS: usize = 12;
@inline const C_ROOT: usize = 16;
@inline const C_EPT_ROOT: usize = 24;
@inline const C_WINDOW_BASE: usize = 32;
@inline const C_WINDOW_BYTES: usize = 40;
@inline const C_ARENA: usize = 48;
@inline const C_ASID: usize = 52;
@inline const C_NATIVE_DELTA: usize = 56;
// counters
@inline const C_ACCESSES: usize = 64;
@inline const C_L1_HITS: usize = 72;
@inline const C_L2_HITS: usize = 80;
@inline const C_WALKS: usize = 88;
@inline const C_REFS: usize = 96;
@inline const C_GUEST_REFS: usize = 104;
@inline const C_HOST_REFS: usize = 112;
@inline const C_PWC_GUEST_HITS: usize = 120;
@inline const C_PWC_HOST_HITS: usize = 128;
@inline const C_NTLB_HITS: usize = 136;
@inline const C_NTLB_LOOKUPS: usize = 144;
@inline const C_SUM: usize = 152;
@inline const C_PWC_GUEST_LOOKUPS: usize = 160;
@inline const C_PWC_HOST_LOOKUPS: usize = 168;
@inline const C_ITLB_HITS: usize = 176;
@inline const C_ITLB_LOOKUPS: usize = 184;
@inline const C_DTLB_LOOKUPS: usize = 592;
@inline const C_D_ASSISTS: usize = 600;
@inline const C_HOST_LEAF: usize = 608;
@inline const C_FRAGMENTS: usize = 612;
// fault
@inline const C_FAULT_CODE: usize = 192;
@inline const C_FAULT_LEVEL: usize = 196;
@inline const C_FAULT_ADDR: usize = 200;
@inline const C_FAULT_INDEX: usize = 208;
@inline const C_FAULT_KIND: usize = 212;
@inline const C_CLOCK: usize = 216;
@inline const C_RESULT: usize = 224;
@inline const C_RESULT_SIZE: usize = 232;
@inline const C_PERMS: usize = 236;
@inline const C_LOG: usize = 240;
@inline const C_LOG_CAP: usize = 244;
@inline const C_LOG_LEN: usize = 248;
@inline const C_CACHES: usize = 256;
// References by level: guest (or shadow) levels 1-5 at 512 + 8 (l - 1), host at 552 + 8 (l - 1).
@inline const C_LEVEL_REFS: usize = 512;

// Cache ids (descriptor index).
@inline const T_L1_4K: u32 = 0;
@inline const T_L1_2M: u32 = 1;
@inline const T_L1_1G: u32 = 2;
@inline const T_L2: u32 = 3;
@inline const T_L2_1G: u32 = 4;
@inline const T_PWC_G: u32 = 5; // + (level - 2): levels 2..5 -> 5..8
@inline const T_PWC_H: u32 = 9; // + (level - 2): levels 2..5 -> 9..12
@inline const T_NTLB: u32 = 13;
@inline const T_ITLB_4K: u32 = 14;
@inline const T_ITLB_2M: u32 = 15;

@inline const MODE_NATIVE: u32 = 0;
@inline const MODE_NESTED: u32 = 1;
@inline const MODE_SHADOW: u32 = 2;
// Agile paging (Gandhi et al., ISCA 2016): the walk starts in the shadow
// tables and, at an entry marked AGILE_NESTED, continues in the guest's own
// tables (the entry's address is then guest-physical) as a nested walk.
@inline const MODE_AGILE: u32 = 3;

@inline const FLAG_SET_AD: u32 = 1;
@inline const FLAG_EPT_AD: u32 = 2;
@inline const FLAG_L2_1G: u32 = 4;
@inline const FLAG_1G_AS_2M: u32 = 8;
@inline const FLAG_L2_2M: u32 = 16;
@inline const FLAG_LEVEL_REFS: u32 = 32;
@inline const FLAG_NTLB_LEAF: u32 = 64;

// TLB value bits beyond the permissions.
@inline const TLB_VALID: u64 = 0x20;
@inline const TLB_DIRTY: u64 = 0x40;
// Bits 7-8: the size code of the guest page an entry is a fragment of (0: none).
@inline const TLB_GUEST_SIZE_SHIFT: u64 = 7;
// Nested TLB value bits.
@inline const NTLB_W: u64 = 4;
@inline const NTLB_D: u64 = 8;
// Host leaf scratch bits.
@inline const HOST_W: u32 = 1;
@inline const HOST_D: u32 = 2;

// Fault codes (what stopped a translation).
@inline const OK: u32 = 0;
@inline const FAULT_GUEST_NOT_PRESENT: u32 = 1;
@inline const FAULT_GUEST_PROTECTION: u32 = 2;
@inline const FAULT_GUEST_RESERVED: u32 = 3;
@inline const FAULT_EPT_VIOLATION: u32 = 4;
@inline const FAULT_EPT_MISCONFIG: u32 = 5;
@inline const FAULT_BAD_TABLE: u32 = 6;

// Access kind bits of a trace record (low 12 bits of the u64).
@inline const K_WRITE: u32 = 1;
@inline const K_EXEC: u32 = 2;
@inline const K_USER: u32 = 4;

// x86-64 entry bits (Intel SDM volume 3A, chapter 4).
@inline const P: u64 = 1;
@inline const RW: u64 = 2;
@inline const US: u64 = 4;
@inline const A: u64 = 0x20;
@inline const D: u64 = 0x40;
@inline const PS: u64 = 0x80;
@inline const NX: u64 = 0x8000000000000000;
@inline const ADDR: u64 = 0x000ffffffffff000;
// Bit 11 of a shadow entry is ignored by the processor (Intel SDM vol. 3A
// 4.5, tables 4-14 to 4-20): agile paging's switch from shadow to nested.
@inline const AGILE_NESTED: u64 = 0x800;
// A guest page-walk cache value: the table, perms (bits 1, 2, 63) and, in
// agile mode, bit 3: the table is guest-physical (the walk is nested there).
@inline const PWC_NESTED: u64 = 8;
// EPT entry bits.
@inline const EPT_R: u64 = 1;
@inline const EPT_W: u64 = 2;
@inline const EPT_X: u64 = 4;
@inline const EPT_LARGE: u64 = 0x80;
@inline const EPT_A: u64 = 0x100;
@inline const EPT_D: u64 = 0x200;

@inline const ENTRY: usize = 32;

// Log record (24 bytes): what u32 (dimension<<8 | level), pad u32, address u64, entry u64.
@inline const LOG_BYTES: usize = 24;

// ---------------------------------------------------------------------------
// Set-associative caches with true LRU (a stamp per entry, evict the oldest).

@inline
function tick(ctx: usize): u64 {
  const t = load<u64>(ctx + C_CLOCK) + 1;
  store<u64>(ctx + C_CLOCK, t);
  return t;
}

/** Whether cache `id` has any entries. */
@inline
function present(ctx: usize, id: u32): bool {
  return load<u32>(ctx + C_CACHES + (<usize>id << 4), 4) != 0;
}

/**
 * The set of `index` in a cache of `sets` sets: a mask when `sets` is a
 * power of two (every preset's caches), which spares a 64-bit division on
 * every lookup; the remainder otherwise. Both give the same set.
 */
@inline
function setIndex(index: u64, sets: u32): u32 {
  return (sets & (sets - 1)) == 0 ? <u32>index & (sets - 1) : <u32>(index % <u64>sets);
}

/** Looks `key` up in cache `id`; returns the entry's address or 0. */
@inline
function lookup(ctx: usize, id: u32, key: u64, index: u64): usize {
  const desc = ctx + C_CACHES + (<usize>id << 4);
  const sets = load<u32>(desc, 4);
  if (sets == 0) return 0;
  const ways = load<u32>(desc, 8);
  const set = <usize>load<u32>(desc) + <usize>(setIndex(index, sets) * ways) * ENTRY;
  for (let w: u32 = 0; w < ways; w++) {
    const e = set + <usize>w * ENTRY;
    if (load<u64>(e) == key) {
      store<u64>(e, tick(ctx), 16);
      return e;
    }
  }
  return 0;
}

/** Inserts (or refreshes) `key -> value` in cache `id`, if it has entries. */
@inline
function insert(ctx: usize, id: u32, key: u64, index: u64, value: u64): void {
  // Checked here so that absent caches cost a load, not a call.
  if (present(ctx, id)) insertInto(ctx, id, key, index, value);
}

/** Inserts (or refreshes) `key -> value` in cache `id`, evicting the LRU way. */
function insertInto(ctx: usize, id: u32, key: u64, index: u64, value: u64): void {
  const desc = ctx + C_CACHES + (<usize>id << 4);
  const sets = load<u32>(desc, 4);
  if (sets == 0) return;
  const ways = load<u32>(desc, 8);
  const set = <usize>load<u32>(desc) + <usize>(setIndex(index, sets) * ways) * ENTRY;
  let victim = set;
  let oldest: u64 = 0xffffffffffffffff;
  for (let w: u32 = 0; w < ways; w++) {
    const e = set + <usize>w * ENTRY;
    const k = load<u64>(e);
    if (k == key) {
      victim = e;
      break;
    }
    const s = k == 0 ? 0 : load<u64>(e, 16);
    if (s < oldest) {
      oldest = s;
      victim = e;
    }
  }
  store<u64>(victim, key);
  store<u64>(victim, value, 8);
  store<u64>(victim, tick(ctx), 16);
}

/** Empties cache `id` (all address spaces). */
function clearCache(ctx: usize, id: u32): void {
  const desc = ctx + C_CACHES + (<usize>id << 4);
  const n = load<u32>(desc, 4) * load<u32>(desc, 8);
  const base = <usize>load<u32>(desc);
  for (let i: u32 = 0; i < n; i++) store<u64>(base + <usize>i * ENTRY, 0);
}

/** Empties the entries of cache `id` whose key carries address-space tag `asid`. */
function clearTagged(ctx: usize, id: u32, asid: u64): void {
  const desc = ctx + C_CACHES + (<usize>id << 4);
  const n = load<u32>(desc, 4) * load<u32>(desc, 8);
  const base = <usize>load<u32>(desc);
  for (let i: u32 = 0; i < n; i++) {
    const e = base + <usize>i * ENTRY;
    if (((load<u64>(e) >>> 1) & 0x7fff) == asid) store<u64>(e, 0);
  }
}

// Keys: (number << 16) | (asid << 1) | 1, never 0.
@inline
function tagKey(n: u64, asid: u64): u64 {
  return (n << 16) | (asid << 1) | 1;
}

// ---------------------------------------------------------------------------
// Physical reads through the window.

/** Memory address of host-physical `hpa`, or 0 when it has no bytes. */
@inline
function phys(ctx: usize, hpa: u64): usize {
  const off = hpa - load<u64>(ctx + C_WINDOW_BASE);
  if (off >= load<u64>(ctx + C_WINDOW_BYTES)) return 0;
  return <usize>load<u32>(ctx + C_ARENA) + <usize>off;
}

function logRef(ctx: usize, dim: u32, level: u32, addr: u64, entry: u64): void {
  const log = <usize>load<u32>(ctx + C_LOG);
  const n = load<u32>(ctx + C_LOG_LEN);
  if (n >= load<u32>(ctx + C_LOG_CAP)) return;
  const r = log + <usize>n * LOG_BYTES;
  store<u32>(r, (dim << 8) | level);
  store<u32>(r, 0, 4);
  store<u64>(r, addr, 8);
  store<u64>(r, entry, 16);
  store<u32>(ctx + C_LOG_LEN, n + 1);
}

@inline
function count(ctx: usize, at: usize): void {
  store<u64>(ctx + at, load<u64>(ctx + at) + 1);
}

function fault(ctx: usize, code: u32, level: u32, addr: u64): u32 {
  store<u32>(ctx + C_FAULT_CODE, code);
  store<u32>(ctx + C_FAULT_LEVEL, level);
  store<u64>(ctx + C_FAULT_ADDR, addr);
  return code;
}

// ---------------------------------------------------------------------------
// The host dimension: guest-physical to host-physical through EPT.

// Set by hostTranslate: the host-physical address and the host page size code.
// (Kept in the context, not a global: kernels hold no mutable static state.)

/**
 * Drops the nested TLB's translations of `gpa` (every size): an EPT violation
 * invalidates what the processor cached for the address (Intel SDM vol. 3C
 * 28.4.3.1), so the retry after the host's fix sees the new leaf.
 */
function dropNested(ctx: usize, gpa: u64): void {
  for (let sz: u64 = 0; sz < 3; sz++) {
    const tag = ntlbTag(gpa, sz);
    const e = lookup(ctx, T_NTLB, ((tag << 2) | sz) + 1, tag);
    if (e != 0) store<u64>(e, 0);
  }
}

/** Nested TLB key and set index of `gpa` for an EPT leaf of size code `size`. */
@inline
function ntlbTag(gpa: u64, size: u64): u64 {
  return gpa >>> (12 + 9 * size);
}

/**
 * Translates guest-physical `gpa` to host-physical through the nested TLB,
 * the host page-walk caches and the EPT. Writes the result at C_RESULT (hPA)
 * and C_RESULT_SIZE (0 4K, 1 2M, 2 1G), and the leaf's W and D at
 * C_HOST_LEAF; returns a fault code. A write needs a writable leaf (else an
 * EPT violation) and, with EPT A/D, sets the leaf's D: a cached translation
 * that is not writable, or not yet dirty, is walked again.
 */
@inline
function hostTranslate(ctx: usize, gpa: u64, write: bool): u32 {
  const flags = load<u32>(ctx + C_FLAGS);
  const eptAd = (flags & FLAG_EPT_AD) != 0;
  if (present(ctx, T_NTLB)) {
    count(ctx, C_NTLB_LOOKUPS);
    // At the EPT leaf's size, a translation may sit under any of the three sizes.
    const sizes: u64 = (flags & FLAG_NTLB_LEAF) != 0 ? 3 : 1;
    for (let sz: u64 = 0; sz < sizes; sz++) {
      const tag = ntlbTag(gpa, sz);
      const hit = lookup(ctx, T_NTLB, ((tag << 2) | sz) + 1, tag);
      if (hit == 0) continue;
      const v = load<u64>(hit, 8);
      if (write && ((v & NTLB_W) == 0 || (eptAd && (v & NTLB_D) == 0))) break;
      count(ctx, C_NTLB_HITS);
      const mask: u64 = ((<u64>1) << (12 + 9 * sz)) - 1;
      store<u64>(ctx + C_RESULT, (v & ADDR & ~mask) | (gpa & mask));
      store<u32>(ctx + C_RESULT_SIZE, <u32>(v & 3));
      store<u32>(ctx + C_HOST_LEAF, <u32>((v >>> 2) & 3));
      return OK;
    }
  }
  const m = load<u32>(ctx + C_HLEVELS);
  let table = load<u64>(ctx + C_EPT_ROOT) & ADDR;
  let level = m;
  // Page-walk caches of the host dimension: the lowest level that hits wins.
  for (let l: u32 = 2; l <= m; l++) {
    if (!present(ctx, T_PWC_H + l - 2)) continue;
    const tag = gpa >>> (12 + 9 * (l - 1));
    count(ctx, C_PWC_HOST_LOOKUPS);
    const e = lookup(ctx, T_PWC_H + l - 2, tag + 1, tag);
    if (e != 0) {
      count(ctx, C_PWC_HOST_HITS);
      table = load<u64>(e, 8);
      level = l - 1;
      break;
    }
  }
  // The window, read once per walk rather than once per reference.
  const windowBase = load<u64>(ctx + C_WINDOW_BASE);
  const windowBytes = load<u64>(ctx + C_WINDOW_BYTES);
  const arena = <usize>load<u32>(ctx + C_ARENA);
  const logging = load<u32>(ctx + C_LOG) != 0;
  const byLevel = (flags & FLAG_LEVEL_REFS) != 0;
  let refs: u64 = 0;
  let code = OK;
  for (;;) {
    const at = table + (((gpa >>> (12 + 9 * (level - 1))) & 511) << 3);
    const off = at - windowBase;
    if (off >= windowBytes) {
      code = fault(ctx, FAULT_BAD_TABLE, level, at);
      break;
    }
    const p = arena + <usize>off;
    const entry = load<u64>(p);
    refs++;
    if (byLevel) count(ctx, C_LEVEL_REFS + 40 + (<usize>(level - 1) << 3));
    if (logging) logRef(ctx, 1, level, at, entry);
    if ((entry & (EPT_R | EPT_W | EPT_X)) == 0) {
      code = fault(ctx, FAULT_EPT_VIOLATION, level, gpa);
      break;
    }
    // Write-only or write+execute without read is a misconfiguration (SDM 28.2.3.1).
    if ((entry & (EPT_R | EPT_W)) == EPT_W) {
      code = fault(ctx, FAULT_EPT_MISCONFIG, level, gpa);
      break;
    }
    const large = level > 1 && (entry & EPT_LARGE) != 0;
    if (large && level > 3) {
      code = fault(ctx, FAULT_EPT_MISCONFIG, level, gpa);
      break;
    }
    if (level == 1 || large) {
      if (write && (entry & EPT_W) == 0) {
        code = fault(ctx, FAULT_EPT_VIOLATION, level, gpa);
        break;
      }
      let leaf = entry;
      if (eptAd) {
        leaf = entry | EPT_A | (write ? EPT_D : 0);
        if (leaf != entry) store<u64>(p, leaf);
      }
      const size: u64 = <u64>(level - 1);
      const pageMask: u64 = ((<u64>1) << (12 + 9 * size)) - 1;
      const hpa = (entry & ADDR & ~pageMask) | (gpa & pageMask);
      store<u64>(ctx + C_RESULT, hpa);
      store<u32>(ctx + C_RESULT_SIZE, <u32>size);
      const w: u64 = (entry & EPT_W) != 0 ? NTLB_W : 0;
      const d: u64 = !eptAd || (leaf & EPT_D) != 0 ? NTLB_D : 0;
      store<u32>(ctx + C_HOST_LEAF, <u32>((w | d) >>> 2));
      // The nested TLB caches at 4 KiB (splintering a large leaf) or at the leaf's size.
      const sz: u64 = (flags & FLAG_NTLB_LEAF) != 0 ? size : 0;
      const tag = ntlbTag(gpa, sz);
      const smask: u64 = ((<u64>1) << (12 + 9 * sz)) - 1;
      insert(ctx, T_NTLB, ((tag << 2) | sz) + 1, tag, (hpa & ADDR & ~smask) | size | w | d);
      break;
    }
    if (eptAd && (entry & EPT_A) == 0) store<u64>(p, entry | EPT_A);
    table = entry & ADDR;
    const tag = gpa >>> (12 + 9 * (level - 1));
    // Cache this entry: it names the table of level - 1 for this gPA prefix.
    insert(ctx, T_PWC_H + level - 2, tag + 1, tag, table);
    level--;
  }
  store<u64>(ctx + C_REFS, load<u64>(ctx + C_REFS) + refs);
  store<u64>(ctx + C_HOST_REFS, load<u64>(ctx + C_HOST_REFS) + refs);
  return code;
}

// ---------------------------------------------------------------------------
// The guest dimension (native, nested, or over shadow tables).

/**
 * Walks the x86-64 tables from the root for `va`. In nested mode every table
 * gPA and the final gPA go through the host dimension. Returns a fault code;
 * on success C_RESULT holds the hPA and C_RESULT_SIZE the TLB page size, and
 * the returned permissions are kept at C_RESULT + 12 (u32 bits W, U, NX).
 */
function walk(ctx: usize, va: u64, kind: u32): u32 {
  const mode = load<u32>(ctx + C_MODE);
  const n = load<u32>(ctx + C_GLEVELS);
  const flags = load<u32>(ctx + C_FLAGS);
  const asid = <u64>load<u32>(ctx + C_ASID);
  const write = (kind & K_WRITE) != 0;
  const agile = mode == MODE_AGILE;
  let nested = mode == MODE_NESTED;
  count(ctx, C_WALKS);
  let table = load<u64>(ctx + C_ROOT) & ADDR;
  let level = n;
  let perms: u64 = RW | US; // AND of R/W and U/S, OR of NX (kept in bit 63)
  // Paging-structure caches (guest dimension), tagged by address space.
  for (let l: u32 = 2; l <= n; l++) {
    if (!present(ctx, T_PWC_G + l - 2)) continue;
    const tag = va >>> (12 + 9 * (l - 1));
    count(ctx, C_PWC_GUEST_LOOKUPS);
    const e = lookup(ctx, T_PWC_G + l - 2, tagKey(tag, asid), tag);
    if (e != 0) {
      count(ctx, C_PWC_GUEST_HITS);
      const v = load<u64>(e, 8);
      table = v & ADDR;
      perms = v & (RW | US | NX);
      if (agile) nested = (v & PWC_NESTED) != 0;
      level = l - 1;
      break;
    }
  }
  const delta = load<u64>(ctx + C_NATIVE_DELTA);
  const setAdFlag = (flags & FLAG_SET_AD) != 0;
  // With EPT A/D, guest paging-structure accesses are writes for EPT purposes
  // (Intel SDM vol. 3C 29.3.5; KVM passes a write fault for them).
  const tableWrite = (flags & FLAG_EPT_AD) != 0;
  for (;;) {
    // Agile: the hypervisor keeps A/D in the shadow part; the walker sets them in the guest's.
    const setAd = setAdFlag && (!agile || nested);
    const shift = 12 + 9 * (level - 1);
    const at = table + (((va >>> shift) & 511) << 3);
    let hat: u64 = at;
    let tableWritable = true;
    if (nested) {
      const f = hostTranslate(ctx, at, tableWrite);
      if (f != OK) return f;
      hat = load<u64>(ctx + C_RESULT);
      tableWritable = (load<u32>(ctx + C_HOST_LEAF) & HOST_W) != 0;
    } else if (mode == MODE_NATIVE) {
      hat = at + delta;
    }
    const p = phys(ctx, hat);
    if (p == 0) return fault(ctx, FAULT_BAD_TABLE, level, hat);
    const entry = load<u64>(p);
    count(ctx, C_REFS);
    count(ctx, C_GUEST_REFS);
    if (flags & FLAG_LEVEL_REFS) count(ctx, C_LEVEL_REFS + (<usize>(level - 1) << 3));
    if (load<u32>(ctx + C_LOG) != 0) logRef(ctx, 0, level, at, entry);
    if ((entry & P) == 0) return fault(ctx, FAULT_GUEST_NOT_PRESENT, level, va);
    perms = (perms & (entry | NX) & (RW | US | NX)) | (entry & NX);
    const large = level > 1 && (entry & PS) != 0;
    if (large && level > 3) return fault(ctx, FAULT_GUEST_RESERVED, level, va);
    if (level == 1 || large) {
      if (write && (perms & RW) == 0) return fault(ctx, FAULT_GUEST_PROTECTION, level, va);
      if ((kind & K_USER) != 0 && (perms & US) == 0) {
        return fault(ctx, FAULT_GUEST_PROTECTION, level, va);
      }
      if ((kind & K_EXEC) != 0 && (perms & NX) != 0) {
        return fault(ctx, FAULT_GUEST_PROTECTION, level, va);
      }
      let dirty = !setAd || (entry & D) != 0;
      if (setAd) {
        const want = entry | A | (write ? D : 0);
        if (want != entry) {
          // Setting A or D writes the table: under EPT the table's page must be writable.
          if (!tableWritable) {
            dropNested(ctx, at);
            return fault(ctx, FAULT_EPT_VIOLATION, level, at);
          }
          store<u64>(p, want);
        }
        dirty = (want & D) != 0;
      }
      const gsize: u32 = level - 1;
      const pageMask: u64 = ((<u64>1) << (12 + 9 * <u64>gsize)) - 1;
      // A 4 KiB leaf's bit 7 is PAT, and bit 12 of a large leaf is PAT: not address.
      const frame = gsize == 0 ? entry & ADDR : entry & ADDR & ~pageMask;
      const gpa = frame | (va & pageMask);
      let size = gsize;
      // TLB permission bits: 0 W, 1 U, 2 NX; 6 D.
      let w = <u32>((perms & RW) >>> 1);
      if (nested) {
        const f = hostTranslate(ctx, gpa, write);
        if (f != OK) return f;
        const hsize = load<u32>(ctx + C_RESULT_SIZE);
        // The TLB holds the smaller of the two page sizes (the "splintering").
        if (hsize < size) size = hsize;
        const host = load<u32>(ctx + C_HOST_LEAF);
        // Writable and dirty only when both dimensions are.
        if ((host & HOST_W) == 0) w = 0;
        if ((host & HOST_D) == 0) dirty = false;
      } else {
        store<u64>(ctx + C_RESULT, gpa);
      }
      store<u32>(ctx + C_RESULT_SIZE, size);
      const u = <u32>((perms & US) >>> 1);
      const x = <u32>(perms >>> 63) << 2;
      // A fragment of a larger guest page: INVLPG of any address in that page drops it.
      let fragment: u32 = 0;
      if (size < gsize) {
        fragment = gsize << <u32>TLB_GUEST_SIZE_SHIFT;
        store<u32>(ctx + C_FRAGMENTS, 1);
      }
      store<u32>(ctx + C_PERMS, w | u | x | (dirty ? <u32>TLB_DIRTY : 0) | fragment);
      return OK;
    }
    if (setAd && (entry & A) == 0) {
      if (!tableWritable) {
        dropNested(ctx, at);
        return fault(ctx, FAULT_EPT_VIOLATION, level, at);
      }
      store<u64>(p, entry | A);
    }
    table = entry & ADDR;
    if (agile && !nested && (entry & AGILE_NESTED) != 0) nested = true;
    const tag = va >>> (12 + 9 * (level - 1));
    const v = table | (perms & (RW | US | NX)) | (agile && nested ? PWC_NESTED : 0);
    insert(ctx, T_PWC_G + level - 2, tagKey(tag, asid), tag, v);
    level--;
  }
  return OK;
}

// ---------------------------------------------------------------------------
// TLB lookup and fill.

@inline
function tlbCheck(value: u64, kind: u32): bool {
  // value bits: 0 W, 1 U, 2 NX
  if ((kind & K_WRITE) != 0 && (value & 1) == 0) return false;
  if ((kind & K_USER) != 0 && (value & 2) == 0) return false;
  if ((kind & K_EXEC) != 0 && (value & 4) != 0) return false;
  return true;
}

/**
 * The L1 entry the last lookup hit (0: it hit none): `run` remembers it to
 * repeat that hit without a lookup (see there).
 */
let l1Entry: usize = 0;

/** Looks `va` up in the TLBs (the L1 ITLB for a fetch); returns the entry value, or 0 on a miss. */
@inline
function tlbLookup(ctx: usize, va: u64, asid: u64, exec: bool): u64 {
  l1Entry = 0;
  const v4 = va >>> 12;
  const v2 = va >>> 21;
  const v1 = va >>> 30;
  if (exec) {
    count(ctx, C_ITLB_LOOKUPS);
    let e = lookup(ctx, T_ITLB_4K, tagKey(v4, asid), v4);
    if (e == 0) e = lookup(ctx, T_ITLB_2M, tagKey(v2, asid), v2);
    if (e != 0) {
      count(ctx, C_ITLB_HITS);
      l1Entry = e;
      return load<u64>(e, 8);
    }
  } else {
    count(ctx, C_DTLB_LOOKUPS);
    let e = lookup(ctx, T_L1_4K, tagKey(v4, asid), v4);
    if (e == 0) e = lookup(ctx, T_L1_2M, tagKey(v2, asid), v2);
    if (e == 0) e = lookup(ctx, T_L1_1G, tagKey(v1, asid), v1);
    if (e != 0) {
      count(ctx, C_L1_HITS);
      l1Entry = e;
      return load<u64>(e, 8);
    }
  }
  let e: usize = 0;
  // The unified second level: 4 KiB and 2 MiB keys differ in bit 15 of the key.
  e = lookup(ctx, T_L2, tagKey(v4 << 2, asid), v4);
  if (e == 0) e = lookup(ctx, T_L2, tagKey((v2 << 2) | 1, asid), v2);
  if (e == 0) e = lookup(ctx, T_L2_1G, tagKey(v1, asid), v1);
  if (e != 0) {
    count(ctx, C_L2_HITS);
    const v = load<u64>(e, 8);
    fillL1(ctx, va, asid, v, exec);
    return v;
  }
  return 0;
}

function fillL1(ctx: usize, va: u64, asid: u64, v: u64, exec: bool): void {
  let size = <u32>((v >>> 3) & 3);
  const flags = load<u32>(ctx + C_FLAGS);
  // The ITLB has no 1 GiB entries (Intel 248966); without a 1 GiB DTLB neither has the L1.
  if (size == 2 && (exec || (flags & FLAG_1G_AS_2M) != 0)) {
    // Keep the 2 MiB fragment that holds va (a fragment of the 1 GiB page).
    size = 1;
    v = (v & ~(<u64>0x3fe00000 | 0x18 | (3 << TLB_GUEST_SIZE_SHIFT))) | (va & 0x3fe00000) | 8;
    v |= <u64>2 << TLB_GUEST_SIZE_SHIFT;
    store<u32>(ctx + C_FRAGMENTS, 1);
  }
  if (exec) {
    if (size == 0) insert(ctx, T_ITLB_4K, tagKey(va >>> 12, asid), va >>> 12, v);
    else insert(ctx, T_ITLB_2M, tagKey(va >>> 21, asid), va >>> 21, v);
    return;
  }
  if (size == 0) insert(ctx, T_L1_4K, tagKey(va >>> 12, asid), va >>> 12, v);
  else if (size == 1) insert(ctx, T_L1_2M, tagKey(va >>> 21, asid), va >>> 21, v);
  else insert(ctx, T_L1_1G, tagKey(va >>> 30, asid), va >>> 30, v);
}

function tlbFill(
  ctx: usize,
  va: u64,
  asid: u64,
  hpa: u64,
  size: u32,
  perms: u32,
  exec: bool,
): u64 {
  const pageMask: u64 = ((<u64>1) << (12 + 9 * <u64>size)) - 1;
  // Bit 5 marks a valid value, so that a frame at hPA 0 is never read as a miss.
  const v = (hpa & ~pageMask) | <u64>perms | (<u64>size << 3) | TLB_VALID;
  const flags = load<u32>(ctx + C_FLAGS);
  if (size == 0) insert(ctx, T_L2, tagKey((va >>> 12) << 2, asid), va >>> 12, v);
  else if (size == 1 && (flags & FLAG_L2_2M) != 0) insert(ctx, T_L2, tagKey(((va >>> 21) << 2) | 1, asid), va >>> 21, v);
  else if (flags & FLAG_L2_1G) insert(ctx, T_L2_1G, tagKey(va >>> 30, asid), va >>> 30, v);
  fillL1(ctx, va, asid, v, exec);
  return v;
}

/** One translation: TLBs, then a walk. Leaves the hPA at C_RESULT. */
@inline
function translateOne(ctx: usize, va: u64, kind: u32): u32 {
  const asid = <u64>load<u32>(ctx + C_ASID);
  const exec = (kind & K_EXEC) != 0;
  const v = tlbLookup(ctx, va, asid, exec);
  if (v != 0 && tlbCheck(v, kind)) {
    if ((kind & K_WRITE) == 0 || (v & TLB_DIRTY) != 0) {
      const size = (v >>> 3) & 3;
      const pageMask: u64 = ((<u64>1) << (12 + 9 * size)) - 1;
      store<u64>(ctx + C_RESULT, (v & ADDR & ~pageMask) | (va & pageMask));
      return OK;
    }
    // A write to an entry filled by a read: the processor walks to set D.
    count(ctx, C_D_ASSISTS);
  }
  l1Entry = 0;
  // A miss, or a hit whose permissions refuse the access (for example a write
  // to an entry cached read-only): walk, as the hardware re-walks.
  const f = walk(ctx, va, kind);
  if (f != OK) return f;
  const hpa = load<u64>(ctx + C_RESULT);
  tlbFill(ctx, va, asid, hpa, load<u32>(ctx + C_RESULT_SIZE), load<u32>(ctx + C_PERMS), exec);
  return OK;
}

// ---------------------------------------------------------------------------
// Exports.

/**
 * Translates trace records `from` to `to` (exclusive) of the trace at `trace`
 * (u64 records: virtual page address | access kind in the low 12 bits).
 * Returns the index where it stopped: `to` when every record translated, or
 * the record that faulted (its fault is in the context). Adds each hPA to the
 * context's checksum.
 */
export function run(ctx: usize, trace: usize, from: u32, to: u32): u32 {
  let sum = load<u64>(ctx + C_SUM);
  let accesses = load<u64>(ctx + C_ACCESSES);
  // Traces repeat themselves: most records (86 % of a lackey trace of a real
  // program) are the previous fetch's or the previous data access's record
  // again. When that previous one was a plain L1 hit and nothing but plain
  // L1 hits came since, nothing was inserted or evicted in any TLB (only LRU
  // stamps moved), so the record hits the same entry first again: that hit
  // is repeated (counters, LRU stamp, result) without the lookup. Any other
  // outcome forgets both records (an entry of 0: none remembered).
  let fetchRec: u64 = 0;
  let fetchEntry: usize = 0;
  let fetchResult: u64 = 0;
  let dataRec: u64 = 0;
  let dataEntry: usize = 0;
  let dataResult: u64 = 0;
  for (let i = from; i < to; i++) {
    const rec = load<u64>(trace + (<usize>i << 3));
    if (fetchEntry != 0 && rec == fetchRec) {
      count(ctx, C_ITLB_LOOKUPS);
      store<u64>(fetchEntry, tick(ctx), 16);
      count(ctx, C_ITLB_HITS);
      store<u64>(ctx + C_RESULT, fetchResult);
      accesses++;
      sum += fetchResult;
      continue;
    }
    if (dataEntry != 0 && rec == dataRec) {
      count(ctx, C_DTLB_LOOKUPS);
      store<u64>(dataEntry, tick(ctx), 16);
      count(ctx, C_L1_HITS);
      store<u64>(ctx + C_RESULT, dataResult);
      accesses++;
      sum += dataResult;
      continue;
    }
    const kind = <u32>(rec & 0xfff);
    const va = rec & 0xfffffffffffff000;
    const f = translateOne(ctx, va, kind);
    if (f != OK) {
      store<u32>(ctx + C_FAULT_INDEX, i);
      store<u32>(ctx + C_FAULT_KIND, kind);
      store<u64>(ctx + C_SUM, sum);
      store<u64>(ctx + C_ACCESSES, accesses);
      return i;
    }
    accesses++;
    const result = load<u64>(ctx + C_RESULT);
    sum += result;
    if (l1Entry == 0) {
      fetchEntry = 0;
      dataEntry = 0;
    } else if ((kind & K_EXEC) != 0) {
      fetchRec = rec;
      fetchEntry = l1Entry;
      fetchResult = result;
    } else {
      dataRec = rec;
      dataEntry = l1Entry;
      dataResult = result;
    }
  }
  store<u64>(ctx + C_SUM, sum);
  store<u64>(ctx + C_ACCESSES, accesses);
  return to;
}

/**
 * Translates one address (given as two u32 halves). Returns the fault code
 * (0 on success, the hPA then at context byte 224).
 */
export function translate(ctx: usize, vaLow: u32, vaHigh: u32, kind: u32): u32 {
  const va = ((<u64>vaHigh << 32) | <u64>vaLow) & 0xfffffffffffff000;
  const f = translateOne(ctx, va, kind);
  if (f == OK) {
    const r = load<u64>(ctx + C_RESULT);
    store<u64>(ctx + C_RESULT, r | (<u64>vaLow & 0xfff));
  } else {
    store<u32>(ctx + C_FAULT_INDEX, 0);
    store<u32>(ctx + C_FAULT_KIND, kind);
  }
  return f;
}

/**
 * INVLPG: drops `va`'s TLB entries of every size in the current address space,
 * and the current address space's guest page-walk caches.
 */
export function invalidatePage(ctx: usize, vaLow: u32, vaHigh: u32): void {
  const va = (<u64>vaHigh << 32) | <u64>vaLow;
  const asid = <u64>load<u32>(ctx + C_ASID);
  dropKey(ctx, T_L1_4K, tagKey(va >>> 12, asid), va >>> 12);
  dropKey(ctx, T_L1_2M, tagKey(va >>> 21, asid), va >>> 21);
  dropKey(ctx, T_L1_1G, tagKey(va >>> 30, asid), va >>> 30);
  dropKey(ctx, T_L2, tagKey((va >>> 12) << 2, asid), va >>> 12);
  dropKey(ctx, T_L2, tagKey(((va >>> 21) << 2) | 1, asid), va >>> 21);
  dropKey(ctx, T_L2_1G, tagKey(va >>> 30, asid), va >>> 30);
  dropKey(ctx, T_ITLB_4K, tagKey(va >>> 12, asid), va >>> 12);
  dropKey(ctx, T_ITLB_2M, tagKey(va >>> 21, asid), va >>> 21);
  // Smaller entries cached for a large page go with it (Intel SDM vol. 3A
  // 4.10.2.3 and 4.10.4.1: INVLPG invalidates every TLB entry for the
  // translation the paging structures specify, however the TLB split it).
  if (load<u32>(ctx + C_FRAGMENTS) != 0) {
    dropFragments(ctx, T_L1_4K, va, asid, 0);
    dropFragments(ctx, T_L1_2M, va, asid, 1);
    dropFragments(ctx, T_L2, va, asid, 3);
    dropFragments(ctx, T_ITLB_4K, va, asid, 0);
    dropFragments(ctx, T_ITLB_2M, va, asid, 1);
  }
  for (let id = T_PWC_G; id < T_PWC_H; id++) clearTagged(ctx, id, asid);
}

/**
 * Drops the entries of cache `id` in address space `asid` that are fragments
 * of the guest page holding `va`. `size` is the entries' size code (0 4K,
 * 1 2M), or 3 for the unified second level, whose keys carry it in bits 0-1
 * of the page number.
 */
function dropFragments(ctx: usize, id: u32, va: u64, asid: u64, size: u32): void {
  const desc = ctx + C_CACHES + (<usize>id << 4);
  const n = load<u32>(desc, 4) * load<u32>(desc, 8);
  const base = <usize>load<u32>(desc);
  for (let i: u32 = 0; i < n; i++) {
    const e = base + <usize>i * ENTRY;
    const key = load<u64>(e);
    if (key == 0 || ((key >>> 1) & 0x7fff) != asid) continue;
    const g = (load<u64>(e, 8) >>> TLB_GUEST_SIZE_SHIFT) & 3;
    if (g == 0) continue;
    let page = key >>> 16;
    let sz = <u64>size;
    if (size == 3) {
      sz = page & 3;
      page >>>= 2;
    }
    const shift = 12 + 9 * g;
    if ((page << (12 + 9 * sz)) >>> shift == va >>> shift) store<u64>(e, 0);
  }
}

/**
 * Drops the nested TLB's translations of guest-physical `gpa`: what an EPT
 * violation on it does, for a store the hypervisor serviced outside a walk.
 */
export function invalidateGuestPhysical(ctx: usize, gpaLow: u32, gpaHigh: u32): void {
  dropNested(ctx, (<u64>gpaHigh << 32) | <u64>gpaLow);
}

function dropKey(ctx: usize, id: u32, key: u64, index: u64): void {
  const e = lookup(ctx, id, key, index);
  if (e != 0) store<u64>(e, 0);
}

/**
 * Flushes caches. `what` bits: 1 TLBs and guest page-walk caches of the
 * current address space, 2 the same for every address space, 4 the nested
 * TLB and host page-walk caches (INVEPT), 8 the TLBs alone (every address
 * space), keeping the page-walk caches.
 */
export function flush(ctx: usize, what: u32): void {
  const asid = <u64>load<u32>(ctx + C_ASID);
  for (let id = T_L1_4K; id <= T_ITLB_2M; id++) {
    // The host dimension's caches are tagged by nothing: only INVEPT (4) flushes them.
    if (id >= T_PWC_H && id <= T_NTLB) continue;
    if (what & 2) clearCache(ctx, id);
    else if (what & 1) clearTagged(ctx, id, asid);
  }
  if (what & 4) {
    for (let id = T_PWC_H; id <= T_NTLB; id++) clearCache(ctx, id);
  }
  if (what & 8) {
    for (let id = T_L1_4K; id <= T_L2_1G; id++) clearCache(ctx, id);
    clearCache(ctx, T_ITLB_4K);
    clearCache(ctx, T_ITLB_2M);
  }
}

// The context layout and its codes, read by src/wasm/walk.ts at load and
// compared with the offsets it reads and writes (src/wasm/kernel-layout.ts).
export const LAYOUT_MODE: u32 = <u32>C_MODE;
export const LAYOUT_GLEVELS: u32 = <u32>C_GLEVELS;
export const LAYOUT_HLEVELS: u32 = <u32>C_HLEVELS;
export const LAYOUT_FLAGS: u32 = <u32>C_FLAGS;
export const LAYOUT_ROOT: u32 = <u32>C_ROOT;
export const LAYOUT_EPT_ROOT: u32 = <u32>C_EPT_ROOT;
export const LAYOUT_WINDOW_BASE: u32 = <u32>C_WINDOW_BASE;
export const LAYOUT_WINDOW_BYTES: u32 = <u32>C_WINDOW_BYTES;
export const LAYOUT_ARENA: u32 = <u32>C_ARENA;
export const LAYOUT_ASID: u32 = <u32>C_ASID;
export const LAYOUT_NATIVE_DELTA: u32 = <u32>C_NATIVE_DELTA;
export const LAYOUT_ACCESSES: u32 = <u32>C_ACCESSES;
export const LAYOUT_SUM: u32 = <u32>C_SUM;
export const LAYOUT_PWC_GUEST_LOOKUPS: u32 = <u32>C_PWC_GUEST_LOOKUPS;
export const LAYOUT_PWC_HOST_LOOKUPS: u32 = <u32>C_PWC_HOST_LOOKUPS;
export const LAYOUT_ITLB_HITS: u32 = <u32>C_ITLB_HITS;
export const LAYOUT_ITLB_LOOKUPS: u32 = <u32>C_ITLB_LOOKUPS;
export const LAYOUT_DTLB_LOOKUPS: u32 = <u32>C_DTLB_LOOKUPS;
export const LAYOUT_D_ASSISTS: u32 = <u32>C_D_ASSISTS;
export const LAYOUT_FAULT_CODE: u32 = <u32>C_FAULT_CODE;
export const LAYOUT_FAULT_LEVEL: u32 = <u32>C_FAULT_LEVEL;
export const LAYOUT_FAULT_ADDR: u32 = <u32>C_FAULT_ADDR;
export const LAYOUT_FAULT_INDEX: u32 = <u32>C_FAULT_INDEX;
export const LAYOUT_FAULT_KIND: u32 = <u32>C_FAULT_KIND;
export const LAYOUT_RESULT: u32 = <u32>C_RESULT;
export const LAYOUT_LOG: u32 = <u32>C_LOG;
export const LAYOUT_LOG_CAP: u32 = <u32>C_LOG_CAP;
export const LAYOUT_LOG_LEN: u32 = <u32>C_LOG_LEN;
export const LAYOUT_CACHES: u32 = <u32>C_CACHES;
export const LAYOUT_LEVEL_REFS: u32 = <u32>C_LEVEL_REFS;
export const LAYOUT_CACHE_ENTRY_BYTES: u32 = <u32>ENTRY;
export const LAYOUT_LOG_RECORD_BYTES: u32 = <u32>LOG_BYTES;
export const LAYOUT_CACHE_SLOTS: u32 = T_ITLB_2M + 1;
export const LAYOUT_MODE_NATIVE: u32 = MODE_NATIVE;
export const LAYOUT_MODE_NESTED: u32 = MODE_NESTED;
export const LAYOUT_MODE_SHADOW: u32 = MODE_SHADOW;
export const LAYOUT_MODE_AGILE: u32 = MODE_AGILE;
export const LAYOUT_FLAG_SET_AD: u32 = FLAG_SET_AD;
export const LAYOUT_FLAG_EPT_AD: u32 = FLAG_EPT_AD;
export const LAYOUT_FLAG_L2_1G: u32 = FLAG_L2_1G;
export const LAYOUT_FLAG_1G_AS_2M: u32 = FLAG_1G_AS_2M;
export const LAYOUT_FLAG_L2_2M: u32 = FLAG_L2_2M;
export const LAYOUT_FLAG_LEVEL_REFS: u32 = FLAG_LEVEL_REFS;
export const LAYOUT_FLAG_NTLB_LEAF: u32 = FLAG_NTLB_LEAF;
