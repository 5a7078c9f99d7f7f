import type { Guest } from "../guest/guest.js";
import type { ResolvedMigrationOptions } from "./options.js";
import { firstTouchRate, runningRate } from "./qemu-iteration/iteration.js";
import type { VirtualRunState } from "./virtual-run-state.js";

/**
 * The link and the clock of one virtual-time run: what putting bytes on the
 * link costs in time, QEMU's bandwidth window, and the guest's writes owed
 * for the time that passed (executed for real at each window). One per run,
 * over that run's state.
 */
export class VirtualLink {
  constructor(
    private readonly o: ResolvedMigrationOptions,
    private readonly guest: Guest,
    private readonly s: VirtualRunState,
  ) {}

  /**
   * Milliseconds to put `bytes` on the link: at max-bandwidth, or under
   * QEMU's iteration at the host's own rate (while the guest runs, capped by
   * max-bandwidth; paused, with no rate limit, and for pages the
   * destination never held, `fresh`, at the pace its first touch allows).
   */
  linkMs(bytes: number, running = true, fresh = false): number {
    const it = this.o.qemuIteration;
    const rate = it
      ? running
        ? runningRate(it, this.o.maxBandwidth, this.s.windowsClosed)
        : fresh
          ? firstTouchRate(it)
          : it.completionRate
      : this.o.maxBandwidth;
    return Number.isFinite(rate) ? (bytes / rate) * 1000 : 0;
  }

  /** The bandwidth the policy uses: the link's, or for an unthrottled link what was measured. */
  bandwidthEstimate(roundBytes: number, roundMs: number): number {
    if (!Number.isFinite(this.o.maxBandwidth)) return Number.MAX_VALUE;
    // QEMU's: the rate of the last full 100 ms window; a round shorter than
    // a window is measured over the round. Latency stalls count in both.
    if (this.s.lastWindowRate !== null) return Math.min(this.o.maxBandwidth, this.s.lastWindowRate);
    return roundMs > 0
      ? Math.min(this.o.maxBandwidth, (roundBytes / roundMs) * 1000)
      : this.o.maxBandwidth;
  }

  /** Accounts link time and bytes into the bandwidth window; closes full windows. */
  private measure(ms: number, bytes: number): void {
    this.s.rateWindowMs += ms;
    this.s.rateWindowBytes += bytes;
    if (this.s.rateWindowMs >= this.o.windowMs) {
      this.s.lastWindowRate = (this.s.rateWindowBytes / this.s.rateWindowMs) * 1000;
      this.s.rateWindowMs = 0;
      this.s.rateWindowBytes = 0;
      this.s.windowsClosed++;
    }
  }

  /**
   * Moves the clock on by `ms`; the guest's vCPUs (throttled) owe writes for
   * that time, executed for real at each bandwidth window.
   */
  async advance(ms: number, running = true, bytes = 0): Promise<void> {
    this.s.clockMs += ms;
    if (running) this.measure(ms, bytes);
    if (!running) return;
    this.s.writesOwed +=
      (this.o.writesPerSecond * (1 - this.s.throttle.percentage / 100) * ms) / 1000;
    this.s.windowOwedMs += ms;
    if (this.s.windowOwedMs >= this.o.windowMs) await this.flushWrites();
  }

  /** Executes the writes owed so far. */
  async flushWrites(): Promise<void> {
    this.s.windowOwedMs = 0;
    const n = Math.floor(this.s.writesOwed);
    if (n <= 0) return;
    this.s.writesOwed -= n;
    this.s.guestWrote = true;
    await this.guest.write(n);
  }

  /**
   * Puts `bytes` on the link, `freshBytes` of them pages the destination
   * never held: the clock moves on by their link time, but while the guest
   * runs never past `untilMs` (a time limit holds within a batch, however
   * slow the link). Returns the share of the bytes that got out (1: all).
   */
  async link(bytes: number, running: boolean, untilMs: number, freshBytes = 0): Promise<number> {
    const ms = this.linkMs(bytes - freshBytes, running) + this.linkMs(freshBytes, running, true);
    if (running && this.s.clockMs + ms > untilMs) {
      const left = Math.max(0, untilMs - this.s.clockMs);
      const share = ms > 0 ? left / ms : 0;
      await this.advance(left, running, bytes * share);
      return share;
    }
    await this.advance(ms, running, bytes);
    return 1;
  }
}
