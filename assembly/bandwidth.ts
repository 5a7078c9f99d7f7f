// Memory-bandwidth bounds: the fastest a kernel that must touch the same bytes
// could possibly go. Benchmarks run these beside the kernels they bound.

/**
 * Reads `length` bytes at `ptr` once (16 bytes per load, four accumulators)
 * and returns an OR of what it read folded to 32 bits, so the loads cannot be
 * optimized away.
 */
export function readSweep(ptr: usize, length: u32): u32 {
  let a = i64x2.splat(0);
  let b = i64x2.splat(0);
  let c = i64x2.splat(0);
  let d = i64x2.splat(0);
  const end = ptr + <usize>length;
  let at = ptr;
  for (; at + 64 <= end; at += 64) {
    a = v128.or(a, v128.load(at));
    b = v128.or(b, v128.load(at, 16));
    c = v128.or(c, v128.load(at, 32));
    d = v128.or(d, v128.load(at, 48));
  }
  let tail: u64 = 0;
  for (; at < end; at++) tail |= <u64>load<u8>(at);
  const all = v128.or(v128.or(a, b), v128.or(c, d));
  const folded = i64x2.extract_lane(all, 0) | i64x2.extract_lane(all, 1) | tail;
  return <u32>(folded ^ (folded >>> 32));
}

/** Copies `length` bytes from `src` to `dst` (memory.copy). */
export function copyBytes(dst: usize, src: usize, length: u32): void {
  memory.copy(dst, src, <usize>length);
}

/** Fills `length` bytes at `dst` with `value` (memory.fill). */
export function fillBytes(dst: usize, value: u32, length: u32): void {
  memory.fill(dst, <u8>value, <usize>length);
}
