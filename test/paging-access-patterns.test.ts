import { describe, expect, it } from "vitest";
import { PagingError } from "../src/paging/errors.js";
import { ACCESS } from "../src/paging/mmu.js";
import {
  AccessGenerator,
  type AccessPattern,
  checkPattern,
  HEAP_BASE,
} from "../src/paging/workload.js";

function pattern(overrides: Partial<AccessPattern>): AccessPattern {
  return {
    kind: "sequential",
    workingSetBytes: 64 * 4096,
    strideBytes: 4096,
    writeFraction: 0,
    ...overrides,
  };
}

/** `count` records of a generator: virtual address and access kind. */
function records(p: AccessPattern, count: number, seed = 1) {
  const out = new Uint32Array(2 * count + 4);
  new AccessGenerator(p, seed).fill(out, 2, count);
  expect([out[0], out[1]], "the words before `at` are left alone").toEqual([0, 0]);
  expect([out[2 * count + 2], out[2 * count + 3]], "and the words after the last").toEqual([0, 0]);
  return Array.from({ length: count }, (_, i) => {
    const low = out[2 + 2 * i] ?? 0;
    const high = out[3 + 2 * i] ?? 0;
    return { va: high * 2 ** 32 + (low & ~0xfff) - HEAP_BASE, kind: low & 0xfff };
  });
}

describe("synthetic access patterns", () => {
  it("sequential: 64-byte lines one after another, wrapping at the working set's end", () => {
    const p = pattern({ workingSetBytes: 2 * 4096 });
    const r = records(p, 130);
    // 64 lines per page: pages 0 and 1, then page 0 again.
    const pages = r.map((x) => x.va / 4096);
    expect(pages.slice(0, 64)).toEqual(new Array(64).fill(0));
    expect(pages.slice(64, 128)).toEqual(new Array(64).fill(1));
    expect(pages.slice(128)).toEqual([0, 0]);
    expect(new Set(r.map((x) => x.kind))).toEqual(new Set([ACCESS.user]));
  });

  it("strided: one access every stride bytes, wrapping", () => {
    const r = records(
      pattern({ kind: "strided", strideBytes: 3 * 4096, workingSetBytes: 8 * 4096 }),
      6,
    );
    expect(r.map((x) => x.va / 4096)).toEqual([0, 3, 6, 1, 4, 7]);
  });

  it("pointer-chase: every page of the working set once per cycle, in a scattered order", () => {
    const pages = 100;
    const r = records(pattern({ kind: "pointer-chase", workingSetBytes: pages * 4096 }), 2 * pages);
    const first = r.slice(0, pages).map((x) => x.va / 4096);
    expect(new Set(first).size).toBe(pages);
    expect(Math.min(...first)).toBe(0);
    expect(Math.max(...first)).toBe(pages - 1);
    expect(r.slice(pages).map((x) => x.va / 4096)).toEqual(first);
    const ascending = first.filter((p, i) => i > 0 && p === (first[i - 1] ?? -2) + 1).length;
    expect(ascending, "not a sequential sweep").toBeLessThan(pages / 4);
  });

  it("random: uniform pages of the working set, page-aligned, the same for the same seed", () => {
    const pages = 16;
    const p = pattern({ kind: "random", workingSetBytes: pages * 4096 });
    const r = records(p, 16_000, 9);
    const counts = new Array<number>(pages).fill(0);
    expect(r.every((x) => x.va % 4096 === 0 && x.va >= 0 && x.va < pages * 4096)).toBe(true);
    for (const x of r) counts[x.va / 4096] = (counts[x.va / 4096] ?? 0) + 1;
    // Pearson's chi-squared, 15 degrees of freedom: 37.7 is its 0.1 % tail.
    const expected = r.length / pages;
    expect(counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0)).toBeLessThan(37.7);
    expect(records(p, 50, 9)).toEqual(r.slice(0, 50));
    expect(records(p, 50, 10)).not.toEqual(r.slice(0, 50));
  });

  it("writes the asked fraction of accesses, none at 0 and all at 1", () => {
    const share = (writeFraction: number) => {
      const r = records(pattern({ kind: "random", writeFraction }), 10_000);
      return r.filter((x) => x.kind === (ACCESS.user | ACCESS.write)).length / r.length;
    };
    expect(share(0)).toBe(0);
    expect(share(1)).toBe(1);
    // Binomial, n = 10,000: 4 standard deviations of 0.3 are 0.018.
    expect(Math.abs(share(0.3) - 0.3)).toBeLessThan(0.018);
  });

  it("addresses above 4 GiB keep their high word (HEAP_BASE is 64 GiB)", () => {
    const out = new Uint32Array(2);
    new AccessGenerator(pattern({}), 1).fill(out, 0, 1);
    expect(out[1]).toBe(HEAP_BASE / 2 ** 32);
    expect(out[0]).toBe(ACCESS.user);
  });
});

describe("access patterns checked before use", () => {
  it("takes each limit and refuses one past it, saying what is wrong", () => {
    const refused = (p: Partial<AccessPattern>, message: string) =>
      expect(() => checkPattern(pattern(p))).toThrow(new PagingError(message));
    for (const ws of [4096, 2 ** 40]) {
      expect(() => checkPattern(pattern({ workingSetBytes: ws, strideBytes: 1 }))).not.toThrow();
    }
    for (const ws of [4095, 2 ** 40 + 1, 4096.5, Number.NaN]) {
      refused({ workingSetBytes: ws }, `working set must be 4 KiB to 1 TiB, not ${ws}`);
    }
    expect(() => checkPattern(pattern({ strideBytes: 64 * 4096 }))).not.toThrow();
    for (const stride of [0, 64 * 4096 + 1, 1.5]) {
      refused({ strideBytes: stride }, `stride must be 1 byte to the working set, not ${stride}`);
    }
    for (const f of [0, 1]) expect(() => checkPattern(pattern({ writeFraction: f }))).not.toThrow();
    for (const f of [-0.01, 1.01, Number.NaN]) {
      refused({ writeFraction: f }, `write fraction must be 0 to 1, not ${f}`);
    }
    refused(
      { kind: "zigzag" as AccessPattern["kind"] },
      "unknown access pattern 'zigzag' (one of random, sequential, strided, pointer-chase)",
    );
    expect(() => new AccessGenerator(pattern({ writeFraction: 2 }), 1)).toThrow(PagingError);
  });
});
