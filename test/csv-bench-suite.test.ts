import { describe, expect, it } from "vitest";
import { isOwnImpl } from "../src/bench/harness.js";
import { loadSuite } from "../src/bench/suites.js";

describe("bench csv", () => {
  it("verifies direct I/O, redirected I/O, metadata and failover against their peers before timing", async () => {
    const suite = await loadSuite("csv");
    const prepared = await suite.setup({ quick: true, timeMs: 1 });
    try {
      expect(prepared.cases.map((c) => c.case.split(":")[0])).toEqual([
        "direct I/O",
        "redirected I/O",
        "metadata",
        "metadata",
        "failover",
      ]);
      expect(prepared.cases[0]?.impls.map((i) => i.impl)).toEqual([
        "hvlab 4 node processes, each on its own path to the LUN",
        "4 target connections over TCP loopback (iSCSI-style path)",
        "one process straight to the LUN file",
        "memory copy (bound)",
      ]);
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
      });
      for (const benchCase of prepared.cases) {
        expect(benchCase.impls.some((impl) => isOwnImpl(impl.impl))).toBe(true);
        await benchCase.verify();
      }
    } finally {
      await prepared.teardown();
    }
  }, 300_000);
});
