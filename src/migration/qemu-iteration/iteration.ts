/**
 * How QEMU 7.2's migration thread iterates, as hvlab's model runs it
 * (`hvlab qemu predict`). The driver's default round
 * sends the whole pending set and then syncs; QEMU does not:
 *
 * - `migration_thread` (migration/migration.c) calls
 *   `migration_iteration_run` whenever the rate limit allows. That asks each
 *   device for its pending bytes (`qemu_savevm_state_pending`); RAM answers
 *   with an estimate, the pages still set in its bitmap
 *   (`ram_save_pending` in migration/ram.c), and only when that estimate is
 *   below `threshold_size` does it sync the dirty log and answer the exact
 *   figure. Exact still above the threshold: another iteration; below it:
 *   `migration_completion`. So a sync comes when a pass is nearly done, the
 *   unsent pages stay in the bitmap and the sync ORs the new dirty pages into
 *   them (`migration_bitmap_sync`).
 * - Each iteration (`ram_save_iterate`) sends until the rate limit of the
 *   current window is used up or {@link MAX_WAIT_MS} has passed, so the
 *   estimate is looked at after every chunk of at most 50 ms of sending.
 * - `migration_update_counters` re-measures the bandwidth once a window of
 *   at least {@link BUFFER_DELAY_MS} has passed: bytes sent in the window
 *   over its length. `threshold_size` is that bandwidth times
 *   downtime-limit (0 until the first window closed) and `expected-downtime`
 *   the remaining bytes over it. The rate limit allows max-bandwidth /
 *   (1000 / BUFFER_DELAY) bytes a window.
 * - `migration_completion` stops the vCPUs, lifts the rate limit
 *   (`qemu_file_set_rate_limit(..., INT64_MAX)`) and syncs a last time
 *   (`ram_save_complete`), so the last pages go as fast as the host sends:
 *   pages the destination already holds at the completion rate, and pages
 *   it never held (a completion inside the first pass) at the rate the
 *   destination takes them, since its first touch of each (a fault, the
 *   kernel zeroing a page or a huge page) can pace them
 *   ({@link firstTouchRate}).
 *
 * What the model cannot know from QEMU's source it takes as measured on the
 * host: how fast QEMU's migration thread really sends, which under TCG on a
 * shared machine is well below a generous max-bandwidth.
 */

/** `MAX_WAIT` in migration/ram.c: an iteration sends for at most this long, ms. */
export const MAX_WAIT_MS = 50;

/** `BUFFER_DELAY` in migration/migration.c: the rate-limit and bandwidth window, ms. */
export const BUFFER_DELAY_MS = 100;

/** What the host makes of QEMU's iteration: measured, or assumed. */
export interface QemuIterationOptions {
  /**
   * Bytes per second QEMU's migration thread sends with no rate limit while
   * the guest runs (RAM records, headers included). The link runs at the
   * lower of this and max-bandwidth.
   */
  readonly hostRate: number;
  /**
   * Bytes per second QEMU's migration thread sends with no rate limit at
   * all (the probe's first pass), where `hostRate` is a rate max-bandwidth
   * paced (a real run's first pass): an iteration sends what this sends in
   * {@link MAX_WAIT_MS}, or the window's budget. Absent: `hostRate`.
   */
  readonly unthrottledRate?: number;
  /**
   * Bytes per second with no rate limit and the vCPUs stopped: the last
   * pages at completion, of pages the destination already holds.
   */
  readonly completionRate: number;
  /**
   * Bytes per second with no rate limit and the vCPUs stopped, of pages the
   * destination never held (measured: a migration of the stopped guest to
   * a fresh destination). Absent: the unthrottled rate stands for it.
   */
  readonly freshRate?: number;
  /**
   * Time from `migrate` until pages flow at the host's rate, ms (setup,
   * starting the dirty log, the first pages); the guest writes meanwhile and
   * the bandwidth windows count it, as QEMU's do.
   */
  readonly startMs: number;
  /** Fixed part of the pause besides pages and device state (stopping the vCPUs, the last sync, the handover), ms. */
  readonly stopMs: number;
  /**
   * Bytes per second of successive 100 ms windows as the host sent them
   * (measured; at most {@link MAX_WINDOW_RATES}). Given, the link runs each
   * window at the next of them in turn (capped by max-bandwidth) instead of
   * at `hostRate` throughout: QEMU's threshold follows the last window's
   * bandwidth, so where pending hovers near it, the switchover comes in the
   * first window fast enough for pending to fit, as it does in QEMU.
   */
  readonly windowRates?: readonly number[];
  /**
   * Pages past the working set that the first pass scans and finds zero
   * (never written since boot). QEMU 7.2 reads each with `buffer_is_zero`
   * and sends it as a header alone (`save_zero_page` in migration/ram.c), so
   * they cost the scan's time, not the link's; its pending estimate counts
   * them as whole pages until they are scanned, so no sync comes before.
   */
  readonly zeroTailPages?: number;
  /** Zero pages QEMU's first pass scans a second on this host (measured); needed with `zeroTailPages`. */
  readonly zeroScanRate?: number;
}

/** Bytes QEMU 7.2 sends per zero page: the 8-byte page header (offset and RAM_SAVE_FLAG_ZERO) and the fill byte. */
export const ZERO_RECORD_BYTES = 9;

/** The most zero pages the model scans (a 3 GiB guest has fewer). */
export const MAX_ZERO_TAIL_PAGES = 2 ** 24;

/** The longest list of window rates the model takes. */
export const MAX_WINDOW_RATES = 10_000;

/** Checks the options; throws a RangeError naming the bad one. */
export function checkQemuIteration(o: QemuIterationOptions): void {
  for (const [name, value] of [
    ["host rate", o.hostRate],
    ["completion rate", o.completionRate],
    ["unthrottled rate", o.unthrottledRate ?? o.hostRate],
    ["fresh-page rate", o.freshRate ?? o.hostRate],
  ] as const) {
    if (!(value > 0) || !Number.isFinite(value))
      throw new RangeError(
        `QEMU iteration: ${name} must be a finite number of bytes/s above 0, not ${value}`,
      );
  }
  const windows = o.windowRates ?? [];
  if (windows.length > MAX_WINDOW_RATES)
    throw new RangeError(
      `QEMU iteration: ${windows.length} window rates are more than ${MAX_WINDOW_RATES}`,
    );
  windows.forEach((rate, i) => {
    if (!(rate > 0) || !Number.isFinite(rate))
      throw new RangeError(
        `QEMU iteration: window rate ${i} must be a finite number of bytes/s above 0, not ${rate}`,
      );
  });
  const tail = o.zeroTailPages ?? 0;
  if (!Number.isInteger(tail) || tail < 0 || tail > MAX_ZERO_TAIL_PAGES)
    throw new RangeError(
      `QEMU iteration: zero tail must be 0 to ${MAX_ZERO_TAIL_PAGES} pages, not ${tail}`,
    );
  if (
    tail > 0 &&
    !(o.zeroScanRate !== undefined && o.zeroScanRate > 0 && Number.isFinite(o.zeroScanRate))
  )
    throw new RangeError(
      `QEMU iteration: a zero tail of ${tail} pages needs a finite zero-page scan rate above 0, not ${o.zeroScanRate}`,
    );
  if (!(o.startMs >= 0) || o.startMs > 600_000)
    throw new RangeError(`QEMU iteration: start time must be 0 to 600000 ms, not ${o.startMs}`);
  if (!(o.stopMs >= 0) || o.stopMs > 60_000)
    throw new RangeError(`QEMU iteration: stop cost must be 0 to 60000 ms, not ${o.stopMs}`);
}

/**
 * The rate the link runs at while the guest runs in window `window` (0 the
 * first): the lower of max-bandwidth and the host's (that window's, where
 * window rates were measured; they repeat in turn).
 */
export function runningRate(o: QemuIterationOptions, maxBandwidth: number, window = 0): number {
  const windows = o.windowRates ?? [];
  const host = windows.length > 0 ? (windows[window % windows.length] ?? o.hostRate) : o.hostRate;
  return Math.min(host, maxBandwidth);
}

/**
 * The rate of a completion's pages that the destination never held, those
 * a completion inside the first pass sends for the first time: the rate a
 * destination took such pages with the vCPUs stopped (`freshRate`), and no
 * faster than the completion itself. The destination's first touch of each
 * page paces them, and what it costs moves with the host: a fault and a
 * zeroed 4 KiB page each, or one zeroed 2 MiB page for 512 where QEMU's
 * `MADV_HUGEPAGE` on guest RAM finds huge pages free. A probe that
 * completed with first-pass pages went at 125 MiB/s where its completions
 * of pages already held went at some 870 MiB/s; on another day, with huge
 * pages, completions of 25 MB, 15 MB of them never held, took 17 to 37
 * ms. Where the destination's rate was not measured, the first pass's
 * with no rate limit (`unthrottledRate`, or `hostRate`), whose pages it
 * also touched first, stands for it.
 */
export function firstTouchRate(o: QemuIterationOptions): number {
  return Math.min(o.completionRate, o.freshRate ?? o.unthrottledRate ?? o.hostRate);
}

/**
 * Bytes one iteration sends before the pending estimate is looked at again:
 * the window's rate-limit budget when max-bandwidth binds (the thread then
 * waits for the next window), else what the host sends in MAX_WAIT.
 * `ram_save_iterate` (migration/ram.c) loops while `qemu_file_rate_limit`
 * allows and breaks on MAX_WAIT alone, so the host's speed here is its
 * speed with no rate limit (`unthrottledRate`): a pass that max-bandwidth
 * paced sends each window's budget in one iteration whenever the host
 * could send it within MAX_WAIT, one pending check a window, not two.
 */
export function chunkBytes(o: QemuIterationOptions, maxBandwidth: number): number {
  const budget = (maxBandwidth * BUFFER_DELAY_MS) / 1000;
  const inMaxWait = ((o.unthrottledRate ?? o.hostRate) * MAX_WAIT_MS) / 1000;
  return Math.min(budget, inMaxWait);
}

/**
 * `threshold_size`: the last window's bandwidth (bytes/s; null before the
 * first window closed, when QEMU's is still 0) times downtime-limit.
 */
export function thresholdBytes(windowRate: number | null, downtimeLimitMs: number): number {
  return windowRate === null ? 0 : (windowRate * downtimeLimitMs) / 1000;
}
