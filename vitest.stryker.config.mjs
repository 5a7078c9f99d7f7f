// The test configuration Stryker runs with: the project's, with room for a
// test to run slower under instrumentation on a busy machine.
import { defineConfig, mergeConfig } from "vitest/config";
import base from "./vitest.config.ts";

export default mergeConfig(
  base,
  defineConfig({ test: { testTimeout: 600_000, hookTimeout: 600_000 } }),
);
