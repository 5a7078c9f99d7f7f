/*
 * The pre-copy convergence model (Clark et al., NSDI 2005; docs/references.md), for predictions and for
 * the validation tests: uniform dirtying at rate D over a link of rate R
 * (lambda = D / R) gives V_i = V_mem lambda^i; real guests dirty a working
 * set whose distinct pages saturate as N (1 - exp(-w t / N)).
 */

/** Distinct pages that `writes` uniform random writes touch among `pages` pages (expected). */
export function distinctPages(pages: number, writes: number): number {
  return pages * (1 - Math.exp(-writes / pages));
}

/** What the geometric model predicts for a pre-copy migration. */
export interface GeometricPrediction {
  /** Bytes sent in each round, V_0 = V_mem first. */
  readonly volumes: readonly number[];
  /** Rounds until V_n <= threshold (n), or null if lambda >= 1 (no convergence). */
  readonly stopRound: number | null;
  /** V_mem (1 - lambda^(n+1)) / (1 - lambda). */
  readonly totalBytes: number | null;
  /** V_n / R + T_resume, ms. */
  readonly downtimeMs: number | null;
}

/**
 * The geometric model: `memBytes` of RAM, dirty bytes per second `dirtyRate`,
 * link bytes per second `linkRate`, stop at the first round whose volume is
 * at most `thresholdBytes`, plus a fixed `resumeMs`. At most `maxRounds` rounds.
 */
export function geometricModel(
  memBytes: number,
  dirtyRate: number,
  linkRate: number,
  thresholdBytes: number,
  resumeMs: number,
  maxRounds = 1000,
): GeometricPrediction {
  const lambda = dirtyRate / linkRate;
  const volumes: number[] = [memBytes];
  let stopRound: number | null = null;
  for (let i = 1; i <= maxRounds; i++) {
    const v = memBytes * lambda ** i;
    volumes.push(v);
    if (v <= thresholdBytes) {
      stopRound = i;
      break;
    }
    if (lambda >= 1) break;
  }
  if (stopRound === null || lambda >= 1) {
    return { volumes, stopRound: null, totalBytes: null, downtimeMs: null };
  }
  return {
    volumes,
    stopRound,
    totalBytes: (memBytes * (1 - lambda ** (stopRound + 1))) / (1 - lambda),
    downtimeMs: ((volumes[stopRound] ?? 0) / linkRate) * 1000 + resumeMs,
  };
}
