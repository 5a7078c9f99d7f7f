import { describe, expect, it, vi } from "vitest";
import type { MemoryLayout } from "../src/memory/layout.js";
import {
  experimentVms,
  runVmqExperiment,
  type VmqExperimentOptions,
} from "../src/net/experiment.js";
import { parseFrame, TCP_FLAGS } from "../src/net/frame.js";
import { ReceivePath } from "../src/net/receive.js";
import type { ReceiveTask } from "../src/net/task-types.js";
import type { KernelPoolOptions } from "../src/pool/pool.js";

/*
 * VMQ receive experiments, checked against what their options promise: the
 * synthetic VMs and their MACs, the frames-per-round refusal by its words,
 * the traffic (full-size TCP segments of sends of 44 segments at MTU 1500
 * and 8 at MTU 9000, four flows per VM, the first VM weighted by the skew),
 * every frame of every round received (rings deep enough without
 * coalescing, 256 slots with it), the jumbo packet size an MTU gives, the
 * uncounted first round that does not rebalance, and the summary's sums.
 *
 * The pool is replaced by one that runs the same `net.receive` handler a
 * worker runs, on this thread, with a kernel context over the pool's
 * memory (as a worker builds it): the receive work then happens where the
 * test sees it, and each pool an experiment makes is recorded.
 */

interface PoolRecord {
  readonly threads: number;
  readonly domains: readonly string[];
  closed: boolean;
}

const pools = vi.hoisted(() => [] as PoolRecord[]);

vi.mock("../src/pool/pool.js", async () => {
  const { KernelContext } = await import("../src/wasm/context.js");
  const { compileAllKernels } = await import("../src/wasm/loader.js");
  const { handlers } = await import("../src/net/tasks.js");
  const modules = compileAllKernels();
  class KernelPool {
    readonly threads: number;
    readonly domains: readonly string[];
    private readonly context: InstanceType<typeof KernelContext>;
    private readonly record: PoolRecord;
    constructor(layout: MemoryLayout, options: KernelPoolOptions) {
      this.threads = options.threads ?? 1;
      this.domains = options.domains;
      this.context = new KernelContext({ memory: layout.memory, modules });
      this.record = { threads: this.threads, domains: [...options.domains], closed: false };
      pools.push(this.record);
    }
    /** One processor's task, as a worker takes it (cloned); one thread runs them in turn, so no start gate. */
    async run(task: ReceiveTask) {
      const { gate: _gate, ...alone } = structuredClone(task);
      return handlers["net.receive"](this.context, alone);
    }
    async close() {
      this.record.closed = true;
    }
  }
  return { KernelPool };
});

const OPTIONS: VmqExperimentOptions = {
  vms: 1,
  mode: "vmq",
  queues: 4,
  processors: 1,
  rss: false,
  mtu: 1500,
  coalesce: false,
  rebalance: false,
  frames: 100,
  rounds: 1,
  skew: 1,
  ipVersion: 4,
  corruptFraction: 0,
  broadcastEvery: 0,
  seed: 7,
};

/** Runs an experiment, keeping the frames it loaded into the receive path. */
async function experiment(o: Partial<VmqExperimentOptions>) {
  const loaded: (readonly Uint8Array[])[] = [];
  const load = ReceivePath.prototype.load;
  const spy = vi.spyOn(ReceivePath.prototype, "load").mockImplementation(function (
    this: ReceivePath,
    frames,
  ) {
    loaded.push(frames);
    load.call(this, frames);
  });
  try {
    const result = await runVmqExperiment({ ...OPTIONS, ...o });
    expect(loaded).toHaveLength(1);
    return { result, frames: loaded[0] ?? [] };
  } finally {
    spy.mockRestore();
  }
}

function sumOf<T>(items: readonly T[], f: (x: T) => number): number {
  return items.reduce((a, x) => a + f(x), 0);
}

function macOf(f: Uint8Array): string {
  return Array.from(f.subarray(0, 6), (b) => b.toString(16).padStart(2, "0")).join(":");
}

describe("experimentVms", () => {
  it("names VMs vm0, vm1, ... with Hyper-V MACs counting up from 00:15:5d:00:00:00", () => {
    expect(experimentVms(0)).toEqual([]);
    const vms = experimentVms(300);
    expect(vms).toHaveLength(300);
    expect(vms[0]).toStrictEqual({ name: "vm0", mac: "00:15:5d:00:00:00" });
    expect(vms[10]).toStrictEqual({ name: "vm10", mac: "00:15:5d:00:00:0a" });
    expect(vms[255]).toStrictEqual({ name: "vm255", mac: "00:15:5d:00:00:ff" });
    expect(vms[256]).toStrictEqual({ name: "vm256", mac: "00:15:5d:00:01:00" });
    expect(vms[299]).toStrictEqual({ name: "vm299", mac: "00:15:5d:00:01:2b" });
  });
});

describe("frames per round", () => {
  it("must be 1 to 1,000,000", async () => {
    for (const frames of [0, -1, 1_000_001]) {
      await expect(runVmqExperiment({ ...OPTIONS, frames })).rejects.toThrow(
        new RangeError(`frames per round must be 1 to 1,000,000, not ${frames}`),
      );
    }
    // The ends pass that check: an MTU no segmenter takes is what stops them.
    for (const frames of [1, 1_000_000]) {
      const e = await runVmqExperiment({ ...OPTIONS, frames, mtu: 10 }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(Error);
      expect((e as Error).message).not.toMatch(/frames per round/);
    }
  });
});

describe("the traffic of an experiment", () => {
  it("is full-size TCP segments, sends of 44 at MTU 1500, weighted by the skew", async () => {
    const { result, frames } = await experiment({ vms: 3, skew: 5, frames: 900 });
    expect(frames).toHaveLength(900);
    const vms = experimentVms(3);
    expect(result.vms.map((v) => ({ name: v.name, mac: v.mac }))).toEqual(vms);
    const perVm = vms.map((vm) => frames.filter((f) => macOf(f) === vm.mac).length);
    expect(sumOf(perVm, (n) => n)).toBe(900);
    const [first = 0, second = 0, third = 0] = perVm;
    // Weights 5 : 1 : 1.
    expect(first).toBeGreaterThan(3 * second);
    expect(first).toBeGreaterThan(3 * third);
    expect(second).toBeGreaterThan(0);
    expect(third).toBeGreaterThan(0);
    expect(frames.every((f) => f.length === 1514)).toBe(true);
    // Each flow's frames end a send (PSH) every 44 segments, sequence numbers 1460 apart.
    const flows = new Map<string, { seq: number; push: boolean }[]>();
    for (const f of frames) {
      const p = parseFrame(f);
      const v = new DataView(f.buffer, f.byteOffset, f.byteLength);
      const key = `${macOf(f)} ${v.getUint16(p.l4)}`;
      const list = flows.get(key) ?? [];
      list.push({
        seq: v.getUint32(p.l4 + 4),
        push: ((f[p.l4 + 13] ?? 0) & TCP_FLAGS.PSH) !== 0,
      });
      flows.set(key, list);
    }
    expect(flows.size).toBe(12);
    for (const list of flows.values()) {
      list.forEach((s, i) => {
        expect(s.push).toBe(i % 44 === 43);
        if (i > 0) expect(s.seq).toBe(((list[i - 1]?.seq ?? 0) + 1460) >>> 0);
      });
    }
    expect([...flows.values()].some((l) => l.length >= 44)).toBe(true);
  });

  it("is sends of 8 segments of 9014 bytes at MTU 9000, received with a 9014-byte jumbo packet", async () => {
    const { result, frames } = await experiment({ mtu: 9000, frames: 80 });
    expect(frames.every((f) => f.length === 9014)).toBe(true);
    const pushes = frames.filter((f) => ((f[47] ?? 0) & TCP_FLAGS.PSH) !== 0).length;
    expect(pushes).toBe(10);
    expect(result.summary.oversize).toBe(0);
    expect(result.summary.delivered).toBe(80);
    expect(result.summary.bytes).toBe(80 * 9014);
    const refused = await experiment({ mtu: 9000, frames: 80, jumboPacket: 1514 });
    expect(refused.result.summary.oversize).toBe(80);
    expect(refused.result.summary.delivered).toBe(0);
  });
});

describe("rounds", () => {
  it("receives every frame of every round, and sums them", async () => {
    const { result, frames } = await experiment({ vms: 2, frames: 300, rounds: 3 });
    const bytes = sumOf(frames, (f) => f.length);
    expect(bytes).toBe(300 * 1514);
    expect(result.rounds).toHaveLength(3);
    for (const r of result.rounds) {
      expect([r.frames, r.delivered, r.bytes, r.ringFull, r.oversize, r.rounds]).toEqual([
        300,
        300,
        bytes,
        0,
        0,
        1,
      ]);
    }
    const s = result.summary;
    expect([s.frames, s.delivered, s.bytes, s.oversize, s.badChecksum, s.lookups, s.moves]).toEqual(
      [900, 900, 3 * bytes, 0, 0, 0, 0],
    );
    const wallNs = sumOf(result.rounds, (r) => r.wallNs);
    expect(s.framesPerSecond).toBeCloseTo(900 / (wallNs / 1e9), 3);
    expect(s.bytesPerSecond).toBeCloseTo((3 * bytes) / (wallNs / 1e9), 3);
    expect(s.processorBusyMs).toEqual([
      sumOf(result.rounds, (r) => r.processors[0]?.result.busyNs ?? 0) / 1e6,
    ]);
    expect(s.processorBusyMs[0]).toBeGreaterThan(0);
    expect(result.options.rounds).toBe(3);
  });

  it("gives one VM's ring a slot per frame without coalescing, and 256 with it", async () => {
    const plain = await experiment({ frames: 100 });
    expect(plain.result.rounds[0]?.vms[0]?.delivered).toBe(100);
    expect(plain.result.rounds[0]?.ringFull).toBe(0);
    // Frames delivered marked bad are not coalesced: most of these take a slot each.
    const coalesced = await experiment({
      frames: 700,
      coalesce: true,
      corruptFraction: 0.9,
      deliverBad: true,
    });
    const round = coalesced.result.rounds[0];
    expect(round?.vms[0]?.delivered).toBe(256);
    expect(round?.ringFull).toBeGreaterThan(0);
    expect(round?.badChecksum).toBeGreaterThan(256);
  });

  it("counts the lookups of VMs without a queue of their own", async () => {
    const { result } = await experiment({ vms: 3, queues: 2, frames: 120 });
    const r = result.rounds[0];
    expect(r?.vms.map((v) => v.queue)).toEqual([1, 0, 0]);
    expect(r?.lookups).toBe((r?.vms[1]?.delivered ?? 0) + (r?.vms[2]?.delivered ?? 0));
    expect(result.summary.lookups).toBe(r?.lookups);
    expect(result.summary.lookups).toBeGreaterThan(0);
  });

  it("drops corrupt frames, or delivers them marked with deliverBad", async () => {
    const dropped = (await experiment({ frames: 400, corruptFraction: 0.25 })).result;
    const bad = dropped.summary.badChecksum;
    expect(bad).toBeGreaterThan(0);
    expect(dropped.summary.delivered).toBe(400 - bad);
    const kept = (await experiment({ frames: 400, corruptFraction: 0.25, deliverBad: true }))
      .result;
    expect(kept.summary.badChecksum).toBe(bad);
    expect(kept.summary.delivered).toBe(400);
  });
});

describe("Dynamic VMQ", () => {
  it("moves a queue after a counted round, never after the uncounted first one", async () => {
    // Queue i on processor i mod 2. vm0 (skew 0: no traffic) has queue 1 on
    // processor 1; vm1 has queue 2 and vm2 the default queue, both on
    // processor 0, with about half the bytes each. Processor 1 idles until
    // one of them moves to it; then no single move narrows the gap.
    const { result } = await experiment({
      vms: 3,
      queues: 3,
      processors: 2,
      skew: 0,
      frames: 400,
      rounds: 2,
      rebalance: true,
    });
    const [first, second] = result.rounds;
    expect(first?.vms.map((v) => v.delivered)).toEqual([0, expect.any(Number), expect.any(Number)]);
    expect(first?.processors.map((p) => p.result.busyNs > 0)).toEqual([true, false]);
    expect(first?.moved).toEqual({ queue: expect.any(Number), from: 0, to: 1 });
    expect([0, 2]).toContain(first?.moved?.queue);
    expect(second?.moved).toBeNull();
    expect(result.summary.moves).toBe(1);
    expect(result.summary.processorBusyMs).toEqual(
      [0, 1].map((p) => sumOf(result.rounds, (r) => r.processors[p]?.result.busyNs ?? 0) / 1e6),
    );
    expect(result.summary.processorBusyMs[1]).toBeGreaterThan(0);
  });
});

describe("pools", () => {
  it("uses a pool of one worker per processor for the net domain, closed after, also on refusal", async () => {
    pools.length = 0;
    await experiment({ processors: 2, frames: 20 });
    expect(pools).toEqual([{ threads: 2, domains: ["net"], closed: true }]);
    pools.length = 0;
    await expect(runVmqExperiment({ ...OPTIONS, queues: 0 })).rejects.toThrow(
      /1 to 64 queues, not 0/,
    );
    expect(pools).toEqual([{ threads: 1, domains: ["net"], closed: true }]);
  });
});
