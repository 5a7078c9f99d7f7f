import { formatBytes } from "../util/units.js";
import type { GiveUpRule, StopPolicyName } from "./options.js";

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
  /**
   * Pending bytes after each round since the guest's dirty rate last changed
   * (the first round, or the last throttle step), oldest first, this round's
   * last: what the shrink factor is fitted to.
   */
  readonly pendingHistory: readonly number[];
  /** Pages sent in the round before this one (null in the first round). */
  readonly previousPagesSent: number | null;
  /** Time since the migration began, ms. */
  readonly elapsedMs: number;
  /** The longest a migration may run, ms (QEMU has none; hvlab's --max-time). */
  readonly maxTimeMs: number;
  /** When qemu's rule gives up before the round cap or max-time. */
  readonly giveUp: GiveUpRule;
  /** Whether auto-converge can still raise the throttle (then qemu never gives up yet). */
  readonly canThrottle: boolean;
  /** Bytes the guest writes per second (every write, repeats included), for reasons. */
  readonly writeBytesRate: number;
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
/**
 * Rounds of pending bytes the shrink factor is fitted to: enough that the
 * spread of random writes averages out, few enough to follow a throttle.
 */
export const SHRINK_FIT_ROUNDS = 6;

/** The fitted shrink of pending bytes per round. */
export interface ShrinkFit {
  /** pending(i + 1) / pending(i), fitted over the rounds. */
  readonly factor: number;
  /** Two standard errors of the factor: the noise it is known within. */
  readonly spread: number;
  /** Rounds fitted. */
  readonly rounds: number;
}

/**
 * Fits pending = a x factor^round by least squares on log pending over the
 * last {@link SHRINK_FIT_ROUNDS} rounds. Null with fewer rounds, or when a
 * round left nothing pending.
 */
export function fitShrink(history: readonly number[]): ShrinkFit | null {
  const points = history.slice(-SHRINK_FIT_ROUNDS);
  const n = points.length;
  if (n < SHRINK_FIT_ROUNDS || points.some((p) => !(p > 0))) return null;
  const ys = points.map((p) => Math.log(p));
  const meanX = (n - 1) / 2;
  const meanY = ys.reduce((a, b) => a + b, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (let i = 0; i < n; i++) {
    sxx += (i - meanX) ** 2;
    sxy += (i - meanX) * ((ys[i] ?? 0) - meanY);
  }
  const slope = sxy / sxx;
  let residuals = 0;
  for (let i = 0; i < n; i++) {
    residuals += ((ys[i] ?? 0) - meanY - slope * (i - meanX)) ** 2;
  }
  const slopeError = Math.sqrt(residuals / (n - 2) / sxx);
  const factor = Math.exp(slope);
  return { factor, spread: factor * 2 * slopeError, rounds: n };
}

/** Rounds and time a geometric shrink needs to bring `pending` down to `target`. */
export interface Projection {
  readonly rounds: number;
  readonly ms: number;
}

/**
 * Projects the rounds left until pending bytes fit `target`, shrinking by
 * `factor` (< 1) a round, and the time they take at `bandwidth` (each round
 * sends what the one before left: pending x (1 - factor^n) / (1 - factor)).
 */
export function projectFinish(
  pending: number,
  target: number,
  factor: number,
  bandwidth: number,
): Projection {
  const rounds = Math.max(1, Math.ceil(Math.log(target / pending) / Math.log(factor)));
  const bytes = (pending * (1 - factor ** rounds)) / (1 - factor);
  return { rounds, ms: (bytes / bandwidth) * 1000 };
}

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
 * QEMU (migration/migration.c, migration_iteration_run): switch over once
 * pending bytes fit in bandwidth x downtime-limit; no round cap of its own (a
 * cap given by the user ends the run as not converged). QEMU itself never
 * gives up; hvlab does, unless `giveUp` is "never", once the shrink of
 * pending bytes fitted over the last rounds shows it will not get there:
 * pending does not shrink (factor >= 1 within its noise), or the projected
 * finish falls past max-time. While auto-converge can still throttle, it
 * waits for the throttle.
 */
function qemu(input: PolicyInput): PolicyVerdict {
  const stop = fitsDowntime(input);
  if (stop) return stop;
  const pending = formatBytes(input.pendingBytes);
  const target = input.bandwidth * (input.downtimeLimitMs / 1000);
  if (input.maxRounds !== null && input.round >= input.maxRounds) {
    return {
      decision: "give-up",
      reason: `round cap ${input.maxRounds} reached with ${pending} pending (expected downtime ${ms((input.pendingBytes / input.bandwidth) * 1000)} > limit ${ms(input.downtimeLimitMs)})`,
    };
  }
  const carryOn: PolicyVerdict = {
    decision: "continue",
    reason: `pending ${pending} > bandwidth x downtime-limit ${formatBytes(target)}`,
  };
  if (input.giveUp === "never" || input.canThrottle) return carryOn;
  const fit = fitShrink(input.pendingHistory);
  if (!fit) return carryOn;
  const figures = `shrink factor ${fit.factor.toFixed(4)} ± ${fit.spread.toFixed(4)} a round over the last ${fit.rounds} rounds`;
  if (fit.factor + fit.spread >= 1) {
    return {
      decision: "give-up",
      reason:
        input.writeBytesRate >= input.bandwidth
          ? `dirty rate ${formatBytes(input.writeBytesRate)}/s is above bandwidth ${formatBytes(input.bandwidth)}/s: pending ${pending} does not shrink (${figures})`
          : `pending ${pending} does not shrink (${figures}): the writable working set does not fit bandwidth x downtime-limit ${formatBytes(target)}`,
    };
  }
  const left = projectFinish(input.pendingBytes, target, fit.factor, input.bandwidth);
  if (input.elapsedMs + left.ms > input.maxTimeMs) {
    return {
      decision: "give-up",
      reason: `${input.writeBytesRate >= input.bandwidth ? `dirty rate ${formatBytes(input.writeBytesRate)}/s is above bandwidth ${formatBytes(input.bandwidth)}/s: ` : ""}pending ${pending} would need ${left.rounds} more rounds and ${(left.ms / 1000).toFixed(1)} s to fit bandwidth x downtime-limit ${formatBytes(target)} (${figures}): past max-time ${(input.maxTimeMs / 1000).toFixed(0)} s`,
    };
  }
  return carryOn;
}

/**
 * The cap a continuing round counts towards, in words. A run may have none:
 * a live migration's hyperv rule without `maxRounds`, or a policy input
 * built by hand; "of at most null" says nothing.
 */
function capWords(maxRounds: number | null, unit: "pass" | "round"): string {
  return maxRounds === null ? `(no ${unit} cap)` : `of at most ${maxRounds}`;
}

/**
 * Hyper-V 2.0: copy passes until what is left fits the downtime target, at
 * most 10 passes (5 from 2012 R2), then suspend anyway (Microsoft's
 * 2008 R2 live migration white paper and third-party descriptions; the exact rule is not published, this is the assumed one).
 */
function hyperv(input: PolicyInput): PolicyVerdict {
  const stop = fitsDowntime(input);
  if (stop) return stop;
  if (input.maxRounds !== null && input.round >= input.maxRounds) {
    return {
      decision: "stop-and-copy",
      reason: `pass cap of ${input.maxRounds} reached: suspending with ${formatBytes(input.pendingBytes)} pending`,
    };
  }
  return {
    decision: "continue",
    reason: `pass ${input.round} ${capWords(input.maxRounds, "pass")}`,
  };
}

/**
 * Xen (Clark et al.; tools/libxc/xc_domain_save.c): the last round follows
 * when DEF_MAX_ITERS (29) rounds have run, when fewer than 50 pages were sent
 * in a round, when more than 3x RAM has been sent, or when a round sent more
 * than the one before at the maximum rate (hvlab's link always runs at its
 * rate: every round is at the maximum).
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
  if (input.previousPagesSent !== null && input.pagesSent > input.previousPagesSent) {
    return {
      decision: "stop-and-copy",
      reason: `round ${input.round} sent ${input.pagesSent} pages, more than round ${input.round - 1}'s ${input.previousPagesSent}, at the maximum rate`,
    };
  }
  if (input.pendingBytes === 0) {
    return { decision: "stop-and-copy", reason: "nothing left to send" };
  }
  return {
    decision: "continue",
    reason: `round ${input.round} ${capWords(input.maxRounds, "round")}`,
  };
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
