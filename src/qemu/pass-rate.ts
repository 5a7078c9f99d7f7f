import type { MigrateSample } from "./rounds.js";

/**
 * How fast QEMU sent during the first pass of a migration, from its
 * query-migrate samples: bytes over time from the first to the last
 * sampling interval that carried mostly normal pages (an interval through
 * zero pages moves pages, not bytes), the stalls between them included, as
 * the rest of the migration will live through stalls too. Only the first
 * pass counts (dirty-sync-count 1, the sync at setup): its work is the
 * working set whatever the guest does, so its rate is the host's, not an
 * outcome of the migration.
 */
export interface PassRate {
  /** Bytes per second. */
  readonly rate: number;
  /** Where the rate was measured: ms after `migrate`. */
  readonly fromMs: number;
  readonly toMs: number;
  /** Sampling intervals it spans that carried mostly normal pages. */
  readonly intervals: number;
  /**
   * How long after `migrate` pages began to flow at that rate, ms: where the
   * line through the first full-speed sample at the rate meets zero bytes
   * (QEMU's setup, starting the dirty log, the first pages).
   */
  readonly startMs: number;
  /**
   * Bytes per second over successive spans of at least {@link WINDOW_MS}
   * from `fromMs` to `toMs`, each with some bytes sent (a stall joins the
   * next span), scaled so that their mean is `rate`: how QEMU's 100 ms
   * bandwidth windows saw the rate move.
   */
  readonly windowRates: readonly number[];
}

/**
 * The start of a real run that calibrates the model, ms after `migrate`:
 * long enough to span several of QEMU's 100 ms rate-limit windows, short
 * enough to be a small part of any run the fidelity suite makes.
 */
export const CALIBRATION_MS = 1000;

/** QEMU's bandwidth window (`BUFFER_DELAY` in migration/migration.c), ms. */
export const WINDOW_MS = 100;

/** An interval counts when at least this share of its bytes were normal pages. */
export const NORMAL_SHARE = 0.9;

/**
 * The first pass's rate over `samples` (in time order), or null when no two
 * samples of the first pass bound an interval of mostly normal pages.
 * Samples past `untilMs` are not looked at.
 */
export function firstPassRate(
  samples: readonly MigrateSample[],
  untilMs = Number.POSITIVE_INFINITY,
): PassRate | null {
  let last: { at: number; transferred: number; normal: number } | undefined;
  let first: { at: number; transferred: number } | undefined;
  let lastGood: { at: number; transferred: number } | undefined;
  let intervals = 0;
  const points: { at: number; transferred: number }[] = [];
  for (const s of samples) {
    const ram = s.info.ram;
    if (s.atMs > untilMs) break;
    if (!ram || s.info.status !== "active") continue;
    if ((ram["dirty-sync-count"] ?? 0) > 1) break;
    const now = {
      at: s.atMs,
      transferred: ram.transferred ?? 0,
      normal: ram["normal-bytes"] ?? 0,
    };
    points.push(now);
    if (last) {
      const bytes = now.transferred - last.transferred;
      const normal = now.normal - last.normal;
      if (bytes > 0 && normal >= bytes * NORMAL_SHARE) {
        intervals++;
        first ??= last;
        lastGood = now;
      }
    }
    last = now;
  }
  if (!first || !lastGood || lastGood.at <= first.at) return null;
  const rate = ((lastGood.transferred - first.transferred) * 1000) / (lastGood.at - first.at);
  if (!(rate > 0)) return null;
  const windowRates: number[] = [];
  let from = first;
  for (const p of points) {
    if (p.at <= first.at || p.at > lastGood.at) continue;
    if (p.at - from.at < WINDOW_MS && p !== lastGood) continue;
    // A window that sent nothing (or, from a confused peer, less than
    // nothing) joins the next: the model's link needs a rate above 0.
    if (!(p.transferred > from.transferred)) continue;
    windowRates.push(((p.transferred - from.transferred) * 1000) / (p.at - from.at));
    from = p;
  }
  // Spans of unequal length: scaled so that windows of equal length, run in
  // turn, send at `rate` on average, as the pass did.
  const mean = windowRates.reduce((a, b) => a + b, 0) / windowRates.length;
  const scale = mean > 0 ? rate / mean : 1;
  return {
    windowRates: windowRates.map((w) => w * scale),
    rate,
    fromMs: first.at,
    toMs: lastGood.at,
    intervals,
    startMs: Math.max(0, first.at - (first.transferred * 1000) / rate),
  };
}

/**
 * The zero-page scan rate needs at least this many zero pages timed: the
 * pages below the working set (16 MiB of them) that every run's first pass
 * scans before its first normal page give about 4,000.
 */
export const MIN_ZERO_PAGES = 1024;

/**
 * Zero pages a second QEMU's first pass scanned, from its query-migrate
 * samples (in time order): `ram.duplicate` (pages found zero) over the
 * time of the sampling intervals in which at least {@link NORMAL_SHARE} of
 * the pages moved were zero. QEMU 7.2 reads each page with `buffer_is_zero`
 * and sends a zero one as a header (`save_zero_page`, migration/ram.c), so
 * a run of zero pages costs the host's scan time, not link time. Null when
 * such intervals held fewer than {@link MIN_ZERO_PAGES} pages.
 *
 * With `pastWorkingSet`, only the intervals after the first normal page
 * count: the zero pages past the working set, the tail the model scans at
 * this rate. The ones below it cost less and say nothing of the tail: the
 * firmware and the loader touched low memory, while the tail is memory
 * neither QEMU has touched. QEMU backs guest RAM with transparent huge
 * pages (`qemu_madvise(QEMU_MADV_HUGEPAGE)` in `ram_block_add`,
 * softmmu/physmem.c), and the source's `buffer_is_zero` read of a tail
 * page (`save_zero_page`, migration/ram.c) and the destination's
 * (`ram_handle_compressed`) each fault in a 2 MiB one: both processes'
 * AnonHugePages grew in step through a 1 GiB guest's tail, 270 MB to
 * 1 GB, and `ram.duplicate` moved in steps of 512 pages. Two huge pages
 * zeroed per 512 zero pages is CPU time, so the tail's rate falls with the
 * host's load: some 50,000 pages/s at a load average of 27, where the
 * 4,000 pages below the working set went at 60,000 to 400,000. The source
 * may scan ahead of the destination (a header is 9 bytes, and the socket's
 * buffers hold many), and then it stalls once the pass after the tail
 * fills them: in one run here the tail went by in 0.7 s and the source
 * then sent nothing for 1.9 s after the next sync. So past the working set
 * the intervals that sent nothing, from the tail's start to the end of the
 * pass after it, count as the tail's time too: the tail's rate is the
 * destination's, the slower side.
 */
export function zeroScanRate(
  samples: readonly MigrateSample[],
  untilMs = Number.POSITIVE_INFINITY,
  pastWorkingSet = false,
): number | null {
  let last: { at: number; zero: number; normal: number; transferred: number } | undefined;
  let pages = 0;
  let ms = 0;
  // The tail's stalls: intervals that sent nothing, from the tail's start
  // to the end of the pass after it.
  let stalledMs = 0;
  for (const s of samples) {
    const ram = s.info.ram;
    if (s.atMs > untilMs) break;
    if (!ram || s.info.status !== "active") continue;
    const syncs = ram["dirty-sync-count"] ?? 0;
    if (syncs > (pastWorkingSet && pages > 0 ? 2 : 1)) break;
    const now = {
      at: s.atMs,
      zero: ram.duplicate ?? 0,
      normal: ram.normal ?? 0,
      transferred: ram.transferred ?? 0,
    };
    // Below the working set: no normal page sent before this interval.
    const below = pastWorkingSet && (last?.normal ?? 0) <= 0;
    if (last && now.at > last.at && !below) {
      const zero = now.zero - last.zero;
      const normal = now.normal - last.normal;
      if (syncs <= 1 && zero > 0 && zero >= (zero + Math.max(0, normal)) * NORMAL_SHARE) {
        pages += zero;
        ms += now.at - last.at;
      } else if (pastWorkingSet && pages > 0 && now.transferred === last.transferred) {
        stalledMs += now.at - last.at;
      }
    }
    last = now;
  }
  if (pages < MIN_ZERO_PAGES || !(ms > 0)) return null;
  // Samples a denormal apart give an infinite rate: no rate.
  const rate = (pages * 1000) / (ms + stalledMs);
  return Number.isFinite(rate) ? rate : null;
}

/**
 * Window rates as QEMU's windows under a `cap` (max-bandwidth: a window
 * sends at most its budget) that still mean `mean`: each rate scaled by
 * one factor and capped, the factor chosen (by bisection) so that the
 * capped rates average `mean`. Where max-bandwidth paced a pass, the
 * windows that kept time sent their budget and the ones whose thread woke
 * late sent less: a steady rate at the mean would hide the fast windows in
 * which QEMU's threshold (the last window's rate x downtime-limit) is
 * highest. All at `cap` when `mean` is `cap` or more; [] for no windows.
 */
export function cappedWindowRates(windows: readonly number[], cap: number, mean: number): number[] {
  const positive = windows.filter((w) => w > 0 && Number.isFinite(w));
  if (positive.length === 0 || !(cap > 0) || !(mean > 0)) return [];
  if (mean >= cap) return positive.map(() => cap);
  const average = (k: number) =>
    positive.reduce((a, w) => a + Math.min(cap, w * k), 0) / positive.length;
  // At k = 0 the average is 0; at hi every window is capped: cap > mean.
  let lo = 0;
  let hi = cap / Math.min(...positive);
  for (let i = 0; i < 100; i++) {
    const mid = (lo + hi) / 2;
    if (average(mid) < mean) lo = mid;
    else hi = mid;
  }
  return positive.map((w) => Math.min(cap, w * hi));
}
