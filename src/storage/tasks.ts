import * as hdr from "hdr-histogram-js";
import { Region, type RegionDescriptor } from "../memory/region.js";
import { defineHandlers } from "../pool/registry.js";
import type { KernelContext } from "../wasm/context.js";
import { zipfConstants, zipfH, zipfHIntegral, zipfHIntegralInverse } from "../workload/zipf.js";
import { ChannelFile } from "./channel-file.js";
import type { DiskImage } from "./disk-image.js";
import { RawImage } from "./disk-image.js";
import { DiskRemovedError } from "./errors.js";
import { isRandom, readShare } from "./io-spec.js";
import { StorageKernels } from "./kernels.js";
import { detectFormat, openImage } from "./open.js";
import { IO_CONTROL_SLOTS, IoControl, type IoResult, IoState, type IoTask } from "./task-types.js";
import { VhdImage } from "./vhd.js";

/** Latency histogram range: 1 ns to an hour, 3 significant digits (HdrHistogram's usual). */
export const HISTOGRAM = {
  lowestDiscernibleValue: 1,
  highestTrackableValue: 3.6e12,
  numberOfSignificantValueDigits: 3,
} as const;

/** Epoch milliseconds that agree across threads. */
function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** xorshift128+ on two 32-bit halves kept as numbers: a fast, seeded stream. */
function random(seed: number): () => number {
  let a = (seed ^ 0x9e3779b9) >>> 0 || 1;
  let b = Math.imul(seed + 0x6d2b79f5, 0x85ebca6b) >>> 0 || 2;
  return () => {
    let t = a ^ (a << 11);
    a = b;
    b = (b ^ (b >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    t = b;
    return t / 4294967296;
  };
}

/** Rejection-inversion Zipf sampling over ranks 1..n (Hoermann and Derflinger 1996). */
function zipfSampler(n: number, s: number, next: () => number): () => number {
  const c = zipfConstants(n, s);
  return () => {
    for (;;) {
      const u = c.hIntegralN + next() * (c.hIntegralX1 - c.hIntegralN);
      const x = zipfHIntegralInverse(u, s);
      const k = Math.min(n, Math.max(1, Math.round(x)));
      if (k - x <= c.sDiv || u >= zipfHIntegral(k + 0.5, s) - zipfH(k, s)) return k;
    }
  };
}

/** Opens the task's image through its mailbox (raw or VHD, detected from its bytes). */
function openOnChannel(
  task: IoTask,
  memory: WebAssembly.Memory,
  kernels: StorageKernels,
): DiskImage {
  const file = new ChannelFile(task.path, memory, new Region(task.channel as RegionDescriptor));
  return detectFormat(file) === "raw"
    ? new RawImage(file, true)
    : VhdImage.open(file, { writable: true, kernels });
}

function runIo(context: KernelContext, task: IoTask): IoResult {
  const memory = context.memory;
  const control = new Region(task.control);
  const slots = new Int32Array(
    memory.buffer,
    control.check(0, IO_CONTROL_SLOTS * 4, "I/O control"),
    IO_CONTROL_SLOTS,
  );
  const buffer = new Region(task.buffer);
  const gens = new Region(task.gens);
  const { spec } = task;
  const k = context.storage;
  const kernels = new StorageKernels(memory, k, new Region(task.arena));
  const image = task.channel
    ? openOnChannel(task, memory, kernels)
    : openImage(task.path, { writable: true, kernels, direct: spec.direct ?? false });
  const bs = spec.bs;
  const blocks = Math.floor(image.size / bs);
  const table = new Uint32Array(
    memory.buffer,
    gens.check(0, blocks * 4, "generation table"),
    blocks,
  );
  const data = buffer.bytes(memory).subarray(0, bs);
  const seed = BigInt(spec.seed);
  const next = random(spec.seed ^ Math.imul(task.disk.length + 1, 0x27d4eb2d));
  const zipf = spec.zipf ? zipfSampler(blocks, spec.zipf, next) : undefined;
  const reads = readShare(spec);
  const histogram = hdr.build(HISTOGRAM);
  const timeline: number[] = [];
  let cursor = 0;
  let nReads = 0;
  let nWrites = 0;
  let failed = 0;
  let verifyErrors = 0;
  const verifyErrorOffsets: number[] = [];
  let removedAtMs: number | undefined;
  let lastCompletionAtMs = 0;
  const startedAtMs = nowMs();
  const deadline = startedAtMs + spec.runtimeMs;
  Atomics.store(slots, IoControl.started, 1);
  Atomics.notify(slots, IoControl.started);
  const pick = (): number => {
    if (!isRandom(spec)) {
      const block = cursor;
      cursor = (cursor + 1) % blocks;
      return block;
    }
    return zipf ? zipf() - 1 : Math.floor(next() * blocks);
  };
  try {
    run: while (nowMs() < deadline) {
      const submitted = performance.now();
      for (let q = 0; q < spec.iodepth; q++) {
        if (Atomics.load(slots, IoControl.state) !== IoState.running) {
          // The removal point: requests still queued fail, none completes after it.
          failed += spec.iodepth - q;
          break run;
        }
        const block = pick();
        const offset = block * bs;
        if (next() < reads) {
          image.read(offset, data);
          nReads++;
          if (spec.verify && k.patternVerify(buffer, 0, bs, bs, offset, gens, 0, seed) !== -1) {
            verifyErrors++;
            if (verifyErrorOffsets.length < 8) verifyErrorOffsets.push(offset);
          }
        } else {
          const gen = (table[block] ?? 0) + 1;
          k.patternFill(buffer, 0, bs, bs, offset, gen, seed);
          image.write(offset, data);
          table[block] = gen;
          nWrites++;
        }
        const done = performance.now();
        histogram.recordValue(Math.max(1, Math.round((done - submitted) * 1e6)));
        lastCompletionAtMs = performance.timeOrigin + done;
        const bucket = Math.floor((lastCompletionAtMs - startedAtMs) / task.intervalMs);
        while (timeline.length <= bucket) timeline.push(0);
        timeline[bucket] = (timeline[bucket] ?? 0) + 1;
        Atomics.add(slots, IoControl.completed, 1);
      }
    }
  } finally {
    image.close();
  }
  if (Atomics.load(slots, IoControl.state) === IoState.removeAsked) {
    // Acknowledged only now that the file is closed: no byte reaches it after this.
    removedAtMs = nowMs();
    Atomics.store(slots, IoControl.state, IoState.removed);
    Atomics.notify(slots, IoControl.state);
  }
  return {
    disk: task.disk,
    reads: nReads,
    writes: nWrites,
    bytes: (nReads + nWrites) * bs,
    failed,
    ...(failed > 0 ? { failedError: DiskRemovedError.name } : {}),
    verifyErrors,
    verifyErrorOffsets,
    startedAtMs,
    lastCompletionAtMs,
    ...(removedAtMs !== undefined ? { removedAtMs } : {}),
    elapsedMs: (removedAtMs ?? nowMs()) - startedAtMs,
    histogram: hdr.encodeIntoCompressedBase64(histogram),
    timeline,
  };
}

/** The storage domain's tasks: one disk's guest I/O. */
export const handlers = defineHandlers({
  "storage.io": runIo,
  "storage.ready": (context) => (context.storage ? 1 : 0),
});
