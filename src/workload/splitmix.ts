/** splitmix64's increment (the golden ratio in 64 bits). */
export const GOLDEN = 0x9e3779b97f4a7c15n;
const MASK = (1n << 64n) - 1n;

/** splitmix64's output function (Steele, Lea and Flood 2014), on 64-bit BigInts. */
export function mix64(z: bigint): bigint {
  let x = z & MASK;
  x = ((x ^ (x >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK;
  x = ((x ^ (x >> 27n)) * 0x94d049bb133111ebn) & MASK;
  return x ^ (x >> 31n);
}

/** Advances a splitmix64 state by one step. */
export function step64(state: bigint): bigint {
  return (state + GOLDEN) & MASK;
}

/**
 * The starting rng state of vCPU `vcpu` for a run seeded with `seed`: each
 * vCPU gets its own well-mixed stream, and the same seed always gives the same.
 */
export function vcpuState(seed: number, vcpu: number): bigint {
  return mix64((BigInt.asUintN(64, BigInt(seed)) + GOLDEN * BigInt(vcpu + 1)) & MASK);
}
