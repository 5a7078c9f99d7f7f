/**
 * Networking offload benchmarks: checksum (RFC 1071) at 40 B to 64 KiB
 * against the TypeScript oracle and a naive 16-bit loop; a 64 KiB large send
 * at MTU 1500 and 9000 against a plain copy of the same bytes; Toeplitz
 * hashes per second; VMQ receive rounds on one worker and two, against a
 * single queue with the switch's lookup, the receive kernel on the calling
 * thread (no pool), the frame-at-a-time oracle and a copy of the frames.
 * Every case is verified first.
 */
import type { BenchCase, BenchSuite } from "../src/bench/harness.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { buildHeaders } from "../src/net/build.js";
import { Segmenter } from "../src/net/lso.js";
import {
  type ReceiveConfig,
  ReceivePath,
  type RoundResult,
  RSC_MAX_BYTES,
} from "../src/net/receive.js";
import type { RxSlot } from "../src/net/ring.js";
import { MICROSOFT_RSS_KEY, ToeplitzHasher } from "../src/net/rss.js";
import { largeSendFrameSpec, payloadBytes } from "../src/net/send.js";
import { generateTraffic } from "../src/net/traffic.js";
import { macNumber } from "../src/net/vmq.js";
import { onesSumOracle } from "../src/oracle/checksum.js";
import { receiveBatchOracle } from "../src/oracle/receive.js";
import { segmentOracle } from "../src/oracle/segment.js";
import { toeplitzOracle } from "../src/oracle/toeplitz.js";
import { KernelPool } from "../src/pool/pool.js";
import { BandwidthKernel } from "../src/wasm/bandwidth.js";
import { ChecksumKernel } from "../src/wasm/checksum.js";

/** Large sends per timed call (the oracle does the same number). */
const SENDS_PER_CALL = 16;
/**
 * Receive rounds per timed call of the VMQ case, for every implementation
 * (the pool's batches take them in one dispatch, the per-round variants in
 * one dispatch each, the peers as many calls).
 */
const RX_ROUNDS = 8;

/**
 * The time a batch's slowest processor spent in its task (the kernel calls
 * and the rings consumed between them, from the start gate on), per frame of
 * the batch: the wall time of the same call past it is the pool's (messages,
 * wake-ups, waiting for a core), and on the calling thread the JavaScript
 * around the kernel.
 */
function busyNsPerFrame(r: RoundResult): number {
  return Math.max(...r.processors.map((p) => p.result.busyNs)) / r.frames;
}

/** The median of a non-empty list. */
function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

function assert(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

/** The VMs of the receive benchmarks. */
export const BENCH_VMS = [
  { name: "vm0", mac: "00:15:5d:00:01:00" },
  { name: "vm1", mac: "00:15:5d:00:01:01" },
  { name: "vm2", mac: "00:15:5d:00:01:02" },
  { name: "vm3", mac: "00:15:5d:00:01:03" },
];

/** The `net` suite: `hvlab bench net`. */
export const suite: BenchSuite = {
  name: "net",
  description:
    "networking offloads: checksum, 64 KiB large send at MTU 1500/9000, Toeplitz, VMQ receive",
  async setup({ quick }) {
    const layout = new MemoryLayout();
    const memory = layout.memory;
    const checksum = ChecksumKernel.on(memory);
    const bandwidth = BandwidthKernel.on(memory);
    const cases: BenchCase[] = [];

    // --- checksum ------------------------------------------------------------
    const data = layout.allocate("net.bench.data", 65_536 + 64);
    data.bytes(memory).set(payloadBytes(data.byteLength, 17));
    for (const size of [40, 1500, 9000, 65_536]) {
      const calls = Math.max(1, Math.floor(65_536 / size));
      let sink = 0;
      const view = () => data.bytes(memory);
      cases.push({
        case: `checksum ${size} B`,
        opsPerCall: calls,
        bytesPerOp: size,
        verify: () => {
          for (const offset of [0, 1, 3]) {
            const want = onesSumOracle(view(), offset, size);
            assert(
              checksum.sum(data, offset, size) === want,
              `kernel != oracle at offset ${offset}`,
            );
            assert(
              checksum.naive(data, offset, size) === want,
              `naive != oracle at offset ${offset}`,
            );
          }
        },
        impls: [
          {
            impl: "hvlab",
            fn: () => {
              for (let i = 0; i < calls; i++) sink ^= checksum.sum(data, 0, size);
              return sink;
            },
          },
          {
            impl: "oracle (TypeScript, one byte at a time)",
            fn: () => {
              const v = view();
              for (let i = 0; i < calls; i++) sink ^= onesSumOracle(v, 0, size);
              return sink;
            },
          },
          {
            impl: "naive 16-bit loop (wasm)",
            fn: () => {
              for (let i = 0; i < calls; i++) sink ^= checksum.naive(data, 0, size);
              return sink;
            },
          },
        ],
      });
    }

    // --- 64 KiB large send ------------------------------------------------------
    const sendBytes = 65_536;
    const segmenter = new Segmenter(layout, sendBytes, "net.bench.lso");
    const payload = payloadBytes(sendBytes, 5);
    segmenter.loadPayload(payload);
    const copyTarget = layout.allocate("net.bench.copy", sendBytes);
    for (const mtu of [1500, 9000]) {
      const spec = {
        ipVersion: 4 as const,
        transport: "tcp" as const,
        offload: "lsov2" as const,
        mtu,
        bytes: sendBytes,
        seed: 5,
      };
      const { bytes: template, l3, l4 } = buildHeaders(largeSendFrameSpec(spec), sendBytes);
      const plan = segmenter.plan(template, sendBytes, { offload: "lsov2", mtu });
      const oracleOptions = {
        l3,
        l4,
        ipv6: false,
        udp: false,
        mss: plan.mss,
        idMode: "wrap15" as const,
        cwrOnAll: false,
      };
      cases.push({
        case: `64 KiB large send, MTU ${mtu}: packets of ${plan.mss} B payload (${plan.segments} per send), headers and both checksums`,
        // Several sends per timed call, so the timer's own cost is spread thin;
        // hz counts packets (segments), so the case reads as packets per second.
        opsPerCall: SENDS_PER_CALL * plan.segments,
        bytesPerOp: sendBytes / plan.segments,
        verify: () => {
          const count = segmenter.run(plan);
          assert(count === plan.segments, `wrote ${count} segments, planned ${plan.segments}`);
          const ours = segmenter.output.bytes(memory).subarray(0, plan.outputBytes);
          const oracle = segmentOracle(template, payload, oracleOptions);
          let at = 0;
          for (const frame of oracle) {
            for (let i = 0; i < frame.length; i++) {
              if (ours[at + i] !== frame[i])
                throw new Error(`segment byte ${at + i} differs from the oracle`);
            }
            at += frame.length;
          }
          assert(at === plan.outputBytes, "output length differs from the oracle");
        },
        impls: [
          {
            impl: "hvlab",
            fn: () => {
              for (let i = 0; i < SENDS_PER_CALL; i++) segmenter.run(plan);
            },
          },
          {
            impl: "memory copy of the payload (bound)",
            fn: () => {
              for (let i = 0; i < SENDS_PER_CALL; i++) {
                bandwidth.copy(copyTarget, 0, segmenter.payload, 0, sendBytes);
              }
            },
          },
          {
            impl: "oracle (TypeScript, one segment at a time)",
            fn: () => {
              for (let i = 0; i < SENDS_PER_CALL; i++) {
                segmentOracle(template, payload, oracleOptions);
              }
            },
          },
        ],
      });
    }

    // --- Toeplitz ---------------------------------------------------------------
    const hasher = new ToeplitzHasher(layout, MICROSOFT_RSS_KEY, "net.bench.rss");
    const count = 4096;
    const inputs = layout.allocate("net.bench.rss.inputs", count * 36);
    inputs.bytes(memory).set(payloadBytes(count * 36, 23));
    const hashes = layout.allocate("net.bench.rss.out", count * 4);
    for (const [label, length] of [
      ["IPv4 + ports, 12 B", 12],
      ["IPv6 + ports, 36 B", 36],
    ] as const) {
      const oracleCount = 256;
      cases.push({
        case: `Toeplitz hash, ${label}`,
        opsPerCall: count,
        verify: () => {
          let want = 0;
          const bytes = inputs.bytes(memory);
          for (let i = 0; i < count; i++)
            want ^= toeplitzOracle(MICROSOFT_RSS_KEY, bytes.subarray(i * 36, i * 36 + length));
          assert(
            hasher.hashBatch(inputs, 0, 36, length, count, hashes, 0) === want >>> 0,
            "byte tables != bit loop",
          );
        },
        impls: [
          {
            impl: "hvlab (byte tables, 1 worker)",
            fn: () => hasher.hashBatch(inputs, 0, 36, length, count, hashes, 0),
          },
          {
            impl: "oracle (bit loop, TypeScript)",
            // The bit loop is slow: hash a slice and repeat it to the same count.
            fn: () => {
              const bytes = inputs.bytes(memory);
              let x = 0;
              for (let r = 0; r < count / oracleCount; r++) {
                for (let i = 0; i < oracleCount; i++)
                  x ^= toeplitzOracle(MICROSOFT_RSS_KEY, bytes.subarray(i * 36, i * 36 + length));
              }
              return x;
            },
          },
        ],
      });
    }

    // --- VMQ receive ------------------------------------------------------------
    // The impls are async functions: tinybench probes a plain function by
    // calling it once without waiting, which would overlap two rounds.
    // Busy time per frame of the timed batches, stated with the results.
    const busy = new Map<string, number[]>();
    const timed = async (key: string, batch: Promise<RoundResult>) => {
      const r = await batch;
      busy.set(key, [...(busy.get(key) ?? []), busyNsPerFrame(r)]);
    };
    const conditions: Record<string, string> = {};
    const rxLayout = new MemoryLayout();
    const pool = new KernelPool(rxLayout, { threads: 2, domains: ["net"] });
    const rxSegmenter = new Segmenter(new MemoryLayout(), 128 * 1024);
    const framesAt1500 = quick ? 2000 : 8000;
    const base: ReceiveConfig = {
      mode: "vmq",
      queues: 5,
      processors: 1,
      rss: false,
      jumboPacket: 1514,
      coalesce: true,
      rebalance: false,
      ringSlots: 160,
      bufferBytes: 0,
    };
    for (const mtu of [1500, 9000]) {
      // A quarter of the frames at 9000: about the same bytes per round.
      const frames = mtu === 1500 ? framesAt1500 : framesAt1500 / 4;
      const traffic = generateTraffic(rxSegmenter, {
        vms: BENCH_VMS,
        flowsPerVm: 4,
        frames,
        mtu,
        ipVersion: 4,
        sendBytes: mtu === 1500 ? 64 * 1024 - 1024 : 8 * 8960,
        burst: 8,
        broadcastEvery: 0,
        corruptFraction: 0,
        seed: 3,
      });
      const bytes = traffic.reduce((a, f) => a + f.length, 0);
      const jumboPacket = mtu === 1500 ? 1514 : 9014;
      const bufferBytes = Math.ceil(bytes / 4096) * 4096;
      const paths = {
        one: new ReceivePath(
          rxLayout,
          { ...base, bufferBytes, jumboPacket, processors: 1 },
          BENCH_VMS,
          `rx${mtu}.one`,
        ),
        two: new ReceivePath(
          rxLayout,
          { ...base, bufferBytes, jumboPacket, processors: 2 },
          BENCH_VMS,
          `rx${mtu}.two`,
        ),
        single: new ReceivePath(
          rxLayout,
          { ...base, bufferBytes, jumboPacket, mode: "single" },
          BENCH_VMS,
          `rx${mtu}.single`,
        ),
      };
      for (const p of Object.values(paths)) p.load(traffic);
      const rxCopy = BandwidthKernel.on(rxLayout.memory);
      const copyTarget = rxLayout.allocate(`rx${mtu}.copy`, bufferBytes);
      const switchTable = BENCH_VMS.map((vm, i) => [macNumber(vm.mac), -1, i] as const);
      // The oracle runs one processor's work list (all frames) of the 1-worker path.
      const oracleRound = () => {
        const one = paths.one;
        return receiveBatchOracle(rxLayout.memory, {
          frames: one.buffer,
          table: one.table,
          work: one.work,
          first: 0,
          count: frames,
          rings: one.rings,
          switchTable,
          coalesce: true,
          maxCoalesce: RSC_MAX_BYTES,
          deliverBad: false,
          trustChecksums: false,
        });
      };
      const oracle = () => {
        const r = oracleRound();
        for (const ring of paths.one.rings) ring.reset();
        return r;
      };
      const drained = (into: RxSlot[][]) => (vm: number, slots: RxSlot[]) => {
        into[vm] = slots;
      };
      cases.push({
        case: `VMQ receive, ${RX_ROUNDS} rounds of ${frames} frames at MTU ${mtu}, 4 VMs (validate, coalesce, deliver)`,
        opsPerCall: frames * RX_ROUNDS,
        bytesPerOp: bytes / frames,
        verify: async () => {
          // A few rounds of each first, so the workers' code is compiled
          // before any of the three is timed, not while the first one is.
          for (let i = 0; i < 5; i++) {
            for (const p of Object.values(paths)) await p.round(pool);
          }
          const kernelSlots: RxSlot[][] = [];
          const batchSlots: RxSlot[][] = [];
          const results = [
            await paths.one.round(pool, drained(kernelSlots)),
            await paths.two.round(pool),
            await paths.single.round(pool),
            await paths.one.round(),
          ];
          // The batches the timed calls run: the same frames, RX_ROUNDS times.
          const batches = [
            await paths.one.rounds(RX_ROUNDS, pool),
            await paths.two.rounds(RX_ROUNDS, pool, drained(batchSlots)),
            await paths.single.rounds(RX_ROUNDS, pool),
            await paths.one.rounds(RX_ROUNDS),
          ];
          for (const r of [...results, ...batches]) {
            assert(
              r.badChecksum === 0 && r.malformed === 0 && r.ringFull === 0 && r.oversize === 0,
              `receive dropped frames: ${JSON.stringify(r)}`,
            );
          }
          for (const r of batches) {
            assert(
              r.rounds === RX_ROUNDS &&
                r.frames === frames * RX_ROUNDS &&
                r.bytes === RX_ROUNDS * (results[0]?.bytes ?? -1) &&
                r.delivered === RX_ROUNDS * (results[0]?.delivered ?? -1),
              `a batch of ${RX_ROUNDS} rounds delivered other than ${RX_ROUNDS} rounds do: ${JSON.stringify(r)}`,
            );
          }
          const [a, b, c, d] = results;
          assert(
            a?.bytes === b?.bytes && a?.bytes === c?.bytes && a?.bytes === d?.bytes,
            "configurations delivered different bytes",
          );
          assert(
            (c?.lookups ?? 0) === frames && (a?.lookups ?? 1) === 0,
            "lookups: the single queue looks every frame up, VMQ none",
          );
          // The oracle writes the same frames into every ring, byte for byte.
          const one = paths.one;
          const want = oracleRound();
          assert(
            want.bytes === a?.bytes && want.delivered === a.delivered,
            "kernel and oracle delivered different frames",
          );
          // The last round of the 2-worker batch too: each VM's queue is
          // one processor's, so its ring holds what one worker writes.
          for (const [vm, ring] of one.rings.entries()) {
            const theirs = ring.drain();
            ring.reset();
            for (const [what, slots] of [
              ["kernel", kernelSlots],
              ["2-worker batch", batchSlots],
            ] as const) {
              const ours = slots[vm] ?? [];
              assert(
                ours.length === theirs.length,
                `VM ${vm}: ${what} and oracle frame counts differ`,
              );
              for (const [i, slot] of ours.entries()) {
                const other = theirs[i];
                assert(
                  other !== undefined &&
                    slot.flags === other.flags &&
                    slot.segments === other.segments &&
                    Buffer.compare(slot.bytes, other.bytes) === 0,
                  `VM ${vm} frame ${i}: ${what} differs from the oracle's`,
                );
              }
            }
          }
        },
        impls: [
          {
            impl: `hvlab VMQ, 1 worker (${RX_ROUNDS} rounds a dispatch)`,
            fn: async () => {
              await timed(`${mtu}.one`, paths.one.rounds(RX_ROUNDS, pool));
            },
          },
          {
            impl: `hvlab VMQ, 2 workers (${RX_ROUNDS} rounds a dispatch)`,
            fn: async () => {
              await timed(`${mtu}.two`, paths.two.rounds(RX_ROUNDS, pool));
            },
          },
          {
            impl: "hvlab VMQ, 1 worker, a dispatch per round",
            fn: async () => {
              for (let r = 0; r < RX_ROUNDS; r++) await paths.one.round(pool);
            },
          },
          {
            impl: "hvlab VMQ, 2 workers, a dispatch per round",
            fn: async () => {
              for (let r = 0; r < RX_ROUNDS; r++) await paths.two.round(pool);
            },
          },
          {
            impl: `single queue + switch lookup, 1 worker (VMQ off; ${RX_ROUNDS} rounds a dispatch)`,
            fn: async () => {
              await paths.single.rounds(RX_ROUNDS, pool);
            },
          },
          {
            impl: "receive kernel on the calling thread (no pool: no dispatch, no start gate)",
            fn: async () => {
              await timed(`${mtu}.here`, paths.one.rounds(RX_ROUNDS));
            },
          },
          {
            impl: "oracle (TypeScript, one frame at a time, calling thread)",
            fn: async () => {
              for (let r = 0; r < RX_ROUNDS; r++) oracle();
            },
          },
          {
            impl: "memory copy of the frames (bound)",
            fn: async () => {
              for (let r = 0; r < RX_ROUNDS; r++)
                rxCopy.copy(copyTarget, 0, paths.one.buffer, 0, bytes);
            },
          },
        ],
      });
    }

    return {
      cases,
      conditions,
      async teardown() {
        await pool.close();
        // Filled here: the harness reads the conditions after teardown.
        for (const mtu of [1500, 9000]) {
          const of = (key: string) => busy.get(`${mtu}.${key}`) ?? [];
          if (of("one").length + of("two").length + of("here").length === 0) continue;
          conditions[
            `VMQ receive at MTU ${mtu}, busy ns a frame (median over the timed batches; 1 worker, slower of 2 workers, calling thread)`
          ] = ["one", "two", "here"]
            .map((k) => (of(k).length > 0 ? median(of(k)).toFixed(0) : "-"))
            .join(" / ");
        }
      },
    };
  },
};
