import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // A temporary folder per run; a test that leaves anything in it fails the run.
    globalSetup: ["test/support/temp-root.ts"],
  },
});
