// RSS Toeplitz hash (Microsoft's Receive Side Scaling verification suite),
// byte-table form.
//
// The bit loop: for every input bit from the left, if it is 1, XOR the
// leftmost 32 bits of the key into the result, then shift the key left by
// one. The contribution of input byte i depends only on its value and on key
// bits [8i, 8i + 39], so it is precomputed: one 256-entry table of u32 per
// input byte position. A hash is then one load and XOR per input byte.
//
//   table (in a region the caller owns; the kernel keeps no state):
//   +------------------------+------------------------+-----+-------------------------+
//   | byte 0: 256 x u32      | byte 1: 256 x u32      | ... | byte 35: 256 x u32      |
//   +------------------------+------------------------+-----+-------------------------+
//   entry (i, v) at table + (i * 256 + v) * 4;  36 bytes = IPv6 + ports, the longest input

/** Longest input: IPv6 source and destination (32) + two ports (4). */
@inline const MAX_INPUT: u32 = 36;

/** Bytes of a table: MAX_INPUT positions of 256 u32. */
@inline const TABLE_BYTES: u32 = MAX_INPUT * 256 * 4;

/**
 * Builds the byte tables for a key of `keyLength` bytes at `key` (key bytes
 * past its end count as zero) into `table` (TABLE_BYTES bytes).
 */
export function buildTable(key: usize, keyLength: u32, table: usize): void {
  for (let i: u32 = 0; i < MAX_INPUT; i++) {
    // 40-bit window of the key starting at bit 8i.
    let window: u64 = 0;
    for (let j: u32 = 0; j < 5; j++) {
      const at = i + j;
      const byte: u64 = at < keyLength ? <u64>load<u8>(key + at) : 0;
      window = (window << 8) | byte;
    }
    for (let v: u32 = 0; v < 256; v++) {
      let hash: u32 = 0;
      for (let b: u32 = 0; b < 8; b++) {
        if ((v & (0x80 >> b)) != 0) hash ^= <u32>(window >> (8 - b));
      }
      store<u32>(table + ((<usize>i * 256 + v) << 2), hash);
    }
  }
}

/** Hashes `length` (at most 36) input bytes at `input` with a built table. */
export function hash(table: usize, input: usize, length: u32): u32 {
  let h: u32 = 0;
  for (let i: u32 = 0; i < length; i++) {
    h ^= load<u32>(table + ((<usize>i * 256 + <usize>load<u8>(input + i)) << 2));
  }
  return h;
}

/**
 * Hashes `count` inputs of `length` bytes spaced `stride` bytes apart,
 * writing each hash as a u32 to `out`. Returns the XOR of all hashes.
 */
export function hashBatch(
  table: usize,
  inputs: usize,
  stride: u32,
  length: u32,
  count: u32,
  out: usize,
): u32 {
  let all: u32 = 0;
  let at = inputs;
  for (let n: u32 = 0; n < count; n++, at += stride) {
    let h: u32 = 0;
    for (let i: u32 = 0; i < length; i++) {
      h ^= load<u32>(table + ((<usize>i * 256 + <usize>load<u8>(at + i)) << 2));
    }
    store<u32>(out + (<usize>n << 2), h);
    all ^= h;
  }
  return all;
}

// The table layout drawn above, exported as globals for the TypeScript side:
// its wrapper (src/wasm/rss.ts) reads them when it loads the module and
// refuses a module whose values differ from the ones it lays tables out with.
export const LAYOUT_MAX_INPUT: u32 = MAX_INPUT;
export const LAYOUT_TABLE_BYTES: u32 = TABLE_BYTES;
