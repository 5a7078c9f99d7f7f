import { describe, expect, it } from "vitest";
import { SeededRandom } from "../src/paging/random.js";

// The published generators, written as their authors give them: mulberry32
// (Tommy Ettinger, 2017; the form in bryc's public-domain "PRNGs.md") and
// MurmurHash3's 32-bit finalizer fmix32 (Austin Appleby, SMHasher's
// MurmurHash3.cpp), which mixes the seed offset by the golden ratio as
// splitmix32 does.
function fmix32(h: number): number {
  let x = h >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

function mulberry32(a: number): () => number {
  let state = a;
  return () => {
    state |= 0;
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

describe("the guest model's seeded generator (splitmix32 seeding mulberry32)", () => {
  it("draws mulberry32's stream from the fmix32 of the seed plus the golden ratio", () => {
    for (const seed of [0, 1, 42, 0x7fff_ffff, 0xffff_ffff]) {
      const ours = new SeededRandom(seed);
      const reference = mulberry32(fmix32((seed >>> 0) + 0x9e3779b9));
      for (let i = 0; i < 64; i++)
        expect(ours.next32(), `seed ${seed}, draw ${i}`).toBe(reference());
    }
  });

  it("gives each seed its own stream, and the same seed the same one", () => {
    const draws = (seed: number) => {
      const r = new SeededRandom(seed);
      return Array.from({ length: 8 }, () => r.next32());
    };
    expect(draws(1)).toEqual(draws(1));
    expect(draws(1)).not.toEqual(draws(2));
    expect(new Set([0, 1, 2, 3].map((s) => draws(s)[0])).size).toBe(4);
  });

  it("spreads below(n) over every value of [0, n) evenly", () => {
    const r = new SeededRandom(7);
    const n = 10;
    const draws = 20_000;
    const counts = new Array<number>(n).fill(0);
    for (let i = 0; i < draws; i++) {
      const v = r.below(n);
      expect(Number.isInteger(v) && v >= 0 && v < n, `draw ${v}`).toBe(true);
      counts[v] = (counts[v] ?? 0) + 1;
    }
    // Pearson's chi-squared, 9 degrees of freedom: 27.9 is its 0.1 % tail.
    const expected = draws / n;
    const chi2 = counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0);
    expect(chi2).toBeLessThan(27.9);
  });

  it("keeps next() in [0, 1) as next32 / 2^32", () => {
    const a = new SeededRandom(3);
    const b = new SeededRandom(3);
    for (let i = 0; i < 100; i++) {
      const x = a.next();
      expect(x).toBe(b.next32() / 2 ** 32);
      expect(x >= 0 && x < 1).toBe(true);
    }
  });
});
