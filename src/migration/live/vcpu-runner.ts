import { setTimeout as sleep } from "node:timers/promises";
import type { Guest } from "../../guest/guest.js";
import type { KernelPool } from "../../pool/pool.js";

/** Most writes handed to the workers at once: a pause takes effect within one batch. */
const MAX_BATCH = 65_536;
/** Credit carried across a stall, in seconds of writes: a resumed guest does not burst. */
const MAX_CREDIT_SECONDS = 0.05;
/** How often an idle or rate-limited runner wakes, ms. */
const TICK_MS = 2;

/** The vCPUs did not make the progress waited for in time. */
export class VcpuProgressTimeoutError extends Error {
  override name = "VcpuProgressTimeoutError";

  constructor(
    readonly writes: number,
    readonly done: number,
    timeoutMs: number,
  ) {
    super(`the vCPUs did not pass ${writes} writes within ${timeoutMs} ms (they did ${done})`);
  }
}

/**
 * Runs a guest's vCPUs on the wall clock: batches of workload writes on the
 * pool's workers, paced to `writesPerSecond` (Infinity: flat out), until
 * paused. Pausing waits for the batch in flight, as a VMM waits for its vCPUs
 * to leave guest mode before stop-and-copy.
 */
export class VcpuRunner {
  private state: "stopped" | "running" | "pausing" = "stopped";
  private loop: Promise<void> | undefined;
  private credit = 0;
  private failure: Error | undefined;
  private readonly waiters: { above: number; wake: () => void }[] = [];
  /** Writes the vCPUs have done. */
  writes = 0;
  /**
   * Auto-converge's throttle, percent of vCPU time taken away (QEMU's
   * cpu-throttle-percentage), read before every batch; none: full speed.
   */
  throttle: { readonly percentage: number } | undefined;

  constructor(
    private readonly guest: Guest,
    private readonly pool: KernelPool | undefined,
    readonly writesPerSecond: number,
  ) {
    if (!(writesPerSecond >= 0)) {
      throw new RangeError(`writes per second must be 0 or more, not ${writesPerSecond}`);
    }
  }

  /** Whether the vCPUs are running. */
  get running(): boolean {
    return this.state === "running";
  }

  /**
   * Resolves as soon as the vCPUs have done more than `writes` writes (at
   * once if they have).
   *
   * @throws VcpuProgressTimeoutError when they have not within `timeoutMs`.
   */
  async writesPass(writes: number, timeoutMs: number): Promise<void> {
    if (this.writes > writes) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        this.waiters.push({ above: writes, wake: resolve });
        timer = setTimeout(
          () => reject(new VcpuProgressTimeoutError(writes, this.writes, timeoutMs)),
          timeoutMs,
        );
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /** Starts (or resumes) the vCPUs. */
  resume(): void {
    if (this.failure) throw this.failure;
    if (this.state !== "stopped") return;
    this.state = "running";
    this.credit = 0;
    this.loop = this.run();
  }

  /**
   * Stops the vCPUs once the batch in flight is done. Stopped vCPUs stay as
   * they are: a resume() made before this settles is not undone (forgetting
   * the loop it started would leave its batch writing after a later pause
   * returned). While a loop ends the state is "pausing", which resume()
   * leaves alone, so the loop forgotten here is the one awaited.
   */
  async pause(): Promise<void> {
    const loop = this.loop;
    if (loop) {
      if (this.state === "running") this.state = "pausing";
      await loop;
      this.loop = undefined;
      this.state = "stopped";
    }
    if (this.failure) throw this.failure;
  }

  private wakeWaiters(): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const waiter = this.waiters[i];
      if (waiter && this.writes > waiter.above) {
        this.waiters.splice(i, 1);
        waiter.wake();
      }
    }
  }

  private async run(): Promise<void> {
    let last = performance.now();
    try {
      while (this.state === "running") {
        const now = performance.now();
        const share = 1 - (this.throttle?.percentage ?? 0) / 100;
        const rate = this.writesPerSecond * share;
        if (rate === Number.POSITIVE_INFINITY) {
          this.credit = MAX_BATCH;
        } else {
          this.credit = Math.min(
            this.credit + ((now - last) / 1000) * rate,
            Math.max(1, rate * MAX_CREDIT_SECONDS),
          );
        }
        last = now;
        const batch = Math.min(MAX_BATCH, Math.floor(this.credit));
        if (batch < 1) {
          await sleep(TICK_MS);
          continue;
        }
        this.credit -= batch;
        const began = performance.now();
        await this.guest.write(batch, this.pool);
        this.writes += batch;
        this.wakeWaiters();
        if (this.writesPerSecond === Number.POSITIVE_INFINITY && share < 1) {
          // Flat out, the throttle is a duty cycle as QEMU's (cpu-throttle.c,
          // cpu_throttle_thread): sleep pct / (1 - pct) of the time just run.
          await sleep(((performance.now() - began) * (1 - share)) / Math.max(share, 0.01));
        }
        // Even flat out, let the event loop (the sender) run between batches.
        if (!this.pool) await sleep(0);
      }
    } catch (error) {
      this.failure = error as Error;
    }
  }
}
