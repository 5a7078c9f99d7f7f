import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { buildHeaders, type FrameSpec } from "../src/net/build.js";
import { onesSum } from "../src/net/byte-checksum.js";
import { Segmenter } from "../src/net/lso.js";
import { segmentInSoftware } from "../src/net/software-send.js";
import { onesSumOracle } from "../src/oracle/checksum.js";
import { segmentOracle } from "../src/oracle/segment.js";
import { ChecksumKernel } from "../src/wasm/checksum.js";
import { expectSameFrames } from "./support/bytes.js";

let segmenter: Segmenter;
let checksum: ChecksumKernel;

beforeAll(() => {
  segmenter = new Segmenter(new MemoryLayout(), 70_000);
  checksum = ChecksumKernel.on(segmenter.layout.memory);
});

function spec(v: 4 | 6, udp: boolean, flags: number): FrameSpec {
  return {
    ethernet: { dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01" },
    ip:
      v === 4
        ? { version: 4, src: "10.0.0.1", dst: "10.0.0.2", id: 0x7ffd }
        : { version: 6, src: "fd00::1", dst: "fd00::2" },
    l4: udp
      ? { kind: "udp", srcPort: 40000, dstPort: 5201 }
      : { kind: "tcp", srcPort: 40000, dstPort: 5201, seq: 0xffffff00, flags: flags & ~0x06 },
  };
}

describe("byte-range checksums through the kernel", () => {
  it("equal the oracle's partial sum on random bytes, odd lengths and offsets", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 3000 }),
        fc.nat(),
        fc.nat(),
        fc.integer({ min: 0, max: 0xffff }),
        (bytes, a, b, seed) => {
          const start = bytes.length === 0 ? 0 : a % bytes.length;
          const length = (bytes.length - start === 0 ? 0 : b % (bytes.length - start + 1)) | 0;
          expect(onesSum(bytes, start, length, seed)).toBe(
            onesSumOracle(bytes, start, length, seed),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it("sums inputs larger than its first scratch region", () => {
    const big = Uint8Array.from({ length: 200_001 }, (_, i) => (i * 131) & 0xff);
    expect(onesSum(big, 1, 200_000)).toBe(onesSumOracle(big, 1, 200_000));
  });

  it("refuses a range outside the bytes", () => {
    expect(() => onesSum(new Uint8Array(4), 2, 3)).toThrow(/outside its 4 bytes/);
  });
});

describe("segmentation with offload off (the stack, packet by packet)", () => {
  it("writes exactly the frames the oracle writes", () => {
    fc.assert(
      fc.property(
        fc.constantFrom<4 | 6>(4, 6),
        fc.boolean(),
        fc.integer({ min: 0, max: 0xff }),
        fc.integer({ min: 64, max: 1460 }),
        fc.integer({ min: 0, max: 20_000 }),
        (v, udp, flags, mss, length) => {
          const payload = Uint8Array.from({ length }, (_, i) => (i * 7 + length) & 0xff);
          const { bytes: template, l3, l4 } = buildHeaders(spec(v, udp, flags), length);
          segmenter.loadPayload(payload);
          const plan = segmenter.plan(template, length, {
            offload: udp ? "uso" : "lsov2",
            mtu: 1500,
            mss: Math.min(mss, 1500 - (template.length - l3)),
            ipId: "wrap15",
          });
          const count = segmentInSoftware(segmenter, plan, checksum);
          const table = new Uint32Array(
            segmenter.layout.memory.buffer,
            segmenter.table.offset,
            count * 2,
          );
          const out = segmenter.output.bytes(segmenter.layout.memory);
          const frames = Array.from({ length: count }, (_, i) =>
            out.slice(table[i * 2] ?? 0, (table[i * 2] ?? 0) + (table[i * 2 + 1] ?? 0)),
          );
          expectSameFrames(
            frames,
            segmentOracle(template, payload, {
              l3,
              l4,
              ipv6: v === 6,
              udp,
              mss: plan.mss,
              idMode: "wrap15",
              cwrOnAll: false,
            }),
          );
        },
      ),
      { numRuns: 60 },
    );
  });
});
