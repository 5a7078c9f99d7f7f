import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { buildFrame } from "../src/net/build.js";
import { destinationMac, parseFrame } from "../src/net/frame.js";
import { Segmenter } from "../src/net/lso.js";
import { type ReceiveConfig, ReceivePath } from "../src/net/receive.js";
import { RX_COALESCED, type RxSlot } from "../src/net/ring.js";
import { generateTraffic, type TrafficSpec } from "../src/net/traffic.js";
import { macNumber, rebalance, VirtualNic, type VmPort } from "../src/net/vmq.js";
import { onesAdd, onesSumOracle } from "../src/oracle/checksum.js";
import { KernelPool } from "../src/pool/pool.js";

const VMS: (VmPort & { weight: number })[] = [
  { name: "vm0", mac: "00:15:5d:00:00:10", weight: 4 },
  { name: "vm1", mac: "00:15:5d:00:00:11", weight: 1 },
  { name: "vm2", mac: "00:15:5d:00:00:12", weight: 1, vlan: 5 },
  { name: "vm3", mac: "00:15:5d:00:00:13", weight: 1 },
];

const BASE: ReceiveConfig = {
  mode: "vmq",
  queues: 3,
  processors: 2,
  rss: false,
  jumboPacket: 1514,
  coalesce: true,
  rebalance: false,
  ringSlots: 512,
  bufferBytes: 8 * 1024 * 1024,
};

let segmenter: Segmenter;
let traffic: Uint8Array[];
const spec: TrafficSpec = {
  vms: VMS,
  flowsPerVm: 3,
  frames: 3000,
  mtu: 1500,
  ipVersion: 4,
  sendBytes: 16 * 1460,
  burst: 6,
  broadcastEvery: 100,
  corruptFraction: 0.01,
  seed: 9,
};
let pool: KernelPool;
let shared: MemoryLayout;

beforeAll(() => {
  segmenter = new Segmenter(new MemoryLayout(), 128 * 1024);
  traffic = generateTraffic(segmenter, spec);
  shared = new MemoryLayout();
  pool = new KernelPool(shared, { threads: 2, domains: ["net"] });
});
afterAll(async () => {
  await pool.close();
});

/** The transport checksum of a frame verifies (the byte-at-a-time oracle). */
function checksumGood(f: Uint8Array): boolean {
  const p = parseFrame(f);
  const n = p.ipVersion === 4 ? 4 : 16;
  const len = p.ipEnd - p.l4;
  const pseudo = onesAdd(
    onesSumOracle(f, p.dstAddress, n, onesSumOracle(f, p.srcAddress, n, p.protocol)),
    len,
  );
  return onesSumOracle(f, p.l4, len, pseudo) === 0xffff;
}

/** Payload bytes of the good unicast TCP frames addressed to each VM, the broadcasts, the corrupt. */
function expected(frames: Uint8Array[]): {
  payload: number[];
  broadcasts: number;
  corrupt: number;
} {
  const payload = VMS.map(() => 0);
  let broadcasts = 0;
  let corrupt = 0;
  for (const f of frames) {
    if (f[0] === 0xff) {
      broadcasts++;
      continue;
    }
    if (!checksumGood(f)) {
      corrupt++;
      continue;
    }
    const vm = VMS.findIndex((v) => macNumber(v.mac) === destinationMac(f));
    payload[vm] = (payload[vm] ?? 0) + parseFrame(f).payloadLength;
  }
  return { payload, broadcasts, corrupt };
}

function payloadDelivered(slots: RxSlot[]): { tcp: number; broadcasts: number; coalesced: number } {
  let tcp = 0;
  let broadcasts = 0;
  let coalesced = 0;
  for (const s of slots) {
    if (s.bytes[0] === 0xff) {
      broadcasts++;
      continue;
    }
    const p = parseFrame(s.bytes, 0, s.bytes.length, { superFrame: true });
    tcp += p.payloadLength;
    if (s.flags & RX_COALESCED) coalesced++;
  }
  return { tcp, broadcasts, coalesced };
}

describe("VMQ NIC classification (NDIS 6.20 VMQ)", () => {
  it("hands queues out first come first served and sends the rest to the default queue", () => {
    const nic = new VirtualNic({ queues: 3, processors: 2, jumboPacket: 1514 });
    expect(VMS.map((vm) => nic.attach(vm).index)).toEqual([1, 2, 0, 0]);
  });

  it("matches MAC AND VLAN within a filter, any filter of a queue (OR)", () => {
    const nic = new VirtualNic({ queues: 2, processors: 1, jumboPacket: 1514 });
    const q = nic.attach({ name: "a", mac: "00:15:5d:00:00:20", vlan: 7 });
    nic.addFilter(q, { mac: macNumber("00:15:5d:00:00:21") });
    const frame = (mac: string, vlan?: number) =>
      buildFrame(
        {
          ethernet: { dst: mac, src: "00:15:5d:ff:ff:ff", ...(vlan !== undefined ? { vlan } : {}) },
          ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2" },
          l4: { kind: "udp", srcPort: 1, dstPort: 2 },
        },
        new Uint8Array(20),
      );
    expect(nic.classify(frame("00:15:5d:00:00:20", 7)).queue).toBe(1);
    expect(nic.classify(frame("00:15:5d:00:00:20", 8)).queue).toBe(0);
    expect(nic.classify(frame("00:15:5d:00:00:20")).queue).toBe(0);
    expect(nic.classify(frame("00:15:5d:00:00:21", 99)).queue).toBe(1);
    expect(nic.classify(frame("ff:ff:ff:ff:ff:ff")).queue).toBe(0);
    expect(nic.classify(frame("01:00:5e:00:00:01")).queue).toBe(0);
    expect(nic.classify(new Uint8Array(1600)).drop).toBe("oversize");
    expect(nic.classify(new Uint8Array(10)).drop).toBe("runt");
  });

  it("rebalances the busiest processor's queue onto the idlest (Dynamic VMQ)", () => {
    const nic = new VirtualNic({ queues: 5, processors: 2, jumboPacket: 1514 });
    for (const vm of VMS) nic.attach(vm);
    // Round robin put queues 0, 2, 4 on processor 0 and 1, 3 on processor 1.
    const move = rebalance(nic, [
      { queue: 0, busyNs: 10 },
      { queue: 1, busyNs: 100 },
      { queue: 2, busyNs: 400 },
      { queue: 3, busyNs: 100 },
      { queue: 4, busyNs: 300 },
    ]);
    expect(move).toEqual({ queue: 4, from: 0, to: 1 });
    expect(nic.queues[4]?.processor).toBe(1);
  });
});

describe("receive path: validate, coalesce, deliver into each VM's ring", () => {
  for (const [label, config, usePool] of [
    ["VMQ on two pool workers", BASE, true],
    ["single queue, switch lookup, this thread", { ...BASE, mode: "single" as const }, false],
    [
      "single queue with RSS on two pool workers",
      { ...BASE, mode: "single" as const, rss: true },
      true,
    ],
  ] as const) {
    it(`${label}: every good byte reaches its VM, corrupt frames are counted`, async () => {
      // Pool workers hold the shared memory they were started with.
      const path = usePool
        ? new ReceivePath(
            shared,
            config,
            VMS,
            `rx.${label.split(" ")[0]}${config.rss ? ".rss" : ""}`,
          )
        : new ReceivePath(new MemoryLayout(), config, VMS);
      path.load(traffic);
      const got: RxSlot[][] = VMS.map(() => []);
      const result = await path.round(usePool ? pool : undefined, (vm, slots) =>
        got[vm]?.push(...slots),
      );
      const want = expected(traffic);
      expect(want.corrupt).toBeGreaterThan(10);
      expect(result.badChecksum).toBe(want.corrupt);
      expect(result.oversize).toBe(0);
      expect(result.malformed).toBe(0);
      expect(result.ringFull).toBe(0);
      for (const [i, slots] of got.entries()) {
        const d = payloadDelivered(slots);
        // Broadcasts are flooded to every VM; every good TCP byte reaches its VM.
        expect(d.broadcasts).toBe(want.broadcasts);
        expect(d.tcp).toBe(want.payload[i]);
        expect(d.coalesced).toBeGreaterThan(0);
      }
      if (config.mode === "single") expect(result.lookups).toBeGreaterThan(0);
      else {
        // VMs with their own queue need no switch lookup: only the default queue's frames do.
        expect(result.lookups).toBeLessThan(traffic.length / 2);
      }
    });
  }

  it("sends a queue's frames to its new processor in the round after a move, and re-sorts frames loaded anew", async () => {
    const path = new ReceivePath(new MemoryLayout(), BASE, VMS);
    path.load(traffic);
    const before = await path.round();
    const framesOf = (r: typeof before, p: number) =>
      r.processors.find((l) => l.processor === p)?.result.frames ?? 0;
    const byQueue = (r: typeof before) =>
      new Map(r.queues.map((q) => [q.queue, { processor: q.processor, frames: q.frames }]));
    const queue1 = byQueue(before).get(1);
    if (!queue1) throw new Error("queue 1 took no frames");
    // Queue 1 (vm0, the heaviest VM) moves to the other processor, as Dynamic VMQ would.
    const from = queue1.processor;
    const to = 1 - from;
    const q = path.nic.queues[1];
    if (!q) throw new Error("no queue 1");
    q.processor = to;
    const after = await path.round();
    expect(byQueue(after).get(1)).toEqual({ processor: to, frames: queue1.frames });
    expect(framesOf(after, to)).toBe(framesOf(before, to) + queue1.frames);
    expect(framesOf(after, from)).toBe(framesOf(before, from) - queue1.frames);
    expect(after.bytes).toBe(before.bytes);
    // Half the frames loaded anew: the round takes exactly those.
    const half = traffic.slice(0, traffic.length >> 1);
    path.load(half);
    const reloaded = await path.round();
    expect(reloaded.frames).toBe(half.length);
    expect(
      reloaded.processors.reduce((a, l) => a + l.result.frames, 0) +
        reloaded.oversize +
        reloaded.runts,
    ).toBe(half.length);
  });

  it("drops and counts 9000-MTU frames at the 1514 jumbo packet setting, takes them at 9014", async () => {
    const big = generateTraffic(segmenter, {
      ...spec,
      mtu: 9000,
      frames: 400,
      sendBytes: 4 * 8960,
      corruptFraction: 0,
      broadcastEvery: 0,
    });
    const small = new ReceivePath(new MemoryLayout(), { ...BASE, coalesce: false }, VMS);
    small.load(big);
    const r1 = await small.round();
    expect(r1.oversize).toBe(big.filter((f) => f.length > 1514 + (f[12] === 0x81 ? 4 : 0)).length);
    expect(r1.oversize).toBeGreaterThan(300);
    const jumbo = new ReceivePath(
      new MemoryLayout(),
      { ...BASE, coalesce: false, jumboPacket: 9014 },
      VMS,
    );
    jumbo.load(big);
    const r2 = await jumbo.round();
    expect(r2.oversize).toBe(0);
    expect(r2.delivered).toBe(big.length);
  });
});
