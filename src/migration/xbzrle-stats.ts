import type { EncodeCounts } from "../wasm/page.js";
import type { XbzrleCacheStats } from "./stats.js";

/** QEMU's XBZRLE header in its byte counter: encoding flag and be16 length. */
const XBZRLE_COUNTED_OVERHEAD = 3;

/**
 * The `xbzrle-cache` block of query-migrate (QEMU's qapi/migration.json,
 * XBZRLECacheStats) from the encoder's counts: the bytes counted as QEMU
 * counts them (encoded bytes and each page's 3-byte header), the miss rate
 * over every lookup, the encoding rate as page bytes per byte sent.
 */
export function xbzrleCacheStats(
  c: EncodeCounts,
  cacheBytes: number,
  pageBytes: number,
): XbzrleCacheStats {
  const lookups = c.cacheMiss + c.xbzrlePages + c.overflow + c.unchanged;
  const bytes = c.xbzrleBytes + c.xbzrlePages * XBZRLE_COUNTED_OVERHEAD;
  return {
    "cache-size": cacheBytes,
    bytes,
    pages: c.xbzrlePages,
    "cache-miss": c.cacheMiss,
    "cache-miss-rate": lookups > 0 ? c.cacheMiss / lookups : 0,
    "encoding-rate": bytes > 0 ? (c.xbzrlePages * pageBytes) / bytes : 0,
    overflow: c.overflow,
  };
}
