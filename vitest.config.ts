import { configDefaults, defineConfig } from "vitest/config";

/**
 * The QEMU fidelity suite (test/qemu-fidelity.test.ts) runs on its own with
 * `npm run test:fidelity`: its points do not yet meet their targets (see
 * docs/testing.md), and a suite that is known to fail would hide every other
 * failure of `npm test`.
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
