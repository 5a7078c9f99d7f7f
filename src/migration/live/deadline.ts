import type { PrecopyClock } from "../precopy/types.js";

/**
 * A clock time a pass must not run past: `race` resolves false instead of
 * waiting on (a stalled link, a busy slot) once the time has come.
 */
export class Deadline {
  private timer: NodeJS.Timeout | undefined;
  private readonly reached: Promise<false>;

  constructor(
    private readonly clock: PrecopyClock,
    private readonly untilMs: number,
  ) {
    this.reached = Number.isFinite(untilMs)
      ? new Promise<false>((resolve) => {
          this.timer = setTimeout(() => resolve(false), Math.max(0, untilMs - clock.now()));
        })
      : new Promise<false>(() => {});
  }

  get passed(): boolean {
    return this.clock.now() >= this.untilMs;
  }

  /** True when `work` finished first, false when the deadline came first. */
  async race(work: Promise<void>): Promise<boolean> {
    if (!Number.isFinite(this.untilMs)) {
      await work;
      return true;
    }
    // A send the deadline overtook may still fail later: nobody waits on it then.
    work.catch(() => {});
    return Promise.race([work.then(() => true), this.reached]);
  }

  clear(): void {
    clearTimeout(this.timer);
  }
}
