// Dirty-page tracking: a bitmap of one bit per guest page, and KVM's
// per-vCPU dirty ring as the alternative.
//
// Bitmap layout (little-endian u64 words, as KVM's dirty log):
//
//    word 0 (byte 0)                   word 1 (byte 8)
//   +--------+--------+-----+--------+ +--------+-----+--------+
//   | bit 0  | bit 1  | ... | bit 63 | | bit 0  | ... | bit 63 |
//   | page 0 | page 1 |     | page 63| | page 64|     |page 127|
//   +--------+--------+-----+--------+ +--------+-----+--------+
//
// Page p is bit (p & 63) of word (p >>> 6). Page numbers are u32, so one
// bitmap covers up to 2^32 pages (16 TiB of 4 KiB pages). Counts are u32:
// callers split larger bitmaps into chunks of at most 2^24 words.
//
// Dirty ring layout (one per vCPU; entries are KVM's struct kvm_dirty_gfn):
//
//   byte 0           4           8           12          16          64
//   +-----------+-----------+-----------+-----------+-----------+ ... +
//   | head u32  | tail u32  | size u32  | overflow  | slot u32  |     |
//   | (vCPU)    | (harvest) | power of 2| u32       |           |     |
//   +-----------+-----------+-----------+-----------+-----------+ ... +
//   entry i at 64 + 16 * (i & (size - 1)):
//   +-----------+-----------+-----------------------+
//   | flags u32 | slot u32  | offset u64 (page)     |
//   +-----------+-----------+-----------------------+
//
// head and tail run free (wrapping at 2^32); head - tail entries are full.
// One vCPU writes a ring and one harvester reads it. The ring's size is
// passed by the caller, never read from the header, so a corrupted header
// cannot send a kernel outside the ring.

@inline const RING_HEAD: usize = 0;
@inline const RING_TAIL: usize = 4;
@inline const RING_SIZE: usize = 8;
@inline const RING_OVERFLOW: usize = 12;
@inline const RING_SLOT: usize = 16;
@inline const RING_ENTRIES: usize = 64;
@inline const ENTRY_BYTES: u32 = 16;
// KVM_DIRTY_GFN_F_DIRTY and KVM_DIRTY_GFN_F_RESET (include/uapi/linux/kvm.h).
@inline const GFN_F_DIRTY: u32 = 1;
@inline const GFN_F_RESET: u32 = 2;

@inline
function wordAddress(bitmap: usize, page: u32): usize {
  return bitmap + ((<usize>(page >>> 6)) << 3);
}

/** Marks one page dirty; returns 1 if it was clean before, else 0. Atomic. */
export function markPage(bitmap: usize, page: u32): u32 {
  const word = wordAddress(bitmap, page);
  const bit = (<u64>1) << <u64>(page & 63);
  // A plain load first: a page already dirty needs no locked read-modify-write.
  if (load<u64>(word) & bit) return 0;
  return <u32>((atomic.or<u64>(word, bit) & bit) == 0);
}

/** Marks pages [first, first + count) dirty; returns how many were clean. Atomic. */
export function markRange(bitmap: usize, first: u32, count: u32): u32 {
  if (count == 0) return 0;
  let newly: u32 = 0;
  let page = first;
  let left = count;
  // Leading partial word.
  const lead = page & 63;
  if (lead != 0) {
    const take = min<u32>(64 - lead, left);
    const mask = (take == 64 ? <u64>-1 : (((<u64>1) << <u64>take) - 1)) << <u64>lead;
    const old = atomic.or<u64>(wordAddress(bitmap, page), mask);
    newly += <u32>popcnt<u64>(~old & mask);
    page += take;
    left -= take;
  }
  // Whole words.
  while (left >= 64) {
    const word = wordAddress(bitmap, page);
    if (load<u64>(word) != <u64>-1) {
      const old = atomic.or<u64>(word, <u64>-1);
      newly += <u32>popcnt<u64>(~old);
    }
    page += 64;
    left -= 64;
  }
  // Trailing partial word.
  if (left != 0) {
    const mask = ((<u64>1) << <u64>left) - 1;
    const old = atomic.or<u64>(wordAddress(bitmap, page), mask);
    newly += <u32>popcnt<u64>(~old & mask);
  }
  return newly;
}

/** Returns 1 if the page is dirty, else 0. */
export function testPage(bitmap: usize, page: u32): u32 {
  return <u32>((atomic.load<u64>(wordAddress(bitmap, page)) >>> <u64>(page & 63)) & 1);
}

/** Counts dirty pages in `words` bitmap words (popcount). */
export function countDirty(bitmap: usize, words: u32): u32 {
  let a: u64 = 0;
  let b: u64 = 0;
  let i: u32 = 0;
  const pairs = words & ~1;
  for (; i < pairs; i += 2) {
    const at = bitmap + ((<usize>i) << 3);
    a += popcnt<u64>(load<u64>(at));
    b += popcnt<u64>(load<u64>(at, 8));
  }
  if (i < words) a += popcnt<u64>(load<u64>(bitmap + ((<usize>i) << 3)));
  return <u32>(a + b);
}

/**
 * Get-and-clear, as KVM's dirty log does it: every non-zero word is exchanged
 * atomically with zero and copied to `snapshot`; zero words are copied as
 * zero without a locked instruction (a page marked after the plain load stays
 * in the bitmap for the next harvest, so nothing is lost). Returns the count
 * of dirty pages harvested.
 */
export function harvest(bitmap: usize, snapshot: usize, words: u32): u32 {
  let count: u64 = 0;
  for (let i: u32 = 0; i < words; i++) {
    const at = (<usize>i) << 3;
    let value = load<u64>(bitmap + at);
    if (value != 0) {
      value = atomic.xchg<u64>(bitmap + at, 0);
      count += popcnt<u64>(value);
    }
    store<u64>(snapshot + at, value);
  }
  return <u32>count;
}

/**
 * Get-and-clear of a bitmap that no writer marks meanwhile (the retired
 * bitmap of an epoch-swapped pair, or while the vCPUs are paused): every word
 * is copied to `snapshot` and cleared with plain 16-byte loads and stores, no
 * locked instruction. Returns the count of dirty pages harvested.
 */
export function harvestQuiet(bitmap: usize, snapshot: usize, words: u32): u32 {
  let a: u64 = 0;
  let b: u64 = 0;
  let i: u32 = 0;
  const zero = i64x2.splat(0);
  const pairs = words & ~1;
  for (; i < pairs; i += 2) {
    const at = (<usize>i) << 3;
    const value = v128.load(bitmap + at);
    v128.store(snapshot + at, value);
    v128.store(bitmap + at, zero);
    a += popcnt<u64>(i64x2.extract_lane(value, 0));
    b += popcnt<u64>(i64x2.extract_lane(value, 1));
  }
  if (i < words) {
    const at = (<usize>i) << 3;
    const value = load<u64>(bitmap + at);
    store<u64>(snapshot + at, value);
    store<u64>(bitmap + at, 0);
    a += popcnt<u64>(value);
  }
  return <u32>(a + b);
}

/**
 * ORs `words` words of bitmap `src` into `dst` (plain loads and stores: `dst`
 * belongs to the caller alone). Returns how many bits were newly set in `dst`.
 */
export function mergeBitmap(dst: usize, src: usize, words: u32): u32 {
  let newly: u64 = 0;
  for (let i: u32 = 0; i < words; i++) {
    const at = (<usize>i) << 3;
    const add = load<u64>(src + at);
    if (add != 0) {
      const old = load<u64>(dst + at);
      newly += popcnt<u64>(add & ~old);
      store<u64>(dst + at, old | add);
    }
  }
  return <u32>newly;
}

/**
 * A quiet harvest and a merge in one pass, for a bitmap no writer marks
 * meanwhile (vCPUs paused, or a period's writes awaited): every word of
 * `bitmap` is copied to `snapshot`, cleared, and ORed into `distinct`, with
 * plain 16-byte loads and stores. One pass instead of harvestQuiet, then
 * mergeBitmap, then countDirty (each word read once, not three times).
 *
 * Returns two u32 counts in one u64 (callers pass at most 2^24 words, so each
 * fits): the low half is the pages harvested, the high half the pages set in
 * `distinct` afterwards.
 *
 *   bit 63            32 31             0
 *   +-----------------+----------------+
 *   | distinct (u32)  | harvested (u32)|
 *   +-----------------+----------------+
 */
export function harvestQuietMerge(bitmap: usize, snapshot: usize, distinct: usize, words: u32): u64 {
  let harvested: u64 = 0;
  let union: u64 = 0;
  let i: u32 = 0;
  const zero = i64x2.splat(0);
  const pairs = words & ~1;
  for (; i < pairs; i += 2) {
    const at = (<usize>i) << 3;
    const value = v128.load(bitmap + at);
    v128.store(snapshot + at, value);
    v128.store(bitmap + at, zero);
    const merged = v128.or(v128.load(distinct + at), value);
    v128.store(distinct + at, merged);
    harvested +=
      popcnt<u64>(i64x2.extract_lane(value, 0)) + popcnt<u64>(i64x2.extract_lane(value, 1));
    union += popcnt<u64>(i64x2.extract_lane(merged, 0)) + popcnt<u64>(i64x2.extract_lane(merged, 1));
  }
  if (i < words) {
    const at = (<usize>i) << 3;
    const value = load<u64>(bitmap + at);
    store<u64>(snapshot + at, value);
    store<u64>(bitmap + at, 0);
    const merged = load<u64>(distinct + at) | value;
    store<u64>(distinct + at, merged);
    harvested += popcnt<u64>(value);
    union += popcnt<u64>(merged);
  }
  return (union << 32) | harvested;
}

// Writes the page numbers of the set bits of `word` (page numbers base + bit)
// at `at` and returns the address past them. Two slots are written without
// a branch: the lowest bit (ctz) and the highest (63 - clz), which are all of
// a word of one or two bits (at 1 % dirty, 97 % of words hold at most two),
// so a word's bit count costs no mispredicted branch and no chain of per-bit
// tests. A word of three or more bits takes the rarely taken branch and is
// written whole, lowest bit first. It may write two slots past the returned
// address (a clean word writes two junk slots it does not count), which the
// caller guarantees exist.
@inline
function emitAt(word: u64, base: u32, at: usize): usize {
  // The count is taken first so that the next word's position depends on one
  // add, not on the stores.
  const count = <usize>popcnt<u64>(word);
  store<u32>(at, base + <u32>ctz<u64>(word));
  store<u32>(at, base + 63 - <u32>clz<u64>(word), 4);
  if (count > 2) {
    let more = word;
    let slot = at;
    do {
      store<u32>(slot, base + <u32>ctz<u64>(more));
      slot += 4;
      more &= more - 1;
    } while (more != 0);
  }
  return at + (count << 2);
}

// As emitAt, counting in slots of `out`: returns the new count.
@inline
function emitWord(word: u64, base: u32, out: usize, n: u32): u32 {
  return <u32>((emitAt(word, base, out + ((<usize>n) << 2)) - out) >>> 2);
}

// Mask of the bits of word `index` that are pages below `bits`.
@inline
function tailMask(index: u32, bits: u32): u64 {
  const last = (bits - 1) >>> 6;
  if (index < last) return <u64>-1;
  const used = bits - (last << 6);
  return used == 64 ? <u64>-1 : ((<u64>1) << <u64>used) - 1;
}

// Words the one-pass kernels take per step of their hot loops, and the slots
// a step may need: 64 pages a word, plus the two junk slots past the last.
@inline const BLOCK_WORDS: u32 = 16;
@inline const BLOCK_SLOTS: u32 = BLOCK_WORDS * 64 + 2;
// Slots one word may need (64 pages and two junk slots).
@inline const WORD_SLOTS: u32 = 66;

// Writes the pages of the 16 words at `at` (pages base to base + 1023) at
// `slot`; returns the address past them. The words are loaded inside the
// emission, not held in registers across the step.
@inline
function emitStep(at: usize, base: u32, slot: usize): usize {
  slot = emitAt(load<u64>(at), base, slot);
  slot = emitAt(load<u64>(at, 8), base + 64, slot);
  slot = emitAt(load<u64>(at, 16), base + 128, slot);
  slot = emitAt(load<u64>(at, 24), base + 192, slot);
  slot = emitAt(load<u64>(at, 32), base + 256, slot);
  slot = emitAt(load<u64>(at, 40), base + 320, slot);
  slot = emitAt(load<u64>(at, 48), base + 384, slot);
  slot = emitAt(load<u64>(at, 56), base + 448, slot);
  slot = emitAt(load<u64>(at, 64), base + 512, slot);
  slot = emitAt(load<u64>(at, 72), base + 576, slot);
  slot = emitAt(load<u64>(at, 80), base + 640, slot);
  slot = emitAt(load<u64>(at, 88), base + 704, slot);
  slot = emitAt(load<u64>(at, 96), base + 768, slot);
  slot = emitAt(load<u64>(at, 104), base + 832, slot);
  slot = emitAt(load<u64>(at, 112), base + 896, slot);
  return emitAt(load<u64>(at, 120), base + 960, slot);
}

// Clears the 16 words at `at` with plain 16-byte stores.
@inline
function clearStep(at: usize): void {
  const zero = i64x2.splat(0);
  v128.store(at, zero);
  v128.store(at, zero, 16);
  v128.store(at, zero, 32);
  v128.store(at, zero, 48);
  v128.store(at, zero, 64);
  v128.store(at, zero, 80);
  v128.store(at, zero, 96);
  v128.store(at, zero, 112);
}

/**
 * Writes the numbers of dirty pages of `snapshot` (base + bit index) into
 * `out`, at most `capacity` of them, resuming at the bit index stored as u32 at
 * `cursor` and storing where to resume. Bits at or past `bits` are ignored.
 * Returns how many were written; 0 means the snapshot is exhausted. Slots of
 * `out` past the returned count may be overwritten.
 */
export function iterateDirty(
  snapshot: usize,
  bits: u32,
  cursor: usize,
  out: usize,
  capacity: u32,
  basePage: u32,
): u32 {
  let bit = load<u32>(cursor);
  if (bit >= bits || capacity == 0) return 0;
  const words = ((bits - 1) >>> 6) + 1;
  const whole = bits >>> 6;
  if ((bit & 63) == 0 && capacity >= BLOCK_SLOTS && (bit >>> 6) < whole) {
    // From a word boundary with room for a step: 16 whole words a step, with
    // no per-word test (as harvestPagesQuiet, without clearing).
    const first = bit >>> 6;
    let at = snapshot + ((<usize>first) << 3);
    const end = at + ((<usize>(((whole - first) / BLOCK_WORDS) * BLOCK_WORDS)) << 3);
    let base = basePage + bit;
    let slot = out;
    const last = out + ((<usize>(capacity - BLOCK_SLOTS)) << 2);
    while (at < end && slot <= last) {
      slot = emitStep(at, base, slot);
      at += BLOCK_WORDS << 3;
      base += BLOCK_WORDS << 6;
    }
    bit = <u32>((at - snapshot) >>> 3) << 6;
    const n = <u32>((slot - out) >>> 2);
    if (at < end || bit >= bits) {
      // The batch is full (or the snapshot done): resume at the next step.
      store<u32>(cursor, min<u32>(bit, bits));
      return n;
    }
    if (n > 0) {
      // The rest (fewer than 16 whole words, the partial last word) next call.
      store<u32>(cursor, bit);
      return n;
    }
  }
  let index = bit >>> 6;
  // The first word may be partly consumed already.
  let word =
    load<u64>(snapshot + ((<usize>index) << 3)) &
    ((<u64>-1) << <u64>(bit & 63)) &
    tailMask(index, bits);
  let n: u32 = 0;
  for (;;) {
    if (capacity - n >= WORD_SLOTS) {
      // Fast path: room for any word, so emit it whole.
      n = emitWord(word, basePage + (index << 6), out, n);
    } else {
      // Careful path near the end of the buffer: one page at a time.
      while (word != 0) {
        if (n == capacity) {
          store<u32>(cursor, (index << 6) + <u32>ctz<u64>(word));
          return n;
        }
        store<u32>(out + ((<usize>n) << 2), basePage + (index << 6) + <u32>ctz<u64>(word));
        n++;
        word &= word - 1;
      }
    }
    index++;
    // Skip clean runs four words (256 pages) at a time with two 16-byte loads.
    while (index + 4 < words) {
      const at = snapshot + ((<usize>index) << 3);
      if (v128.any_true(v128.or(v128.load(at), v128.load(at, 16)))) break;
      index += 4;
    }
    if (index >= words) {
      store<u32>(cursor, bits);
      return n;
    }
    if (n == capacity) {
      store<u32>(cursor, index << 6);
      return n;
    }
    word = load<u64>(snapshot + ((<usize>index) << 3)) & tailMask(index, bits);
  }
  return n; // not reached: the loop returns
}

/**
 * Harvest and iterate in one pass, for callers that want page numbers rather
 * than a snapshot: from the word index stored as u32 at `cursor`, each
 * non-zero word of `bitmap` (of `bits` pages) is exchanged atomically with
 * zero (as `harvest`) and its pages written to `out`. Runs of four clean words
 * are skipped with two 16-byte loads. Stops when fewer than WORD_SLOTS slots
 * are left (so `capacity` must be at least WORD_SLOTS), storing where to
 * resume. Returns how many page numbers were written; 0 means the bitmap is
 * exhausted. A bitmap no writer marks meanwhile (vCPUs paused, or the
 * retired half of a pair) is
 * harvested by `harvestPagesQuiet`, with plain loads and stores.
 */
export function harvestPages(
  bitmap: usize,
  bits: u32,
  cursor: usize,
  out: usize,
  capacity: u32,
  basePage: u32,
): u32 {
  if (bits == 0) return 0;
  const words = ((bits - 1) >>> 6) + 1;
  let index = load<u32>(cursor);
  let n: u32 = 0;
  while (index < words) {
    if (capacity - n < WORD_SLOTS) {
      store<u32>(cursor, index);
      return n;
    }
    const at = bitmap + ((<usize>index) << 3);
    if (index + 4 < words && !v128.any_true(v128.or(v128.load(at), v128.load(at, 16)))) {
      index += 4;
      continue;
    }
    if (load<u64>(at) != 0) {
      // Writers may run: the locked exchange keeps a page marked meanwhile
      // from being lost. Bits past the last page (never set by a marker) are
      // cleared, not reported.
      const word = atomic.xchg<u64>(at, 0) & tailMask(index, bits);
      n = emitWord(word, basePage + (index << 6), out, n);
    }
    index++;
  }
  store<u32>(cursor, words);
  return n;
}

/**
 * Harvest and iterate in one pass over a bitmap that no writer marks
 * meanwhile: the retired bitmap of an epoch-swapped pair, or any bitmap while
 * the vCPUs are paused. From the word index stored as u32 at `cursor`, every
 * word is read with a plain load, cleared with a plain store and its pages
 * written to `out` (as u32 page numbers basePage + bit), with no test of the
 * word first: at a few percent dirty half the words are clean at random, and
 * a branch on each would be mispredicted half the time.
 *
 * The hot loop takes 16 whole words a step and checks the output's room once
 * a step (a step needs at most 1026 slots), so no capacity or tail test runs
 * per word. Words after the last whole step, the last partial word (bits past
 * `bits` are cleared, not reported) and batches of fewer than 1026 slots go
 * one word at a time. Stops when the next step or word might not fit, storing
 * the word index to resume at; `capacity` must be at least WORD_SLOTS.
 * Returns how many page numbers were written; 0 means the bitmap is exhausted. Slots of
 * `out` past the returned count may be overwritten.
 */
export function harvestPagesQuiet(
  bitmap: usize,
  bits: u32,
  cursor: usize,
  out: usize,
  capacity: u32,
  basePage: u32,
): u32 {
  if (bits == 0) return 0;
  const words = ((bits - 1) >>> 6) + 1;
  let index = load<u32>(cursor);
  if (index >= words) return 0;
  let n: u32 = 0;
  const whole = bits >>> 6;
  if (capacity >= BLOCK_SLOTS && index < whole) {
    const steps = (whole - index) / BLOCK_WORDS;
    let at = bitmap + ((<usize>index) << 3);
    const end = at + ((<usize>(steps * BLOCK_WORDS)) << 3);
    let base = basePage + (index << 6);
    let slot = out;
    const last = out + ((<usize>(capacity - BLOCK_SLOTS)) << 2);
    while (at < end && slot <= last) {
      slot = emitStep(at, base, slot);
      clearStep(at);
      at += BLOCK_WORDS << 3;
      base += BLOCK_WORDS << 6;
    }
    index = <u32>((at - bitmap) >>> 3);
    n = <u32>((slot - out) >>> 2);
    if (at < end) {
      // The batch is full: resume at the next step.
      store<u32>(cursor, index);
      return n;
    }
  }
  while (index < words) {
    if (capacity - n < WORD_SLOTS) {
      store<u32>(cursor, index);
      return n;
    }
    const at = bitmap + ((<usize>index) << 3);
    const word = load<u64>(at) & tailMask(index, bits);
    store<u64>(at, 0);
    n = emitWord(word, basePage + (index << 6), out, n);
    index++;
  }
  store<u32>(cursor, words);
  return n;
}

// Epoch control block of an epoch-swapped (double-buffered) bitmap pair, one
// per pair, u32 fields:
//
//   byte 0          4                 64          68          72
//   +--------------+------ ... ------+-----------+-----------+ ...
//   | epoch        | (the epoch's    | ack of    | ack of    |
//   | (harvester)  |  own line)      | writer 0  | writer 1  |
//   +--------------+-----------------+-----------+-----------+ ...
//
// epoch counts flips (modulo 2^31); bitmap (epoch & 1) of the pair is the
// active one, which writers mark. A writer's ack is the epoch it marks in, or
// EPOCH_IDLE while it marks nothing. To harvest, the one harvester stores
// epoch + 1 and waits until every ack is epoch + 1 or idle; then no writer
// can mark the retired bitmap (epoch & 1) until the next flip, and it reads
// and clears it with plain loads and stores. A writer enters by storing its
// ack and reading the epoch again (as in Dekker's algorithm, with wasm's
// sequentially consistent atomics): either it sees the flip, or the harvester
// sees its ack and waits for it. A writer re-reads the epoch between batches
// and leaves by storing EPOCH_IDLE; every change of an ack is notified, for
// the harvester waits on it with Atomics.wait.
@inline const EPOCH: usize = 0;
@inline const EPOCH_ACKS: usize = 64;
@inline const EPOCH_IDLE: u32 = 0xffffffff;

@inline
function ackAddress(control: usize, slot: u32): usize {
  return control + EPOCH_ACKS + ((<usize>slot) << 2);
}

/**
 * Writer `slot` enters the current epoch of the pair whose control block is
 * at `control`; returns the epoch, whose bitmap (epoch & 1) it must mark
 * until it calls `epochFollow` or `epochLeave`.
 */
export function epochEnter(control: usize, slot: u32): u32 {
  const ack = ackAddress(control, slot);
  let epoch = atomic.load<u32>(control + EPOCH);
  for (;;) {
    atomic.store<u32>(ack, epoch);
    const now = atomic.load<u32>(control + EPOCH);
    if (now == epoch) break;
    // A flip came between: the harvester may be waiting on the stale ack.
    epoch = now;
  }
  atomic.notify(ack);
  return epoch;
}

/**
 * Writer `slot`, in `epoch`, between two batches: follows a flip if one came
 * (acknowledging it) and returns the epoch to mark in now.
 */
export function epochFollow(control: usize, slot: u32, epoch: u32): u32 {
  const now = atomic.load<u32>(control + EPOCH);
  if (now != epoch) {
    const ack = ackAddress(control, slot);
    atomic.store<u32>(ack, now);
    atomic.notify(ack);
  }
  return now;
}

/** Writer `slot` leaves: it marks nothing until it enters again. */
export function epochLeave(control: usize, slot: u32): void {
  const ack = ackAddress(control, slot);
  atomic.store<u32>(ack, EPOCH_IDLE);
  atomic.notify(ack);
}

/**
 * Marks `count` pages first, first + step, ... in the active bitmap of the
 * pair (`bitmapA` for even epochs, `bitmapB` for odd) as writer `slot`,
 * entering, following the epoch every `batch` pages, and leaving. Returns how
 * many pages were clean in the bitmap they were marked in.
 */
export function markPagesInPair(
  control: usize,
  slot: u32,
  bitmapA: usize,
  bitmapB: usize,
  first: u32,
  count: u32,
  step: u32,
  batch: u32,
): u32 {
  let epoch = epochEnter(control, slot);
  let newly: u32 = 0;
  let page = first;
  let left = count;
  while (left > 0) {
    const bitmap = epoch & 1 ? bitmapB : bitmapA;
    const take = min<u32>(left, batch);
    for (let i: u32 = 0; i < take; i++) {
      newly += markPage(bitmap, page);
      page += step;
    }
    left -= take;
    epoch = epochFollow(control, slot, epoch);
  }
  epochLeave(control, slot);
  return newly;
}

/** Prepares an empty ring of `size` entries (a power of two) for memory slot `slot`. */
export function ringInit(ring: usize, size: u32, slot: u32): void {
  memory.fill(ring, 0, RING_ENTRIES + (<usize>size) * ENTRY_BYTES);
  store<u32>(ring + RING_SIZE, size);
  store<u32>(ring + RING_SLOT, slot);
}

/**
 * Logs a dirty page in the vCPU's ring. If the ring is full the page is marked
 * in `bitmap` instead and the overflow counted. Returns 1 if logged in the
 * ring, 0 if it fell back to the bitmap.
 */
export function ringPush(ring: usize, size: u32, page: u32, bitmap: usize): u32 {
  const head = load<u32>(ring + RING_HEAD);
  const tail = atomic.load<u32>(ring + RING_TAIL);
  if (head - tail >= size) {
    atomic.add<u32>(ring + RING_OVERFLOW, 1);
    markPage(bitmap, page);
    return 0;
  }
  const entry = ring + RING_ENTRIES + (<usize>((head & (size - 1)) * ENTRY_BYTES));
  store<u32>(entry, load<u32>(ring + RING_SLOT), 4);
  store<u64>(entry, <u64>page, 8);
  atomic.store<u32>(entry, GFN_F_DIRTY);
  // Publishing head last makes the entry visible to the harvester complete.
  atomic.store<u32>(ring + RING_HEAD, head + 1);
  return 1;
}

/**
 * Collects the ring's entries into `out` as page numbers (at most `capacity`),
 * flags them reset and frees them for the vCPU. Returns how many were taken.
 */
export function ringHarvest(ring: usize, size: u32, out: usize, capacity: u32): u32 {
  const head = atomic.load<u32>(ring + RING_HEAD);
  let tail = load<u32>(ring + RING_TAIL);
  const mask = size - 1;
  let n: u32 = 0;
  while (tail != head && n < capacity) {
    const entry = ring + RING_ENTRIES + (<usize>((tail & mask) * ENTRY_BYTES));
    store<u32>(out + ((<usize>n) << 2), <u32>load<u64>(entry, 8));
    store<u32>(entry, GFN_F_RESET);
    tail++;
    n++;
  }
  atomic.store<u32>(ring + RING_TAIL, tail);
  return n;
}

/**
 * Moves every entry of the ring into `bitmap` (deduplicating pages written
 * more than once) and frees them; an entry past `lastPage` is dropped. Returns
 * how many entries were drained.
 */
export function ringDrainToBitmap(ring: usize, size: u32, bitmap: usize, lastPage: u32): u32 {
  const head = atomic.load<u32>(ring + RING_HEAD);
  let tail = load<u32>(ring + RING_TAIL);
  const mask = size - 1;
  let n: u32 = 0;
  while (tail != head) {
    const entry = ring + RING_ENTRIES + (<usize>((tail & mask) * ENTRY_BYTES));
    const page = load<u64>(entry, 8);
    if (page <= <u64>lastPage) markPage(bitmap, <u32>page);
    store<u32>(entry, GFN_F_RESET);
    tail++;
    n++;
  }
  atomic.store<u32>(ring + RING_TAIL, tail);
  return n;
}

// The layouts drawn above, exported as globals for the TypeScript side: its
// wrapper (src/wasm/dirty.ts) reads them when it loads the module and refuses
// a module whose values differ from the ones it lays memory out with.
export const LAYOUT_RING_HEAD: u32 = <u32>RING_HEAD;
export const LAYOUT_RING_TAIL: u32 = <u32>RING_TAIL;
export const LAYOUT_RING_SIZE: u32 = <u32>RING_SIZE;
export const LAYOUT_RING_OVERFLOW: u32 = <u32>RING_OVERFLOW;
export const LAYOUT_RING_SLOT: u32 = <u32>RING_SLOT;
export const LAYOUT_RING_ENTRIES: u32 = <u32>RING_ENTRIES;
export const LAYOUT_ENTRY_BYTES: u32 = ENTRY_BYTES;
export const LAYOUT_WORD_SLOTS: u32 = WORD_SLOTS;
export const LAYOUT_EPOCH: u32 = <u32>EPOCH;
export const LAYOUT_EPOCH_ACKS: u32 = <u32>EPOCH_ACKS;
export const LAYOUT_EPOCH_IDLE: u32 = EPOCH_IDLE;
