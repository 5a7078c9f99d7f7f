import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { buildFrame, type FrameSpec } from "../src/net/build.js";
import { ToeplitzHasher } from "../src/net/rss.js";
import { RSS_INDIRECTION_ENTRIES, rebalance, rssHash, VirtualNic } from "../src/net/vmq.js";

/*
 * The VMQ NIC's edges: what counts as an 802.1Q tag (the whole TPID
 * 0x8100), VLAN IDs above 255, an untagged frame against a VLAN filter,
 * RSS's UDP hash type and fragments (hashed on addresses only: only the
 * first carries ports), and which processor Dynamic VMQ calls busiest and
 * idlest when loads tie (the first). Hashes are Microsoft's RSS
 * verification vectors ("Verifying the RSS Hash Calculation").
 */
let hasher: ToeplitzHasher;
beforeAll(() => {
  hasher = new ToeplitzHasher(new MemoryLayout());
});

const VM_MAC = "00:15:5d:00:00:20";
const V4 = { version: 4, src: "66.9.149.187", dst: "161.142.100.80" } as const;
const PORTS = { srcPort: 2794, dstPort: 1766 };
/** Microsoft's first IPv4 vector: with ports, and on the addresses alone. */
const WITH_PORTS = 0x51ccc178;
const ADDRESSES_ONLY = 0x323e8fc2;

function frame(l4: FrameSpec["l4"], dst = VM_MAC, vlan?: number): Uint8Array {
  return buildFrame(
    {
      ethernet: { dst, src: "00:15:5d:ff:ff:ff", ...(vlan !== undefined ? { vlan } : {}) },
      ip: V4,
      l4,
    },
    new Uint8Array(16),
  );
}

describe("VMQ classification edges", () => {
  it("takes only the TPID 0x8100 as a tag, both of its bytes", () => {
    const nic = new VirtualNic({ queues: 2, processors: 1, jumboPacket: 1514 });
    const q = nic.attach({ name: "a", mac: VM_MAC, vlan: 7 });
    const tagged = frame({ kind: "udp", ...PORTS }, VM_MAC, 7);
    expect(nic.classify(tagged).queue).toBe(q.index);
    // 0x8137 is IPX, not a tag: bytes 14-15 are no VLAN ID then.
    const other = tagged.slice();
    other[13] = 0x37;
    expect(nic.classify(other).queue).toBe(0);
  });

  it("reads both bytes of a VLAN ID, and matches no VLAN filter on an untagged frame", () => {
    const nic = new VirtualNic({ queues: 3, processors: 1, jumboPacket: 1514 });
    const high = nic.attach({ name: "a", mac: VM_MAC, vlan: 0x107 });
    const one = nic.attach({ name: "b", mac: "00:15:5d:00:00:21", vlan: 1 });
    expect(nic.classify(frame({ kind: "udp", ...PORTS }, VM_MAC, 0x107)).queue).toBe(high.index);
    expect(nic.classify(frame({ kind: "udp", ...PORTS }, VM_MAC, 7)).queue).toBe(0);
    expect(nic.classify(frame({ kind: "udp", ...PORTS }, "00:15:5d:00:00:21", 1)).queue).toBe(
      one.index,
    );
    expect(nic.classify(frame({ kind: "udp", ...PORTS }, "00:15:5d:00:00:21")).queue).toBe(0);
  });

  it("hashes UDP ports when asked (NDIS 6.80), a fragment on its addresses only", () => {
    const udp = frame({ kind: "udp", ...PORTS }, "00:15:5d:99:99:99");
    expect(rssHash(hasher, udp, true)).toBe(WITH_PORTS);
    const nic = new VirtualNic({
      queues: 1,
      processors: 4,
      jumboPacket: 1514,
      rss: true,
      hasher,
      hashUdpPorts: true,
    });
    nic.indirection.fill(0);
    nic.indirection[WITH_PORTS % RSS_INDIRECTION_ENTRIES] = 3;
    nic.indirection[ADDRESSES_ONLY % RSS_INDIRECTION_ENTRIES] = 1;
    expect(nic.classify(udp).processor).toBe(3);
    // A TCP fragment (MF set): its first bytes after the IP header are no ports to hash.
    const fragment = frame({ kind: "tcp", ...PORTS, seq: 1 }, "00:15:5d:99:99:99");
    fragment[20] = 0x20;
    expect(rssHash(hasher, fragment)).toBe(ADDRESSES_ONLY);
    expect(nic.classify(fragment).processor).toBe(1);
  });
});

describe("RSS on frames that are not IP", () => {
  it("hashes an ARP request to 0, whatever its addresses", () => {
    // RFC 826: Ethernet, IPv4, request; sender 00:15:5d:00:00:01 at 10.0.0.1 asks for 10.0.0.2.
    const arp = Uint8Array.of(
      ...[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x15, 0x5d, 0x00, 0x00, 0x01, 0x08, 0x06],
      ...[0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01],
      ...[0x00, 0x15, 0x5d, 0x00, 0x00, 0x01, 10, 0, 0, 1],
      ...[0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 10, 0, 0, 2],
      ...new Array<number>(18).fill(0),
    );
    expect(arp.length).toBe(60);
    expect(rssHash(hasher, arp)).toBe(0);
    const nic = new VirtualNic({ queues: 1, processors: 4, jumboPacket: 1514, rss: true, hasher });
    nic.indirection.fill(3);
    nic.indirection[0] = 2;
    expect(nic.classify(arp)).toEqual({ queue: 0, processor: 2, drop: null });
  });
});

describe("Dynamic VMQ: the busiest and the idlest processor", () => {
  /** Three processors; queue i on processor i, and each extra queue on the processor given. */
  const nicOf = (...extra: { index: number; processor: number }[]) => {
    const nic = new VirtualNic({ queues: 3, processors: 3, jumboPacket: 1514 });
    for (const { index, processor } of extra)
      nic.queues.push({ index, filters: [], vm: -1, processor });
    return nic;
  };

  it("moves off the busiest processor whichever it is, onto the idlest whichever it is", () => {
    const loads = (b0: number, b1: number, b2: number) => [
      { queue: 0, busyNs: b0 },
      { queue: 1, busyNs: b1 },
      { queue: 2, busyNs: b2 },
    ];
    // Processor 0 busiest (500 ns), 2 idlest (10): moving queue 0, its only one, leaves
    // a gap of 510 against 490, no gain, so nothing moves.
    expect(rebalance(nicOf(), loads(500, 400, 10))).toBeNull();
    // Processor 1 busiest (1,200 ns), 2 idlest: its 300 ns queue narrows the gap, and moves to 2.
    const nic = nicOf({ index: 3, processor: 1 });
    expect(rebalance(nic, [...loads(500, 900, 10), { queue: 3, busyNs: 300 }])).toEqual({
      queue: 3,
      from: 1,
      to: 2,
    });
  });

  it("moves onto the least loaded processor when none is idle", () => {
    const nic = nicOf({ index: 3, processor: 0 });
    // Processor 0 at 1,000 ns, 1 at 100, 2 at 500: processor 1 takes the move.
    expect(
      rebalance(nic, [
        { queue: 0, busyNs: 700 },
        { queue: 3, busyNs: 300 },
        { queue: 1, busyNs: 100 },
        { queue: 2, busyNs: 500 },
      ]),
    ).toEqual({ queue: 3, from: 0, to: 1 });
  });

  it("takes the first processor of equal load as the busiest and as the idlest", () => {
    const nic = nicOf({ index: 3, processor: 0 }, { index: 4, processor: 1 });
    // Processors 0 and 1 tie at 1,000 ns; 2 is idle.
    const move = rebalance(nic, [
      { queue: 0, busyNs: 700 },
      { queue: 3, busyNs: 300 },
      { queue: 1, busyNs: 700 },
      { queue: 4, busyNs: 300 },
    ]);
    // Queues 0 and 3 would each leave a gap of 400: the first found, queue 0, moves.
    expect(move).toEqual({ queue: 0, from: 0, to: 2 });
    // Processors 1 and 2 tie idle: the move goes to 1.
    const idle = nicOf({ index: 3, processor: 0 });
    expect(
      rebalance(idle, [
        { queue: 0, busyNs: 700 },
        { queue: 3, busyNs: 300 },
      ]),
    ).toEqual({ queue: 0, from: 0, to: 1 });
  });
});
