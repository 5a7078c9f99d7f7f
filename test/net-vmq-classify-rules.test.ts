import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { buildFrame, type FrameSpec } from "../src/net/build.js";
import { MAX_CAPTURED_PACKET } from "../src/net/capture.js";
import { ToeplitzHasher } from "../src/net/rss.js";
import {
  JUMBO_PACKET_9014,
  JUMBO_PACKET_DEFAULT,
  RSS_INDIRECTION_ENTRIES,
  rebalance,
  rssHash,
  VirtualNic,
} from "../src/net/vmq.js";

/*
 * The classifier's rules, one at a time, with known answers: Microsoft's RSS
 * verification vectors ("Verifying the RSS Hash Calculation"; docs/references.md),
 * NDIS 6.20 VMQ filters and Windows' *JumboPacket setting (the largest frame,
 * its 14-byte Ethernet header included; an 802.1Q tag adds 4).
 */
let hasher: ToeplitzHasher;
beforeAll(() => {
  hasher = new ToeplitzHasher(new MemoryLayout());
});

const UNFILTERED = "00:15:5d:99:99:99";

function frame(
  ip: FrameSpec["ip"],
  l4: FrameSpec["l4"],
  payload = 16,
  vlan?: number,
  dst = UNFILTERED,
): Uint8Array {
  return buildFrame(
    {
      ethernet: { dst, src: "00:15:5d:00:00:01", ...(vlan !== undefined ? { vlan } : {}) },
      ip,
      l4,
    },
    new Uint8Array(payload),
  );
}

// Microsoft's first IPv4 and IPv6 vectors: 66.9.149.187:2794 -> 161.142.100.80:1766,
// 3ffe:2501:200:1fff::7:2794 -> 3ffe:2501:200:3::1:1766.
const V4 = { version: 4, src: "66.9.149.187", dst: "161.142.100.80" } as const;
const V6 = { version: 6, src: "3ffe:2501:200:1fff::7", dst: "3ffe:2501:200:3::1" } as const;
const PORTS = { srcPort: 2794, dstPort: 1766 };

describe("the RSS hash of a frame (Microsoft's verification vectors)", () => {
  it("hashes TCP on addresses and ports, UDP on addresses only unless UDP hashing is on", () => {
    expect(rssHash(hasher, frame(V4, { kind: "tcp", ...PORTS, seq: 1 }))).toBe(0x51ccc178);
    expect(rssHash(hasher, frame(V4, { kind: "udp", ...PORTS }))).toBe(0x323e8fc2);
    expect(rssHash(hasher, frame(V4, { kind: "udp", ...PORTS }), true)).toBe(0x51ccc178);
    expect(rssHash(hasher, frame(V6, { kind: "tcp", ...PORTS, seq: 1 }))).toBe(0x40207d3d);
    expect(rssHash(hasher, frame(V6, { kind: "udp", ...PORTS }))).toBe(0x2cc18cd5);
    expect(rssHash(hasher, frame(V6, { kind: "udp", ...PORTS }), true)).toBe(0x40207d3d);
    // Behind an 802.1Q tag the headers move by 4 bytes; the hash does not.
    expect(rssHash(hasher, frame(V4, { kind: "tcp", ...PORTS, seq: 1 }, 16, 5))).toBe(0x51ccc178);
  });

  it("gives 0 for a frame that is not IP, and for one that does not parse", () => {
    const arp = new Uint8Array(60);
    arp.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x15, 0x5d, 0, 0, 1, 0x08, 0x06]);
    expect(rssHash(hasher, arp)).toBe(0);
    expect(rssHash(hasher, frame(V4, { kind: "tcp", ...PORTS, seq: 1 }).subarray(0, 30))).toBe(0);
  });

  it("sends a default-queue frame to the processor its indirection entry (hash mod 128) names", () => {
    const nic = new VirtualNic({ queues: 2, processors: 4, jumboPacket: 1514, rss: true, hasher });
    const tcp = frame(V4, { kind: "tcp", ...PORTS, seq: 1 });
    const bucket = 0x51ccc178 % RSS_INDIRECTION_ENTRIES; // 0x78
    nic.indirection.fill(0);
    nic.indirection[bucket] = 3;
    expect(nic.classify(tcp)).toEqual({ queue: 0, processor: 3, drop: null });
    nic.indirection[bucket] = 2;
    expect(nic.classify(tcp).processor).toBe(2);
    // UDP lands in the bucket of its address-only hash (0x323e8fc2 mod 128 = 0x42).
    const udp = frame(V4, { kind: "udp", ...PORTS });
    nic.indirection[0x323e8fc2 % RSS_INDIRECTION_ENTRIES] = 1;
    expect(nic.classify(udp).processor).toBe(1);
    // Microsoft's fourth IPv4 vector, 38.27.205.30:48228 -> 209.142.163.6:2217, hashes to
    // 0xafc7327f: the last entry, 127, which a mask one short of the table never reaches.
    const last = frame(
      { version: 4, src: "38.27.205.30", dst: "209.142.163.6" },
      { kind: "tcp", srcPort: 48228, dstPort: 2217, seq: 1 },
    );
    nic.indirection.fill(0);
    nic.indirection[127] = 3;
    expect(nic.classify(last).processor).toBe(3);
    nic.indirection[127] = 0;
    nic.indirection[126] = 3;
    expect(nic.classify(last).processor).toBe(0);
    // A frame a VMQ filter takes goes to its queue's processor, whatever the hash.
    const q = nic.attach({ name: "vm", mac: "00:15:5d:00:00:42" });
    q.processor = 1;
    const own = frame(V4, { kind: "tcp", ...PORTS, seq: 1 }, 16, undefined, "00:15:5d:00:00:42");
    expect(nic.classify(own)).toEqual({ queue: q.index, processor: 1, drop: null });
    // Without RSS the default queue stays on its own processor.
    const plain = new VirtualNic({ queues: 2, processors: 4, jumboPacket: 1514, hasher });
    expect(plain.classify(tcp).processor).toBe(0);
  });
});

describe("the VMQ NIC's set-up", () => {
  it("spreads queues and indirection entries round robin over the processors", () => {
    const nic = new VirtualNic({ queues: 5, processors: 3, jumboPacket: 1514 });
    expect(nic.queues.map((q) => q.processor)).toEqual([0, 1, 2, 0, 1]);
    expect(nic.queues.map((q) => q.vm)).toEqual([-1, -1, -1, -1, -1]);
    expect(nic.indirection.length).toBe(128);
    expect([...nic.indirection]).toEqual(Array.from({ length: 128 }, (_, i) => i % 3));
  });

  it("takes 1 to 64 queues and processors and a jumbo packet of 64 bytes up to a capture's limit", () => {
    const ok = { queues: 1, processors: 1, jumboPacket: 64 };
    expect(() => new VirtualNic(ok)).not.toThrow();
    expect(
      () => new VirtualNic({ queues: 64, processors: 64, jumboPacket: MAX_CAPTURED_PACKET }),
    ).not.toThrow();
    expect(() => new VirtualNic({ ...ok, queues: 0 })).toThrow(
      "a VMQ NIC has 1 to 64 queues, not 0",
    );
    expect(() => new VirtualNic({ ...ok, queues: 65 })).toThrow("1 to 64 queues, not 65");
    expect(() => new VirtualNic({ ...ok, queues: 1.5 })).toThrow("1 to 64 queues, not 1.5");
    expect(() => new VirtualNic({ ...ok, processors: 0 })).toThrow(
      "processors must be 1 to 64, not 0",
    );
    expect(() => new VirtualNic({ ...ok, processors: 65 })).toThrow("1 to 64, not 65");
    expect(() => new VirtualNic({ ...ok, processors: Number.NaN })).toThrow("1 to 64, not NaN");
    expect(() => new VirtualNic({ ...ok, jumboPacket: 63 })).toThrow(
      `jumbo packet size must be 64 to ${MAX_CAPTURED_PACKET} bytes, not 63`,
    );
    expect(() => new VirtualNic({ ...ok, jumboPacket: MAX_CAPTURED_PACKET + 1 })).toThrow(
      `not ${MAX_CAPTURED_PACKET + 1}`,
    );
    expect(() => new VirtualNic({ ...ok, jumboPacket: 1514.5 })).toThrow("not 1514.5");
    expect(() => new VirtualNic({ ...ok, rss: true })).toThrow("RSS needs a Toeplitz hasher");
  });

  it("gives a VM that found no free queue the default queue, and names each VM's queue", () => {
    const nic = new VirtualNic({ queues: 2, processors: 1, jumboPacket: 1514 });
    expect(nic.attach({ name: "a", mac: "00:15:5d:00:00:01" }).index).toBe(1);
    expect(nic.attach({ name: "b", mac: "00:15:5d:00:00:02" }).index).toBe(0);
    expect(nic.queueOf(0).index).toBe(1);
    expect(nic.queueOf(1).index).toBe(0);
    expect(nic.queues[1]?.vm).toBe(0);
    expect(nic.queues[1]?.filters).toEqual([{ mac: 0x00155d000001 }]);
  });
});

describe("jumbo frames: the *JumboPacket size bounds a frame, Ethernet header included", () => {
  for (const jumboPacket of [JUMBO_PACKET_DEFAULT, JUMBO_PACKET_9014]) {
    it(`${jumboPacket}: a frame of exactly that size is taken, one byte more dropped; a tag adds 4`, () => {
      const nic = new VirtualNic({ queues: 1, processors: 1, jumboPacket });
      const udp = { kind: "udp", ...PORTS } as const;
      const overhead = 14 + 20 + 8;
      const fits = frame(V4, udp, jumboPacket - overhead);
      expect(fits.length).toBe(jumboPacket);
      expect(nic.classify(fits).drop).toBeNull();
      expect(nic.classify(frame(V4, udp, jumboPacket - overhead + 1)).drop).toBe("oversize");
      const tagged = frame(V4, udp, jumboPacket - overhead, 7);
      expect(tagged.length).toBe(jumboPacket + 4);
      expect(nic.classify(tagged).drop).toBeNull();
      expect(nic.classify(frame(V4, udp, jumboPacket - overhead + 1, 7)).drop).toBe("oversize");
      expect(nic.maxFrame(false)).toBe(jumboPacket);
      expect(nic.maxFrame(true)).toBe(jumboPacket + 4);
    });
  }

  it("drops a frame shorter than an Ethernet header as a runt, and takes one of 14 bytes", () => {
    const nic = new VirtualNic({ queues: 1, processors: 1, jumboPacket: 1514 });
    const header = new Uint8Array(14);
    header.set([0, 0x15, 0x5d, 0x99, 0x99, 0x99]);
    expect(nic.classify(header.subarray(0, 13))).toEqual({ queue: 0, processor: 0, drop: "runt" });
    expect(nic.classify(header).drop).toBeNull();
  });
});

describe("Dynamic VMQ's rebalancing thresholds", () => {
  it("leaves a gap of a quarter of the busiest processor's load alone, and moves past it", () => {
    // Queues 0 and 2 on processor 0, 1 on processor 1.
    const at = (busy0: number, busy1: number) => {
      const nic = new VirtualNic({ queues: 3, processors: 2, jumboPacket: 1514 });
      return rebalance(nic, [
        { queue: 0, busyNs: busy0 - 20 },
        { queue: 2, busyNs: 20 },
        { queue: 1, busyNs: busy1 },
      ]);
    };
    // Gap 100 of 400: exactly a quarter, no move.
    expect(at(400, 300)).toBeNull();
    // Gap 101: queue 2 (20 ns) narrows it to 61, under 0.8 x 101.
    expect(at(401, 300)).toEqual({ queue: 2, from: 0, to: 1 });
  });

  it("moves a queue only when the gap shrinks below 0.8 of what it was", () => {
    // Processor 0: queues 0 and 2; processor 1: queue 1 at 100 ns. Moving a load L
    // from processor 0 turns a gap G into |G - 2L|.
    const move = (q0: number, q2: number) =>
      rebalance(new VirtualNic({ queues: 3, processors: 2, jumboPacket: 1514 }), [
        { queue: 0, busyNs: q0 },
        { queue: 1, busyNs: 100 },
        { queue: 2, busyNs: q2 },
      ]);
    // G = 900: queue 0 would leave 1,100 and queue 2 is idle: nothing moves.
    expect(move(1000, 0)).toBeNull();
    // G = 1,000: queue 2 (100) would leave 800, exactly 0.8 G, not below: it stays.
    expect(move(1000, 100)).toBeNull();
    // G = 1,100: queue 2 (200) leaves 700 (queue 0 would leave 900, over 0.8 G): queue 2 moves.
    expect(move(1000, 200)).toEqual({ queue: 2, from: 0, to: 1 });
  });

  it("keeps the default queue where it is when RSS spreads it already", () => {
    // Processor 0: queue 0 (300) and queue 2 (700); processor 1: queue 1 (idle). Gap 1000.
    const loads = [
      { queue: 0, busyNs: 300 },
      { queue: 2, busyNs: 700 },
    ];
    // Moving queue 0 leaves a gap of 400, queue 2 one of 400 too: the first found, queue 0, moves.
    const plain = new VirtualNic({ queues: 3, processors: 2, jumboPacket: 1514 });
    expect(rebalance(plain, loads)).toEqual({ queue: 0, from: 0, to: 1 });
    // With RSS the default queue's flows are spread already: queue 2 moves instead.
    const rss = new VirtualNic({ queues: 3, processors: 2, jumboPacket: 1514, rss: true, hasher });
    expect(rebalance(rss, loads)).toEqual({ queue: 2, from: 0, to: 1 });
    expect(rss.queues[0]?.processor).toBe(0);
  });
});
