import { Region } from "../memory/region.js";
import { passGate } from "../pool/gate.js";
import { defineHandlers } from "../pool/registry.js";
import type { KernelContext } from "../wasm/context.js";
import { sumCounts } from "./receive-counts.js";
import { ReceiveRing } from "./ring.js";
import { RoundBarrier } from "./round-barrier.js";
import {
  MAX_ROUNDS_PER_TASK,
  type ReceiveTask,
  type ReceiveTaskResult,
  type RingCount,
} from "./task-types.js";

/**
 * A processor's receive work: `rounds` kernel calls over its share of the
 * NIC's receive buffer, its VMs' rings consumed between rounds (by itself
 * when it owns them, by the last processor through the round barrier when
 * they are shared). One task message and one result for the whole batch:
 * what a round costs besides the kernel is a few stores to ring headers.
 */
function receive(context: KernelContext, task: ReceiveTask): ReceiveTaskResult {
  const rounds = task.rounds ?? 1;
  if (!Number.isSafeInteger(rounds) || rounds < 1 || rounds > MAX_ROUNDS_PER_TASK) {
    throw new RangeError(`a receive task runs 1 to ${MAX_ROUNDS_PER_TASK} rounds, not ${rounds}`);
  }
  const memory = context.memory;
  const consume = (task.consume ?? []).map((i) => {
    const d = task.rings[i];
    if (!Number.isSafeInteger(i) || d === undefined) {
      throw new RangeError(`ring ${i} to consume is not one of the task's ${task.rings.length}`);
    }
    return { index: i, ring: ReceiveRing.open(memory, d), delivered: 0, bytes: 0, ringFull: 0 };
  });
  const barrier = task.barrier ? new RoundBarrier(memory, task.barrier) : undefined;
  const job = {
    frames: new Region(task.frames),
    table: new Region(task.table),
    work: new Region(task.work),
    first: task.first,
    count: task.count,
    rings: task.rings.map((d) => ({
      region: new Region(d.region),
      slots: d.slots,
      slotBytes: d.slotBytes,
    })),
    switchTable: task.switchTable,
    coalesce: task.coalesce,
    maxCoalesce: task.maxCoalesce,
    deliverBad: task.deliverBad,
    trustChecksums: task.trustChecksums,
    scratch: new Region(task.scratch),
  };
  // The VMs read their rings between two receive interrupts: counted, then emptied.
  const consumeRings = () => {
    for (const c of consume) {
      const n = c.ring.counters;
      c.delivered += n.delivered;
      c.bytes += n.bytes;
      c.ringFull += n.ringFull;
      c.ring.reset();
    }
  };
  const kernel = context.receive;
  passGate(memory, task.gate);
  const started = process.hrtime.bigint();
  const total = sumCounts();
  for (let r = 0; r < rounds; r++) {
    total.add(kernel.receive(job));
    if (r === rounds - 1) break;
    if (barrier) barrier.arrive(consumeRings);
    else consumeRings();
  }
  const consumed: RingCount[] = consume.map((c) => [c.index, c.delivered, c.bytes, c.ringFull]);
  return { ...total.counts, busyNs: Number(process.hrtime.bigint() - started), consumed };
}

/** The networking domain's tasks: a VMQ processor's receive work. */
export const handlers = defineHandlers({
  "net.receive": receive,
});
