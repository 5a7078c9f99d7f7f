import type { QmpClient } from "./qmp-client.js";

/** One calc-dirty-rate measurement: over `calcTimeS`, this many MiB/s of distinct pages dirtied. */
export interface DirtyRatePoint {
  readonly calcTimeS: number;
  readonly dirtyRateMiBps: number;
}

/** query-dirty-rate did not finish or answered what hvlab cannot read. */
export class DirtyRateError extends Error {
  override name = "DirtyRateError";
}

/**
 * Measures the guest's dirty curve with QEMU's `calc-dirty-rate`
 * (qapi/migration.json; migration/dirtyrate.c), once per calc-time: the
 * rate of distinct pages dirtied falls as calc-time grows when the writes
 * saturate a working set, which one rate cannot show. `mode` is
 * page-sampling (any accelerator) unless asked otherwise.
 */
export async function measureDirtyCurve(
  qmp: QmpClient,
  calcTimesS: readonly number[],
  mode = "page-sampling",
): Promise<DirtyRatePoint[]> {
  const points: DirtyRatePoint[] = [];
  for (const t of calcTimesS) {
    await qmp.execute("calc-dirty-rate", { "calc-time": t, mode });
    // A loaded host delays the measuring thread well past calc-time.
    const deadline = Date.now() + t * 1000 + 30_000;
    for (;;) {
      await new Promise((r) => setTimeout(r, 100));
      const answer = await qmp.execute<Record<string, unknown>>("query-dirty-rate");
      if (answer.status === "measured") {
        const rate = answer["dirty-rate"];
        if (typeof rate !== "number" || !Number.isFinite(rate) || rate < 0)
          throw new DirtyRateError(`query-dirty-rate: dirty-rate ${String(rate)} is not a rate`);
        points.push({ calcTimeS: t, dirtyRateMiBps: rate });
        break;
      }
      if (Date.now() > deadline)
        throw new DirtyRateError(
          `calc-dirty-rate over ${t} s did not finish (status ${String(answer.status)})`,
        );
    }
  }
  return points;
}

/**
 * Distinct pages that `writes` uniform writes over `pages` pages touch:
 * N (1 - exp(-w / N)), the saturating curve of the convergence model.
 */
export function distinctPages(pages: number, writes: number): number {
  return pages * -Math.expm1(-writes / pages);
}

/**
 * The working set N that explains a measured point, given the write rate:
 * solves N (1 - exp(-w t / N)) = dirty pages in t by bisection (the left
 * side grows with N, towards w t). Null when the point says more pages than
 * writes (the rate does not explain it).
 */
export function fitWorkingSet(
  point: DirtyRatePoint,
  writesPerSecond: number,
  pageBytes = 4096,
): number | null {
  const dirty = (point.dirtyRateMiBps * 2 ** 20 * point.calcTimeS) / pageBytes;
  const writes = writesPerSecond * point.calcTimeS;
  if (!(dirty > 0) || dirty >= writes) return null;
  let lo = dirty;
  let hi = 2 ** 40;
  for (let i = 0; i < 200 && hi - lo > 0.5; i++) {
    const mid = (lo + hi) / 2;
    if (distinctPages(mid, writes) < dirty) lo = mid;
    else hi = mid;
  }
  return Math.round((lo + hi) / 2);
}
