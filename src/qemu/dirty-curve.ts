import { readGuestStatus } from "./guest-status.js";
import type { QmpClient } from "./qmp-client.js";

/** One calc-dirty-rate measurement: over `calcTimeS`, this many MiB/s of distinct pages dirtied. */
export interface DirtyRatePoint {
  readonly calcTimeS: number;
  readonly dirtyRateMiBps: number;
  /** The guest's writes (its write counter) between the request and the answer of the measurement kept. */
  readonly guestWrites: number;
  /** Measurements taken for this calc-time: more than one when a 0 came back while the guest wrote. */
  readonly attempts: number;
  /** Why the rate is 0, when it is. */
  readonly zeroReason?: string;
}

/** query-dirty-rate did not finish or answered what hvlab cannot read. */
export class DirtyRateError extends Error {
  override name = "DirtyRateError";
}

/**
 * Sampled pages per GiB of RAM asked of page-sampling: QEMU's largest
 * (MAX_SAMPLE_PAGE_COUNT, migration/dirtyrate.h). Its default, 512 a GiB
 * (DIRTYRATE_DEFAULT_SAMPLE_PAGES), samples 32 pages of a 64 MiB guest:
 * a guest dirtying 7 % of its pages a second then misses every sample one
 * time in ten (0.93^32), and the rate, whole MiB/s of dirty samples scaled
 * to the block (update_dirtyrate in migration/dirtyrate.c), comes back 0.
 */
export const SAMPLE_PAGES_PER_GIB = 16_384;

/** Measurements of one calc-time at most, while each says 0 and the guest writes. */
export const ZERO_ATTEMPTS = 3;

/**
 * Measures the guest's dirty curve with QEMU's `calc-dirty-rate`
 * (qapi/migration.json; migration/dirtyrate.c), once per calc-time: the
 * rate of distinct pages dirtied falls as calc-time grows when the writes
 * saturate a working set, which one rate cannot show. `mode` is
 * page-sampling (any accelerator) unless asked otherwise; page-sampling
 * hashes {@link SAMPLE_PAGES_PER_GIB} random pages a GiB before and after
 * calc-time and counts the ones that changed.
 *
 * The guest's write counter is read before each request and after its
 * answer: a 0 while the counter advanced is the sampling's miss or its
 * whole-MiB/s floor, not the guest's rate, so that calc-time is measured
 * again, {@link ZERO_ATTEMPTS} times at most; a 0 that stays says why in
 * `zeroReason` (the guest wrote nothing: paused or not yet writing; or it
 * wrote, below what the sample resolves).
 */
export async function measureDirtyCurve(
  qmp: QmpClient,
  calcTimesS: readonly number[],
  mode = "page-sampling",
): Promise<DirtyRatePoint[]> {
  const points: DirtyRatePoint[] = [];
  for (const t of calcTimesS) {
    let point: DirtyRatePoint | undefined;
    for (let attempt = 1; attempt <= ZERO_ATTEMPTS; attempt++) {
      const before = (await readGuestStatus(qmp)).writes;
      const rate = await measureOnce(qmp, t, mode);
      const guestWrites = (await readGuestStatus(qmp)).writes - before;
      point = { calcTimeS: t, dirtyRateMiBps: rate, guestWrites, attempts: attempt };
      // A guest that wrote nothing dirtied nothing: measuring again would say 0 again.
      if (rate > 0 || guestWrites <= 0) break;
    }
    if (point === undefined) throw new DirtyRateError(`no measurement over ${t} s`);
    if (point.dirtyRateMiBps === 0) point = { ...point, zeroReason: zeroReason(point, mode) };
    points.push(point);
  }
  return points;
}

function zeroReason(point: DirtyRatePoint, mode: string): string {
  if (point.guestWrites <= 0)
    return `the guest wrote nothing over the ${point.calcTimeS} s (paused, or not writing yet)`;
  const sampled = mode === "page-sampling" ? ` of ${SAMPLE_PAGES_PER_GIB} sampled pages a GiB` : "";
  return `the guest wrote ${point.guestWrites} times, but in ${point.attempts} measurements QEMU saw under 1 MiB/s${sampled} (it answers whole MiB/s)`;
}

/** One calc-dirty-rate request, polled until query-dirty-rate says measured. */
async function measureOnce(qmp: QmpClient, t: number, mode: string): Promise<number> {
  const sampling = mode === "page-sampling" ? { "sample-pages": SAMPLE_PAGES_PER_GIB } : {};
  // QEMU sets the status to unstarted before it answers the request
  // (qmp_calc_dirty_rate), so a "measured" read after it is this one's.
  await qmp.execute("calc-dirty-rate", { "calc-time": t, mode, ...sampling });
  // A loaded host delays the measuring thread well past calc-time.
  const deadline = Date.now() + t * 1000 + 30_000;
  for (;;) {
    await new Promise((r) => setTimeout(r, 100));
    const answer = await qmp.execute<Record<string, unknown>>("query-dirty-rate");
    if (answer.status === "measured") {
      const rate = answer["dirty-rate"];
      if (typeof rate !== "number" || !Number.isFinite(rate) || rate < 0)
        throw new DirtyRateError(`query-dirty-rate: dirty-rate ${String(rate)} is not a rate`);
      return rate;
    }
    if (Date.now() > deadline)
      throw new DirtyRateError(
        `calc-dirty-rate over ${t} s did not finish (status ${String(answer.status)})`,
      );
  }
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
  point: Pick<DirtyRatePoint, "calcTimeS" | "dirtyRateMiBps">,
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
