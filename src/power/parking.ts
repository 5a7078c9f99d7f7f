import { z } from "zod";
import { PowerConfigError } from "./errors.js";

/**
 * Windows Server 2008 R2's core parking parameters, by their names
 * (Microsoft, "Static configuration options for core parking"; powercfg's
 * CPMINCORES, CPMAXCORES, ...). Percentages are of a NUMA node's logical
 * processors or of a processor's time; times are in check intervals.
 */
export interface ParkingParameters {
  /** Fewest processors of each NUMA node kept unparked, % of the node. */
  readonly CPMinCores: number;
  /** Most processors of each NUMA node unparked, % of the node. */
  readonly CPMaxCores: number;
  /** Check intervals that must pass before more processors unpark. */
  readonly CPIncreaseTime: number;
  /** Check intervals that must pass before more processors park. */
  readonly CPDecreaseTime: number;
  /** Utilization, %, at which a processor counts towards the node's concurrency. */
  readonly CPConcurrency: number;
  /** Unpark one more processor when the least utilized unparked one is busier than this, %. */
  readonly CPHeadroom: number;
  /** Utilization, %, each processor carries when the node's load is spread to pick the count. */
  readonly CPDistribution: number;
}

/**
 * hvlab's defaults (assumed: Windows does not publish its 2008 R2 values
 * beside the parameters; these are the middle of each documented range).
 */
export const DEFAULT_PARKING: ParkingParameters = {
  CPMinCores: 10,
  CPMaxCores: 100,
  CPIncreaseTime: 1,
  CPDecreaseTime: 2,
  CPConcurrency: 95,
  CPHeadroom: 50,
  CPDistribution: 90,
};

/** The parking parameters' names, in the order above. */
export const PARKING_PARAMETERS = Object.keys(DEFAULT_PARKING) as (keyof ParkingParameters)[];

const percent = z.number().finite().min(0).max(100);
const checks = z.number().int().min(1).max(1000);

/** Schema of the parking parameters: percentages 0-100, times 1-1000 checks. */
export const parkingSchema = z
  .object({
    CPMinCores: percent,
    CPMaxCores: percent,
    CPIncreaseTime: checks,
    CPDecreaseTime: checks,
    CPConcurrency: percent,
    CPHeadroom: percent,
    CPDistribution: percent.refine((v) => v > 0, "must be above 0"),
  })
  .strict();

/**
 * Checks parking parameters.
 *
 * @throws PowerConfigError naming the parameter and its value.
 */
export function checkParking(params: ParkingParameters): ParkingParameters {
  const parsed = parkingSchema.safeParse(params);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = issue?.path[0];
    if (key === undefined) {
      // A parameter the schema does not know: the issue has no path, its
      // message names the key.
      throw new PowerConfigError(`parking parameters: ${issue?.message ?? "invalid"}`);
    }
    const name = String(key);
    const value = (params as unknown as Record<string, unknown>)[name];
    throw new PowerConfigError(`${name} ${String(value)}: ${issue?.message ?? "invalid"}`);
  }
  if (params.CPMinCores > params.CPMaxCores) {
    throw new PowerConfigError(
      `CPMinCores ${params.CPMinCores} is above CPMaxCores ${params.CPMaxCores}`,
    );
  }
  return parsed.data;
}

/** The bounds CPMinCores and CPMaxCores put on a node's unparked count (at least one: the NUMA rule). */
export function unparkedBounds(params: ParkingParameters, nodeSize: number): [number, number] {
  const min = Math.max(1, Math.ceil((params.CPMinCores / 100) * nodeSize - 1e-9));
  const max = Math.max(min, Math.ceil((params.CPMaxCores / 100) * nodeSize - 1e-9));
  return [min, Math.min(max, nodeSize)];
}

/**
 * How many of a node's processors should be unparked, from the last check's
 * utilizations (0-1 each) of its processors and which are unparked now:
 * enough to carry the node's load at CPDistribution each, no fewer than the
 * processors busier than CPConcurrency, and one more when even the least
 * utilized unparked processor is above CPHeadroom; then CPMinCores and
 * CPMaxCores bound it.
 */
export function wantedUnparked(
  params: ParkingParameters,
  utilization: readonly number[],
  unparked: readonly boolean[],
): number {
  const load = utilization.reduce((a, b) => a + b, 0);
  const concurrency = utilization.filter((u) => u * 100 >= params.CPConcurrency).length;
  const distribution = Math.ceil((load * 100) / params.CPDistribution - 1e-9);
  let least = Number.POSITIVE_INFINITY;
  let current = 0;
  for (const [i, u] of utilization.entries()) {
    if (!unparked[i]) continue;
    current++;
    least = Math.min(least, u);
  }
  let want = Math.max(concurrency, distribution);
  if (current > 0 && least * 100 > params.CPHeadroom) want = Math.max(want, current + 1);
  const [min, max] = unparkedBounds(params, utilization.length);
  return Math.min(max, Math.max(min, want));
}

/**
 * One check of the parking engine for one node. Unparking goes straight to
 * the wanted count once CPIncreaseTime checks have passed since the last
 * change (the busiest parked processors first: they already run affinitized
 * work); parking takes one processor at a time once CPDecreaseTime checks
 * have passed (the least utilized first, the highest number on ties).
 * CPMinCores and CPMaxCores hold at every check, whatever the times.
 * Returns the node's new unparked flags.
 */
export function parkingStep(
  params: ParkingParameters,
  utilization: readonly number[],
  unparked: readonly boolean[],
  checksSinceChange: number,
): boolean[] {
  const next = [...unparked];
  const current = unparked.filter(Boolean).length;
  const want = wantedUnparked(params, utilization, unparked);
  const [min, max] = unparkedBounds(params, utilization.length);
  const order = utilization.map((u, i) => ({ u, i }));
  if ((want > current && checksSinceChange >= params.CPIncreaseTime) || current < min) {
    const parked = order.filter(({ i }) => !unparked[i]).sort((a, b) => b.u - a.u || a.i - b.i);
    for (const { i } of parked.slice(0, Math.max(want, min) - current)) next[i] = true;
  } else if ((want < current && checksSinceChange >= params.CPDecreaseTime) || current > max) {
    // One at a time, except that CPMaxCores holds at once.
    const candidates = order.filter(({ i }) => unparked[i]).sort((a, b) => a.u - b.u || b.i - a.i);
    for (const { i } of candidates.slice(0, Math.max(1, current - max))) next[i] = false;
  }
  return next;
}
