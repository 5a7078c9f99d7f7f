import { JUMBO_PACKET_DEFAULT, VirtualNic } from "../net/vmq.js";
import { PowerConfigError } from "./errors.js";
import type { InterruptSource } from "./load.js";

/** Where a VMQ NIC's queue interrupts go. */
export type VmqSteering = "spread" | "unparked";

/** A VMQ NIC whose queues interrupt the machine's processors. */
export interface VmqLoad {
  /** Receive queues, the default queue included. */
  readonly queues: number;
  /** Interrupts per second each queue raises. */
  readonly interruptsPerSecond: number;
  /** Processor time one interrupt (its DPC included) takes, us. */
  readonly serviceUs: number;
  /**
   * "spread": each queue keeps the interrupt affinity the NIC gave it,
   * round robin over every processor (the networking engine's assignment);
   * "unparked": the same assignment over the processors unparked at each
   * check, so interrupts never land on a parked processor.
   */
  readonly steering: VmqSteering;
}

/**
 * A VMQ NIC's queues as interrupt sources, with the queue-to-processor
 * assignment of the networking engine's {@link VirtualNic}. A NIC addresses
 * at most 64 processors; on a larger machine the queues spread over the
 * first 64.
 */
export function vmqInterrupts(vmq: VmqLoad, processors: number): InterruptSource[] {
  if (!Number.isSafeInteger(vmq.queues) || vmq.queues < 1 || vmq.queues > 64) {
    throw new PowerConfigError(`VMQ queues ${vmq.queues} must be a whole number from 1 to 64`);
  }
  if (vmq.steering !== "spread" && vmq.steering !== "unparked") {
    throw new PowerConfigError(`VMQ steering '${String(vmq.steering)}' must be spread or unparked`);
  }
  const nic = new VirtualNic({
    queues: vmq.queues,
    processors: Math.min(processors, 64),
    jumboPacket: JUMBO_PACKET_DEFAULT,
  });
  return nic.queues.map((queue) => ({
    processor: vmq.steering === "spread" ? queue.processor : "unparked",
    index: queue.processor,
    ratePerSecond: vmq.interruptsPerSecond,
    serviceUs: vmq.serviceUs,
  }));
}
