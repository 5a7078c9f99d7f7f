import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { buildHeaders } from "../src/net/build.js";
import { parseFrame, TCP_FLAGS } from "../src/net/frame.js";
import { internetChecksumOracle } from "../src/oracle/checksum.js";
import { FRAME_CHECKSUMS_GOOD, SegmentKernel } from "../src/wasm/segment.js";

/*
 * Rules of the segmentation and receive-check kernel that the engine's own
 * checks keep away from it (the engine refuses a fragment as a template), so
 * they are held here on the kernel's wrapper directly.
 */

const layout = new MemoryLayout();
const template = layout.allocate("template", 256);
const payload = layout.allocate("payload", 8192);
const out = layout.allocate("segments", 16_384);
const table = layout.allocate("segment table", 64);
const kernel = SegmentKernel.on(layout.memory);
const bytes = () => new Uint8Array(layout.memory.buffer);
/** The bits checkFrame returns (assembly/segment.ts GOOD_IP, GOOD_L4). */
const GOOD_IP = 1;
const GOOD_L4 = 2;
const be16 = (b: Uint8Array, at: number) => ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);

/** An Ethernet + IPv4 + TCP template for `payloadLength` bytes, written into `template`. */
function ipv4Template(payloadLength: number, fragment: number): Uint8Array {
  const { bytes: h } = buildHeaders(
    {
      ethernet: { dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01" },
      ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2", id: 7 },
      l4: { kind: "tcp", srcPort: 40000, dstPort: 5201, seq: 1, ack: 1, flags: TCP_FLAGS.ACK },
    },
    payloadLength,
  );
  new DataView(h.buffer).setUint16(14 + 6, fragment);
  bytes().set(h, template.offset);
  return h;
}

/** The segments the kernel wrote, one byte array each. */
function segments(headerLength: number, payloadLength: number, mss: number): Uint8Array[] {
  const n = kernel.segment({
    template,
    headerLength,
    l3: 14,
    l4: 34,
    flags: 0,
    payload,
    payloadLength,
    mss,
    out,
    table,
  });
  const t = new Uint32Array(layout.memory.buffer, table.offset, 2 * n);
  return Array.from({ length: n }, (_, i) => {
    const at = out.offset + (t[2 * i] ?? 0);
    return bytes().slice(at, at + (t[2 * i + 1] ?? 0));
  });
}

describe("segmentation kernel: the IPv4 fragment field of each segment", () => {
  it("clears MF and the fragment offset of the template and keeps DF (RFC 791 3.1; Linux inet_gso_segment)", () => {
    for (const df of [0x4000, 0]) {
      const h = ipv4Template(3000, df | 0x2000 | 0x00b9);
      const frames = segments(h.length, 3000, 1000);
      expect(frames.length).toBe(3);
      for (const f of frames) {
        expect(be16(f, 14 + 6)).toBe(df);
        expect(internetChecksumOracle(f, 14, 20)).toBe(0);
      }
    }
  });
});

describe("receive check: the IPv4 header checksum of a TCP frame (RFC 791 3.1)", () => {
  it("is good only when the header sums to 0xFFFF, whatever the TCP checksum says", () => {
    const h = ipv4Template(100, 0x4000);
    const [frame] = segments(h.length, 100, 1460);
    if (!frame) throw new Error("no segment");
    const p = parseFrame(frame);
    const at = { l3: p.l3, l4: p.l4, end: p.ipEnd, dst: p.dstAddress, flags: 0 };
    const check = () => {
      bytes().set(frame, out.offset);
      return kernel.checkFrame(out, 0, at);
    };
    expect(FRAME_CHECKSUMS_GOOD).toBe(GOOD_IP | GOOD_L4);
    expect(check()).toBe(FRAME_CHECKSUMS_GOOD);
    // TTL is in the IP header only: the TCP checksum (pseudo-header) stays good.
    frame[p.l3 + 8] = (frame[p.l3 + 8] ?? 0) ^ 1;
    expect(check()).toBe(GOOD_L4);
    frame[p.l3 + 8] = (frame[p.l3 + 8] ?? 0) ^ 1;
    // A payload byte is in the TCP checksum only.
    frame[p.payload] = (frame[p.payload] ?? 0) ^ 0x80;
    expect(check()).toBe(GOOD_IP);
  });
});
