import { once } from "node:events";
import { createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { LiveGuestOptions, LiveSource } from "../src/migration/live/source.js";
import { LivePostcopyRig } from "./support/live-postcopy.js";

// What bounds a live source's attempt, on this thread over loopback TCP: its
// own wall clock (total-time and the time limit), the give-up rule and how
// "never" overrides it, and the post-copy vCPU bound, which only post-copy
// checks. The guest is idle; the test dirties pages after each pages frame
// of a pass, so a pass never shrinks and only the limit under test ends it.

const rig = new LivePostcopyRig();
// A close that hangs fails at once rather than at the runner's 10 s.
afterEach(() => rig.close(), 2_000);

function source(options: Partial<LiveGuestOptions> = {}): LiveSource {
  return rig.idleSource(options);
}

/** Writes 300 pages' worth after each pages frame of a pre-copy pass: pending never shrinks. */
function keepDirtying(s: LiveSource): () => void {
  return () => {
    if (/^pre-copy pass/.test(s.activity?.phase ?? "")) void s.guest.write(300);
  };
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const closed = createServer().listen(0, "127.0.0.1");
  await once(closed, "listening");
  const address = closed.address();
  if (!address || typeof address === "string") throw new Error("not listening");
  closed.close();
  await once(closed, "close");
  return address.port;
}

const DEADLINE = { timeout: 8_000 };

describe("a live source's attempt, bounded", DEADLINE, () => {
  it("total-time is the attempt's own wall time", async () => {
    const { port } = await rig.destination();
    const s = source();
    // Time passes in this process before the attempt starts: it is not the attempt's.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = performance.now();
    const result = await s.migrate({ host: "127.0.0.1", port });
    const wall = performance.now() - started;
    expect(result.summary.status).toBe("completed");
    expect(result.summary["total-time"]).toBeGreaterThan(0);
    expect(result.summary["total-time"]).toBeLessThanOrEqual(wall);
  });

  it("a pass that never shrinks, with give-up 'never', runs until the time limit and no longer", async () => {
    const { port } = await rig.destination();
    const s = source();
    const started = performance.now();
    const result = await s.migrate({
      host: "127.0.0.1",
      port,
      downtimeLimitMs: 0.001,
      giveUp: "never",
      timeoutMs: 400,
      onProgress: keepDirtying(s),
    });
    const wall = performance.now() - started;
    expect(result.summary.status).toBe("not-converged");
    expect(result.rounds.length).toBeGreaterThan(1);
    expect(wall).toBeGreaterThanOrEqual(400);
    expect(wall).toBeLessThan(4_000);
    expect(s.runner.running).toBe(true);
  });

  it("by default it gives up once pending stops shrinking; 'never' holds on to the round cap", async () => {
    const { port, nextReport } = await rig.destination();
    const s = source();
    const projected = await s.migrate({
      host: "127.0.0.1",
      port,
      downtimeLimitMs: 0.001,
      maxRounds: 12,
      onProgress: keepDirtying(s),
    });
    expect(projected.summary.status).toBe("not-converged");
    expect(projected.summary.reason).toMatch(
      /^pending .* does not shrink \(shrink factor .* a round over the last \d+ rounds\): the writable working set does not fit/,
    );
    expect(projected.rounds.length).toBeLessThan(12);
    // The destination's slot is free again once it has ended that session.
    expect((await nextReport()).status).toBe("failed");
    const held = await s.migrate({
      host: "127.0.0.1",
      port,
      downtimeLimitMs: 0.001,
      maxRounds: 12,
      giveUp: "never",
      onProgress: keepDirtying(s),
    });
    expect(held.summary.status).toBe("not-converged");
    expect(held.rounds).toHaveLength(12);
    expect(held.rounds.at(-1)?.reason).toMatch(/^round cap 12 reached/);
  });

  it("the 64-vCPU bound is post-copy's: 65 vCPUs migrate in pre-copy, 64 in post-copy", async () => {
    const port = await closedPort();
    for (const [vcpus, postcopyAfter] of [
      [65, undefined],
      [64, 1],
    ] as const) {
      const s = source({ vcpus });
      const result = await s.migrate({
        host: "127.0.0.1",
        port,
        replyTimeoutMs: 2_000,
        ...(postcopyAfter === undefined ? {} : { postcopyAfter }),
      });
      // Refused by nothing but the closed port.
      expect(result.summary.reason).toMatch(/^cannot migrate to 127\.0\.0\.1:\d+: /);
    }
  });
});
