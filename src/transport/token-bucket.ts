import { setTimeout as sleep } from "node:timers/promises";

/**
 * The window a throttled link is metered over: QEMU sends at most
 * max-bandwidth / XFER_LIMIT_RATIO bytes per BUFFER_DELAY (100 ms) window
 * and waits out the rest of a window once that is spent (QEMU
 * migration/migration.h, BUFFER_DELAY and XFER_LIMIT_RATIO;
 * migration/migration-stats.c, migration_rate_set and
 * migration_rate_exceeded; migration/migration.c, migration_rate_limit).
 */
export const RATE_WINDOW_MS = 100;

/**
 * A token bucket that throttles the link to `rate` bytes per second with
 * bursts of at most `burst` bytes: by default one 100 ms window of the rate,
 * as QEMU's limiter allows, so a slow link never bursts past what its rate
 * says. A send larger than the tokens held runs the bucket into debt and
 * waits the debt off, so the long-run rate holds for any frame size.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly rate: number,
    readonly burst = (rate * RATE_WINDOW_MS) / 1000,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(rate > 0) || !Number.isFinite(rate)) {
      throw new RangeError(`throttle rate must be a positive number of bytes/s, not ${rate}`);
    }
    if (!(burst > 0) || !Number.isFinite(burst)) {
      throw new RangeError(`throttle burst must be a positive number of bytes, not ${burst}`);
    }
    this.tokens = burst;
    this.last = this.now();
  }

  /**
   * The most a sender should hand the socket at once: one window's bytes (at
   * least one), so that a frame far larger than the window trickles out at
   * the rate instead of waiting in one block and then bursting.
   */
  get sliceBytes(): number {
    return Math.max(1, Math.floor(this.burst));
  }

  /** Milliseconds to wait before `bytes` may go; takes the tokens. */
  reserve(bytes: number): number {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    this.tokens -= bytes;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.rate) * 1000;
  }

  /** Waits until `bytes` may go. */
  async take(bytes: number): Promise<void> {
    const wait = this.reserve(bytes);
    if (wait > 0) await sleep(wait);
  }
}
