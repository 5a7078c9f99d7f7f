// The zero-page test shared by the page stream and multifd modules.

/** Returns true if `len` bytes at `ptr` are all zero. */
@inline
export function isZeroAt(ptr: usize, len: usize): bool {
  let i: usize = 0;
  // 64 bytes per step: four 16-byte loads OR-ed, one test. Most non-zero
  // pages fail in the first step, so the early exit is what makes it cheap.
  for (; i + 64 <= len; i += 64) {
    const a = v128.or(v128.load(ptr + i), v128.load(ptr + i, 16));
    const b = v128.or(v128.load(ptr + i, 32), v128.load(ptr + i, 48));
    if (v128.any_true(v128.or(a, b))) return false;
  }
  for (; i + 8 <= len; i += 8) if (load<u64>(ptr + i) != 0) return false;
  for (; i < len; i++) if (load<u8>(ptr + i) != 0) return false;
  return true;
}
