import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { parseIp } from "../src/net/address.js";
import { hashInput, MICROSOFT_RSS_KEY, ToeplitzHasher } from "../src/net/rss.js";
import { toeplitzOracle } from "../src/oracle/toeplitz.js";

// Microsoft, "Verifying the RSS Hash Calculation": Microsoft's RSS verification vectors (destination
// listed first), as [dst, dstPort, src, srcPort, addresses only, with ports].
const IPV4: [string, number, string, number, number, number][] = [
  ["161.142.100.80", 1766, "66.9.149.187", 2794, 0x323e8fc2, 0x51ccc178],
  ["65.69.140.83", 4739, "199.92.111.2", 14230, 0xd718262a, 0xc626b0ea],
  ["12.22.207.184", 38024, "24.19.198.95", 12898, 0xd2d0a5de, 0x5c2b394a],
  ["209.142.163.6", 2217, "38.27.205.30", 48228, 0x82989176, 0xafc7327f],
  ["202.188.127.2", 1303, "153.39.163.191", 44251, 0x5d1809c5, 0x10e828a2],
];
const IPV6: [string, number, string, number, number, number][] = [
  ["3ffe:2501:200:3::1", 1766, "3ffe:2501:200:1fff::7", 2794, 0x2cc18cd5, 0x40207d3d],
  ["ff02::1", 4739, "3ffe:501:8::260:97ff:fe40:efab", 14230, 0x0f0c461c, 0xdde51bbf],
  [
    "fe80::200:f8ff:fe21:67cf",
    38024,
    "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
    44251,
    0x4b61e985,
    0x02d1feef,
  ],
];

let hasher: ToeplitzHasher;
beforeAll(() => {
  hasher = new ToeplitzHasher(new MemoryLayout());
});

describe("RSS Toeplitz hash against Microsoft's verification vectors", () => {
  for (const [family, vectors] of [
    ["IPv4", IPV4],
    ["IPv6", IPV6],
  ] as const) {
    for (const [dst, dstPort, src, srcPort, plain, withPorts] of vectors) {
      it(`${family} ${src}:${srcPort} -> ${dst}:${dstPort}`, () => {
        const addresses = hashInput(parseIp(src), parseIp(dst));
        const full = hashInput(parseIp(src), parseIp(dst), { src: srcPort, dst: dstPort });
        expect(hasher.hash(addresses)).toBe(plain);
        expect(hasher.hash(full)).toBe(withPorts);
        expect(toeplitzOracle(MICROSOFT_RSS_KEY, addresses)).toBe(plain);
        expect(toeplitzOracle(MICROSOFT_RSS_KEY, full)).toBe(withPorts);
      });
    }
  }
});

describe("byte-table Toeplitz against the bit loop", () => {
  it("agrees on random inputs of 0..36 bytes and random keys (property)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 40, maxLength: 40 }),
        fc.uint8Array({ maxLength: 36 }),
        (key, input) => {
          const h = new ToeplitzHasher(new MemoryLayout(), key);
          expect(h.hash(input)).toBe(toeplitzOracle(key, input));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("hashes a batch at any stride like one at a time", () => {
    const layout = new MemoryLayout();
    const h = new ToeplitzHasher(layout);
    const inputs = layout.allocate("inputs", 40 * 100 + 3);
    const out = layout.allocate("out", 400);
    const bytes = inputs.bytes(layout.memory);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 37) & 0xff;
    let all = 0;
    for (let i = 0; i < 100; i++)
      all ^= toeplitzOracle(MICROSOFT_RSS_KEY, bytes.subarray(3 + i * 40, 3 + i * 40 + 12));
    expect(h.hashBatch(inputs, 3, 40, 12, 100, out, 0)).toBe(all >>> 0);
    const hashes = new Uint32Array(layout.memory.buffer, out.offset, 100);
    expect(hashes[99]).toBe(
      toeplitzOracle(MICROSOFT_RSS_KEY, bytes.subarray(3 + 99 * 40, 3 + 99 * 40 + 12)),
    );
    expect(() => h.hashBatch(inputs, 3, 40, 12, 101, out, 0)).toThrow(/past the end/);
  });
});
