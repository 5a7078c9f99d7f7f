import type { RegionDescriptor } from "../memory/region.js";
import type { RxRingDescriptor } from "./ring.js";

/** Work-list target meaning "the switch looks the destination MAC up". */
export const SWITCH_LOOKUP = 0xffffffff;

/** Most rounds one receive task runs (a bound on a task message's word, not a design limit). */
export const MAX_ROUNDS_PER_TASK = 1 << 20;

/**
 * One processor's share of a receive round: frames of the NIC's receive
 * buffer (by index into its table) and where each goes. The worker validates
 * checksums, coalesces, and delivers into the VMs' receive rings, in one call
 * of the receive kernel (assembly/receive.ts).
 *
 *   work list entry (8 bytes): | u32 frame index | u32 target ring (or SWITCH_LOOKUP) |
 *   frame table entry (8 bytes): | u32 offset in the receive buffer | u32 length |
 */
export interface ReceiveTask {
  readonly type: "net.receive";
  readonly frames: RegionDescriptor;
  readonly table: RegionDescriptor;
  readonly work: RegionDescriptor;
  /** First work entry of this task, and how many. */
  readonly first: number;
  readonly count: number;
  readonly rings: readonly RxRingDescriptor[];
  /** The virtual switch's MAC table: [MAC as a 48-bit number, VLAN or -1, ring]. */
  readonly switchTable: readonly (readonly [number, number, number])[];
  readonly coalesce: boolean;
  /** Largest IP datagram coalescing may build. */
  readonly maxCoalesce: number;
  /** Deliver frames that failed checksum validation, marked bad, instead of dropping them. */
  readonly deliverBad: boolean;
  /** Take every frame's checksums as good without validating them. */
  readonly trustChecksums: boolean;
  /** The processor's own region for the receive kernel's job and scratch. */
  readonly scratch: RegionDescriptor;
  readonly gate?: RegionDescriptor;
  /**
   * Rounds of the same frames this task runs back to back (a batch: one
   * dispatch, many receive interrupts); default 1.
   */
  readonly rounds?: number;
  /**
   * Rings (indices into `rings`) this processor consumes for their VMs
   * after each round but the last: their counters are read into the result
   * and the ring emptied. With `barrier`, the last processor to finish a
   * round does it for every processor (the rings are shared); without, each
   * processor's rings are its own.
   */
  readonly consume?: readonly number[];
  /** The round barrier of a batch whose processors share rings. */
  readonly barrier?: RegionDescriptor;
}

/** What one ring received over a batch: [ring, frames delivered, bytes, ring-full drops]. */
export type RingCount = readonly [ring: number, delivered: number, bytes: number, ringFull: number];

/** What a processor did in a receive round. */
export interface ReceiveResult {
  readonly frames: number;
  /** Frames (or super-frames) written into rings. */
  readonly delivered: number;
  /** Segments that went into super-frames of two or more. */
  readonly coalescedSegments: number;
  readonly badChecksum: number;
  readonly malformed: number;
  /** Unicast frames to a MAC the switch does not know. */
  readonly unknownMac: number;
  /** Switch MAC lookups done (0 where VMQ sorted frames in the NIC). */
  readonly lookups: number;
  readonly ringFull: number;
  readonly bytes: number;
  /** Busy time of the processor, after the start gate, in nanoseconds. */
  readonly busyNs: number;
}

/** A receive task's result: the processor's counts and the rings it consumed. */
export interface ReceiveTaskResult extends ReceiveResult {
  /**
   * What the rings this processor consumed received in the rounds before
   * the last (the last round's frames stay in the rings for the caller).
   */
  readonly consumed: readonly RingCount[];
}

declare module "../pool/registry.js" {
  /** The networking domain's task types: a VMQ processor's receive work. */
  interface TaskRegistry {
    "net.receive": { task: ReceiveTask; result: ReceiveTaskResult };
  }
}
