import { describe, expect, it, vi } from "vitest";
import type { MemoryLayout } from "../src/memory/layout.js";
import { buildFrame } from "../src/net/build.js";
import { type PacketToWrite, writeCapture } from "../src/net/capture.js";
import { CaptureError } from "../src/net/errors.js";
import {
  MAX_REPLAY_BYTES,
  REPLAY_ROUND_FRAMES,
  type ReplayOptions,
  replayCapture,
} from "../src/net/experiment.js";
import { TCP_FLAGS } from "../src/net/frame.js";
import { ReceivePath, type RoundResult } from "../src/net/receive.js";
import type { ReceiveTask } from "../src/net/task-types.js";
import type { KernelPoolOptions } from "../src/pool/pool.js";

/*
 * Capture replay, checked against captures built here: the VMs a replay
 * finds (one per unicast destination MAC, first seen first, with the VLAN
 * of its first frame), the capture cut into receive rounds of
 * REPLAY_ROUND_FRAMES frames and merged into one round whose every count is
 * the sum of its parts, the delivered frames and bytes of each VM, the wire
 * bytes of truncated packets, the checksum policies, the jumbo packet size
 * a replay settles on, RSS over UDP ports, several passes, TCP streams with
 * follow, and the refusals of a capture too large.
 *
 * The pool is replaced by one that runs the same `net.receive` handler a
 * worker runs, on this thread, with a kernel context over the pool's
 * memory (as a worker builds it): the receive work then happens where the
 * test sees it, and each pool the replay makes is recorded (threads,
 * domains, closed).
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

const OPTIONS: ReplayOptions = {
  vms: 1,
  mode: "vmq",
  queues: 8,
  processors: 1,
  rss: false,
  mtu: 1500,
  coalesce: false,
  rebalance: false,
  frames: 1,
  rounds: 1,
  skew: 1,
  ipVersion: 4,
  corruptFraction: 0,
  broadcastEvery: 0,
  seed: 1,
};

const SOURCE = "00:15:5d:00:00:01";
const BROADCAST = "ff:ff:ff:ff:ff:ff";

/** A unicast Hyper-V MAC for test VM `i`. */
function mac(i: number): string {
  return `00:15:5d:00:01:${i.toString(16).padStart(2, "0")}`;
}

function udp(dst: string, payload: number, o: { srcPort?: number; vlan?: number } = {}) {
  return buildFrame(
    {
      ethernet: { dst, src: SOURCE, ...(o.vlan !== undefined ? { vlan: o.vlan } : {}) },
      ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2" },
      l4: { kind: "udp", srcPort: o.srcPort ?? 5000, dstPort: 6000 },
    },
    Uint8Array.from({ length: payload }, (_, i) => (i * 7) & 0xff),
  );
}

function tcp(dst: string, seq: number, payload: Uint8Array, srcPort = 40000): Uint8Array {
  return buildFrame(
    {
      ethernet: { dst, src: SOURCE },
      ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2" },
      l4: { kind: "tcp", srcPort, dstPort: 80, seq, flags: TCP_FLAGS.ACK },
    },
    payload,
  );
}

/** The frame with its last byte (UDP or TCP payload) changed, checksums left as they were. */
function corrupt(f: Uint8Array): Uint8Array {
  const c = f.slice();
  c[c.length - 1] = (c[c.length - 1] ?? 0) ^ 0xff;
  return c;
}

/** An Ethernet header alone, to `dst`, saying IPv4 follows (a frame no parser takes). */
function headerOnly(dst: string): Uint8Array {
  const f = new Uint8Array(14);
  f.set(dst.split(":").map((h) => Number.parseInt(h, 16)));
  f[12] = 0x08;
  return f;
}

function pcap(frames: readonly Uint8Array[]): Uint8Array {
  return writeCapture(
    frames.map((data) => ({ data })),
    { format: "pcap" },
  );
}

/** Runs a replay, keeping every receive round the replay ran (the parts of its merged rounds). */
async function replayKeepingParts(file: Uint8Array, o: Partial<ReplayOptions> = {}) {
  const parts: RoundResult[] = [];
  const round = ReceivePath.prototype.round;
  const spy = vi.spyOn(ReceivePath.prototype, "round").mockImplementation(async function (
    this: ReceivePath,
    ...args
  ) {
    const r = await round.apply(this, args);
    parts.push(r);
    return r;
  });
  try {
    const report = await replayCapture(file, { ...OPTIONS, ...o });
    return { report, parts };
  } finally {
    spy.mockRestore();
  }
}

function sumOf<T>(items: readonly T[], f: (x: T) => number): number {
  return items.reduce((a, x) => a + f(x), 0);
}

function only<T>(items: readonly T[]): T {
  expect(items).toHaveLength(1);
  return items[0] as T;
}

describe("the VMs a replay finds", () => {
  it("are the unicast destination MACs in the order they first appear, with their first VLAN", async () => {
    const frames = [
      udp(BROADCAST, 20),
      udp(mac(5), 20),
      udp("01:00:5e:00:00:01", 20),
      udp(mac(5), 20, { vlan: 9 }),
      udp(mac(2), 20, { vlan: 7 }),
      udp(mac(2), 20),
      headerOnly(mac(9)),
      udp(mac(5), 20),
    ];
    const { report } = await replayKeepingParts(pcap(frames));
    expect(report.vms).toStrictEqual([
      { name: "vm0", mac: mac(5) },
      { name: "vm1", mac: mac(2), vlan: 7 },
      { name: "vm2", mac: mac(9) },
    ]);
    expect(report.options.vms).toBe(3);
  });

  it("skip packets shorter than an Ethernet header", async () => {
    const short = udp(mac(3), 20).subarray(0, 10);
    const { report } = await replayKeepingParts(pcap([short, udp(mac(4), 20)]));
    expect(report.vms).toStrictEqual([{ name: "vm0", mac: mac(4) }]);
    expect(report.rounds[0]?.runts).toBe(1);
  });

  it("are one synthetic VM when the capture names no unicast destination", async () => {
    const { report } = await replayKeepingParts(pcap([udp(BROADCAST, 30), udp(BROADCAST, 31)]));
    expect(report.vms).toStrictEqual([{ name: "vm0", mac: "00:15:5d:00:00:00" }]);
    expect(report.summary.delivered).toBe(2);
  });
});

describe("a capture without Ethernet frames", () => {
  it("replays as one empty round, counting the packets of other link types", async () => {
    const other = 147; // LINKTYPE_USER0: not one the receive path takes
    const file = writeCapture([{ data: new Uint8Array(40) }, { data: new Uint8Array(41) }], {
      format: "pcap",
      linkType: other,
    });
    const { report, parts } = await replayKeepingParts(file);
    expect(report.capture.skippedLinkTypes).toEqual({ [other]: 2 });
    expect(report.capture.frames).toBe(2);
    expect(report.capture.bytes).toBe(81);
    expect(parts).toHaveLength(1);
    expect(only(report.rounds).frames).toBe(0);
    expect(only(report.rounds).rounds).toBe(1);
    expect(report.vms).toStrictEqual([{ name: "vm0", mac: "00:15:5d:00:00:00" }]);

    const empty = await replayKeepingParts(writeCapture([], { format: "pcapng" }));
    expect(only(empty.report.rounds).frames).toBe(0);
    expect(empty.report.capture).toEqual({
      format: "pcapng",
      frames: 0,
      bytes: 0,
      skippedLinkTypes: {},
      truncated: null,
    });
  });
});

describe("rounds of REPLAY_ROUND_FRAMES frames, merged", () => {
  it("cuts a capture into pieces of REPLAY_ROUND_FRAMES frames", async () => {
    for (const n of [
      1,
      REPLAY_ROUND_FRAMES,
      2 * REPLAY_ROUND_FRAMES,
      2 * REPLAY_ROUND_FRAMES + 3,
    ]) {
      const frames = Array.from({ length: n }, (_, i) => udp(mac(1 + (i % 2)), 10 + (i % 5)));
      const { report, parts } = await replayKeepingParts(pcap(frames));
      const pieces = Math.ceil(n / REPLAY_ROUND_FRAMES);
      expect(parts.map((p) => p.frames)).toEqual(
        Array.from({ length: pieces }, (_, i) =>
          Math.min(REPLAY_ROUND_FRAMES, n - i * REPLAY_ROUND_FRAMES),
        ),
      );
      const merged = only(report.rounds);
      expect(merged.rounds).toBe(pieces);
      expect(merged.frames).toBe(n);
      expect(merged.delivered).toBe(n);
      expect(merged.bytes).toBe(sumOf(frames, (f) => f.length));
    }
  });

  it("delivers each VM its unicast frames and every broadcast, bytes and all", async () => {
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 600; i++) {
      if (i % 10 === 9) frames.push(udp(BROADCAST, 40));
      else frames.push(udp(mac(1 + (i % 3)), 30 + (i % 17)));
    }
    const { report } = await replayKeepingParts(pcap(frames));
    const broadcasts = frames.filter((f) => f[0] === 0xff);
    const toVm = (m: string) => {
      const first = Uint8Array.from(m.split(":").map((h) => Number.parseInt(h, 16)));
      return frames.filter((f) => first.every((b, i) => f[i] === b));
    };
    const merged = only(report.rounds);
    const expected = [mac(1), mac(2), mac(3)].map((m, i) => {
      const own = toVm(m);
      return {
        name: `vm${i}`,
        delivered: own.length + broadcasts.length,
        bytes: sumOf(own, (f) => f.length) + sumOf(broadcasts, (f) => f.length),
      };
    });
    expect(merged.vms.map(({ name, delivered, bytes }) => ({ name, delivered, bytes }))).toEqual(
      expected,
    );
    expect(merged.vms.map((v) => v.queue)).toEqual([1, 2, 3]);
    const delivered = sumOf(expected, (v) => v.delivered);
    const bytes = sumOf(expected, (v) => v.bytes);
    expect(merged.delivered).toBe(delivered);
    expect(merged.bytes).toBe(bytes);
    expect(report.summary.delivered).toBe(delivered);
    expect(report.summary.bytes).toBe(bytes);
    expect(report.summary.frames).toBe(600);
    expect(report.summary.lookups).toBe(broadcasts.length);
    expect(report.summary.moves).toBe(0);
    expect(report.capture.bytes).toBe(sumOf(frames, (f) => f.length));
  });

  it("merges every count of every processor, queue and VM as the sum of its parts", async () => {
    const a = mac(1);
    const b = mac(2);
    const pattern: Uint8Array[] = [];
    for (let i = 0; i < 100; i++)
      pattern.push(tcp(a, 1 + i * 100, new Uint8Array(100).fill(i & 0xff)));
    for (let i = 0; i < 50; i++) pattern.push(udp(b, 40 + i, { vlan: 7 }));
    for (let i = 0; i < 20; i++) pattern.push(udp(BROADCAST, 30));
    for (let i = 0; i < 10; i++) pattern.push(udp(b, 50)); // untagged: not vm1's VLAN
    for (let i = 0; i < 5; i++) pattern.push(headerOnly(mac(3)));
    for (let i = 0; i < 5; i++) pattern.push(corrupt(udp(a, 60)));
    const frames = [...pattern, ...pattern];
    const { report, parts } = await replayKeepingParts(pcap(frames), { coalesce: true });
    expect(parts.length).toBe(2);
    const merged = only(report.rounds);
    const counts = [
      "rounds",
      "frames",
      "oversize",
      "runts",
      "delivered",
      "coalescedSegments",
      "badChecksum",
      "malformed",
      "unknownMac",
      "ringFull",
      "lookups",
      "bytes",
      "wallNs",
    ] as const;
    for (const k of counts) expect(merged[k], k).toBe(sumOf(parts, (p) => p[k]));
    // Known from the capture itself.
    expect(merged.frames).toBe(380);
    expect(merged.badChecksum).toBe(10);
    expect(merged.malformed).toBe(10);
    expect(merged.unknownMac).toBe(20);
    expect(merged.lookups).toBe(60);
    expect(merged.coalescedSegments).toBeGreaterThan(0);
    expect(merged.framesPerSecond).toBeCloseTo(merged.frames / (merged.wallNs / 1e9), 3);
    expect(merged.bytesPerSecond).toBeCloseTo(merged.bytes / (merged.wallNs / 1e9), 3);

    const keys = [
      "frames",
      "delivered",
      "coalescedSegments",
      "badChecksum",
      "malformed",
      "unknownMac",
      "lookups",
      "ringFull",
      "bytes",
      "busyNs",
    ] as const;
    const processor = only(merged.processors);
    expect(processor.processor).toBe(0);
    expect(processor.queues).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    for (const k of keys) {
      expect(processor.result[k], k).toBe(sumOf(parts, (p) => p.processors[0]?.result[k] ?? 0));
      if (k !== "ringFull") expect(processor.result[k], k).toBeGreaterThan(0);
    }

    expect(merged.vms.map((v) => v.name)).toEqual(["vm0", "vm1", "vm2"]);
    merged.vms.forEach((vm, i) => {
      expect(vm.queue).toBe(i + 1);
      expect(vm.delivered).toBe(sumOf(parts, (p) => p.vms[i]?.delivered ?? 0));
      expect(vm.bytes).toBe(sumOf(parts, (p) => p.vms[i]?.bytes ?? 0));
    });
    expect(merged.vms[0]?.delivered).toBeGreaterThan(0);
    expect(merged.vms[1]?.bytes).toBeGreaterThan(0);

    const queues = new Map<
      string,
      { queue: number; processor: number; frames: number; bytes: number }
    >();
    for (const p of parts) {
      for (const q of p.queues) {
        const e = queues.get(`${q.queue}/${q.processor}`) ?? { ...q, frames: 0, bytes: 0 };
        e.frames += q.frames;
        e.bytes += q.bytes;
        queues.set(`${q.queue}/${q.processor}`, e);
      }
    }
    expect(merged.queues).toEqual(
      [...queues.values()].sort((x, y) => x.queue - y.queue || x.processor - y.processor),
    );
    expect(merged.queues.length).toBeGreaterThan(1);
    expect(merged.moved).toBeNull();

    const s = report.summary;
    expect(s.frames).toBe(380);
    expect(s.delivered).toBe(merged.delivered);
    expect(s.bytes).toBe(merged.bytes);
    expect(s.lookups).toBe(60);
    expect(s.badChecksum).toBe(10);
    expect(s.processorBusyMs).toEqual([processor.result.busyNs / 1e6]);
    expect(s.framesPerSecond).toBeCloseTo(380 / (merged.wallNs / 1e9), 3);
    expect(s.bytesPerSecond).toBeCloseTo(merged.bytes / (merged.wallNs / 1e9), 3);
  });
});

describe("Dynamic VMQ during a replay", () => {
  it("reports the first move of a pass, and sorts the queues the pieces found by queue and processor", async () => {
    // Queues 0 and 2 on processor 0, queue 1 on processor 1 (queue i on processor i mod 2).
    // vm0 (queue 1) is first seen in an oversize frame the NIC drops, so the
    // first piece loads processor 0 alone: after it a queue moves to processor 1.
    const a = mac(1);
    const b = mac(2);
    const c = mac(3);
    const first = [udp(a, 2000)];
    for (let i = 0; first.length < REPLAY_ROUND_FRAMES; i++)
      first.push(udp(i % 2 === 0 ? b : c, 100));
    const second = Array.from({ length: 90 }, (_, i) => udp([a, b, c][i % 3] ?? a, 100));
    const { report, parts } = await replayKeepingParts(pcap([...first, ...second]), {
      processors: 2,
      queues: 3,
      rebalance: true,
      jumboPacket: 1514,
    });
    expect(parts).toHaveLength(2);
    const move = parts[0]?.moved;
    expect(move?.from).toBe(0);
    expect(move?.to).toBe(1);
    expect([0, 2]).toContain(move?.queue);
    const merged = only(report.rounds);
    expect(merged.moved).toEqual(move);
    expect(merged.oversize).toBe(1);
    expect(report.summary.oversize).toBe(1);
    expect(report.summary.moves).toBe(1);
    const moved = move?.queue ?? -1;
    const expected = [
      { queue: 0, processor: 0, frames: moved === 0 ? 127 : 157, bytes: 0 },
      ...(moved === 0 ? [{ queue: 0, processor: 1, frames: 30, bytes: 0 }] : []),
      { queue: 1, processor: 1, frames: 30, bytes: 0 },
      { queue: 2, processor: 0, frames: moved === 2 ? 128 : 158, bytes: 0 },
      ...(moved === 2 ? [{ queue: 2, processor: 1, frames: 30, bytes: 0 }] : []),
    ];
    expect(merged.queues.map((q) => ({ ...q, bytes: 0 }))).toEqual(expected);
    expect(merged.processors.map((p) => p.processor)).toEqual([0, 1]);
    expect(report.summary.processorBusyMs).toHaveLength(2);
    report.summary.processorBusyMs.forEach((ms, p) => {
      expect(ms).toBe(sumOf(parts, (r) => r.processors[p]?.result.busyNs ?? 0) / 1e6);
      expect(ms).toBeGreaterThan(0);
    });
    expect(merged.processors.map((p) => p.result.frames)).toEqual(
      [0, 1].map((p) => sumOf(parts, (r) => r.processors[p]?.result.frames ?? 0)),
    );
  });
});

describe("the queues of a merged round", () => {
  it("are sorted by processor within a queue, whichever processor a piece found first", async () => {
    // RSS spreads the default queue's TCP flows over the processors by their
    // ports: a flow alone shows which processor it lands on.
    const rss = { processors: 2, queues: 1, rss: true } as const;
    const on: number[][] = [[], []];
    for (let port = 41000; port < 41016; port++) {
      const alone = pcap([tcp(mac(1), 1, new Uint8Array(10), port)]);
      const [queue] = only((await replayKeepingParts(alone, rss)).report.rounds).queues;
      on[queue?.processor ?? 0]?.push(port);
    }
    const [p0 = 0, p1 = 0] = on.map((ports) => ports[0] ?? 0);
    expect(p0).toBeGreaterThan(0);
    expect(p1).toBeGreaterThan(0);
    // The first piece carries processor 1's flow only, the second processor 0's.
    const frames = [
      ...Array.from({ length: REPLAY_ROUND_FRAMES }, (_, i) =>
        tcp(mac(1), 1 + 10 * i, new Uint8Array(10), p1),
      ),
      ...Array.from({ length: 20 }, (_, i) => tcp(mac(1), 1 + 10 * i, new Uint8Array(10), p0)),
    ];
    const { report, parts } = await replayKeepingParts(pcap(frames), rss);
    expect(parts.map((p) => p.queues.map((q) => q.processor))).toEqual([[1], [0]]);
    expect(only(report.rounds).queues.map((q) => [q.queue, q.processor, q.frames])).toEqual([
      [0, 0, 20],
      [0, 1, REPLAY_ROUND_FRAMES],
    ]);
  });
});

describe("replay options", () => {
  it("validates checksums by default, and delivers, trusts or recomputes them when asked", async () => {
    const good = Array.from({ length: 10 }, (_, i) => udp(mac(1), 20 + i));
    const bad = [corrupt(udp(mac(1), 50)), corrupt(udp(mac(1), 51)), corrupt(udp(mac(1), 52))];
    const file = pcap([...good.slice(0, 5), ...bad, ...good.slice(5)]);
    const audit = { valid: 10, notValid: 3, partial: 0 };
    const all = (await replayKeepingParts(file)).report;
    expect(all.checksums).toEqual({ ...audit, policy: "validate" });
    expect(all.summary.badChecksum).toBe(3);
    expect(all.summary.delivered).toBe(10);
    expect(all.summary.bytes).toBe(sumOf(good, (f) => f.length));

    const marked = (await replayKeepingParts(file, { deliverBad: true })).report;
    expect(marked.summary.badChecksum).toBe(3);
    expect(marked.summary.delivered).toBe(13);
    const unmarked = (await replayKeepingParts(file, { deliverBad: false })).report;
    expect(unmarked.summary.delivered).toBe(10);

    const trusted = (await replayKeepingParts(file, { checksums: "trust" })).report;
    expect(trusted.checksums).toEqual({ ...audit, policy: "trust" });
    expect(trusted.summary.badChecksum).toBe(0);
    expect(trusted.summary.delivered).toBe(13);

    const recomputed = (await replayKeepingParts(file, { checksums: "recompute" })).report;
    expect(recomputed.checksums).toEqual({ ...audit, policy: "recompute" });
    expect(recomputed.summary.badChecksum).toBe(0);
    expect(recomputed.summary.delivered).toBe(13);
  });

  it("takes the jumbo packet size of the MTU, raised to the capture's largest frame", async () => {
    const small = pcap([udp(mac(1), 100)]);
    const at = async (file: Uint8Array, o: Partial<ReplayOptions>) =>
      (await replayKeepingParts(file, o)).report;
    expect((await at(small, { mtu: 1500 })).options.jumboPacket).toBe(1514);
    expect((await at(small, { mtu: 1000 })).options.jumboPacket).toBe(1514);
    expect((await at(small, { mtu: 1501 })).options.jumboPacket).toBe(9014);
    expect((await at(small, { mtu: 9000 })).options.jumboPacket).toBe(9014);
    const big = udp(mac(1), 12000 - 42);
    expect(big.length).toBe(12000);
    const large = await at(pcap([udp(mac(1), 100), big]), { mtu: 1500 });
    expect(large.options.jumboPacket).toBe(12000);
    expect(large.summary.oversize).toBe(0);
    expect(large.summary.delivered).toBe(2);
    const fixed = await at(pcap([udp(mac(1), 100), big]), { mtu: 1500, jumboPacket: 9014 });
    expect(fixed.options.jumboPacket).toBe(9014);
    expect(fixed.summary.oversize).toBe(1);
    expect(fixed.summary.delivered).toBe(1);
    expect(fixed.options.vms).toBe(1);
    expect(fixed.options.mtu).toBe(1500);
  });

  it("spreads UDP flows by their ports over the processors only with rssUdpPorts", async () => {
    const flows = Array.from({ length: 32 }, (_, i) => udp(mac(1), 40, { srcPort: 1000 + i }));
    const file = pcap(flows);
    const spread = async (o: Partial<ReplayOptions>) =>
      only(
        (await replayKeepingParts(file, { processors: 2, queues: 1, rss: true, ...o })).report
          .rounds,
      ).processors.map((p) => p.result.frames);
    const byAddress = await spread({});
    expect([...byAddress].sort((x, y) => x - y)).toEqual([0, 32]);
    expect(await spread({ rssUdpPorts: false })).toEqual(byAddress);
    const byPorts = await spread({ rssUdpPorts: true });
    expect(sumOf(byPorts, (n) => n)).toBe(32);
    expect(Math.min(...byPorts)).toBeGreaterThan(0);
  });

  it("runs the whole capture once per round, at least once", async () => {
    const frames = Array.from({ length: 300 }, (_, i) => udp(mac(1 + (i % 2)), 20));
    const bytes = sumOf(frames, (f) => f.length);
    const three = (await replayKeepingParts(pcap(frames), { rounds: 3 })).report;
    expect(three.rounds.map((r) => [r.rounds, r.frames, r.delivered, r.bytes])).toEqual(
      Array.from({ length: 3 }, () => [2, 300, 300, bytes]),
    );
    expect(three.summary.frames).toBe(900);
    expect(three.summary.bytes).toBe(3 * bytes);
    const none = (await replayKeepingParts(pcap(frames), { rounds: 0 })).report;
    expect(none.rounds).toHaveLength(1);
    expect(none.summary.frames).toBe(300);
  });

  it("counts the wire bytes of truncated packets", async () => {
    const frames = [udp(mac(1), 400), udp(mac(1), 20), udp(mac(1), 300)];
    const packets: PacketToWrite[] = frames.map((f) => ({
      data: f.subarray(0, 100),
      originalLength: f.length,
    }));
    const file = writeCapture(packets, { format: "pcap", snaplen: 100 });
    const { report } = await replayKeepingParts(file);
    expect(report.capture.frames).toBe(3);
    expect(report.capture.bytes).toBe(sumOf(frames, (f) => f.length));
    expect(report.summary.frames).toBe(3);
  });
});

describe("follow", () => {
  it("rebuilds each TCP conversation's stream from what the VMs received, once", async () => {
    const data = Uint8Array.from({ length: 300 }, (_, i) => (i * 13 + 1) & 0xff);
    const frames = [
      tcp(mac(1), 1000, data.subarray(0, 100)),
      tcp(mac(1), 1100, data.subarray(100, 200)),
      tcp(mac(1), 1200, data.subarray(200)),
      // Another connection whose every segment is dropped for its checksum.
      corrupt(tcp(mac(1), 5000, new Uint8Array(50).fill(1), 40001)),
      corrupt(tcp(mac(1), 5050, new Uint8Array(50).fill(2), 40001)),
    ];
    const { report } = await replayKeepingParts(pcap(frames), { follow: true, rounds: 2 });
    expect(report.conversations.tcp.map((c) => c.aPort === 40000 || c.bPort === 40000)).toEqual([
      true,
      false,
    ]);
    expect(report.streams).toHaveLength(2);
    const [kept, dropped] = report.streams ?? [];
    const forward = report.conversations.tcp[0]?.aPort === 40000;
    expect(forward ? kept?.aToB : kept?.bToA).toEqual(data);
    expect(forward ? kept?.bToA : kept?.aToB).toEqual(new Uint8Array(0));
    expect(dropped).toEqual({ aToB: new Uint8Array(0), bToA: new Uint8Array(0) });
    expect(report.conversations.udp).toEqual([]);

    const once = (await replayKeepingParts(pcap(frames), { follow: true })).report;
    expect(once.streams).toEqual(report.streams);

    const plain = (await replayKeepingParts(pcap(frames))).report;
    expect(plain.streams).toBeUndefined();
    expect("streams" in plain).toBe(false);
  });
});

describe("pools and refusals", () => {
  it("runs on a pool of one worker per processor for the net domain, closed after", async () => {
    pools.length = 0;
    await replayKeepingParts(pcap([udp(mac(1), 10)]), { processors: 2 });
    expect(pools).toEqual([{ threads: 2, domains: ["net"], closed: true }]);
    pools.length = 0;
    await expect(replayKeepingParts(pcap([udp(mac(1), 10)]), { queues: 0 })).rejects.toThrow(
      /1 to 64 queues, not 0/,
    );
    expect(pools).toEqual([{ threads: 1, domains: ["net"], closed: true }]);
  });

  it("refuses a capture over MAX_REPLAY_BYTES before reading it, and reads one of exactly that size", async () => {
    const big = new Uint8Array(MAX_REPLAY_BYTES + 1);
    pools.length = 0;
    const over = await replayCapture(big, OPTIONS).catch((e: unknown) => e);
    expect(over).toBeInstanceOf(CaptureError);
    expect((over as CaptureError).code).toBe("too-large");
    expect((over as CaptureError).message).toBe(
      `capture: capture of ${MAX_REPLAY_BYTES + 1} bytes is over ${MAX_REPLAY_BYTES} (too-large at byte 0)`,
    );
    const exact = await replayCapture(big.subarray(0, MAX_REPLAY_BYTES), OPTIONS).catch(
      (e: unknown) => e,
    );
    expect(exact).toBeInstanceOf(CaptureError);
    expect((exact as CaptureError).code).toBe("bad-magic");
    expect(pools).toEqual([]);
  });
});
