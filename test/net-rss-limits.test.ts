import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { hashInput, MICROSOFT_RSS_KEY, ToeplitzHasher } from "../src/net/rss.js";
import { toeplitzOracle } from "../src/oracle/toeplitz.js";

/*
 * The Toeplitz hash's limits: a key of 4 to 40 bytes (40 is what the
 * verification key has: an IPv6 4-tuple of 36 bytes needs 36 + 4), an input
 * of at most 36 bytes. Each is taken at its edge and refused one past it.
 */
describe("RSS Toeplitz hasher limits", () => {
  it("takes keys of 4 and 40 bytes, hashing as the specification's bit loop does", () => {
    const input = Uint8Array.from({ length: 36 }, (_, i) => (i * 73 + 11) & 0xff);
    for (const length of [4, 40]) {
      const key = MICROSOFT_RSS_KEY.subarray(0, length);
      const h = new ToeplitzHasher(new MemoryLayout(), key);
      expect(h.hash(input)).toBe(toeplitzOracle(key, input));
      expect(h.hash(input.subarray(0, 1))).toBe(toeplitzOracle(key, input.subarray(0, 1)));
    }
    // A 4-byte key: one input byte of 0x80 selects exactly the key's 32 bits.
    const four = new ToeplitzHasher(new MemoryLayout(), Uint8Array.of(0xde, 0xad, 0xbe, 0xef));
    expect(four.hash(Uint8Array.of(0x80))).toBe(0xdeadbeef);
    expect(four.hash(new Uint8Array(0))).toBe(0);
  });

  it("refuses a key of 3 or 41 bytes, naming its length", () => {
    expect(() => new ToeplitzHasher(new MemoryLayout(), new Uint8Array(3))).toThrow(
      "an RSS key is 4 to 40 bytes, not 3",
    );
    expect(() => new ToeplitzHasher(new MemoryLayout(), new Uint8Array(41))).toThrow(
      "an RSS key is 4 to 40 bytes, not 41",
    );
    // One longer than the hasher's 64-byte input region: refused as well, not a copy's overflow.
    expect(() => new ToeplitzHasher(new MemoryLayout(), new Uint8Array(65))).toThrow(
      "an RSS key is 4 to 40 bytes, not 65",
    );
  });

  it("hashes an input of 36 bytes (an IPv6 4-tuple) and refuses 37", () => {
    const h = new ToeplitzHasher(new MemoryLayout());
    const v6 = hashInput(new Uint8Array(16).fill(1), new Uint8Array(16).fill(2), {
      src: 0x1234,
      dst: 0xabcd,
    });
    expect(v6.length).toBe(36);
    expect([...v6.subarray(32)]).toEqual([0x12, 0x34, 0xab, 0xcd]);
    expect(h.hash(v6)).toBe(toeplitzOracle(MICROSOFT_RSS_KEY, v6));
    expect(() => h.hash(new Uint8Array(37))).toThrow(
      "an RSS hash input is at most 36 bytes, not 37",
    );
    expect(() => h.hash(new Uint8Array(65))).toThrow(
      "an RSS hash input is at most 36 bytes, not 65",
    );
  });

  it("names its regions after the hasher (net.rss by default), so that hashers share one memory", () => {
    const layout = new MemoryLayout();
    const a = new ToeplitzHasher(layout, MICROSOFT_RSS_KEY, "rx.a");
    const b = new ToeplitzHasher(layout, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8), "rx.b");
    expect(new ToeplitzHasher(layout).table.name).toBe("net.rss.table");
    expect(a.table.name).toBe("rx.a.table");
    expect(b.input.name).toBe("rx.b.input");
    const input = Uint8Array.of(0xff, 0x0f);
    expect(a.hash(input)).toBe(toeplitzOracle(MICROSOFT_RSS_KEY, input));
    expect(b.hash(input)).toBe(toeplitzOracle(Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8), input));
  });
});
