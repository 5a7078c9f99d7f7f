import { namedPolicy } from "./policies.js";
import { type SimulationResult, type SimulationSpec, simulate } from "./simulate.js";

/** A policy's run beside the no-parking baseline on the same load and seed. */
export interface Comparison {
  readonly baseline: SimulationResult;
  readonly result: SimulationResult;
  /** Energy saved against the baseline, % (negative: more energy). */
  readonly savingsPercent: number;
  /** The policy's p99 added latency minus the baseline's, us. */
  readonly addedP99Us: number;
}

/** Savings of a result against a baseline, %. */
export function savingsPercent(baseline: SimulationResult, result: SimulationResult): number {
  return (1 - result.energyJ / baseline.energyJ) * 100;
}

/** Runs a policy and the "none" baseline (same P-state) on the same load. */
export function compareToBaseline(spec: SimulationSpec, baseline?: SimulationResult): Comparison {
  const base =
    baseline ?? simulate({ ...spec, policy: namedPolicy("none", undefined, spec.policy.pstate) });
  const result = simulate(spec);
  return {
    baseline: base,
    result,
    savingsPercent: savingsPercent(base, result),
    addedP99Us: result.latency.p99Us - base.latency.p99Us,
  };
}
