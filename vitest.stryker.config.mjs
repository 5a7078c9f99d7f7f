// The test configuration Stryker runs with: the project's, with room for a
// test to run slower under instrumentation on a busy machine, and the
// storage parser's fuzz test at 10,000 images instead of 100,000: it
// reaches nearly every mutant of the VHD format and open paths, so each
// survivor ran it whole (docs/testing.md, "Storage: partial runs").
import { defineConfig, mergeConfig } from "vitest/config";
import base from "./vitest.config.ts";

export default mergeConfig(
  base,
  defineConfig({
    test: {
      testTimeout: 600_000,
      hookTimeout: 600_000,
      env: { HVLAB_STORAGE_FUZZ_IMAGES: "10000" },
    },
  }),
);
