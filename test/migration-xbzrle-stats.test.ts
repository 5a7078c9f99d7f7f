/*
 * query-migrate's xbzrle-cache block (QEMU's qapi/migration.json,
 * XBZRLECacheStats) from the encoder's counts. QEMU counts each XBZRLE
 * page's bytes as its encoded bytes plus the encoding flag and the be16
 * length, not the 8-byte page header (migration/ram.c, save_xbzrle_page:
 * `xbzrle_counters.bytes += bytes_xbzrle - 8`), and its encoding rate is
 * the pages' unencoded bytes over those bytes (migration_update_rates).
 */
import { describe, expect, it } from "vitest";
import { xbzrleCacheStats } from "../src/migration/xbzrle-stats.js";
import { emptyEncodeCounts } from "../src/wasm/page.js";

const PAGE = 4096;

describe("the xbzrle-cache block", () => {
  it("counts each delta's 3 header bytes, the miss rate over every lookup, the rate per byte sent", () => {
    const stats = xbzrleCacheStats(
      {
        ...emptyEncodeCounts(),
        xbzrlePages: 10,
        xbzrleBytes: 970,
        cacheMiss: 6,
        overflow: 3,
        unchanged: 1,
        normal: 500,
        zero: 77,
        bytes: 123_456,
      },
      8 * 1024 ** 2,
      PAGE,
    );
    expect(stats).toEqual({
      "cache-size": 8 * 1024 ** 2,
      // 970 encoded bytes and 3 per page.
      bytes: 1000,
      pages: 10,
      "cache-miss": 6,
      // 6 misses of 6 + 10 + 3 + 1 = 20 lookups; normal and zero pages are no lookups.
      "cache-miss-rate": 0.3,
      // 10 pages of 4 KiB in 1,000 bytes.
      "encoding-rate": 40.96,
      overflow: 3,
    });
  });

  it("each kind of lookup counts once in the miss rate's denominator", () => {
    const rate = (c: Partial<ReturnType<typeof emptyEncodeCounts>>) =>
      xbzrleCacheStats({ ...emptyEncodeCounts(), cacheMiss: 1, ...c }, PAGE, PAGE)[
        "cache-miss-rate"
      ];
    expect(rate({})).toBe(1);
    expect(rate({ xbzrlePages: 3 })).toBe(0.25);
    expect(rate({ overflow: 3 })).toBe(0.25);
    expect(rate({ unchanged: 3 })).toBe(0.25);
  });

  it("the page size scales the encoding rate", () => {
    const c = { ...emptyEncodeCounts(), xbzrlePages: 4, xbzrleBytes: 88 };
    // 4 pages in 88 + 12 = 100 bytes.
    expect(xbzrleCacheStats(c, PAGE, 4096)["encoding-rate"]).toBe(163.84);
    expect(xbzrleCacheStats(c, PAGE, 65536)["encoding-rate"]).toBe(2621.44);
  });

  it("no lookups: a miss rate of 0, not NaN; no bytes: an encoding rate of 0, not NaN", () => {
    const none = xbzrleCacheStats(emptyEncodeCounts(), PAGE, PAGE);
    expect(none["cache-miss-rate"]).toBe(0);
    expect(none["encoding-rate"]).toBe(0);
    expect(none.bytes).toBe(0);
    // Only misses: every lookup missed, and nothing was encoded.
    const misses = xbzrleCacheStats({ ...emptyEncodeCounts(), cacheMiss: 5 }, PAGE, PAGE);
    expect(misses["cache-miss-rate"]).toBe(1);
    expect(misses["encoding-rate"]).toBe(0);
  });
});
