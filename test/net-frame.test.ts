import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { buildFrame, type FrameSpec, timestampOption } from "../src/net/build.js";
import { FrameError } from "../src/net/errors.js";
import { parseFrame } from "../src/net/frame.js";
import { type ReceiveConfig, ReceivePath } from "../src/net/receive.js";
import { RX_CHECKSUM_GOOD, type RxSlot } from "../src/net/ring.js";

const ETH = { dst: "00:15:5d:00:00:02", src: "00:15:5d:00:00:01" };
const TCP4: FrameSpec = {
  ethernet: ETH,
  ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2", options: Uint8Array.from([1, 1, 1, 0]) },
  l4: { kind: "tcp", srcPort: 1000, dstPort: 80, seq: 7, options: timestampOption(1, 2) },
};

function errorOf(f: () => unknown): FrameError {
  try {
    f();
  } catch (error) {
    if (error instanceof FrameError) return error;
    throw error;
  }
  throw new Error("no FrameError thrown");
}

describe("parseFrame: layout of good frames", () => {
  it("finds every header of IPv4 with options and TCP with timestamps", () => {
    const f = buildFrame(TCP4, new Uint8Array(100));
    const p = parseFrame(f);
    expect(p).toMatchObject({
      l3: 14,
      ipVersion: 4,
      l4: 38,
      l4HeaderLength: 32,
      payload: 70,
      payloadLength: 100,
      ipEnd: f.length,
      vlan: null,
    });
  });

  it("reads an 802.1Q tag and IPv6 extension headers", () => {
    const spec: FrameSpec = {
      ethernet: { ...ETH, vlan: 100, pcp: 5 },
      ip: {
        version: 6,
        src: "fd00::1",
        dst: "fd00::2",
        extensions: [
          { type: 0, options: new Uint8Array(6) },
          { type: 60, options: new Uint8Array(14) },
        ],
      },
      l4: { kind: "udp", srcPort: 1, dstPort: 2 },
    };
    const f = buildFrame(spec, new Uint8Array(10));
    const p = parseFrame(f);
    expect(p).toMatchObject({
      vlan: 100,
      l3: 18,
      ipVersion: 6,
      protocol: 17,
      l4: 18 + 40 + 8 + 16,
      payloadLength: 10,
    });
  });

  it("takes the final destination of a routing header for the pseudo-header (RFC 8200 8.1)", () => {
    const base = buildFrame(
      {
        ethernet: ETH,
        ip: { version: 6, src: "fd00::1", dst: "fd00::2" },
        l4: { kind: "udp", srcPort: 1, dstPort: 2 },
      },
      new Uint8Array(4),
    );
    // Splice a type-2 routing header (24 bytes, one address, 1 segment left) after the IPv6 header.
    const rh = new Uint8Array(24);
    rh[0] = 17;
    rh[1] = 2;
    rh[2] = 2;
    rh[3] = 1;
    rh[23] = 0x99;
    const f = new Uint8Array(base.length + 24);
    f.set(base.subarray(0, 54));
    f.set(rh, 54);
    f.set(base.subarray(54), 78);
    f[20] = 43;
    const v = new DataView(f.buffer);
    v.setUint16(18, v.getUint16(18) + 24);
    const p = parseFrame(f);
    expect(p.dstAddress).toBe(54 + 8);
    expect(f[p.dstAddress + 15]).toBe(0x99);
    expect(p.l4).toBe(78);
  });

  it("counts Ethernet padding after the datagram as padding", () => {
    const f = buildFrame(
      {
        ethernet: ETH,
        ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2" },
        l4: { kind: "udp", srcPort: 1, dstPort: 2 },
      },
      new Uint8Array(2),
    );
    const padded = new Uint8Array(60);
    padded.set(f);
    expect(parseFrame(padded)).toMatchObject({ ipEnd: f.length, payloadLength: 2, length: 60 });
  });
});

describe("parseFrame: bad frames give typed errors naming the field", () => {
  const good = buildFrame(TCP4, new Uint8Array(100));
  /** A copy of the good frame with one byte changed. */
  const withByte = (at: number, value: number) => {
    const f = good.slice();
    f[at] = value;
    return f;
  };
  it("truncated frames", () => {
    expect(errorOf(() => parseFrame(good.slice(0, 10))).code).toBe("truncated");
    expect(errorOf(() => parseFrame(good.slice(0, 30))).code).toBe("truncated");
  });
  it("IHL under 5 and IHL past the buffer", () => {
    expect(errorOf(() => parseFrame(withByte(14, 0x44))).code).toBe("bad-ihl");
    const e = errorOf(() => parseFrame(withByte(14, 0x4f).slice(0, 60)));
    expect(e.code).toBe("bad-ihl");
    expect(e.offset).toBe(14);
  });
  it("a total length that disagrees with the buffer", () => {
    const e = errorOf(() => parseFrame(good.slice(0, good.length - 1)));
    expect(e.code).toBe("bad-total-length");
    expect(e.offset).toBe(16);
    expect(errorOf(() => parseFrame(withByte(17, 10))).code).toBe("bad-total-length");
  });
  it("a bad TCP data offset (under 5, past the datagram)", () => {
    expect(errorOf(() => parseFrame(withByte(38 + 12, 0x40))).code).toBe("bad-data-offset");
    const short = buildFrame(TCP4, new Uint8Array(0));
    short[38 + 12] = 0xf0;
    expect(errorOf(() => parseFrame(short)).code).toBe("bad-data-offset");
  });
  it("a UDP length that disagrees, and a wrong IP version", () => {
    const udp = buildFrame(
      {
        ethernet: ETH,
        ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2" },
        l4: { kind: "udp", srcPort: 1, dstPort: 2 },
      },
      new Uint8Array(8),
    );
    udp[14 + 20 + 5] = 99;
    expect(errorOf(() => parseFrame(udp)).code).toBe("bad-udp-length");
    expect(errorOf(() => parseFrame(withByte(14, 0x65))).code).toBe("bad-version");
  });
});

describe("receive path: malformed frames are counted drops, never a crash", () => {
  it("drops and counts each kind of bad frame", async () => {
    const config: ReceiveConfig = {
      mode: "single",
      queues: 1,
      processors: 1,
      rss: false,
      jumboPacket: 1514,
      coalesce: true,
      rebalance: false,
      ringSlots: 64,
      bufferBytes: 1 << 16,
    };
    const vm = { name: "vm0", mac: ETH.dst };
    const path = new ReceivePath(new MemoryLayout(), config, [vm]);
    const good = buildFrame(TCP4, new Uint8Array(100));
    const ihl = good.slice();
    ihl[14] = 0x44;
    const offset = good.slice();
    offset[38 + 12] = 0x40;
    const corrupt = good.slice();
    corrupt[good.length - 1] = (corrupt[good.length - 1] ?? 0) ^ 0xff;
    path.load([
      good,
      good.slice(0, 10),
      good.slice(0, good.length - 3),
      ihl,
      offset,
      corrupt,
      new Uint8Array(2000),
    ]);
    const r = await path.round();
    expect(r).toMatchObject({
      frames: 7,
      runts: 1,
      oversize: 1,
      malformed: 3,
      badChecksum: 1,
      delivered: 1,
    });
  });

  it("delivers a frame that fails validation marked bad when asked, never coalesced", async () => {
    const config: ReceiveConfig = {
      mode: "vmq",
      queues: 2,
      processors: 1,
      rss: false,
      jumboPacket: 1514,
      coalesce: true,
      rebalance: false,
      ringSlots: 64,
      bufferBytes: 1 << 16,
      deliverBad: true,
    };
    const path = new ReceivePath(new MemoryLayout(), config, [{ name: "vm0", mac: ETH.dst }]);
    const good = buildFrame(TCP4, new Uint8Array(100));
    const corrupt = good.slice();
    corrupt[good.length - 1] = (corrupt[good.length - 1] ?? 0) ^ 0xff;
    path.load([good, corrupt]);
    const slots: RxSlot[] = [];
    const r = await path.round(undefined, (_, s) => slots.push(...s));
    expect(r).toMatchObject({ badChecksum: 1, delivered: 2 });
    expect(slots.map((s) => s.flags & RX_CHECKSUM_GOOD)).toEqual([RX_CHECKSUM_GOOD, 0]);
    expect(slots[1]?.bytes).toEqual(corrupt);
  });
});
