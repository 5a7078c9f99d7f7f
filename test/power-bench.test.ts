import { describe, expect, it } from "vitest";
import { isOwnImpl } from "../src/bench/harness.js";
import { loadSuite } from "../src/bench/suites.js";

describe("bench power", () => {
  it("verifies the kernel against its oracle and the sweep on 1 and 2 workers before timing", async () => {
    const suite = await loadSuite("power");
    const prepared = await suite.setup({ quick: true, timeMs: 1 });
    try {
      expect(prepared.cases.map((c) => c.case.split(",")[0])).toEqual([
        "C-state machine",
        "9-point sweep CPMinCores x CPHeadroom",
      ]);
      const kernel = prepared.cases[0];
      expect(kernel?.impls.map((i) => i.impl)).toEqual([
        "hvlab",
        "oracle (TypeScript)",
        "naive (one kernel call per tick)",
        "memory copy of the state per tick (bound)",
      ]);
      for (const benchCase of prepared.cases) {
        expect(benchCase.impls.some((impl) => isOwnImpl(impl.impl))).toBe(true);
        await benchCase.verify();
      }
    } finally {
      await prepared.teardown();
    }
  });
});
