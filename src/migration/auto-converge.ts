/**
 * QEMU's auto-converge period: the check runs once more than this much
 * time has passed since the last one (migration/ram.c, migration_bitmap_sync:
 * `end_time > rs->time_last_bitmap_sync + 1000`).
 */
export const AUTO_CONVERGE_PERIOD_MS = 1000;
/**
 * ...this many high periods, not necessarily in a row: QEMU's
 * dirty_rate_high_cnt counts them and is reset only when the throttle
 * rises (migration_trigger_throttle), not by a low period.
 */
export const AUTO_CONVERGE_HIGH_PERIODS = 2;

/** The throttle's settings. */
export interface AutoConvergeSettings {
  readonly autoConverge: boolean;
  readonly throttleInitial: number;
  readonly throttleIncrement: number;
  readonly throttleMax: number;
  /**
   * Throttle when bytes dirtied exceed this percentage of bytes sent in a
   * period (QEMU's throttle-trigger-threshold, 50).
   */
  readonly throttleTriggerThreshold: number;
  /**
   * QEMU's cpu-throttle-tailslow: a step raises the throttle only as far as
   * would bring the dirty bytes down to the threshold, at most the increment.
   */
  readonly throttleTailslow: boolean;
}

/**
 * QEMU's auto-converge (migration/ram.c, migration_trigger_throttle and
 * mig_throttle_guest_down): at bitmap syncs, once a period of more than 1 s
 * has passed, if the bytes the guest dirtied in it exceed
 * throttle-trigger-threshold (50 %) of the bytes sent, twice, the vCPUs are
 * throttled: cpu-throttle-initial (20 %) at first, then
 * cpu-throttle-increment (10 %) more each time, at most max-cpu-throttle
 * (99 %). With cpu-throttle-tailslow a step is only as large as the one that
 * would bring the dirty bytes to the threshold.
 */
export class AutoConverge {
  /** Share of vCPU time taken away, percent (QEMU's cpu-throttle-percentage). */
  percentage = 0;
  private highPeriods = 0;
  private dirtyBytes = 0;
  private sentBytes = 0;
  private periodMs = 0;

  constructor(private readonly settings: AutoConvergeSettings) {}

  /** Whether the throttle is on and can still rise. */
  get canRise(): boolean {
    return this.settings.autoConverge && this.percentage < this.settings.throttleMax;
  }

  /**
   * Accounts a sync: bytes dirtied and sent since the last one, over `elapsedMs`.
   * Returns true when the throttle rose.
   */
  afterSync(dirtyBytes: number, sentBytes: number, elapsedMs: number): boolean {
    if (!this.settings.autoConverge) return false;
    this.dirtyBytes += dirtyBytes;
    this.sentBytes += sentBytes;
    this.periodMs += elapsedMs;
    if (this.periodMs <= AUTO_CONVERGE_PERIOD_MS) return false;
    const threshold = (this.sentBytes * this.settings.throttleTriggerThreshold) / 100;
    const dirty = this.dirtyBytes;
    const high = dirty > threshold;
    this.dirtyBytes = 0;
    this.sentBytes = 0;
    this.periodMs = 0;
    if (!high) return false;
    this.highPeriods++;
    if (this.highPeriods < AUTO_CONVERGE_HIGH_PERIODS) return false;
    this.highPeriods = 0;
    let step = this.settings.throttleIncrement;
    if (this.settings.throttleTailslow && this.percentage > 0) {
      // QEMU: the CPU share that would dirty just the threshold's bytes.
      const cpuNow = 100 - this.percentage;
      const cpuIdeal = cpuNow * (threshold / dirty);
      step = Math.min(cpuNow - cpuIdeal, step);
    }
    const next =
      this.percentage === 0
        ? this.settings.throttleInitial
        : Math.min(this.percentage + step, this.settings.throttleMax);
    const rose = next > this.percentage;
    this.percentage = next;
    return rose;
  }
}
