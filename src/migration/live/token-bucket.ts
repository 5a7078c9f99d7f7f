import { setTimeout as sleep } from "node:timers/promises";

/**
 * A token bucket that throttles the link to `rate` bytes per second with
 * bursts of at most `burst` bytes. A send larger than the tokens held runs
 * the bucket into debt and waits the debt off, so the long-run rate holds
 * for any frame size.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly rate: number,
    readonly burst = rate / 10,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(rate > 0) || !Number.isFinite(rate)) {
      throw new RangeError(`throttle rate must be a positive number of bytes/s, not ${rate}`);
    }
    if (!(burst > 0)) throw new RangeError(`throttle burst must be positive, not ${burst}`);
    this.tokens = burst;
    this.last = this.now();
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
