import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import {
  type ReceiveConfig,
  ReceivePath,
  type RoundResult,
  RSC_MAX_BYTES,
} from "../src/net/receive.js";
import { RX_CHECKSUM_GOOD, type RxSlot } from "../src/net/ring.js";
import { MAX_ROUNDS_PER_TASK } from "../src/net/task-types.js";
import { RSS_INDIRECTION_ENTRIES, rssHash, type VmPort } from "../src/net/vmq.js";
import { ETH, frame, TCP, UDP } from "./support/net-frames.js";

/*
 * Rules of the host's receive path (ReceivePath) run on this thread (no
 * pool), each checked against counts worked out in this file from the
 * frames it builds:
 *
 * - VMQ (NDIS 6.20): the NIC sorts a VM's frames into the VM's own queue,
 *   queues are bound to processors round robin, each processor does its
 *   queues' frames, and the switch looks up no MAC for them; frames of the
 *   default queue (unknown or group MACs) go through the switch's lookup.
 * - VMQ off: one queue and one processor (unless RSS spreads it), the switch
 *   looking up every frame.
 * - RSS: the default queue's frames go to the processor the indirection
 *   table gives for their Toeplitz hash; UDP is hashed on its addresses
 *   only unless the NDIS 6.80 UDP hash types are asked for.
 * - The NIC drops runts and frames over the jumbo packet size (plus 4 bytes
 *   for an 802.1Q tag) on arrival, and counts each kind.
 * - A batch of rounds sums what its rounds did, the VMs consuming their
 *   rings between rounds, so the caller sees the last round's frames only.
 */

const layout = new MemoryLayout();
let paths = 0;

const VMS: VmPort[] = [
  { name: "vm0", mac: "00:15:5d:00:03:10" },
  { name: "vm1", mac: "00:15:5d:00:03:11" },
  { name: "vm2", mac: "00:15:5d:00:03:12" },
  { name: "vm3", mac: "00:15:5d:00:03:13" },
];

const BASE: ReceiveConfig = {
  mode: "vmq",
  queues: 5,
  processors: 2,
  rss: false,
  jumboPacket: 1514,
  coalesce: false,
  rebalance: false,
  ringSlots: 32,
  bufferBytes: 1 << 18,
};

function pathOf(config: ReceiveConfig, vms: readonly VmPort[] = VMS): ReceivePath {
  paths++;
  return new ReceivePath(layout, config, vms, `rx.rules${paths}`);
}

function vmAt(vm: number): VmPort {
  const v = VMS[vm];
  if (!v) throw new Error(`no vm ${vm}`);
  return v;
}

/** A TCP/IPv4 frame to `vm` (54 bytes of headers, then `payload` bytes). */
function toVm(vm: number, payload: number, srcPort = 1000): Uint8Array {
  return frame({ ethernet: { dst: vmAt(vm).mac, src: ETH.src }, l4: { ...TCP, srcPort } }, payload);
}

/** A UDP/IPv4 frame to `vm` from `srcPort`. */
function udpToVm(vm: number, srcPort: number): Uint8Array {
  return frame({ ethernet: { dst: vmAt(vm).mac, src: ETH.src }, l4: { ...UDP, srcPort } }, 20);
}

/** Runs one round, keeping what each VM's ring held after it. */
async function roundOf(
  path: ReceivePath,
  rounds = 1,
): Promise<{ result: RoundResult; slots: RxSlot[][] }> {
  const slots: RxSlot[][] = path.vms.map(() => []);
  const result = await path.rounds(rounds, undefined, (vm, s) => {
    slots[vm] = s;
  });
  return { result, slots };
}

const sumBytes = (frames: readonly Uint8Array[]) => frames.reduce((a, f) => a + f.length, 0);

describe("VMQ: each VM's frames in its own queue, on its queue's processor", () => {
  // Arrival order: queue 4 first, and the frames of queues 2 and 4 (both on
  // processor 0) interleaved, so a processor's work list names two rings in turn.
  const order = [3, 1, 0, 3, 2, 1, 1, 3, 0, 2, 3, 1];
  const frames = order.map((vm, i) => toVm(vm, 40 + 10 * vm + i));
  const byVm = VMS.map((_, vm) => frames.filter((_, i) => order[i] === vm));

  it("delivers every frame, unchanged, to its VM and to no other, without switch lookups", async () => {
    const path = pathOf(BASE);
    path.load(frames);
    expect(path.pending).toBe(frames.length);
    const { result, slots } = await roundOf(path);
    for (const [vm, want] of byVm.entries()) {
      expect(slots[vm]?.map((s) => s.bytes)).toEqual(want);
    }
    expect(result).toMatchObject({
      rounds: 1,
      frames: frames.length,
      delivered: frames.length,
      bytes: sumBytes(frames),
      lookups: 0,
      unknownMac: 0,
      coalescedSegments: 0,
      oversize: 0,
      runts: 0,
      moved: null,
    });
    // Queue i+1 went to VM i when it attached (first come, first served).
    expect(result.vms).toEqual(
      VMS.map((vm, i) => ({
        name: vm.name,
        queue: i + 1,
        delivered: byVm[i]?.length,
        bytes: sumBytes(byVm[i] ?? []),
      })),
    );
  });

  it("binds queues to processors round robin, and each processor does its queues' frames", async () => {
    const path = pathOf(BASE);
    path.load(frames);
    const { result } = await roundOf(path);
    const p0 = [...(byVm[1] ?? []), ...(byVm[3] ?? [])];
    const p1 = [...(byVm[0] ?? []), ...(byVm[2] ?? [])];
    expect(result.processors.map((p) => [p.processor, p.queues])).toEqual([
      [0, [0, 2, 4]],
      [1, [1, 3]],
    ]);
    expect(
      result.processors.map((p) => [p.result.frames, p.result.delivered, p.result.bytes]),
    ).toEqual([
      [p0.length, p0.length, sumBytes(p0)],
      [p1.length, p1.length, sumBytes(p1)],
    ]);
    // What each queue took from the NIC, by queue number whatever the arrival order.
    expect(result.queues).toEqual(
      VMS.map((_, vm) => ({
        queue: vm + 1,
        processor: (vm + 1) % 2,
        frames: byVm[vm]?.length,
        bytes: sumBytes(byVm[vm] ?? []),
      })),
    );
  });

  it("a processor with no queue traffic reports zero counts and no busy time", async () => {
    const path = pathOf(BASE);
    // VM 1's queue (2) is on processor 0; processor 1 gets nothing.
    const mine = [toVm(1, 100), toVm(1, 200)];
    path.load(mine);
    const { result } = await roundOf(path);
    expect(result.processors[1]).toEqual({
      processor: 1,
      queues: [1, 3],
      result: {
        frames: 0,
        delivered: 0,
        coalescedSegments: 0,
        badChecksum: 0,
        malformed: 0,
        unknownMac: 0,
        lookups: 0,
        ringFull: 0,
        bytes: 0,
        busyNs: 0,
      },
    });
    expect(result.processors[0]?.result.frames).toBe(2);
    expect(result.queues).toEqual([{ queue: 2, processor: 0, frames: 2, bytes: sumBytes(mine) }]);
  });

  it("frames of the default queue go through the switch: unknown unicast is counted and dropped", async () => {
    const path = pathOf(BASE);
    const stranger = frame({ ethernet: { dst: "00:15:5d:00:09:99", src: ETH.src } }, 30);
    const mine = toVm(2, 30);
    path.load([stranger, mine, stranger]);
    const { result, slots } = await roundOf(path);
    expect(result).toMatchObject({ frames: 3, delivered: 1, unknownMac: 2, lookups: 2 });
    expect(slots[2]?.map((s) => s.bytes)).toEqual([mine]);
    expect(result.queues).toEqual([
      { queue: 0, processor: 0, frames: 2, bytes: 2 * stranger.length },
      { queue: 3, processor: 1, frames: 1, bytes: mine.length },
    ]);
  });

  it("a round before any frame was loaded does nothing", async () => {
    const path = pathOf(BASE);
    expect(path.pending).toBe(0);
    const { result } = await roundOf(path);
    expect(result).toMatchObject({ frames: 0, delivered: 0, oversize: 0, runts: 0, bytes: 0 });
    expect(result.queues).toEqual([]);
    expect(result.processors.map((p) => p.result.frames)).toEqual([0, 0]);
  });
});

describe("VMQ off: one queue, one processor, the switch's lookup for every frame", () => {
  it("uses one queue and one processor whatever queues and processors the config names", async () => {
    const path = pathOf({ ...BASE, mode: "single" });
    expect(path.nic.queues.length).toBe(1);
    expect(path.nic.options.processors).toBe(1);
    const frames = [toVm(0, 10), toVm(3, 20), toVm(1, 30)];
    path.load(frames);
    const { result, slots } = await roundOf(path);
    expect(result.processors.map((p) => [p.processor, p.queues, p.result.frames])).toEqual([
      [0, [0], 3],
    ]);
    expect(result).toMatchObject({ delivered: 3, lookups: 3, unknownMac: 0 });
    expect(result.vms.map((v) => [v.queue, v.delivered])).toEqual([
      [0, 1],
      [0, 1],
      [0, 0],
      [0, 1],
    ]);
    expect(slots[3]?.map((s) => s.bytes)).toEqual([frames[1]]);
    expect(result.queues).toEqual([{ queue: 0, processor: 0, frames: 3, bytes: sumBytes(frames) }]);
  });

  it("VMQ uses the configured queues and processors", () => {
    const path = pathOf({ ...BASE, queues: 3, processors: 2 });
    expect(path.nic.queues.length).toBe(3);
    expect(path.nic.options.processors).toBe(2);
  });
});

describe("RSS spreads the default queue by the Toeplitz hash", () => {
  /** The processor RSS gives `f`: its hash's bucket in the NIC's indirection table. */
  function rssProcessor(path: ReceivePath, f: Uint8Array, udpPorts: boolean): number {
    const hasher = path.nic.options.hasher;
    if (!hasher) throw new Error("no hasher");
    return path.nic.indirection[rssHash(hasher, f, udpPorts) & (RSS_INDIRECTION_ENTRIES - 1)] ?? -1;
  }

  it("sends each flow's frames to the processor its hash picks, and reports them by processor", async () => {
    const path = pathOf({ ...BASE, mode: "single", rss: true });
    expect(path.nic.options.processors).toBe(2);
    const flows = Array.from({ length: 24 }, (_, i) => toVm(i % 2, 20 + i, 2000 + i));
    const want = flows.map((f) => rssProcessor(path, f, false));
    // Both processors get flows (else the test shows nothing), and the first
    // frame goes to processor 1, so the report's order is not arrival order.
    expect(new Set(want).size).toBe(2);
    const first = want.indexOf(1);
    const frames = [...flows.slice(first), ...flows.slice(0, first)];
    const procs = [...want.slice(first), ...want.slice(0, first)];
    path.load(frames);
    const { result } = await roundOf(path);
    const on = (p: number) => frames.filter((_, i) => procs[i] === p);
    expect(result.processors.map((p) => p.result.frames)).toEqual([on(0).length, on(1).length]);
    expect(result.queues).toEqual([
      { queue: 0, processor: 0, frames: on(0).length, bytes: sumBytes(on(0)) },
      { queue: 0, processor: 1, frames: on(1).length, bytes: sumBytes(on(1)) },
    ]);
    expect(result).toMatchObject({ delivered: frames.length, lookups: frames.length });
  });

  it("the indirection table, not the default queue's own processor, picks the processor", async () => {
    const path = pathOf({ ...BASE, mode: "single", rss: true });
    path.nic.indirection.fill(0);
    const q0 = path.nic.queues[0];
    if (!q0) throw new Error("no default queue");
    q0.processor = 1;
    const frames = Array.from({ length: 6 }, (_, i) => toVm(0, 20, 3000 + i));
    path.load(frames);
    const { result } = await roundOf(path);
    expect(result.processors.map((p) => p.result.frames)).toEqual([6, 0]);
  });

  it("hashes UDP on its addresses only (NDIS 6.20), or on its ports too when asked (NDIS 6.80)", async () => {
    const frames = Array.from({ length: 16 }, (_, i) => udpToVm(0, 4000 + i));
    const busy = async (rssUdpPorts: boolean) => {
      const path = pathOf({ ...BASE, mode: "single", rss: true, rssUdpPorts });
      path.load(frames);
      const { result } = await roundOf(path);
      expect(result.delivered).toBe(frames.length);
      return result.processors.map((p) => p.result.frames);
    };
    const probe = pathOf({ ...BASE, mode: "single", rss: true });
    const withPorts = frames.map((f) => rssProcessor(probe, f, true));
    expect(new Set(withPorts).size).toBe(2);
    const byAddress = await busy(false);
    expect(byAddress.filter((n) => n > 0).length).toBe(1);
    expect(await busy(true)).toEqual([0, 1].map((p) => withPorts.filter((q) => q === p).length));
  });

  it("every region a path lays out, its RSS hasher's too, carries the path's name", () => {
    const own = new MemoryLayout();
    const before = own.list().length;
    new ReceivePath(own, { ...BASE, mode: "single", rss: true }, VMS);
    const laid = own.list().slice(before);
    expect(laid.length).toBeGreaterThan(VMS.length);
    for (const r of laid) expect(r.name.startsWith("net.rx.")).toBe(true);
    expect(laid.some((r) => r.name.startsWith("net.rx.rss."))).toBe(true);
  });
});

describe("the NIC's drops on arrival, and its frame limits", () => {
  it("counts runts and oversize frames apart, in every round of a batch", async () => {
    const path = pathOf({ ...BASE, processors: 1 });
    const good = toVm(0, 100);
    const runt = good.slice(0, 13);
    const over = toVm(0, 1514 - 54 + 1);
    expect(over.length).toBe(1515);
    path.load([over, runt, good, over]);
    const one = await roundOf(path);
    expect(one.result).toMatchObject({ frames: 4, oversize: 2, runts: 1, delivered: 1 });
    const three = await roundOf(path, 3);
    expect(three.result).toMatchObject({ frames: 12, oversize: 6, runts: 3, delivered: 3 });
  });

  it("takes an 802.1Q-tagged frame of the jumbo packet size plus the tag's 4 bytes, whole", async () => {
    const tagged: VmPort = { name: "vlan7", mac: "00:15:5d:00:03:20", vlan: 7 };
    const path = pathOf({ ...BASE, processors: 1 }, [tagged]);
    const f = frame({ ethernet: { dst: tagged.mac, src: ETH.src, vlan: 7 } }, 1514 + 4 - 54 - 4);
    expect(f.length).toBe(1518);
    path.load([f]);
    const { result, slots } = await roundOf(path);
    expect(result).toMatchObject({ delivered: 1, ringFull: 0, oversize: 0 });
    expect(slots[0]?.[0]?.bytes).toEqual(f);
  });

  it("with RSC, a ring's slot holds the largest super-frame: a whole IP datagram, tagged", () => {
    const path = pathOf({ ...BASE, processors: 1, coalesce: true, ringSlots: 2 }, [vmAt(0)]);
    expect(path.rings[0]?.maxFrame).toBeGreaterThanOrEqual(RSC_MAX_BYTES + 14 + 4);
  });

  it("coalesces a flow's in-order segments into one super-frame (RSC)", async () => {
    const path = pathOf({ ...BASE, processors: 1, coalesce: true, ringSlots: 4 }, [vmAt(0)]);
    const segment = (seq: number) =>
      frame({ ethernet: { dst: vmAt(0).mac, src: ETH.src }, l4: { ...TCP, seq } }, 100);
    path.load([segment(1), segment(101), segment(201)]);
    const { result, slots } = await roundOf(path);
    expect(result).toMatchObject({ frames: 3, delivered: 1, coalescedSegments: 3 });
    expect(slots[0]?.[0]?.segments).toBe(3);
    expect(result.bytes).toBe(54 + 300);
  });

  it("takes every checksum as good when told to trust them (a capture's), else drops the bad frame", async () => {
    const good = toVm(0, 100);
    const corrupt = good.slice();
    corrupt[corrupt.length - 1] = (corrupt[corrupt.length - 1] ?? 0) ^ 0xff;
    const checked = pathOf({ ...BASE, processors: 1 });
    checked.load([good, corrupt]);
    expect((await roundOf(checked)).result).toMatchObject({ delivered: 1, badChecksum: 1 });
    const trusted = pathOf({ ...BASE, processors: 1, trustChecksums: true });
    trusted.load([good, corrupt]);
    const { result, slots } = await roundOf(trusted);
    expect(result).toMatchObject({ delivered: 2, badChecksum: 0 });
    expect(slots[0]?.map((s) => [s.bytes, s.flags & RX_CHECKSUM_GOOD])).toEqual([
      [good, RX_CHECKSUM_GOOD],
      [corrupt, RX_CHECKSUM_GOOD],
    ]);
  });

  it("the frame table holds one frame per 14 bytes of buffer unless told", () => {
    const path = pathOf({ ...BASE, bufferBytes: 140 });
    const runts = (n: number) => Array.from({ length: n }, () => new Uint8Array(1));
    expect(() => path.load(runts(11))).toThrow(/more than the receive buffer's table holds \(10\)/);
    path.load(runts(10));
    expect(path.pending).toBe(10);
  });

  it("refuses a frame table of fewer than 1 or more than 2^24 frames, or of a fraction", () => {
    for (const maxFrames of [0, -1, 1.5, (1 << 24) + 1]) {
      expect(() => pathOf({ ...BASE, maxFrames }), String(maxFrames)).toThrow(
        new RegExp(`holds 1 to 2\\^24 frames, not ${maxFrames}`.replace(".", "\\.")),
      );
    }
    const one = pathOf({ ...BASE, maxFrames: 1 });
    expect(() => one.load([toVm(0, 1), toVm(0, 1)])).toThrow(/table holds \(1\)/);
    one.load([toVm(0, 1)]);
    expect(one.pending).toBe(1);
  });

  it("takes a frame table of exactly 2^24 frames", () => {
    const path = pathOf({ ...BASE, processors: 1, maxFrames: 1 << 24 }, []);
    expect(path.table.byteLength).toBe((1 << 24) * 8);
  });
});

describe("batches of rounds on this thread", () => {
  for (const processors of [1, 2]) {
    it(`${processors} processor(s): a batch sums its rounds, and leaves the last round's frames for the VMs`, async () => {
      const order = [0, 1, 2, 3, 1, 0, 2, 2];
      const frames = order.map((vm, i) => toVm(vm, 30 + i));
      const perVm = VMS.map((_, vm) => frames.filter((_, i) => order[i] === vm));
      // Each ring holds one round's frames and no more: a ring not emptied
      // between rounds would overflow.
      const path = pathOf({ ...BASE, processors, ringSlots: 3 });
      path.load(frames);
      const { result, slots } = await roundOf(path, 3);
      expect(result).toMatchObject({
        rounds: 3,
        frames: 3 * frames.length,
        delivered: 3 * frames.length,
        bytes: 3 * sumBytes(frames),
        ringFull: 0,
      });
      expect(result.vms.map((v) => [v.delivered, v.bytes])).toEqual(
        perVm.map((f) => [3 * f.length, 3 * sumBytes(f)]),
      );
      expect(result.queues.map((q) => [q.queue, q.frames, q.bytes])).toEqual(
        perVm.map((f, vm) => [vm + 1, 3 * f.length, 3 * sumBytes(f)]),
      );
      for (const [vm, f] of perVm.entries()) expect(slots[vm]?.map((s) => s.bytes)).toEqual(f);
      expect(result.processors.reduce((a, p) => a + p.result.frames, 0)).toBe(3 * frames.length);
    });
  }

  it("refuses a batch of 0 rounds, of a fraction, or of more than the most a task runs", async () => {
    const path = pathOf(BASE, []);
    for (const count of [0, -2, 1.5, MAX_ROUNDS_PER_TASK + 1]) {
      await expect(path.rounds(count), String(count)).rejects.toThrow(
        `a batch runs 1 to ${MAX_ROUNDS_PER_TASK} rounds, not ${count}`,
      );
    }
  });

  it("runs a batch of the most rounds a task runs", async () => {
    const path = pathOf(BASE, []);
    const r = await path.rounds(MAX_ROUNDS_PER_TASK);
    expect(r).toMatchObject({ rounds: MAX_ROUNDS_PER_TASK, frames: 0, delivered: 0 });
  });
});
