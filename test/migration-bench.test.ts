import { describe, expect, it } from "vitest";
import { isOwnImpl } from "../src/bench/harness.js";
import { loadSuite } from "../src/bench/suites.js";

describe("bench migrate", () => {
  it("verifies every case in quick mode, each hvlab implementation beside the peers it is judged by", async () => {
    const suite = await loadSuite("migrate");
    const prepared = await suite.setup({ quick: true, timeMs: 1 });
    try {
      const impls = (prefix: string): string[] => {
        const found = prepared.cases.filter((c) => c.case.startsWith(prefix));
        expect(found, `one case starting "${prefix}"`).toHaveLength(1);
        return found[0]?.impls.map((impl) => impl.impl) ?? [];
      };
      // What the README's migration figures compare: a content migration
      // against a memory copy, one stream against multifd, the page hash
      // against the library, metadata mode to completion, a sweep on 2
      // workers against 1.
      const content = impls("content mode");
      expect(content).toContain("memory copy (bound)");
      expect(content.some((impl) => impl.includes("one stream"))).toBe(true);
      expect(content.some((impl) => impl.includes("multifd"))).toBe(true);
      // The library peer is named with the version that ran.
      expect(impls("page hash")).toContainEqual(
        expect.stringMatching(/^@node-rs\/xxhash \d+\.\d+\.\d+ xxh3 \(native, a call per page\)$/),
      );
      expect(impls("metadata mode").some(isOwnImpl)).toBe(true);
      expect(impls("sweep")).toEqual(["hvlab sweep, 2 workers", "hvlab sweep, 1 worker"]);
      for (const benchCase of prepared.cases) {
        expect(benchCase.impls.some((impl) => isOwnImpl(impl.impl))).toBe(true);
        await benchCase.verify();
      }
    } finally {
      await prepared.teardown();
    }
  });
});
