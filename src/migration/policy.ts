import { formatBytes } from "../util/units.js";
import type { StopPolicyName } from "./options.js";

/** What a stop policy sees at the end of a pre-copy round (after the bitmap sync). */
export interface PolicyInput {
  /** The round that just ended, 1 for the full first pass. */
  readonly round: number;
  /** Dirty bytes waiting to be sent (the bitmap after the sync). */
  readonly pendingBytes: number;
  /** Pages sent in the round that just ended. */
  readonly pagesSent: number;
  /** Bandwidth estimate, bytes per second. */
  readonly bandwidth: number;
  /** Bytes sent so far, all rounds. */
  readonly transferredBytes: number;
  /** Guest memory, bytes. */
  readonly ramBytes: number;
  readonly downtimeLimitMs: number;
  /** The round cap in force (null: none). */
  readonly maxRounds: number | null;
}

/** A policy's verdict. */
export interface PolicyVerdict {
  readonly decision: "continue" | "stop-and-copy" | "give-up";
  /** Why, in words, with the figures the rule compared. */
  readonly reason: string;
}

/** Xen's stop rule (Clark et al., NSDI 2005): fewer than 50 pages sent in a round. */
export const XEN_MIN_PAGES_PER_ROUND = 50;
/** Xen's stop rule: more than 3x RAM sent. */
export const XEN_MAX_RAM_FACTOR = 3;

function ms(value: number): string {
  return `${value.toFixed(value < 10 ? 2 : 0)} ms`;
}

function fitsDowntime(input: PolicyInput): PolicyVerdict | null {
  const threshold = input.bandwidth * (input.downtimeLimitMs / 1000);
  if (input.pendingBytes <= threshold) {
    return {
      decision: "stop-and-copy",
      reason: `pending ${formatBytes(input.pendingBytes)} <= bandwidth x downtime-limit ${formatBytes(threshold)}`,
    };
  }
  return null;
}

/**
 * QEMU (migration/migration.c): switch over once pending bytes fit in
 * bandwidth x downtime-limit; no round cap of its own (a cap given by the
 * user ends the run as not converged).
 */
function qemu(input: PolicyInput): PolicyVerdict {
  const stop = fitsDowntime(input);
  if (stop) return stop;
  if (input.maxRounds !== null && input.round >= input.maxRounds) {
    return {
      decision: "give-up",
      reason: `round cap ${input.maxRounds} reached with ${formatBytes(input.pendingBytes)} pending (expected downtime ${ms((input.pendingBytes / input.bandwidth) * 1000)} > limit ${ms(input.downtimeLimitMs)})`,
    };
  }
  return {
    decision: "continue",
    reason: `pending ${formatBytes(input.pendingBytes)} > bandwidth x downtime-limit ${formatBytes(input.bandwidth * (input.downtimeLimitMs / 1000))}`,
  };
}

/**
 * Hyper-V 2.0: copy passes until what is left fits the downtime target, at
 * most 10 passes (5 from 2012 R2), then suspend anyway (REFERENCE.md
 * section 1; the exact rule is not published, this is the assumed one).
 */
function hyperv(input: PolicyInput): PolicyVerdict {
  const stop = fitsDowntime(input);
  if (stop) return stop;
  if (input.maxRounds !== null && input.round >= input.maxRounds) {
    return {
      decision: "stop-and-copy",
      reason: `pass cap ${input.maxRounds} reached: suspending with ${formatBytes(input.pendingBytes)} pending`,
    };
  }
  return { decision: "continue", reason: `pass ${input.round} of at most ${input.maxRounds}` };
}

/**
 * Xen (Clark et al.): stop after 30 rounds, when fewer than 50 pages were
 * sent in a round, or when more than 3x RAM has been sent.
 */
function xen(input: PolicyInput): PolicyVerdict {
  if (input.round > 1 && input.pagesSent < XEN_MIN_PAGES_PER_ROUND) {
    return {
      decision: "stop-and-copy",
      reason: `${input.pagesSent} pages sent in round ${input.round} (< ${XEN_MIN_PAGES_PER_ROUND})`,
    };
  }
  if (input.transferredBytes > XEN_MAX_RAM_FACTOR * input.ramBytes) {
    return {
      decision: "stop-and-copy",
      reason: `${formatBytes(input.transferredBytes)} sent (> ${XEN_MAX_RAM_FACTOR}x RAM)`,
    };
  }
  if (input.maxRounds !== null && input.round >= input.maxRounds) {
    return { decision: "stop-and-copy", reason: `round cap ${input.maxRounds} reached` };
  }
  if (input.pendingBytes === 0) {
    return { decision: "stop-and-copy", reason: "nothing left to send" };
  }
  return { decision: "continue", reason: `round ${input.round} of at most ${input.maxRounds}` };
}

const POLICIES: Readonly<Record<StopPolicyName, (input: PolicyInput) => PolicyVerdict>> = {
  qemu,
  hyperv,
  xen,
};

/** Applies the named stop policy at the end of a pre-copy round. */
export function decide(policy: StopPolicyName, input: PolicyInput): PolicyVerdict {
  return POLICIES[policy](input);
}
