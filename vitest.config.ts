import { configDefaults, defineConfig } from "vitest/config";

/**
 * The QEMU fidelity suite (test/qemu-fidelity.test.ts) runs on its own with
 * `npm run test:fidelity`, and CI runs it after `npm test`: it times real
 * QEMU migrations under TCG, whose rates move with whatever else shares the
 * cores, so it must not run beside the other tests (docs/testing.md).
 */
const fidelity = "test/qemu-fidelity.test.ts";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude:
      process.env.HVLAB_FIDELITY === "1"
        ? configDefaults.exclude
        : [...configDefaults.exclude, fidelity],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // A temporary folder per run; a test that leaves anything in it fails the run.
    globalSetup: ["test/support/temp-root.ts"],
  },
});
