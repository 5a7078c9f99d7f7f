// Mutation testing of the TypeScript engines (docs/testing.md says how to
// read the results). Tests load the kernels from build/ and the pool's
// workers load dist/, so the project must be built first: `npm run mutate`
// builds, then runs this.
//
// Incremental: results are kept in stryker-incremental.json, committed, so a
// run in a fresh clone re-tests only the mutants whose code or tests changed.

/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  vitest: { configFile: "vitest.stryker.config.mjs" },
  // Tests that drive the built command in a child process (cli, tours,
  // benchmarks, the browser report) cannot see a mutant, which lives in
  // this process only; live migration over TCP measures wall-clock rates,
  // which instrumentation slows. They are left out.
  testFiles: ["test/!(*cli|*tour|*bench|*browser|*live-tcp).test.ts"],
  checkers: ["typescript"],
  tsconfigFile: "tsconfig.json",
  mutate: [
    "src/migration/**/*.ts",
    "src/net/**/*.ts",
    "src/paging/**/*.ts",
    "src/dirty/**/*.ts",
    "src/guest/**/*.ts",
    "src/memory/**/*.ts",
    // Declarations only: nothing in them runs.
    "!src/**/task-types.ts",
  ],
  coverageAnalysis: "perTest",
  // A mutant of a module-level constant needs every test file reloaded and
  // run: far too dear on a small machine, so such mutants are left out.
  ignoreStatic: true,
  incremental: true,
  incrementalFile: "stryker-incremental.json",
  thresholds: { high: 85, low: 70, break: 70 },
  concurrency: 1,
  timeoutMS: 60_000,
  // The first run of every test, instrumented, on a small busy machine.
  dryRunTimeoutMinutes: 60,
  reporters: ["clear-text", "progress", "html", "json"],
  htmlReporter: { fileName: "reports/mutation/mutation.html" },
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  // Under reports/ (ignored by git, Biome and the sandbox copy).
  tempDirName: "reports/.stryker-tmp",
  cleanTempDir: "always",
};
