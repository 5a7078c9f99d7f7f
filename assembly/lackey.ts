// Valgrind lackey trace lines (lackey/lk_main.c, --trace-mem=yes) to trace
// records: the hot path of reading a trace. Lackey prints one access a line:
//
//   "I  0400d7d4,8\n"    instruction fetch      -> 1 record, execute | user
//   " L 7ff000398,8\n"   load                   -> 1 record, user
//   " S 7ff000398,8\n"   store                  -> 1 record, write | user
//   " M 0421c7f0,4\n"    modify (load + store)  -> 2 records, user then write | user
//
// (a CR before the LF is allowed). Any other line (Valgrind's "==pid=="
// messages, a malformed line, a "0x" prefix, an address past the paging
// levels) stops the scan at its first byte: the caller's general parser says
// what it is, and resumes the scan after it. A line the text ends inside
// stops the scan too: the caller carries it into the next chunk.
//
// Record (8 bytes, the walk kernel's trace record, little-endian):
//
//   bit 63              32 31              12 11        0
//      +------------------+------------------+-----------+
//      | address 63:32    | address 31:12    | kind      |   kind: ACCESS_* bits
//      +------------------+------------------+-----------+
//
// State (16 bytes, u32, written by every scan):
//
//   byte 0 +----------+----------+----------+----------+
//          | position | records  | lines    | stop     |
//       16 +----------+----------+----------+----------+
//
// position: where the scan stopped (a byte offset from `text`, at a line's
// first byte); records: records written; lines: lines parsed; stop: why
// (STOP_END, STOP_OTHER_LINE, STOP_FULL).

@inline const S_POSITION: usize = 0;
@inline const S_RECORDS: usize = 4;
@inline const S_LINES: usize = 8;
@inline const S_STOP: usize = 12;
@inline const STATE_BYTES: u32 = 16;
@inline const RECORD_BYTES: u32 = 8;

/** The text ended (inside a line, or exactly at a line's end). */
@inline const STOP_END: u32 = 0;
/** A line of another shape starts at `position`. */
@inline const STOP_OTHER_LINE: u32 = 1;
/** The records region has no room for the next line's records (a modify needs 2). */
@inline const STOP_FULL: u32 = 2;

// Access kinds: src/paging/mmu.ts ACCESS.
@inline const ACCESS_WRITE: u32 = 1;
@inline const ACCESS_EXECUTE: u32 = 2;
@inline const ACCESS_USER: u32 = 4;

/** Most hex digits of an address (lackey prints at most 16; 15 keeps it below 2^60). */
@inline const MAX_HEX_DIGITS: u32 = 15;

@inline const CH_SPACE: u32 = 32;
@inline const CH_COMMA: u32 = 44;
@inline const CH_LF: u32 = 10;
@inline const CH_CR: u32 = 13;
@inline const CH_I: u32 = 73;
@inline const CH_L: u32 = 76;
@inline const CH_S: u32 = 83;
@inline const CH_M: u32 = 77;
/** A kind that marks a modify (two records). */
@inline const KIND_MODIFY: u32 = 0xffffffff;
/** A line that is not an access of the usual shape. */
@inline const KIND_NONE: u32 = 0xfffffffe;

/** The value of hex digit `c`, or 16 when it is none. */
@inline function hexDigit(c: u32): u32 {
  const d = c - 48;
  if (d < 10) return d;
  const l = (c | 0x20) - 97; // lower case
  return l < 6 ? l + 10 : 16;
}

/**
 * Scans the lines of `text[from, to)` (byte offsets from `text`) into at
 * most `capacity` records at `records`, for a user address space of
 * `addressBits` bits (47 with 4-level paging, 56 with 5). Writes the state
 * block at `state` and returns the stop reason.
 */
export function scan(
  text: usize,
  from: u32,
  to: u32,
  records: usize,
  capacity: u32,
  addressBits: u32,
  state: usize,
): u32 {
  const limit: u64 = (<u64>1) << addressBits;
  let i = from;
  let count: u32 = 0;
  let lines: u32 = 0;
  let stop = STOP_END;
  while (i < to) {
    if (count + 2 > capacity) {
      stop = STOP_FULL;
      break;
    }
    // Fewer than 3 bytes left: the caller tells a short line (another
    // shape) from one cut by the text's end (carried) by looking for its LF.
    let kind = KIND_NONE;
    if (i + 3 <= to) {
      const c0 = <u32>load<u8>(text + i);
      const c1 = <u32>load<u8>(text + i + 1);
      const c2 = <u32>load<u8>(text + i + 2);
      if (c0 == CH_I) {
        if (c1 == CH_SPACE && c2 == CH_SPACE) kind = ACCESS_EXECUTE | ACCESS_USER;
      } else if (c0 == CH_SPACE && c2 == CH_SPACE) {
        if (c1 == CH_L) kind = ACCESS_USER;
        else if (c1 == CH_S) kind = ACCESS_WRITE | ACCESS_USER;
        else if (c1 == CH_M) kind = KIND_MODIFY;
      }
    }
    if (kind == KIND_NONE) {
      stop = STOP_OTHER_LINE;
      break;
    }
    let j = i + 3;
    let address: u64 = 0;
    const first = j;
    while (j < to) {
      const h = hexDigit(<u32>load<u8>(text + j));
      if (h > 15) break;
      if (j - first < MAX_HEX_DIGITS) address = (address << 4) | <u64>h;
      j++;
    }
    if (j == to) break; // cut inside the address
    if (j == first || j - first > MAX_HEX_DIGITS || address >= limit) {
      stop = STOP_OTHER_LINE;
      break;
    }
    if (<u32>load<u8>(text + j) != CH_COMMA) {
      stop = STOP_OTHER_LINE;
      break;
    }
    j++;
    const digits = j;
    // The size only has to be a positive decimal: any digit but 0 makes it so.
    let nonZero: u32 = 0;
    while (j < to) {
      const d = <u32>load<u8>(text + j) - 48;
      if (d > 9) break;
      nonZero |= d;
      j++;
    }
    if (j < to && <u32>load<u8>(text + j) == CH_CR) j++;
    if (j >= to) break; // cut before the line's end
    if (j == digits || nonZero == 0 || <u32>load<u8>(text + j) != CH_LF) {
      stop = STOP_OTHER_LINE;
      break;
    }
    const page = <u32>address & 0xfffff000;
    const high = <u32>(address >> 32);
    const out = records + (<usize>count << 3);
    if (kind == KIND_MODIFY) {
      store<u32>(out, page | ACCESS_USER);
      store<u32>(out, high, 4);
      store<u32>(out, page | ACCESS_WRITE | ACCESS_USER, 8);
      store<u32>(out, high, 12);
      count += 2;
    } else {
      store<u32>(out, page | kind);
      store<u32>(out, high, 4);
      count++;
    }
    lines++;
    i = j + 1;
  }
  store<u32>(state + S_POSITION, i);
  store<u32>(state + S_RECORDS, count);
  store<u32>(state + S_LINES, lines);
  store<u32>(state + S_STOP, stop);
  return stop;
}

export const LAYOUT_STATE_POSITION: u32 = <u32>S_POSITION;
export const LAYOUT_STATE_RECORDS: u32 = <u32>S_RECORDS;
export const LAYOUT_STATE_LINES: u32 = <u32>S_LINES;
export const LAYOUT_STATE_STOP: u32 = <u32>S_STOP;
export const LAYOUT_STATE_BYTES: u32 = STATE_BYTES;
export const LAYOUT_RECORD_BYTES: u32 = RECORD_BYTES;
export const LAYOUT_STOP_END: u32 = STOP_END;
export const LAYOUT_STOP_OTHER_LINE: u32 = STOP_OTHER_LINE;
export const LAYOUT_STOP_FULL: u32 = STOP_FULL;
export const LAYOUT_ACCESS_WRITE: u32 = ACCESS_WRITE;
export const LAYOUT_ACCESS_EXECUTE: u32 = ACCESS_EXECUTE;
export const LAYOUT_ACCESS_USER: u32 = ACCESS_USER;
export const LAYOUT_MAX_HEX_DIGITS: u32 = MAX_HEX_DIGITS;
