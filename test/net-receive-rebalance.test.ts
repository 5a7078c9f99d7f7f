import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { type ReceiveConfig, ReceivePath } from "../src/net/receive.js";
import type { VmPort } from "../src/net/vmq.js";
import { type ReceiveJob, ReceiveKernel } from "../src/wasm/receive.js";
import { ETH, frame } from "./support/net-frames.js";

/*
 * Dynamic VMQ (Windows Server 2012): after a round, one queue moves from
 * the busiest processor to the least busy when that narrows the gap by a
 * clear margin; a queue's load is its processor's busy time times the
 * queue's share of the bytes that processor received. The queue's frames
 * then go to its new processor in the next round, loaded frames and all;
 * with RSS the default queue stays put, without RSS it moves like any other.
 *
 * Busy times are measured with the process's clock, so this file runs the
 * receive path against a clock of its own: time passes only inside the
 * receive kernel, 100 ns per frame of the processor's share. Loads, gaps and
 * moves are then worked out by hand below; the rates follow from the same
 * clock (this thread runs the processors one after another).
 *
 * The file also checks the path's scratch regions: a round that needs no
 * more than the last lays out nothing, a larger one at least doubles.
 */

const NS_PER_FRAME = 100n;
let clock = 0n;
const kernelReceive = ReceiveKernel.prototype.receive;

beforeEach(() => {
  clock = 5_000_000n;
  vi.spyOn(process.hrtime, "bigint").mockImplementation(() => clock);
  vi.spyOn(ReceiveKernel.prototype, "receive").mockImplementation(function (
    this: ReceiveKernel,
    job: ReceiveJob,
  ) {
    clock += BigInt(job.count) * NS_PER_FRAME;
    return kernelReceive.call(this, job);
  });
});
afterEach(() => {
  vi.restoreAllMocks();
});

const layout = new MemoryLayout();
let paths = 0;

// Queue i+1 is VM i's, queue q on processor q % 2: processor 0 has queues
// 0, 2 (vm1) and 4 (vm3); processor 1 has queues 1 (vm0) and 3 (vm2).
const VMS: VmPort[] = [
  { name: "vm0", mac: "00:15:5d:00:04:10" },
  { name: "vm1", mac: "00:15:5d:00:04:11" },
  { name: "vm2", mac: "00:15:5d:00:04:12" },
  { name: "vm3", mac: "00:15:5d:00:04:13" },
];

const BASE: ReceiveConfig = {
  mode: "vmq",
  queues: 5,
  processors: 2,
  rss: false,
  jumboPacket: 9014,
  coalesce: false,
  rebalance: true,
  ringSlots: 12,
  bufferBytes: 1 << 18,
};

function pathOf(config: ReceiveConfig): ReceivePath {
  paths++;
  return new ReceivePath(layout, config, VMS, `rx.rebalance${paths}`);
}

/** `n` TCP/IPv4 frames of `bytes` bytes each to `mac`. */
function framesTo(mac: string, n: number, bytes: number): Uint8Array[] {
  return Array.from({ length: n }, () =>
    frame({ ethernet: { dst: mac, src: ETH.src } }, bytes - 54),
  );
}

const mac = (vm: number) => VMS[vm]?.mac ?? "";

function queueAt(path: ReceivePath, q: number) {
  const queue = path.nic.queues[q];
  if (!queue) throw new Error(`no queue ${q}`);
  return queue;
}

describe("busy time and rates", () => {
  it("a processor's busy time is its kernel time; the round's wall time covers every processor's", async () => {
    const path = pathOf({ ...BASE, rebalance: false });
    const frames = [...framesTo(mac(1), 5, 200), ...framesTo(mac(0), 3, 300)];
    path.load(frames);
    const r = await path.rounds(2);
    // Two rounds: processor 0 did vm1's 5 frames twice, processor 1 vm0's 3.
    expect(r.processors.map((p) => p.result.busyNs)).toEqual([1000, 600]);
    expect(r.wallNs).toBe(1600);
    expect(r.framesPerSecond).toBeCloseTo(16 / 1600e-9, 0);
    expect(r.bytesPerSecond).toBeCloseTo((2 * (5 * 200 + 3 * 300)) / 1600e-9, 0);
    expect(r.bytes).toBe(2 * (5 * 200 + 3 * 300));
  });
});

describe("Dynamic VMQ", () => {
  it("moves a loaded processor's queue to an idle one, and the queue's frames follow it", async () => {
    const path = pathOf(BASE);
    path.load([...framesTo(mac(1), 4, 300), ...framesTo(mac(3), 4, 300)]);
    const first = await path.round();
    // Processor 0: 800 ns, half of its bytes each for queues 2 and 4 (400 ns
    // each); processor 1: idle. Gap 800 > a quarter of 800; moving either
    // queue leaves a gap of |800 - 2 x 400| = 0: the first (queue 2) moves.
    expect(first.moved).toEqual({ queue: 2, from: 0, to: 1 });
    expect(queueAt(path, 2).processor).toBe(1);
    const second = await path.round();
    expect(second.processors.map((p) => [p.queues, p.result.frames])).toEqual([
      [[0, 4], 4],
      [[1, 2, 3], 4],
    ]);
    expect(second.queues).toEqual([
      { queue: 2, processor: 1, frames: 4, bytes: 1200 },
      { queue: 4, processor: 0, frames: 4, bytes: 1200 },
    ]);
    expect(second.vms.map((v) => v.delivered)).toEqual([0, 4, 0, 4]);
    // Balanced now (400 ns each): nothing moves.
    expect(second.moved).toBeNull();
  });

  it("with RSS, a VM's queue moves and its frames follow; they are not spread by hash", async () => {
    const path = pathOf({ ...BASE, rss: true });
    path.load([...framesTo(mac(1), 4, 300), ...framesTo(mac(3), 4, 300)]);
    expect((await path.round()).moved).toEqual({ queue: 2, from: 0, to: 1 });
    const second = await path.round();
    expect(second.processors.map((p) => p.result.frames)).toEqual([4, 4]);
    expect(second.queues.map((q) => [q.queue, q.processor])).toEqual([
      [2, 1],
      [4, 0],
    ]);
  });

  it("without RSS the default queue moves like any other, its loaded frames with it", async () => {
    const path = pathOf(BASE);
    const strangers = framesTo("00:15:5d:00:04:99", 3, 400);
    path.load([...strangers, ...framesTo(mac(1), 3, 400)]);
    // Queues 0 and 2 share processor 0 equally; queue 0 comes first.
    expect((await path.round()).moved).toEqual({ queue: 0, from: 0, to: 1 });
    const second = await path.round();
    expect(second.processors.map((p) => [p.result.frames, p.result.unknownMac])).toEqual([
      [3, 0],
      [3, 3],
    ]);
    expect(second.queues.map((q) => [q.queue, q.processor])).toEqual([
      [0, 1],
      [2, 0],
    ]);
  });

  it("weighs a queue by its share of its own processor's bytes, not of every processor's", async () => {
    const path = pathOf(BASE);
    path.load([
      ...framesTo(mac(0), 2, 9000),
      ...framesTo(mac(1), 6, 100),
      ...framesTo(mac(3), 4, 100),
    ]);
    // Processor 1: queue 1's 2 frames, 200 ns. Processor 0: 10 frames,
    // 1000 ns, queue 2 with 600 of its 1000 bytes (600 ns), queue 4 with
    // 400 (400 ns). Gap 800: moving queue 2 leaves |800 - 1200| = 400,
    // moving queue 4 leaves |800 - 800| = 0: queue 4 moves.
    const r = await path.round();
    expect(r.moved).toEqual({ queue: 4, from: 0, to: 1 });
    expect(queueAt(path, 4).processor).toBe(1);
  });

  it("with RSS, charges a processor's hashed default-queue frames to no VM queue bound to it", async () => {
    const path = pathOf({ ...BASE, rss: true });
    // Every RSS hash lands on processor 1, which also holds queues 1 (vm0) and 3 (vm2).
    path.nic.indirection.fill(1);
    path.load([
      ...framesTo("00:15:5d:00:04:99", 40, 300),
      ...framesTo(mac(0), 2, 300),
      ...framesTo(mac(2), 2, 300),
    ]);
    // Processor 1: 44 frames, 4400 ns; processor 0: idle. Queues 1 and 3 took
    // 2 of processor 1's 44 equal frames each: 200 ns apiece, not half of
    // its time. Moving either leaves a gap of |4400 - 400| = 4000, not below
    // 0.8 x 4400, so nothing moves (the default queue, spread by RSS, never does).
    const r = await path.round();
    expect(r.processors.map((p) => p.result.busyNs)).toEqual([0, 4400]);
    expect(r.moved).toBeNull();
    expect([queueAt(path, 1).processor, queueAt(path, 3).processor]).toEqual([1, 1]);
  });

  it("moves nothing when the config does not ask, unless the caller does", async () => {
    const path = pathOf({ ...BASE, rebalance: false });
    path.load([...framesTo(mac(1), 4, 300), ...framesTo(mac(3), 4, 300)]);
    expect((await path.round()).moved).toBeNull();
    expect(queueAt(path, 2).processor).toBe(0);
    expect((await path.rounds(2)).moved).toBeNull();
    expect((await path.round(undefined, undefined, true)).moved).toEqual({
      queue: 2,
      from: 0,
      to: 1,
    });
  });
});

describe("scratch regions", () => {
  const scratchOf = (path: ReceivePath) =>
    layout.list().filter((r) => r.name.startsWith(`${path.name}.scratch`));

  it("lays out scratch once for rounds that need no more, and at least twice as much for more", async () => {
    const path = pathOf({ ...BASE, processors: 1, rebalance: false, ringSlots: 64 });
    const small = framesTo(mac(0), 4, 100);
    path.load(small);
    await path.round();
    const first = scratchOf(path);
    expect(first.length).toBe(1);
    await path.round();
    path.load(small.slice(0, 2));
    await path.round();
    expect(scratchOf(path)).toEqual(first);
    const large = framesTo(mac(0), 40, 100);
    path.load(large);
    const r = await path.round();
    expect(r.delivered).toBe(40);
    const grown = scratchOf(path);
    expect(grown.length).toBe(2);
    expect(grown[1]?.byteLength).toBeGreaterThanOrEqual(2 * (first[0]?.byteLength ?? 0));
    await path.round();
    path.load(small);
    await path.round();
    expect(scratchOf(path).length).toBe(2);
  });
});
