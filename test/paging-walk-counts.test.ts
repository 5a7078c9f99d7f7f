import { describe, expect, it } from "vitest";
import { PAGE_SIZES, type PageSize } from "../src/paging/entry.js";
import { explainWalk } from "../src/paging/explain.js";
import { cpuPreset } from "../src/paging/presets.js";

const cpu = cpuPreset("icelake-sp");
const SIZES: PageSize[] = ["4K", "2M", "1G"];

function walk(mode: "native" | "shadow" | "slat", g: 4 | 5, h: 4 | 5, gp: PageSize, hp: PageSize) {
  return explainWalk({
    address: 0x10_0000_0000 + 0x1234_5678,
    mode,
    guestLevels: g,
    hostLevels: h,
    guestPageSize: gp,
    hostBacking: hp,
    guestBytes: 8 * 2 ** 30,
    write: true,
    warm: false,
    cpu,
  });
}

describe("two-dimensional walk reference counts (Bhargava et al., ASPLOS 2008)", () => {
  it("costs exactly 24 references for a cold 4x4 walk", () => {
    const w = walk("slat", 4, 4, "4K", "4K");
    expect(w.references).toHaveLength(24);
    expect(w.references.filter((r) => r.dimension === "guest")).toHaveLength(4);
    expect(w.references.filter((r) => r.dimension === "host")).toHaveLength(20);
    expect(w.hpa).not.toBeNull();
  });

  it("gives the published counts: 35 for 5x5, 29 for 4x5, 19 for 4 over 2 MiB host pages", () => {
    expect(walk("slat", 5, 5, "4K", "4K").references).toHaveLength(35);
    expect(walk("slat", 4, 5, "4K", "4K").references).toHaveLength(29);
    expect(walk("slat", 4, 4, "4K", "2M").references).toHaveLength(19);
    // 1 GiB pages in both dimensions of 4-level tables: 2 x 2 levels, 8 references.
    expect(walk("slat", 4, 4, "1G", "1G").references).toHaveLength(8);
    // 2 MiB in both: 3 x 3 levels, 15 references.
    expect(walk("slat", 4, 4, "2M", "2M").references).toHaveLength(15);
  });

  it("gives (n+1)(m+1)-1 for every combination of levels and page sizes", () => {
    for (const g of [4, 5] as const) {
      for (const h of [4, 5] as const) {
        for (const gp of SIZES) {
          for (const hp of SIZES) {
            const n = g - PAGE_SIZES[gp];
            const m = h - PAGE_SIZES[hp];
            const w = walk("slat", g, h, gp, hp);
            expect(w.references, `${g}x${h} ${gp}/${hp}`).toHaveLength((n + 1) * (m + 1) - 1);
          }
        }
      }
    }
  });

  it("costs n references natively and over shadow tables (4, or 5 with 5-level)", () => {
    for (const g of [4, 5] as const) {
      for (const gp of SIZES) {
        const n = g - PAGE_SIZES[gp];
        expect(walk("native", g, 4, gp, "4K").references).toHaveLength(n);
        expect(walk("shadow", g, 4, gp, "4K").references).toHaveLength(n);
      }
    }
  });

  it("translates to the same address in every mode", () => {
    const slat = walk("slat", 4, 4, "4K", "4K");
    const shadow = walk("shadow", 4, 4, "4K", "4K");
    const native = walk("native", 4, 4, "4K", "4K");
    expect(slat.hpa).toBe(shadow.hpa);
    expect(slat.hpa).toBe((native.hpa ?? 0) + 2 ** 32);
  });
});
