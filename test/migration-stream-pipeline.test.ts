import { describe, expect, it } from "vitest";
import { runMigration } from "../src/migration/engine.js";
import { STREAM_THREADS_MIN_PAGES } from "../src/migration/in-process-link.js";
import type { MigrationOptions } from "../src/migration/options.js";

// One stream with its sender on this thread and its receiver on a pool
// worker (src/migration/stream-pipeline.ts), for guests from
// STREAM_THREADS_MIN_PAGES pages: the same pages, counts and verification
// as the multifd path, every page of the destination equal to the source's.

const PAGE = 4096;
const guestBytes = STREAM_THREADS_MIN_PAGES * PAGE;

const base: MigrationOptions = {
  guestBytes,
  content: true,
  workload: { kind: "uniform" },
  writesPerSecond: 0,
  maxBandwidth: Number.POSITIVE_INFINITY,
  deviceStateBytes: 4096,
  zeroFraction: 0.25,
  seed: 31,
};

describe("one stream on two threads", () => {
  it("moves every page, counts as one channel of multifd does, and verifies", async () => {
    const one = await runMigration(base);
    const multifd = await runMigration({ ...base, multifdChannels: 1 });
    expect(one.summary.status).toBe("completed");
    expect(one.summary.verified).toBe(true);
    expect(one.summary.normal + one.summary.duplicate).toBe(guestBytes / PAGE);
    // A quarter of the image is zero pages, sent as such.
    expect(one.summary.duplicate).toBeGreaterThan(0.2 * (guestBytes / PAGE));
    expect(one.summary.normal).toBe(multifd.summary.normal);
    expect(one.summary.duplicate).toBe(multifd.summary.duplicate);
  });

  it("verifies a guest that writes while it is sent, over several rounds", async () => {
    const result = await runMigration({
      ...base,
      writesPerSecond: 20_000,
      maxBandwidth: 2e9,
      downtimeLimitMs: 300,
    });
    expect(result.summary.status).toBe("completed");
    expect(result.summary.verified).toBe(true);
    expect(result.rounds.length).toBeGreaterThan(1);
  });

  it("fails the run on one wrong byte of the destination, naming the page", async () => {
    const page = STREAM_THREADS_MIN_PAGES - 3;
    const result = await runMigration({
      ...base,
      beforeVerify: (ram) => {
        ram[page * PAGE + 17] = (ram[page * PAGE + 17] ?? 0) ^ 0x04;
      },
    });
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toMatch(new RegExp(`destination page ${page} differs`));
  });
});
