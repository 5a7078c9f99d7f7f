import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import type { Region } from "../src/memory/region.js";
import {
  incrementalUpdateOracle,
  internetChecksumOracle,
  onesAdd,
  onesSumOracle,
} from "../src/oracle/checksum.js";
import { ChecksumKernel } from "../src/wasm/checksum.js";
import { compileKernel, instantiateKernel } from "../src/wasm/loader.js";

let layout: MemoryLayout;
let kernel: ChecksumKernel;
let buf: Region;
let dst: Region;

beforeAll(() => {
  layout = new MemoryLayout();
  kernel = ChecksumKernel.on(layout.memory);
  buf = layout.allocate("buf", 300_000);
  dst = layout.allocate("dst", 300_000);
});

function put(bytes: Uint8Array, at = 0): void {
  buf.bytes(layout.memory).set(bytes, at);
}

describe("RFC 1071 checksum kernel", () => {
  it("matches RFC 1071 section 3's worked example", () => {
    // RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
    put(Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]));
    expect(kernel.sum(buf, 0, 8)).toBe(0xddf2);
    expect(kernel.naive(buf, 0, 8)).toBe(0xddf2);
    expect(onesSumOracle(buf.bytes(layout.memory), 0, 8)).toBe(0xddf2);
  });

  it("gives the known IPv4 header checksum 0xb861", () => {
    // The widely used example header (Wikipedia "IPv4 header checksum"):
    // 4500 0073 0000 4000 4011 [b861] c0a8 0001 c0a8 00c7.
    const header = Uint8Array.from([
      0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
      0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ]);
    put(header);
    expect(kernel.checksum(buf, 0, 20)).toBe(0xb861);
    expect(internetChecksumOracle(header)).toBe(0xb861);
  });

  it("fills the IPv4 header checksum over a zeroed field, whatever the field held (RFC 791 section 3.1)", () => {
    const header = Uint8Array.from([
      0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
      0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ]);
    for (const [stale, at] of [
      [0x0000, 0],
      [0xb861, 3],
      [0x1234, 7],
      [0xffff, 1],
    ] as const) {
      header[10] = stale >> 8;
      header[11] = stale & 0xff;
      put(header, at);
      expect(kernel.fillIpv4Header(buf, at, 20)).toBe(0xb861);
      const written = buf.bytes(layout.memory).slice(at, at + 20);
      expect([written[10], written[11]]).toEqual([0xb8, 0x61]);
      // A header with its checksum in place sums to 0xffff (RFC 1071 section 1).
      expect(kernel.sum(buf, at, 20)).toBe(0xffff);
    }
  });

  it("equals the oracle on every length 0..300 at every alignment 0..15", () => {
    const bytes = new Uint8Array(320);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 131 + 7) & 0xff;
    put(bytes);
    const view = buf.bytes(layout.memory);
    for (let align = 0; align < 16; align++) {
      for (let n = 0; n <= 300; n++) {
        const want = onesSumOracle(view, align, n, 0x1234);
        expect(kernel.sum(buf, align, n, 0x1234)).toBe(want);
        expect(kernel.naive(buf, align, n, 0x1234)).toBe(want);
      }
    }
  });

  it("equals the oracle on random data, lengths, offsets and seeds (property)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 5000 }),
        fc.nat(63),
        fc.integer({ min: 0, max: 0xffff }),
        (data, offset, seed) => {
          put(data, offset);
          const want = onesSumOracle(buf.bytes(layout.memory), offset, data.length, seed);
          expect(kernel.sum(buf, offset, data.length, seed)).toBe(want);
          expect(kernel.copyAndSum(dst, offset + 3, buf, offset, data.length, seed)).toBe(want);
          expect(dst.bytes(layout.memory).subarray(offset + 3, offset + 3 + data.length)).toEqual(
            data,
          );
        },
      ),
      { numRuns: 400 },
    );
  });

  it("does not overflow its lane accumulators past 256 KiB (sum and copy-and-sum)", () => {
    // All-ones words: each lane gains 0x1FFFE per step, the worst case for the fold.
    const n = 262_144 + 37;
    put(new Uint8Array(n).fill(0xff));
    expect(kernel.sum(buf, 0, n)).toBe(onesSumOracle(buf.bytes(layout.memory), 0, n));
    expect(kernel.copyAndSum(dst, 1, buf, 0, n)).toBe(
      onesSumOracle(buf.bytes(layout.memory), 0, n),
    );
    // Zero words read as the most negative (-32768) after the sign flip:
    // the lanes run as low as they can before a fold.
    const low = new Uint8Array(n);
    for (let i = 0; i < n; i += 997) low[i] = 1;
    put(low);
    expect(kernel.sum(buf, 0, n, 0x4321)).toBe(onesSumOracle(low, 0, n, 0x4321));
    expect(kernel.copyAndSum(dst, 0, buf, 0, n, 0x4321)).toBe(onesSumOracle(low, 0, n, 0x4321));
    expect(dst.bytes(layout.memory).subarray(0, n)).toEqual(low);
  });

  it("folds any 64-bit partial sum as end-around-carry additions do (fold64)", () => {
    // The kernels fold their 64-bit partial sums with two rotate-and-add
    // steps; the oracle adds the four 16-bit pieces one at a time.
    const raw = instantiateKernel<{ fold64(sum: bigint): number }>(
      compileKernel("checksum"),
      layout.memory,
    );
    const oracleFold = (sum: bigint): number => {
      let s = 0;
      for (let i = 0n; i < 4n; i++) s = onesAdd(s, Number((sum >> (16n * i)) & 0xffffn));
      return s;
    };
    const edges = [0n, 1n, 0xffffn, 0x10000n, 0xffff_ffffn, 0x1_0000_0000n, 0xffff_0000_0000_ffffn];
    for (const sum of [...edges, (1n << 64n) - 1n, 0x8000_0000_8000_0000n]) {
      expect(raw.fold64(BigInt.asIntN(64, sum)) >>> 0).toBe(oracleFold(sum));
    }
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (sum) => {
        expect(raw.fold64(BigInt.asIntN(64, sum)) >>> 0).toBe(oracleFold(sum));
      }),
      { numRuns: 2000 },
    );
  });

  it("refuses ranges outside its region before running", () => {
    expect(() => kernel.sum(buf, buf.byteLength - 4, 8)).toThrow(/past the end/);
  });
});

describe("RFC 1624 incremental update", () => {
  it("matches a full recomputation after a random 16-bit change (property)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 2, maxLength: 64 }).filter((d) => d.length % 2 === 0),
        fc.nat(),
        fc.integer({ min: 0, max: 0xffff }),
        (data, at, m2) => {
          const i = (at % (data.length / 2)) * 2;
          const before = internetChecksumOracle(data);
          const m = ((data[i] ?? 0) << 8) | (data[i + 1] ?? 0);
          const changed = data.slice();
          changed[i] = m2 >>> 8;
          changed[i + 1] = m2 & 0xff;
          const after = internetChecksumOracle(changed);
          const inc = kernel.incremental(before, m, m2);
          expect(inc).toBe(incrementalUpdateOracle(before, m, m2));
          // Eqn 3 can give 0x0000 where recomputation gives 0xFFFF (both are
          // -0 in one's complement, RFC 1624 section 3); compare as sums.
          expect(inc === after || (inc ^ after) === 0xffff).toBe(true);
          if (after !== 0xffff && after !== 0) expect(inc).toBe(after);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("leaves the checksum alone when the field did not change (erratum 4782)", () => {
    // RFC 1624 section 3 and erratum 4782: all-zero data has checksum 0xFFFF; eqn 3 applied
    // to an unchanged field would turn it into 0x0000.
    const data = new Uint8Array(20);
    const hc = internetChecksumOracle(data);
    expect(hc).toBe(0xffff);
    const eqn3 = ~onesAdd(onesAdd(~hc & 0xffff, ~0 & 0xffff), 0) & 0xffff;
    expect(eqn3).toBe(0x0000);
    expect(kernel.incremental(hc, 0, 0)).toBe(0xffff);
    expect(incrementalUpdateOracle(hc, 0x1234, 0x1234)).toBe(0xffff);
  });
});
