import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { buildFrame, buildHeaders, type FrameSpec } from "../src/net/build.js";
import { parseFrame } from "../src/net/frame.js";
import { Segmenter } from "../src/net/lso.js";
import { checksumsGood, type ReceiveKernels } from "../src/net/receive-batch.js";
import { ChecksumKernel } from "../src/wasm/checksum.js";
import { SegmentKernel } from "../src/wasm/segment.js";

/*
 * A UDP checksum of zero: RFC 768 says a computed checksum of zero is sent
 * as all ones, because zero in the field means "not computed", which IPv4
 * receivers accept; RFC 8200 section 8.1 says an IPv6 receiver must discard
 * a UDP datagram whose checksum field is zero.
 */

const layout = new MemoryLayout();
let segmenter: Segmenter;
let kernels: ReceiveKernels;
const frameArea = layout.allocate("frame", 4096);

beforeAll(() => {
  segmenter = new Segmenter(layout, 64_000);
  kernels = {
    memory: layout.memory,
    segment: SegmentKernel.on(layout.memory),
    checksum: ChecksumKernel.on(layout.memory),
  };
});

function udpSpec(ipVersion: 4 | 6): FrameSpec {
  return {
    ethernet: { dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01" },
    ip:
      ipVersion === 4
        ? { version: 4, src: "10.0.0.1", dst: "10.0.0.2", id: 7 }
        : { version: 6, src: "fd00::1", dst: "fd00::2" },
    l4: { kind: "udp", srcPort: 53, dstPort: 5353 },
  };
}

function checksumField(frame: Uint8Array): number {
  const at = parseFrame(frame).l4 + 6;
  return ((frame[at] ?? 0) << 8) | (frame[at + 1] ?? 0);
}

/**
 * A payload whose UDP checksum computes to zero: the sum of everything with
 * the last (even-aligned) word zero is S, so a last word of 0xFFFF - S makes
 * the one's-complement sum 0xFFFF and its complement zero.
 */
function payloadSummingToZero(spec: FrameSpec, length: number): Uint8Array {
  const payload = new Uint8Array(length).map((_, i) => (i * 37 + 11) & 0xff);
  payload[length - 2] = 0;
  payload[length - 1] = 0;
  const checksum = checksumField(buildFrame(spec, payload));
  const sum = ~checksum & 0xffff;
  const word = 0xffff - sum;
  payload[length - 2] = word >> 8;
  payload[length - 1] = word & 0xff;
  return payload;
}

function received(frame: Uint8Array): boolean {
  new Uint8Array(layout.memory.buffer, frameArea.offset, frame.length).set(frame);
  return checksumsGood(kernels, frameArea, 0, parseFrame(frame));
}

describe("UDP checksum of zero", () => {
  for (const ipVersion of [4, 6] as const) {
    it(`IPv${ipVersion}: a datagram whose checksum computes to zero is sent with 0xFFFF`, () => {
      const spec = udpSpec(ipVersion);
      const payload = payloadSummingToZero(spec, 600);
      const expected = buildFrame(spec, payload);
      // The oracle found a zero and sent all ones: the case is the one asked for.
      expect(checksumField(expected)).toBe(0xffff);
      const { bytes } = buildHeaders(spec, payload.length);
      const frames = segmenter.copyFrames(
        segmenter.segment(bytes, payload, { offload: "uso", mtu: 1500, mss: 1200 }),
      );
      expect(frames.length).toBe(1);
      expect(checksumField(frames[0] as Uint8Array)).toBe(0xffff);
      expect(frames[0]).toEqual(expected);
      expect(received(frames[0] as Uint8Array)).toBe(true);
    });
  }

  it("IPv4: a received field of zero means not computed, and is accepted", () => {
    const frame = buildFrame(udpSpec(4), new Uint8Array(100).fill(3));
    const at = parseFrame(frame).l4 + 6;
    frame[at] = 0;
    frame[at + 1] = 0;
    expect(received(frame)).toBe(true);
  });

  it("IPv6: a received field of zero is bad (RFC 8200 section 8.1)", () => {
    const frame = buildFrame(udpSpec(6), new Uint8Array(100).fill(3));
    expect(received(frame)).toBe(true);
    const at = parseFrame(frame).l4 + 6;
    frame[at] = 0;
    frame[at + 1] = 0;
    expect(received(frame)).toBe(false);
  });
});
