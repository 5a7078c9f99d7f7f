import { tmpdir } from "node:os";
import { describe, expect, it } from "vitest";
import { isOwnImpl } from "../src/bench/harness.js";
import { loadSuite } from "../src/bench/suites.js";
import { directIoRefusal } from "../src/storage/direct-file.js";

// The suite's LUNs sit in the temporary directory: one that refuses
// O_DIRECT skips the unbuffered run, saying why, and fails it in CI.
const unbufferedRefusal = directIoRefusal(tmpdir());
if (unbufferedRefusal !== undefined) {
  if (process.env.CI === "true") throw new Error(`bench csv (unbuffered): ${unbufferedRefusal}`);
  console.warn(`bench csv unbuffered test skipped: ${unbufferedRefusal}`);
}

describe("bench csv", () => {
  it("buffered (--no-direct), verifies direct I/O, redirected I/O, metadata and failover against their peers before timing", async () => {
    const suite = await loadSuite("csv");
    const prepared = await suite.setup({ quick: true, timeMs: 1, direct: false });
    try {
      expect(prepared.cases.map((c) => c.case.split(":")[0])).toEqual([
        "direct I/O buffered (page cache)",
        "redirected I/O",
        "metadata",
        "metadata",
        "failover",
      ]);
      expect(prepared.cases[0]?.impls.map((i) => i.impl)).toEqual([
        "hvlab 4 node processes, each on its own path to the LUN",
        "hvlab 4 node processes, one write at a time through the event loop's fence, 4 in flight on libuv's pool (file-write batch: false)",
        "hvlab 4 node processes, whole control request (the file's open and the reply included)",
        "4 target connections over TCP loopback (iSCSI-style path)",
        "one process straight to the LUN file",
        "one process straight to the LUN file, one write at a time",
        "memory copy (bound)",
      ]);
      // Like with like: the one process keeps as many writes in flight as the four nodes together.
      expect(prepared.cases[0]?.case).toMatch(
        /4 in flight per node, each back to back on its own I\/O thread \(16 in all, as the one process\)/,
      );
      expect(prepared.cases[1]?.impls.map((i) => i.impl)).toEqual([
        "hvlab redirected (path cut) through the coordinator",
        "hvlab direct on the node's own path to the LUN",
        "memory copy (bound)",
      ]);
      // The link rate the redirected case ran at: 1 GbE, 10^9 bit/s.
      expect(prepared.conditions).toMatchObject({
        heartbeatThresholdMs: 500,
        failoverTargetMs: 1000,
        clusterNetworkBytesPerSecond: 125_000_000,
        pageCache: true,
      });
      for (const benchCase of prepared.cases) {
        expect(benchCase.impls.some((impl) => isOwnImpl(impl.impl))).toBe(true);
        await benchCase.verify();
      }
      // The nodes and the one process are timed by their writes' own span, which
      // leaves out the control request and the open: shorter than the call.
      const impls = prepared.cases[0]?.impls ?? [];
      for (const name of [
        "hvlab 4 node processes, each on its own path to the LUN",
        "hvlab 4 node processes, one write at a time through the event loop's fence, 4 in flight on libuv's pool (file-write batch: false)",
        "one process straight to the LUN file",
      ]) {
        const impl = impls.find((i) => i.impl === name);
        const started = performance.now();
        const timed = (await impl?.fn()) as { overriddenDuration?: number } | undefined;
        const wall = performance.now() - started;
        expect(timed?.overriddenDuration, name).toBeGreaterThan(0);
        // One clock for every process (CLOCK_MONOTONIC): the span lies inside the call.
        expect(timed?.overriddenDuration, name).toBeLessThanOrEqual(wall);
      }
      const whole = await impls.find((i) => i.impl.includes("whole control request"))?.fn();
      expect(whole, "the whole request is timed by the harness").toBeUndefined();
    } finally {
      await prepared.teardown();
    }
  }, 300_000);

  it.skipIf(unbufferedRefusal !== undefined)(
    "by default, verifies the direct I/O case unbuffered on both sides, the page cache out of play",
    async () => {
      const suite = await loadSuite("csv");
      // No direct option: the csv suite's default is unbuffered, as CSV direct I/O is.
      const prepared = await suite.setup({ quick: true, timeMs: 1 });
      try {
        expect(prepared.conditions).toMatchObject({ pageCache: false });
        const direct = prepared.cases[0];
        expect(direct?.case).toMatch(/^direct I\/O unbuffered \(O_DIRECT\): 4 nodes/);
        expect(direct?.impls.map((i) => i.impl)).toContain("one process straight to the LUN file");
        await direct?.verify();
      } finally {
        await prepared.teardown();
      }
    },
    300_000,
  );
});
