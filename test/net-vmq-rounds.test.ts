import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { Segmenter } from "../src/net/lso.js";
import { type ReceiveConfig, ReceivePath, type RoundResult } from "../src/net/receive.js";
import type { RxSlot } from "../src/net/ring.js";
import { ROUND_BARRIER_BYTES, RoundBarrier } from "../src/net/round-barrier.js";
import { generateTraffic } from "../src/net/traffic.js";
import type { VmPort } from "../src/net/vmq.js";
import { KernelPool } from "../src/pool/pool.js";

/*
 * Batches of receive rounds (one dispatch, many rounds, each processor
 * consuming its own rings between them, or all of them through the round
 * barrier when rings are shared) deliver exactly what the same rounds do
 * one at a time, on one worker, on two, and on the calling thread.
 */

const VMS: VmPort[] = [
  { name: "vm0", mac: "00:15:5d:00:02:10" },
  { name: "vm1", mac: "00:15:5d:00:02:11" },
  { name: "vm2", mac: "00:15:5d:00:02:12", vlan: 7 },
  { name: "vm3", mac: "00:15:5d:00:02:13" },
];

const BASE: ReceiveConfig = {
  mode: "vmq",
  queues: 5,
  processors: 1,
  rss: false,
  jumboPacket: 1514,
  coalesce: true,
  rebalance: false,
  ringSlots: 160,
  bufferBytes: 4 * 1024 * 1024,
};

/** Frames for vm0..vm2 only: vm3's queue (and, without broadcasts, the default queue) gets none. */
function capture(frames: number, broadcastEvery: number): Uint8Array[] {
  return generateTraffic(new Segmenter(new MemoryLayout(), 128 * 1024), {
    vms: VMS.slice(0, 3),
    flowsPerVm: 3,
    frames,
    mtu: 1500,
    ipVersion: 4,
    sendBytes: 12 * 1460,
    burst: 5,
    broadcastEvery,
    corruptFraction: 0.02,
    seed: 21,
  });
}

let layout: MemoryLayout;
let pool: KernelPool;
/** Paths by name: rings of 64 KiB slots are large, so each configuration lays out one. */
const paths = new Map<string, ReceivePath>();

beforeAll(() => {
  layout = new MemoryLayout();
  pool = new KernelPool(layout, { threads: 2, domains: ["net"] });
});
afterAll(async () => {
  await pool.close();
});

/** A ring's frames, each as flags, segments and a digest, sorted (two processors filling one ring interleave them). */
function contents(slots: readonly RxSlot[]): string[] {
  return slots
    .map(
      (s) =>
        `${s.flags}:${s.segments}:${s.bytes.length}:${createHash("sha256").update(s.bytes).digest("hex").slice(0, 16)}`,
    )
    .sort();
}

/** The counts two runs must agree on (not the times). */
function counts(r: RoundResult) {
  return {
    rounds: r.rounds,
    frames: r.frames,
    delivered: r.delivered,
    coalescedSegments: r.coalescedSegments,
    badChecksum: r.badChecksum,
    malformed: r.malformed,
    unknownMac: r.unknownMac,
    ringFull: r.ringFull,
    lookups: r.lookups,
    bytes: r.bytes,
    oversize: r.oversize,
    runts: r.runts,
    vms: r.vms,
    // By queue: RSS splits the default queue's traffic by processor.
    queues: r.queues.reduce<{ queue: number; frames: number; bytes: number }[]>((a, q) => {
      const e = a.find((x) => x.queue === q.queue);
      if (e) {
        e.frames += q.frames;
        e.bytes += q.bytes;
      } else a.push({ queue: q.queue, frames: q.frames, bytes: q.bytes });
      return a;
    }, []),
  };
}

async function run(
  config: ReceiveConfig,
  traffic: Uint8Array[],
  rounds: number,
  where: "pool" | "here",
): Promise<{ result: RoundResult; last: string[][] }> {
  const name = `rx.batch.${config.mode}.${config.processors}.${config.rss}`;
  const path = paths.get(name) ?? new ReceivePath(layout, config, VMS, name);
  paths.set(name, path);
  path.load(traffic);
  const last: string[][] = VMS.map(() => []);
  const result = await path.rounds(rounds, where === "pool" ? pool : undefined, (vm, slots) => {
    last[vm] = contents(slots);
  });
  return { result, last };
}

/** `want`'s counts as `rounds` rounds of it sum them. */
function times(want: ReturnType<typeof counts>, rounds: number): ReturnType<typeof counts> {
  return {
    ...want,
    rounds,
    frames: want.frames * rounds,
    delivered: want.delivered * rounds,
    coalescedSegments: want.coalescedSegments * rounds,
    badChecksum: want.badChecksum * rounds,
    malformed: want.malformed * rounds,
    unknownMac: want.unknownMac * rounds,
    ringFull: want.ringFull * rounds,
    lookups: want.lookups * rounds,
    bytes: want.bytes * rounds,
    oversize: want.oversize * rounds,
    runts: want.runts * rounds,
    vms: want.vms.map((v) => ({ ...v, delivered: v.delivered * rounds, bytes: v.bytes * rounds })),
    queues: want.queues.map((q) => ({ ...q, frames: q.frames * rounds, bytes: q.bytes * rounds })),
  };
}

describe("receive rounds in batches", () => {
  for (const [label, config, broadcastEvery, sameForAnyProcessors] of [
    ["VMQ, each processor owns its rings", BASE, 0, true],
    // A flooded broadcast between two segments of a flow ends their coalescing on one
    // processor, not when another processor takes the flow's queue: compare per count.
    ["VMQ with broadcasts flooded by the default queue's processor", BASE, 37, false],
    ["single queue spread by RSS", { ...BASE, mode: "single" as const, rss: true }, 37, false],
  ] as const) {
    it(`${label}: batches on the pool and on the calling thread deliver what rounds one at a time do`, async () => {
      // An odd frame count, so the processors' shares are unequal.
      const traffic = capture(601, broadcastEvery);
      const reference = await run({ ...config, processors: 1 }, traffic, 1, "here");
      expect(reference.result.badChecksum).toBeGreaterThan(0);
      expect(reference.result.delivered).toBeGreaterThan(0);
      expect(reference.result.ringFull).toBe(0);
      // vm3 has no traffic of its own: its ring holds only flooded broadcasts.
      expect(reference.last[3]?.length).toBe(
        broadcastEvery > 0 ? reference.result.vms[3]?.delivered : 0,
      );
      for (const processors of [1, 2]) {
        const one =
          processors === 1 || sameForAnyProcessors
            ? reference
            : await run({ ...config, processors }, traffic, 1, "here");
        for (const rounds of [1, 3]) {
          for (const where of ["pool", "here"] as const) {
            const got = await run({ ...config, processors }, traffic, rounds, where);
            const what = `${processors} processors, ${rounds} rounds, ${where}`;
            expect(counts(got.result), what).toEqual(times(counts(one.result), rounds));
            // The last round's frames stay in the rings for the caller, as one round's do.
            expect(got.last, what).toEqual(one.last);
            if (processors === 2) {
              const busy = got.result.processors.filter((p) => p.result.frames > 0);
              expect(busy.length, what).toBe(2);
            }
          }
        }
      }
    });
  }

  it("a batch of 0 rounds, or of a fraction, is refused before any work", async () => {
    const path = new ReceivePath(
      layout,
      { ...BASE, processors: 2, ringSlots: 16 },
      VMS,
      "rx.batch.bad",
    );
    path.load(capture(11, 0));
    await expect(path.rounds(0, pool)).rejects.toThrow(/1 to \d+ rounds, not 0/);
    await expect(path.rounds(1.5)).rejects.toThrow(/not 1\.5/);
    const r = await path.rounds(2, pool);
    expect(r.frames).toBe(22);
  });

  it("a path with no frames runs its rounds and delivers nothing", async () => {
    const path = new ReceivePath(
      layout,
      { ...BASE, processors: 2, ringSlots: 16 },
      VMS,
      "rx.batch.empty",
    );
    path.load([]);
    const r = await path.rounds(4, pool);
    expect(r.frames).toBe(0);
    expect(r.delivered).toBe(0);
    expect(r.rounds).toBe(4);
  });

  it("the round barrier: the last to arrive runs the serial step; a missing processor times out, naming the count", () => {
    const region = layout.allocate("rx.batch.barrier", ROUND_BARRIER_BYTES).toDescriptor();
    const barrier = new RoundBarrier(layout.memory, region);
    expect(() => barrier.reset(0)).toThrow(/1 to 256 processors, not 0/);
    expect(() => barrier.reset(257)).toThrow(/not 257/);
    barrier.reset(1);
    let serial = 0;
    for (let r = 0; r < 3; r++) barrier.arrive(() => serial++);
    expect(serial).toBe(3);
    barrier.reset(2);
    expect(() => barrier.arrive(() => serial++, 20)).toThrow(/1 of 2 processors arrived/);
    expect(serial).toBe(3);
    expect(
      () => new RoundBarrier(layout.memory, { ...region, byteLength: ROUND_BARRIER_BYTES - 4 }),
    ).toThrow(/needs 64 bytes/);
  });
});
