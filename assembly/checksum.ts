// Internet checksum (RFC 1071): the one's-complement sum of 16-bit words.
//
// WebAssembly has no carry flag, so the fast path never adds with carry:
// it loads 16 bytes at a time, widens each pair of 16-bit words into a 32-bit
// lane (i32x4.extadd_pairwise_i16x8_u), adds into four independent 32-bit
// accumulators, and folds the lanes into a 64-bit total before any lane can
// overflow. The sum is taken in little-endian order and byte-swapped once at
// the end: RFC 1071 section 2(B), "byte order independence".
//
// Every function returns a *partial sum*: the 16-bit folded one's-complement
// sum in network byte order, not complemented. The checksum field is its
// complement. A seed (another partial sum) lets sums be chained: pseudo-header,
// then transport header, then payload.
//
//   one 64-byte step of the fast path
//   +--------+--------+--------+--------+
//   | v128 a | v128 b | v128 c | v128 d |   four loads, four accumulators
//   +--------+--------+--------+--------+
//     8 x u16 -> 4 x u32 (pairwise widen), lane += ; fold every FOLD_STEPS

// Steps of 64 bytes between folds. Each lane gains at most 2 * 0xFFFF per
// step, so 4096 steps reach 536,862,720 per lane and four lanes summed stay
// under 2^32 (2,147,450,880).
@inline const FOLD_STEPS: u32 = 4096;

/** Folds a 64-bit sum of 16-bit words to 16 bits with end-around carries. */
@inline export function fold64(sum: u64): u32 {
  // x + rotr(x, 32) holds hi + lo + their carry in its high half: one
  // end-around-carry add in three operations; then the same for 32 to 16.
  const s = <u32>((sum + rotr<u64>(sum, 32)) >> 32);
  return (s + rotr<u32>(s, 16)) >> 16;
}

/** Swaps the two bytes of a 16-bit value. */
@inline export function swap16(x: u32): u32 {
  return ((x & 0xff) << 8) | ((x >> 8) & 0xff);
}

/** Adds the four signed i32 lanes of a v128. */
@inline function signedLanes(v: v128): i64 {
  return (
    <i64>i32x4.extract_lane(v, 0) +
    <i64>i32x4.extract_lane(v, 1) +
    <i64>i32x4.extract_lane(v, 2) +
    <i64>i32x4.extract_lane(v, 3)
  );
}

/** Little-endian sum of the bytes that remain after the SIMD steps (< 64). */
@inline function tailSum(at: usize, end: usize): u64 {
  let acc: u64 = 0;
  for (; at + 8 <= end; at += 8) {
    acc += <u64>load<u32>(at) + <u64>load<u32>(at, 4);
  }
  for (; at + 2 <= end; at += 2) acc += <u64>load<u16>(at);
  // An odd last byte is the high byte of a zero-padded word in network
  // order, which is the low byte in little-endian order.
  if (at < end) acc += <u64>load<u8>(at);
  return acc;
}

/** Little-endian partial sum of [ptr, ptr + length), unfolded. */
function sumLittleEndian(ptr: usize, length: usize): u64 {
  // The same signed widening as copyAndSumRaw: one pmaddwd per vector
  // against ones held in a register, each word's top bit flipped first and
  // 2^18 per whole vector added back at the end.
  const bias = i16x8.splat(-32768);
  const ones = i16x8.splat(1);
  let signed: i64 = 0;
  let at = ptr;
  const end = ptr + length;
  while (at + 64 <= end) {
    let a = i32x4.splat(0);
    let b = i32x4.splat(0);
    let c = i32x4.splat(0);
    let d = i32x4.splat(0);
    const stop = min<usize>(at + ((end - at) & ~(<usize>63)), at + <usize>FOLD_STEPS * 64);
    for (; at < stop; at += 64) {
      a = i32x4.add(a, i32x4.dot_i16x8_s(v128.xor(v128.load(at), bias), ones));
      b = i32x4.add(b, i32x4.dot_i16x8_s(v128.xor(v128.load(at, 16), bias), ones));
      c = i32x4.add(c, i32x4.dot_i16x8_s(v128.xor(v128.load(at, 32), bias), ones));
      d = i32x4.add(d, i32x4.dot_i16x8_s(v128.xor(v128.load(at, 48), bias), ones));
    }
    signed += signedLanes(i32x4.add(i32x4.add(a, b), i32x4.add(c, d)));
  }
  const blocks = <i64>((at - ptr) >> 6);
  return <u64>(signed + (blocks << 20)) + tailSum(at, end);
}

/**
 * RFC 1071 partial sum of `length` bytes at `ptr` (any alignment, any
 * length), added to `seed` (a partial sum in network order).
 * Returns the 16-bit partial sum in network order (not complemented).
 */
export function onesSum(ptr: usize, length: u32, seed: u32): u32 {
  const sum = swap16(fold64(sumLittleEndian(ptr, <usize>length)));
  return fold64(<u64>sum + <u64>(seed & 0xffff));
}

/**
 * Copies `length` bytes from `src` to `dst` while summing them: one pass over
 * the payload instead of a copy then a sum. Returns the partial sum of the
 * bytes (network order) added to `seed`. The ranges must not overlap.
 */
export function copyAndSum(dst: usize, src: usize, length: u32, seed: u32): u32 {
  const sum = swap16(fold64(copyAndSumRaw(dst, src, length)));
  return fold64(<u64>sum + <u64>(seed & 0xffff));
}

/**
 * The body of {@link copyAndSum}, inlined where it is used: copies and returns
 * the little-endian sum unfolded, so that a caller folds once.
 */
@inline export function copyAndSumRaw(dst: usize, src: usize, length: u32): u64 {
  let at = src;
  const end = src + <usize>length;
  const delta = dst - src;
  // Signed pairwise widening (one pmaddwd on x64: a dot product with ones)
  // after flipping each word's top bit: a word w reads as w - 32768, so each
  // 32-bit lane gains w1 + w2 - 65536. Every whole 16-byte vector adds 4 lanes' worth of
  // 65536 back (2^18) at the end: (length >> 4) << 18.
  const bias = i16x8.splat(-32768);
  // pmaddwd against a register: V8's extadd_pairwise lowering takes its
  // constant from memory through a scratch register on every use.
  const ones = i16x8.splat(1);
  let a = i32x4.splat(0);
  let b = i32x4.splat(0);
  let c = i32x4.splat(0);
  let d = i32x4.splat(0);
  let signed: i64 = 0;
  while (at + 64 <= end) {
    // One bound per block instead of two tests per step.
    const stop = min<usize>(at + ((end - at) & ~(<usize>63)), at + <usize>FOLD_STEPS * 64);
    // The target pointer moves with the source: one address per store.
    let to = at + delta;
    for (; at < stop; at += 64, to += 64) {
      const va = v128.load(at);
      const vb = v128.load(at, 16);
      const vc = v128.load(at, 32);
      const vd = v128.load(at, 48);
      v128.store(to, va);
      v128.store(to, vb, 16);
      v128.store(to, vc, 32);
      v128.store(to, vd, 48);
      a = i32x4.add(a, i32x4.dot_i16x8_s(v128.xor(va, bias), ones));
      b = i32x4.add(b, i32x4.dot_i16x8_s(v128.xor(vb, bias), ones));
      c = i32x4.add(c, i32x4.dot_i16x8_s(v128.xor(vc, bias), ones));
      d = i32x4.add(d, i32x4.dot_i16x8_s(v128.xor(vd, bias), ones));
    }
    if (at + 64 <= end) {
      // Lanes are within +-4096 * 65536 = 2^28: fold before another block.
      signed += signedLanes(i32x4.add(i32x4.add(a, b), i32x4.add(c, d)));
      a = i32x4.splat(0);
      b = i32x4.splat(0);
      c = i32x4.splat(0);
      d = i32x4.splat(0);
    }
  }
  // The rest (< 64 bytes) straight-line, into the same accumulators (one
  // more add each stays far inside an i32): memory.copy is an out-of-line
  // call in V8, too dear for every segment's last few bytes.
  if (at + 32 <= end) {
    const v0 = v128.load(at);
    const v1 = v128.load(at, 16);
    v128.store(at + delta, v0);
    v128.store(at + delta, v1, 16);
    a = i32x4.add(a, i32x4.dot_i16x8_s(v128.xor(v0, bias), ones));
    b = i32x4.add(b, i32x4.dot_i16x8_s(v128.xor(v1, bias), ones));
    at += 32;
  }
  if (at + 16 <= end) {
    const v = v128.load(at);
    v128.store(at + delta, v);
    c = i32x4.add(c, i32x4.dot_i16x8_s(v128.xor(v, bias), ones));
    at += 16;
  }
  signed += signedLanes(i32x4.add(i32x4.add(a, b), i32x4.add(c, d)));
  let total = <u64>(signed + (<i64>(length >> 4) << 18));
  if (at + 8 <= end) {
    const w = load<u64>(at);
    store<u64>(at + delta, w);
    total += (w & 0xffffffff) + (w >> 32);
    at += 8;
  }
  if (at + 4 <= end) {
    const w = load<u32>(at);
    store<u32>(at + delta, w);
    total += <u64>(w & 0xffff) + <u64>(w >> 16);
    at += 4;
  }
  if (at + 2 <= end) {
    const h = load<u16>(at);
    store<u16>(at + delta, h);
    total += <u64>h;
    at += 2;
  }
  if (at < end) {
    const byte = load<u8>(at);
    store<u8>(at + delta, byte);
    total += <u64>byte;
  }
  return total;
}

/**
 * Copies a short range (a header) inline: 16 bytes at a time, then 8, 4, 2
 * and 1, never writing past `dst + length`. Faster than memory.copy, an
 * out-of-line call in V8, for the tens of bytes of a header.
 */
@inline export function copyShort(dst: usize, src: usize, length: u32): void {
  const end = src + <usize>length;
  const delta = dst - src;
  let at = src;
  for (; at + 16 <= end; at += 16) v128.store(at + delta, v128.load(at));
  if (at + 8 <= end) {
    store<u64>(at + delta, load<u64>(at));
    at += 8;
  }
  if (at + 4 <= end) {
    store<u32>(at + delta, load<u32>(at));
    at += 4;
  }
  if (at + 2 <= end) {
    store<u16>(at + delta, load<u16>(at));
    at += 2;
  }
  if (at < end) store<u8>(at + delta, load<u8>(at));
}

/**
 * The naive peer: one big-endian 16-bit word at a time, as RFC 1071's
 * reference C does. Same result as {@link onesSum}; kept for benchmarks.
 */
export function naiveSum(ptr: usize, length: u32, seed: u32): u32 {
  let acc: u64 = <u64>(seed & 0xffff);
  const end = ptr + <usize>length;
  let at = ptr;
  for (; at + 2 <= end; at += 2) {
    acc += <u64>((<u32>load<u8>(at) << 8) | <u32>load<u8>(at, 1));
  }
  if (at < end) acc += <u64>(<u32>load<u8>(at) << 8);
  return fold64(acc);
}

/**
 * Computes and stores the IPv4 header checksum of the header at `ptr`
 * (`headerBytes` = IHL * 4). Returns the checksum written.
 */
export function fillIpv4HeaderChecksum(ptr: usize, headerBytes: u32): u32 {
  store<u16>(ptr, 0, 10);
  const checksum = ~onesSum(ptr, headerBytes, 0) & 0xffff;
  store<u16>(ptr, <u16>swap16(checksum), 10);
  return checksum;
}

/**
 * Incremental checksum update, RFC 1624 equation 3: HC' = ~(~HC + ~m + m'),
 * where a 16-bit field changed from `m` to `m2`. Erratum 4782: when the field
 * did not change, the checksum does not change either (eqn 3 would turn a
 * checksum of 0xFFFF into 0x0000).
 */
export function incrementalUpdate(checksum: u32, m: u32, m2: u32): u32 {
  if ((m & 0xffff) == (m2 & 0xffff)) return checksum & 0xffff;
  const sum = <u64>(~checksum & 0xffff) + <u64>(~m & 0xffff) + <u64>(m2 & 0xffff);
  return ~fold64(sum) & 0xffff;
}
