// The test configuration Stryker runs with: the project's, with room for a
// test to run slower under instrumentation on a busy machine, and the
// storage parser's fuzz test at 10,000 images instead of 100,000: it
// reaches nearly every mutant of the VHD format and open paths, so each
// survivor ran it whole (docs/testing.md, "Storage: partial runs").
import { relative } from "node:path";
import { defineConfig, mergeConfig } from "vitest/config";
import { BaseSequencer } from "vitest/node";
import base from "./vitest.config.ts";

/**
 * Runs a mutant's test files shortest first, by the durations vitest keeps
 * from earlier runs (files never timed last). Stryker runs one file at a
 * time and stops at the first failure, and vitest's own order is longest
 * first: a mutant of a rule that every migration reaches (the options, the
 * stop policy) ran seconds of whole migrations before the small test of the
 * rule that kills it. The order changes which test kills a mutant, never
 * whether one does: a survivor runs every file either way.
 */
class ShortestFirst extends BaseSequencer {
  async sort(files) {
    const root = this.ctx.config.root;
    const took = (file) =>
      this.ctx.cache.getFileTestResults(`${file.project.name}:${relative(root, file.moduleId)}`)
        ?.duration ?? Number.POSITIVE_INFINITY;
    return [...files].sort((a, b) => {
      const ta = took(a);
      const tb = took(b);
      return ta === tb ? 0 : ta < tb ? -1 : 1;
    });
  }
}

export default mergeConfig(
  base,
  defineConfig({
    test: {
      testTimeout: 600_000,
      hookTimeout: 600_000,
      env: { HVLAB_STORAGE_FUZZ_IMAGES: "10000" },
      sequence: { sequencer: ShortestFirst },
    },
  }),
);
