// A long-lived vitest for scripts/mutate-kernels.mjs: started once per copy
// of the project (a child process with IPC), it runs test files on request,
// one at a time and in the order given, stops at the first failing test and
// answers with that failure (or none) and each file's time. Starting vitest
// (its config, its server, the global setup) once instead of once per
// mutation and per file is most of what makes the kernel mutation run fast.
//
// A mutation can make a kernel loop forever. A worker spinning in wasm never
// reaches its test timeout, so the parent kills this process's whole group
// when a file runs past its limit and starts a new runner.
//
// Messages in: { files: string[], invalidate?: string[] }.
// Messages out: { ready: true } once, then per request
// { failure: string | null, times: Record<string, number> }.
import { createVitest } from "vitest/node";

const TEST_TIMEOUT_MS = Number(process.env.HVLAB_MUTATION_TEST_TIMEOUT_MS ?? 540_000);

const vitest = await createVitest(
  "test",
  {
    watch: false,
    bail: 1,
    testTimeout: TEST_TIMEOUT_MS,
    hookTimeout: TEST_TIMEOUT_MS,
    reporters: [],
    // Files run one at a time here; inside a file tests keep the project's pool.
    fileParallelism: false,
  },
  {},
  { stdout: process.stderr, stderr: process.stderr },
);

await vitest.standalone();

/** The first failing test of a run, as "file › test (first line of its error)". */
function firstFailure(file, result) {
  for (const module of result.testModules.filter((m) => m.moduleId === file)) {
    for (const test of module.children.allTests()) {
      const outcome = test.result();
      if (outcome.state !== "failed") continue;
      const why = String(outcome.errors?.[0]?.message ?? "")
        .split("\n")[0]
        .slice(0, 100);
      return `${file} › ${test.fullName}${why ? ` (${why})` : ""}`;
    }
    // A file that failed outside any test: it did not load, or a hook threw.
    const errors = module.errors();
    if (errors.length > 0) {
      const why = String(errors[0]?.message ?? "")
        .split("\n")[0]
        .slice(0, 100);
      return `${file} (failed outside a test: ${why})`;
    }
    if (!module.ok()) return `${file} (failed outside a test)`;
  }
  if (result.unhandledErrors.length > 0) {
    const why = String(result.unhandledErrors[0]?.message ?? result.unhandledErrors[0])
      .split("\n")[0]
      .slice(0, 100);
    return `${file} (unhandled error: ${why})`;
  }
  if (!result.testModules.some((m) => m.moduleId === file)) return `${file} (no test file ran)`;
  return null;
}

process.on("message", async (request) => {
  for (const path of request.invalidate ?? []) vitest.invalidateFile(path);
  const times = {};
  let failure = null;
  for (const file of request.files) {
    const t0 = Date.now();
    let result;
    try {
      // Vitest keeps every file's last results; a run must see only its own.
      vitest.state.filesMap.clear();
      result = await vitest.runTestFiles([file]);
      failure = firstFailure(file, result);
    } catch (error) {
      failure = `${file} (vitest failed: ${String(error?.message ?? error).split("\n")[0]})`;
    }
    times[file] = Date.now() - t0;
    if (failure !== null) break;
  }
  process.send({ failure, times });
});

process.on("disconnect", () => {
  vitest.close().finally(() => process.exit(0));
});

process.send({ ready: true });
