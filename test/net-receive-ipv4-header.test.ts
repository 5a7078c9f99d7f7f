import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { parseFrame } from "../src/net/frame.js";
import { checksumsGood } from "../src/net/receive-batch.js";
import { ChecksumKernel } from "../src/wasm/checksum.js";
import { SegmentKernel } from "../src/wasm/segment.js";

/*
 * A received IPv4 datagram with no transport header parsed (ICMP, or a
 * fragment) carries one checksum, its header's (RFC 791 section 3.1): the
 * receive path checks exactly those bytes, inside the frame.
 */

const layout = new MemoryLayout();
const frames = layout.allocate("frames", 256);
const kernels = {
  memory: layout.memory,
  segment: SegmentKernel.on(layout.memory),
  checksum: ChecksumKernel.on(layout.memory),
};

/** An Ethernet frame holding an IPv4 ICMP echo request (header of `ihl` words) at `start`. */
function icmpFrame(start: number, ihl: number): Uint8Array {
  const header = ihl * 4;
  const frame = new Uint8Array(14 + header + 8);
  frame.set([0x08, 0x00], 12);
  const ip = frame.subarray(14);
  ip[0] = 0x40 | ihl;
  ip[3] = header + 8;
  ip[8] = 64;
  ip[9] = 1;
  ip.set([192, 168, 0, 1, 192, 168, 0, 2], 12);
  ip[header] = 8;
  frames.bytes(layout.memory).set(frame, start);
  kernels.checksum.fillIpv4Header(frames, start + 14, header);
  return frames.bytes(layout.memory).slice(start, start + frame.length);
}

describe("IPv4 header checksum of a frame without a transport header", () => {
  it("is good as written, at any offset and header length", () => {
    for (const [start, ihl] of [
      [0, 5],
      [3, 5],
      [17, 15],
    ] as const) {
      const p = parseFrame(icmpFrame(start, ihl));
      expect(p.l4).toBe(-1);
      expect(checksumsGood(kernels, frames, start, p)).toBe(true);
    }
  });

  it("is bad when a header byte changes, and a byte after the header does not matter", () => {
    const p = parseFrame(icmpFrame(0, 5));
    const bytes = frames.bytes(layout.memory);
    bytes[14 + 8] = 63;
    expect(checksumsGood(kernels, frames, 0, p)).toBe(false);
    bytes[14 + 8] = 64;
    bytes[14 + 20 + 1] = 0x55;
    expect(checksumsGood(kernels, frames, 0, p)).toBe(true);
  });
});
