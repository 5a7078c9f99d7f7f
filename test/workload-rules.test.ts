import { describe, expect, it } from "vitest";
import { DirtyBitmap } from "../src/memory/dirty-bitmap.js";
import { MemoryLayout } from "../src/memory/layout.js";
import {
  DESCRIPTOR_BYTES,
  Descriptor,
  WorkloadKernel,
  WorkloadKindCode,
} from "../src/wasm/workload.js";

/*
 * Where the workload kernel's writes land, on descriptors written by hand.
 * The kernel draws from splitmix64 (Steele, Lea and Flood, "Fast splittable
 * pseudorandom number generators", OOPSLA 2014: the state advances by the
 * golden gamma 0x9e3779b97f4a7c15 and each value is the state through the
 * mix64 finalizer) and scales the value's high 32 bits to [0, n) with
 * Lemire's multiply-shift, (r32 * n) >> 32. Both rules below are answered
 * without replaying that sequence: a hot-set probability of 1 sends every
 * write into the hot set, whatever the values; and splitmix64's finalizer is
 * a bijection, so the state whose next value is all ones can be worked out
 * by inverting it, and Lemire's scaling puts that value on the last page.
 */

const GOLDEN = 0x9e37_79b9_7f4a_7c15n;
const M1 = 0xbf58_476d_1ce4_e5b9n;
const M2 = 0x94d0_49bb_1331_11ebn;
const U64 = (1n << 64n) - 1n;

/** The inverse of `x ^ (x >>> shift)` on 64 bits. */
function unXorShift(y: bigint, shift: bigint): bigint {
  let x = y;
  for (let known = shift; known < 64n; known += shift) x = y ^ (x >> shift);
  return x & U64;
}

/** The inverse of an odd multiplier mod 2^64 (Newton's iteration: each step doubles the bits right). */
function inverseOdd(m: bigint): bigint {
  let inv = m;
  for (let i = 0; i < 6; i++) inv = (inv * (2n - m * inv)) & U64;
  return inv;
}

/** The splitmix64 finalizer (mix64 variant 13), forwards, to check its inverse below. */
function mix(z: bigint): bigint {
  let x = ((z ^ (z >> 30n)) * M1) & U64;
  x = ((x ^ (x >> 27n)) * M2) & U64;
  return x ^ (x >> 31n);
}

/** The input the finalizer maps to `out`. */
function unmix(out: bigint): bigint {
  let x = unXorShift(out, 31n);
  x = (x * inverseOdd(M2)) & U64;
  x = unXorShift(x, 27n);
  x = (x * inverseOdd(M1)) & U64;
  return unXorShift(x, 30n);
}

/** A vCPU's descriptor and its bitmap over `pages` 4 KiB pages (metadata mode, no ring). */
function vcpu(pages: number) {
  const layout = new MemoryLayout();
  const kernel = WorkloadKernel.on(layout.memory);
  const descriptor = layout.allocate("workload rules descriptor", DESCRIPTOR_BYTES);
  const bitmap = DirtyBitmap.allocate(layout, "workload rules bitmap", pages);
  const view = new DataView(layout.memory.buffer, descriptor.offset, DESCRIPTOR_BYTES);
  view.setUint32(Descriptor.lastPage, pages - 1, true);
  view.setUint32(Descriptor.pageShift, 12, true);
  view.setUint32(Descriptor.hotPages, 1, true);
  /** The dirty pages, from the bitmap's bytes (bit p % 8 of byte p / 8: little-endian u64 words). */
  const dirty = () => {
    const bytes = new Uint8Array(layout.memory.buffer, bitmap.region.offset, bitmap.words * 8);
    const out: number[] = [];
    for (let p = 0; p < pages; p++) if ((bytes[p >> 3] ?? 0) & (1 << (p & 7))) out.push(p);
    return out;
  };
  const run = (count: number) => kernel.run({ descriptor, bitmap }, count);
  return { view, dirty, run };
}

describe("splitmix64's finalizer, inverted (the tool the rules below are worked with)", () => {
  it("undoes the finalizer, and the finalizer is the published one", () => {
    // The mix64 of Java's SplittableRandom for the state after one step from seed 0.
    expect(mix(GOLDEN)).toBe(0xe220_a839_7b1d_cdafn);
    for (const z of [0n, 1n, GOLDEN, U64, 0x0123_4567_89ab_cdefn]) expect(unmix(mix(z))).toBe(z);
    expect(mix(unmix(U64))).toBe(U64);
  });
});

describe("uniform writes (assembly/workload.ts, the metadata-mode hot path)", () => {
  it("reach the last page: a value at the top of its range lands on page n - 1", () => {
    for (const pages of [2, 3, 1000, 4096 + 7]) {
      const { view, dirty, run } = vcpu(pages);
      view.setUint32(Descriptor.kind, WorkloadKindCode.uniform, true);
      // The state one golden step before the one whose value is 2^64 - 1.
      view.setBigUint64(Descriptor.rng, (unmix(U64) - GOLDEN) & U64, true);
      // (0xffffffff * n) >> 32 = n - 1 for every n from 1 to 2^32.
      expect(run(1), `${pages} pages`).toBe(1);
      expect(dirty(), `${pages} pages`).toEqual([pages - 1]);
    }
  });

  it("a value at the bottom of its range lands on page 0", () => {
    const { view, dirty, run } = vcpu(1000);
    view.setUint32(Descriptor.kind, WorkloadKindCode.uniform, true);
    view.setBigUint64(Descriptor.rng, (unmix(0n) - GOLDEN) & U64, true);
    run(1);
    expect(dirty()).toEqual([0]);
  });
});

describe("hot-set writes", () => {
  it("with probability 1, every write lands in the hot set at its base page", () => {
    const pages = 1024;
    const hotBase = 1000;
    const hotPages = 8;
    for (const seed of [0n, 1n, 0xdead_beefn, GOLDEN]) {
      const { view, dirty, run } = vcpu(pages);
      view.setUint32(Descriptor.kind, WorkloadKindCode.hotset, true);
      view.setUint32(Descriptor.hotBase, hotBase, true);
      view.setUint32(Descriptor.hotPages, hotPages, true);
      // p * 2^32 with p = 1: every value's low 32 bits are below it.
      view.setBigUint64(Descriptor.hotThreshold, 1n << 32n, true);
      view.setBigUint64(Descriptor.rng, seed, true);
      run(200);
      const got = dirty();
      expect(got.length, `seed ${seed}`).toBeGreaterThan(0);
      for (const page of got) {
        expect(page, `seed ${seed}`).toBeGreaterThanOrEqual(hotBase);
        expect(page, `seed ${seed}`).toBeLessThan(hotBase + hotPages);
      }
    }
  });

  it("the hot set's last page is reached too: the top value lands on hotBase + hotPages - 1", () => {
    const { view, dirty, run } = vcpu(1024);
    view.setUint32(Descriptor.kind, WorkloadKindCode.hotset, true);
    view.setUint32(Descriptor.hotBase, 1000, true);
    view.setUint32(Descriptor.hotPages, 8, true);
    view.setBigUint64(Descriptor.hotThreshold, 1n << 32n, true);
    view.setBigUint64(Descriptor.rng, (unmix(U64) - GOLDEN) & U64, true);
    run(1);
    expect(dirty()).toEqual([1007]);
  });
});
