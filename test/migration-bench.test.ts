import { describe, expect, it } from "vitest";
import { isOwnImpl } from "../src/bench/harness.js";
import { loadSuite } from "../src/bench/suites.js";

describe("bench migrate", () => {
  it("verifies every case in quick mode, each with an hvlab implementation", async () => {
    const suite = await loadSuite("migrate");
    const prepared = await suite.setup({ quick: true, timeMs: 1 });
    try {
      // Content mode, the page hash, metadata mode, the sweep.
      expect(prepared.cases.length).toBe(4);
      const hash = prepared.cases.find((c) => c.case.startsWith("page hash"));
      // The library peer is named with the version that ran.
      expect(hash?.impls.map((impl) => impl.impl)).toContainEqual(
        expect.stringMatching(/^@node-rs\/xxhash \d+\.\d+\.\d+ xxh3 \(native, a call per page\)$/),
      );
      for (const benchCase of prepared.cases) {
        expect(benchCase.impls.some((impl) => isOwnImpl(impl.impl))).toBe(true);
        await benchCase.verify();
      }
    } finally {
      await prepared.teardown();
    }
  });
});
