/*
 * Pausing vCPUs that are already stopped changes nothing
 * (src/migration/live/vcpu-runner.ts): a resume() issued while that pause()
 * call is still settling starts the vCPUs at once, as resuming stopped vCPUs
 * always does, and a later pause() waits for the batch that resume started.
 */
import { describe, expect, it } from "vitest";
import type { Guest } from "../src/guest/guest.js";
import { VcpuRunner } from "../src/migration/live/vcpu-runner.js";

/** A guest whose vCPUs are never given writes: the runner's rate is 0. */
const idleGuest = {
  write: () => Promise.reject(new Error("an idle runner wrote to the guest")),
} as unknown as Guest;

describe("vCPU runner: a pause of stopped vCPUs", () => {
  // resume() on stopped vCPUs makes them run as it returns, even with a
  // pause() of the stopped vCPUs not yet settled.
  it("does not hold back a resume issued while it settles", async () => {
    const runner = new VcpuRunner(idleGuest, undefined, 0);
    const settling = runner.pause();
    runner.resume();
    expect(runner.running).toBe(true);
    await settling;
  });

  // The batch a resume started is still the runner's: a pause after it
  // returns only once that batch is done, so nothing writes to the guest
  // after it (a stop-and-copy would read memory still being written).
  it("leaves the batch that resume started to the next pause to wait for", async () => {
    let release = () => {};
    let writes = 0;
    const gatedGuest = {
      write: async (count: number) => {
        await new Promise<void>((resolve) => {
          release = resolve;
        });
        writes += count;
        return count;
      },
    } as unknown as Guest;
    const runner = new VcpuRunner(gatedGuest, undefined, Number.POSITIVE_INFINITY);
    const settling = runner.pause();
    runner.resume();
    await settling;
    expect(runner.running).toBe(true);
    const pausing = runner.pause();
    let paused = false;
    void pausing.then(() => {
      paused = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(paused).toBe(false);
    release();
    await pausing;
    expect(writes).toBe(65_536);
    expect(runner.running).toBe(false);
  });
});
