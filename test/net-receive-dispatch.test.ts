import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { type ReceiveConfig, ReceivePath, type RoundResult } from "../src/net/receive.js";
import { RX_CHECKSUM_GOOD, type RxSlot } from "../src/net/ring.js";
import { RoundBarrier } from "../src/net/round-barrier.js";
import type { ReceiveTask } from "../src/net/task-types.js";
import { handlers } from "../src/net/tasks.js";
import type { VmPort } from "../src/net/vmq.js";
import type { KernelPool } from "../src/pool/pool.js";
import type { KernelContext } from "../src/wasm/context.js";
import { ReceiveKernel } from "../src/wasm/receive.js";
import { ETH, frame } from "./support/net-frames.js";

/*
 * What the receive path sends its processors (ReceiveTask, one per busy
 * processor per batch), by the rules task-types.ts states for it:
 *
 * - a processor consumes, between the rounds of a batch, the rings it
 *   fills for their VMs: only its own VMs' rings when no other processor
 *   writes them, every ring when it does the switch's lookups (a lookup may
 *   land in any ring) or when rings are shared;
 * - processors that share rings meet at the round barrier between rounds;
 *   a batch of one round consumes nothing and needs no barrier;
 * - the config's deliverBad and trustChecksums go with every task;
 * - a pool with fewer workers than the NIC has processors is refused.
 *
 * The pool here is a stand-in that records each task and runs it with the
 * networking domain's own task handler on this thread, one task after
 * another (without the start gate and round barrier, which only threads
 * running at once can pass), so the batch's counts can be checked against
 * the same batch run on this thread without a pool.
 */

const layout = new MemoryLayout();
let paths = 0;

const VMS: VmPort[] = [
  { name: "vm0", mac: "00:15:5d:00:05:10" },
  { name: "vm1", mac: "00:15:5d:00:05:11" },
  { name: "vm2", mac: "00:15:5d:00:05:12" },
  { name: "vm3", mac: "00:15:5d:00:05:13" },
];

// Queue i+1 is VM i's (ring i); queue q is on processor q % 2.
const BASE: ReceiveConfig = {
  mode: "vmq",
  queues: 5,
  processors: 2,
  rss: false,
  jumboPacket: 1514,
  coalesce: false,
  rebalance: false,
  ringSlots: 64,
  bufferBytes: 1 << 18,
};

const BROADCAST = "ff:ff:ff:ff:ff:ff";

function pathOf(config: ReceiveConfig): ReceivePath {
  paths++;
  return new ReceivePath(layout, config, VMS, `rx.dispatch${paths}`);
}

function to(mac: string, payload: number): Uint8Array {
  return frame({ ethernet: { dst: mac, src: ETH.src } }, payload);
}

const vmMac = (vm: number) => VMS[vm]?.mac ?? "";

/** A pool of `threads` workers that records the tasks it is given and runs them here. */
function recordingPool(threads: number): { pool: KernelPool; tasks: ReceiveTask[] } {
  const tasks: ReceiveTask[] = [];
  const context = {
    memory: layout.memory,
    receive: ReceiveKernel.on(layout.memory),
  } as unknown as KernelContext;
  const pool = {
    threads,
    run: async (task: ReceiveTask) => {
      tasks.push(task);
      const { gate: _gate, barrier: _barrier, ...here } = task;
      return handlers["net.receive"](context, here);
    },
  } as unknown as KernelPool;
  return { pool, tasks };
}

/** The counts a batch through the pool and one on this thread must agree on. */
function counts(r: RoundResult) {
  const { wallNs: _w, framesPerSecond: _f, bytesPerSecond: _b, processors, ...rest } = r;
  return { ...rest, processors: processors.map((p) => [p.queues, p.result.frames]) };
}

async function both(config: ReceiveConfig, frames: Uint8Array[], rounds: number) {
  const here = pathOf(config);
  here.load(frames);
  const hereLast: RxSlot[][] = VMS.map(() => []);
  const want = await here.rounds(rounds, undefined, (vm, s) => {
    hereLast[vm] = s;
  });
  const path = pathOf(config);
  path.load(frames);
  const { pool, tasks } = recordingPool(config.processors);
  const last: RxSlot[][] = VMS.map(() => []);
  const got = await path.rounds(rounds, pool, (vm, s) => {
    last[vm] = s;
  });
  return { path, tasks, got, want, last, hereLast };
}

describe("receive tasks: the rings each processor consumes, and the barrier", () => {
  // vm3 arrives first: a processor's rings are named in ring order, not arrival order.
  const own = [3, 1, 0, 2, 3, 1, 0].map((vm, i) => to(vmMac(vm), 20 + i));

  it("processors owning disjoint rings each consume their own VMs' rings, with no barrier", async () => {
    const { path, tasks, got, want, last, hereLast } = await both(BASE, own, 3);
    expect(tasks.map((t) => [t.first, t.count, t.rounds, t.consume, t.barrier])).toEqual([
      [0, 4, 3, [1, 3], undefined],
      [4, 3, 3, [0, 2], undefined],
    ]);
    expect(tasks.every((t) => t.gate !== undefined)).toBe(true);
    expect(tasks[0]?.rings.length).toBe(path.rings.length);
    expect(counts(got)).toEqual(counts(want));
    expect(got.vms.map((v) => v.delivered)).toEqual([6, 6, 3, 6]);
    // The VMs find the last round's frames in their rings, as on this thread.
    expect(last.map((s) => s.map((x) => x.bytes))).toEqual(
      hereLast.map((s) => s.map((x) => x.bytes)),
    );
    expect(last.map((s) => s.length)).toEqual([2, 2, 1, 2]);
  });

  it("a batch of one round consumes nothing between rounds", async () => {
    const { tasks, got, want } = await both(BASE, own, 1);
    expect(tasks.map((t) => [t.rounds, t.consume, t.barrier])).toEqual([
      [1, [], undefined],
      [1, [], undefined],
    ]);
    expect(counts(got)).toEqual(counts(want));
  });

  it("when one processor does the switch's lookups, every processor consumes every ring behind the barrier", async () => {
    // The broadcasts go to the default queue (processor 0), flooded to every
    // VM's ring, which processor 1 also fills for vm0 and vm2.
    const frames = [to(BROADCAST, 30), to(vmMac(0), 40), to(vmMac(2), 50), to(BROADCAST, 60)];
    const { path, tasks, got, want } = await both(BASE, frames, 3);
    expect(tasks.map((t) => [t.count, t.consume, t.barrier])).toEqual([
      [2, [0, 1, 2, 3], path.barrier.toDescriptor()],
      [2, [0, 1, 2, 3], path.barrier.toDescriptor()],
    ]);
    expect(counts(got)).toEqual(counts(want));
    expect(got.vms.map((v) => v.delivered)).toEqual([9, 6, 9, 6]);
    // The batch armed the barrier for its two processors: one arriving alone
    // waits for the other (here, until a short time-out) and runs nothing.
    let ran = 0;
    const barrier = new RoundBarrier(layout.memory, path.barrier.toDescriptor());
    expect(() => barrier.arrive(() => ran++, 10)).toThrow("1 of 2 processors arrived");
    expect(ran).toBe(0);
    const once = await both(BASE, frames, 1);
    expect(once.tasks.map((t) => [t.consume, t.barrier])).toEqual([
      [[], undefined],
      [[], undefined],
    ]);
  });

  it("a processor doing lookups alone consumes every ring, without a barrier", async () => {
    const frames = [to(BROADCAST, 30), to("00:15:5d:00:05:99", 30), to(BROADCAST, 40)];
    const { tasks, got, want } = await both(BASE, frames, 2);
    expect(tasks.map((t) => [t.count, t.consume, t.barrier])).toEqual([
      [3, [0, 1, 2, 3], undefined],
    ]);
    expect(counts(got)).toEqual(counts(want));
    expect(got).toMatchObject({ delivered: 16, unknownMac: 2, lookups: 6 });
  });

  it("a batch with no frames sends no task and reports nothing", async () => {
    const path = pathOf(BASE);
    const { pool, tasks } = recordingPool(2);
    const r = await path.rounds(3, pool);
    expect(tasks).toEqual([]);
    expect(r).toMatchObject({ rounds: 3, frames: 0, delivered: 0 });
    expect(r.processors.map((p) => p.result.frames)).toEqual([0, 0]);
  });

  it("refuses a pool with fewer workers than the NIC has processors, before any task", async () => {
    const path = pathOf(BASE);
    path.load(own);
    const { pool, tasks } = recordingPool(1);
    await expect(path.rounds(2, pool)).rejects.toThrow(
      "2 processors need a pool of at least 2 workers (it has 1)",
    );
    expect(tasks).toEqual([]);
  });
});

describe("receive tasks: the checksum settings go with every task", () => {
  const good = to(vmMac(0), 100);
  const corrupt = good.slice();
  corrupt[corrupt.length - 1] = (corrupt[corrupt.length - 1] ?? 0) ^ 0xff;

  for (const [label, extra, want] of [
    ["by default a bad frame is dropped and counted", {}, { delivered: 1, badChecksum: 1 }],
    [
      "deliverBad hands it to the VM marked bad",
      { deliverBad: true },
      { delivered: 2, badChecksum: 1 },
    ],
    ["trustChecksums takes it as good", { trustChecksums: true }, { delivered: 2, badChecksum: 0 }],
  ] as const) {
    it(label, async () => {
      const config: ReceiveConfig = { ...BASE, ...extra };
      const { tasks, got, last } = await both(config, [good, corrupt], 1);
      expect(tasks.map((t) => [t.deliverBad, t.trustChecksums])).toEqual([
        ["deliverBad" in extra, "trustChecksums" in extra],
      ]);
      expect(got).toMatchObject(want);
      const flags = (last[0] ?? []).map((s) => s.flags & RX_CHECKSUM_GOOD);
      expect(flags).toEqual(
        "deliverBad" in extra
          ? [RX_CHECKSUM_GOOD, 0]
          : "trustChecksums" in extra
            ? [RX_CHECKSUM_GOOD, RX_CHECKSUM_GOOD]
            : [RX_CHECKSUM_GOOD],
      );
    });
  }
});
