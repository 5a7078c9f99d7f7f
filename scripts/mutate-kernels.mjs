// Kernel mutation testing: breaks each kernel module on purpose, one rule at
// a time (the list is scripts/kernel-mutations.mjs), rebuilds what the
// change touches and runs that module's tests, which must fail. Prints one
// row per mutation (killed by which test, or SURVIVED) and exits 1 if any
// mutation survived, failed to build, or no longer finds its text in the
// source (the list must follow the code), or if a kernel module has fewer
// than MIN_MUTATIONS mutations.
//
// Work happens in a copy of the project (node_modules linked, the rest
// copied), never in the project itself. Per mutation only the kernel
// modules that compile the changed file are rebuilt (without Binaryen's
// converge passes), and the module's test files run one at a time, most
// pointed first, in one vitest kept alive for the whole run
// (scripts/mutation-test-runner.mjs), stopping at the first failing test.
// Stryker mutates the TypeScript engines; it cannot rebuild AssemblyScript
// per mutant, hence this script.
//
// usage: node scripts/mutate-kernels.mjs [--module a,b] [--mutation id,id]
//        [--jobs n] [--no-baseline] [--keep] [--list] [--check] [--markdown]
// --check only checks the list against the source; --list prints it.
// --jobs: copies worked on at once, each with its own test runner; by
// default one per core (at most MAX_JOBS), so a CI machine's cores all work.
import { fork, spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { KERNEL_MUTATIONS } from "./kernel-mutations.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const MIN_MUTATIONS = 8;
/** Most copies worked on at once: each holds a built project and a vitest. */
const MAX_JOBS = 8;
/**
 * A test file that runs past FILE_TIMEOUT_FACTOR times its unmutated time
 * (at least MIN_FILE_TIMEOUT_MS) counts as killed by a hang, as Stryker's
 * timeoutFactor does; without a baseline time the limit is FILE_TIMEOUT_MS.
 * Each test gets nearly as long: on a busy machine the project's own 60 s
 * test timeout would kill mutants that merely ran slowly.
 */
const FILE_TIMEOUT_FACTOR = 5;
const MIN_FILE_TIMEOUT_MS = 60_000;
const FILE_TIMEOUT_MS = 10 * 60_000;
const TEST_TIMEOUT_MS = 9 * 60_000;
/** Left out of the copy: rebuilt there, linked, or not needed. */
const NOT_COPIED = new Set(["node_modules", ".git", "build", "dist", "reports", "coverage"]);

function usage(message) {
  console.error(`mutate-kernels: ${message}`);
  process.exit(2);
}

function parseArgs(argv) {
  const options = {
    modules: null,
    mutations: null,
    jobs: Math.min(MAX_JOBS, availableParallelism()),
    baseline: true,
    keep: false,
    list: false,
    check: false,
    markdown: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const next = argv[++i];
      if (next === undefined || next.startsWith("--")) usage(`${arg} needs a value`);
      return next.split(",").filter(Boolean);
    };
    if (arg === "--module") options.modules = value();
    else if (arg === "--mutation") options.mutations = value();
    else if (arg === "--no-baseline") options.baseline = false;
    else if (arg === "--keep") options.keep = true;
    else if (arg === "--jobs") {
      const [text] = value();
      options.jobs = Number(text);
      if (!Number.isInteger(options.jobs) || options.jobs < 1 || options.jobs > MAX_JOBS) {
        usage(`--jobs must be a whole number from 1 to ${MAX_JOBS}, not '${text}'`);
      }
    } else if (arg === "--list") options.list = true;
    else if (arg === "--check") options.check = true;
    else if (arg === "--markdown") options.markdown = true;
    else
      usage(
        `unknown option '${arg}' (options: --module, --mutation, --jobs, --no-baseline, --keep, --list, --check, --markdown)`,
      );
  }
  return options;
}

/** Kernel modules: the top-level files of assembly/. */
async function kernelModules() {
  return (await readdir(join(root, "assembly")))
    .filter((file) => file.endsWith(".ts"))
    .map((file) => file.slice(0, -3))
    .sort();
}

/** The assembly/ files each kernel module compiles in (itself and its imports, transitively). */
async function moduleSources(modules) {
  const sources = new Map();
  for (const name of modules) {
    const seen = new Set();
    const queue = [`assembly/${name}.ts`];
    while (queue.length > 0) {
      const file = queue.pop();
      if (seen.has(file)) continue;
      seen.add(file);
      const text = await readFile(join(root, file), "utf8");
      for (const match of text.matchAll(/^import\s[^;]*?from\s+"(\.[^"]+)"/gm)) {
        queue.push(`${join(dirname(file), match[1])}.ts`);
      }
    }
    sources.set(name, seen);
  }
  return sources;
}

/**
 * Test files of a list, in its order: a name with `*` stands for every file
 * of test/ it matches, sorted (so tests that land later join by name), each
 * file once; a name after `!` is left out.
 */
async function expandTests(tests) {
  const files = (await readdir(join(root, "test"))).sort();
  const out = [];
  const left = new Set(tests.filter((t) => t.startsWith("!")).map((t) => t.slice(1)));
  for (const test of tests) {
    if (test.startsWith("!")) continue;
    if (!test.includes("*")) {
      if (files.includes(test.slice("test/".length))) out.push(test);
      continue;
    }
    const escaped = test.slice("test/".length).replace(/[.+?^${}()|[\]\\]/g, "\\$&");
    const pattern = new RegExp(`^${escaped.replaceAll("*", "[^/]*")}$`);
    for (const file of files) if (pattern.test(file)) out.push(`test/${file}`);
  }
  return [...new Set(out)].filter((test) => !left.has(test));
}

function occurrences(text, part) {
  let count = 0;
  for (let at = text.indexOf(part); at >= 0; at = text.indexOf(part, at + 1)) count++;
  return count;
}

/** Every problem with the list itself: modules without enough mutations, stale text, missing tests. */
async function checkList(modules, selected) {
  const problems = [];
  for (const name of modules) {
    const entry = KERNEL_MUTATIONS[name];
    if (!entry) problems.push(`assembly/${name}.ts: no entry in scripts/kernel-mutations.mjs`);
    else if (entry.mutations.length < MIN_MUTATIONS) {
      problems.push(
        `assembly/${name}.ts: ${entry.mutations.length} mutations, at least ${MIN_MUTATIONS} wanted`,
      );
    }
  }
  for (const [name, entry] of Object.entries(KERNEL_MUTATIONS)) {
    if (!modules.includes(name)) {
      problems.push(`kernel-mutations.mjs: '${name}' is not a module of assembly/`);
      continue;
    }
    // A name must exist; a pattern may match nothing yet.
    for (const test of entry.tests) {
      if (!/^!|\*/.test(test) && (await expandTests([test])).length === 0) {
        problems.push(`${name}: no test file ${test}`);
      }
    }
    const ids = new Set();
    for (const mutation of entry.mutations) {
      if (ids.has(mutation.id)) problems.push(`${name}/${mutation.id}: the id is used twice`);
      ids.add(mutation.id);
      if (!selected(name, mutation)) continue;
      const file = mutation.file ?? `assembly/${name}.ts`;
      let text;
      try {
        text = await readFile(join(root, file), "utf8");
      } catch {
        problems.push(`${name}/${mutation.id}: ${file} does not exist`);
        continue;
      }
      const found = occurrences(text, mutation.from);
      if (found !== 1) {
        const where = found === 0 ? "no longer found" : `found ${found} times`;
        problems.push(`${name}/${mutation.id}: its text is ${where} in ${file}`);
      }
    }
  }
  return problems;
}

/** Runs a command in `cwd`; resolves with its exit code. */
function run(command, args, cwd) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk) => {
      output += chunk;
    });
    child.stderr.on("data", (chunk) => {
      output += chunk;
    });
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code: signal ? null : code, output }));
  });
}

/**
 * Copies the project into a fresh folder, links node_modules and builds
 * there. The copy builds its kernels without Binaryen's converge passes
 * (asconfig.json's `converge`): they only shrink the module by a few bytes,
 * and they are most of a module's build time, which every mutation pays.
 */
async function makeCopy() {
  const copy = await mkdtemp(join(tmpdir(), "hvlab-mutate-"));
  for (const name of await readdir(root)) {
    if (NOT_COPIED.has(name)) continue;
    await cp(join(root, name), join(copy, name), { recursive: true });
  }
  await symlink(join(root, "node_modules"), join(copy, "node_modules"), "dir");
  const asconfig = JSON.parse(await readFile(join(copy, "asconfig.json"), "utf8"));
  for (const target of Object.values(asconfig.targets ?? {})) target.converge = false;
  await writeFile(join(copy, "asconfig.json"), `${JSON.stringify(asconfig, null, 2)}\n`);
  console.log(`mutate-kernels: building a copy of the project in ${copy}`);
  const built = await run("npm", ["run", "build"], copy);
  if (built.code !== 0) {
    throw new Error(`the unmutated copy does not build:\n${built.output.slice(-2000)}`);
  }
  return copy;
}

/**
 * The copy's test runner (scripts/mutation-test-runner.mjs): one vitest
 * kept alive in a process group of its own, so that a test file that hangs
 * (a kernel looping forever) is ended with everything it started.
 */
class TestRunner {
  constructor(copy) {
    this.copy = copy;
    this.child = null;
    this.pending = null;
    /** Source files whose transformed text vitest must drop before the next run. */
    this.stale = new Set();
  }

  async start() {
    const tmp = join(this.copy, "reports", "tmp");
    await mkdir(tmp, { recursive: true });
    const child = fork(join(this.copy, "scripts", "mutation-test-runner.mjs"), [], {
      cwd: this.copy,
      detached: true,
      // Temporary files of the tests stay inside the copy, removed with it.
      env: {
        ...process.env,
        TMPDIR: tmp,
        HVLAB_MUTATION_TEST_TIMEOUT_MS: String(TEST_TIMEOUT_MS),
      },
      stdio: ["ignore", "ignore", "pipe", "ipc"],
    });
    let log = "";
    child.stderr.on("data", (chunk) => {
      log = (log + chunk).slice(-4000);
    });
    this.child = child;
    await new Promise((resolve, reject) => {
      const onExit = (code) =>
        reject(new Error(`the test runner exited (${code}) before it was ready:\n${log}`));
      child.once("exit", onExit);
      child.once("message", (message) => {
        child.off("exit", onExit);
        if (message?.ready) resolve();
        else reject(new Error(`the test runner said ${JSON.stringify(message)}`));
      });
    });
    child.on("message", (message) => this.pending?.resolve(message));
    child.on("exit", (code, signal) => {
      this.child = null;
      this.pending?.resolve({ exited: `${code ?? signal}`, log });
    });
  }

  /** Kills the runner and every process it started. */
  kill() {
    const child = this.child;
    this.child = null;
    if (child?.pid === undefined) return;
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }

  /**
   * Runs one test file; resolves with its first failure (null if it passed)
   * and its time. Past `limitMs` the file counts as killed by a hang and the
   * runner is started again.
   */
  async runFile(test, limitMs) {
    if (this.child === null) await this.start();
    const invalidate = [...this.stale];
    this.stale.clear();
    const t0 = Date.now();
    const reply = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ timedOut: true }), limitMs);
      this.pending = {
        resolve: (message) => {
          clearTimeout(timer);
          resolve(message);
        },
      };
      this.child.send({ files: [join(this.copy, test)], invalidate });
    });
    this.pending = null;
    const ms = Date.now() - t0;
    if (reply.timedOut) {
      this.kill();
      return { failure: `${test} (timed out after ${seconds(limitMs)})`, ms };
    }
    if (reply.exited !== undefined) {
      const why = reply.log.trim().split("\n").at(-1) ?? "";
      return { failure: `${test} (the test runner exited: ${why.slice(0, 100)})`, ms };
    }
    const failure = reply.failure?.replace(`${this.copy}/`, "") ?? null;
    return { failure, ms };
  }
}

/**
 * Runs test files one at a time in the order given (the most pointed
 * first); returns the first failure, or null if all pass. A file's time
 * limit is `FILE_TIMEOUT_FACTOR` times its unmutated time (from the
 * baseline), or `FILE_TIMEOUT_MS` when there was none.
 */
async function runTests(runner, tests, baseline) {
  for (const test of tests) {
    const before = baseline.get(test);
    const limit =
      before === undefined
        ? FILE_TIMEOUT_MS
        : Math.max(MIN_FILE_TIMEOUT_MS, before * FILE_TIMEOUT_FACTOR);
    const { failure, ms } = await runner.runFile(test, limit);
    if (failure !== null) return { failure, test, ms };
    if (before === undefined) baseline.set(test, ms);
  }
  return { failure: null };
}

/** What must be rebuilt after `file` changed: kernel modules, or the TypeScript build. */
function rebuildFor(file, sources) {
  if (file.startsWith("src/")) return { ts: true, modules: [] };
  const modules = [...sources].filter(([, files]) => files.has(file)).map(([name]) => name);
  return { ts: false, modules };
}

/** Builds run one at a time: asc shares Binaryen's state within a process. */
let building = Promise.resolve();

/**
 * Rebuilds what a mutation touched: dist/ for a file under src/, else each
 * kernel module that compiles the file, with asc in this process (loading
 * asc and Binaryen's wasm once, not once per mutation, which cost more than
 * the compile itself), at the module's static slot from the copy's manifest.
 * The copy's first build (scripts/build-wasm.mjs) checked that each
 * module's static data fits its slot; a mutation changes code, not that.
 */
async function rebuild(copy, what) {
  if (what.ts) return run("npm", ["run", "build:ts"], copy);
  const build = building.then(async () => {
    const { default: asc } = await import("assemblyscript/asc");
    const manifest = JSON.parse(await readFile(join(copy, "build/wasm/manifest.json"), "utf8"));
    let output = "";
    const sink = {
      write(text) {
        output += text;
        return true;
      },
    };
    for (const name of what.modules) {
      const { error } = await asc.main(
        [
          join("assembly", `${name}.ts`),
          "--baseDir",
          copy,
          "--config",
          "asconfig.json",
          "--target",
          "release",
          "--memoryBase",
          String(manifest.modules[name].base),
          "--outFile",
          join("build", "wasm", `${name}.wasm`),
        ],
        { stdout: sink, stderr: sink },
      );
      if (error) return { code: 1, output: `${output}\n${error.message}` };
    }
    return { code: 0, output };
  });
  building = build.then(
    () => undefined,
    () => undefined,
  );
  return build;
}

/** Saves the built outputs a rebuild may overwrite, and puts them back. */
async function snapshot(copy, paths) {
  const saved = new Map();
  for (const path of paths) saved.set(path, await readFile(join(copy, path)));
  return async () => {
    for (const [path, bytes] of saved) await writeFile(join(copy, path), bytes);
  };
}

async function builtOutputs(copy, what) {
  if (!what.ts) {
    return what.modules.map((m) => `build/wasm/${m}.wasm`);
  }
  const dist = [];
  const walk = async (folder) => {
    for (const entry of await readdir(join(copy, folder), { withFileTypes: true })) {
      const path = join(folder, entry.name);
      if (entry.isDirectory()) await walk(path);
      else dist.push(path);
    }
  };
  await walk("dist");
  return dist;
}

function seconds(ms) {
  return `${(ms / 1000).toFixed(0)} s`;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const modules = await kernelModules();
  for (const name of options.modules ?? []) {
    if (!modules.includes(name))
      usage(`--module: no kernel module '${name}' (${modules.join(", ")})`);
  }
  const selected = (name, mutation) =>
    (options.modules === null || options.modules.includes(name)) &&
    (options.mutations === null || options.mutations.includes(mutation.id));
  const problems = await checkList(modules, selected);
  const plan = Object.entries(KERNEL_MUTATIONS).flatMap(([name, entry]) =>
    entry.mutations.filter((m) => selected(name, m)).map((m) => ({ module: name, ...m })),
  );
  if (options.list) {
    for (const m of plan) console.log(`${m.module}/${m.id}: ${m.rule}`);
    return;
  }
  if (problems.length > 0) {
    for (const problem of problems) console.error(`mutate-kernels: ${problem}`);
    process.exit(1);
  }
  if (plan.length === 0) usage("no mutation matches --module/--mutation");
  if (options.check) {
    console.log(`mutate-kernels: ${plan.length} mutations, each found once in its source`);
    return;
  }

  const { formatTable } = await import(
    pathToFileURL(join(root, "dist/src/report/table.js")).href
  ).catch(() => usage("the project is not built: run npm run build first"));
  const { toMarkdown } = await import(
    pathToFileURL(join(root, "dist/src/report/markdown.js")).href
  );
  const started = Date.now();
  const sources = await moduleSources(modules);
  const copies = [];
  const runners = [];
  // Interrupted: end the test runners (each in its own process group) and
  // remove the copies, as a normal end does.
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.once(signal, () => {
      for (const runner of runners) runner.kill();
      if (!options.keep) {
        for (const copy of copies) rmSync(copy, { recursive: true, force: true });
      }
      process.exit(signal === "SIGINT" ? 130 : 143);
    });
  }
  copies.push(await makeCopy());
  const rows = new Array(plan.length);
  /** Each test file's unmutated time, from the baseline (or its first passing run). */
  const baseline = new Map();
  try {
    // Further copies are clones of the first, built one.
    while (copies.length < Math.min(options.jobs, plan.length)) {
      const clone = await mkdtemp(join(tmpdir(), "hvlab-mutate-"));
      await cp(copies[0], clone, { recursive: true, verbatimSymlinks: true });
      copies.push(clone);
    }
    for (const copy of copies) runners.push(new TestRunner(copy));
    console.log(
      `mutate-kernels: ${plan.length} mutations, ${copies.length} at a time (built in ${seconds(Date.now() - started)})`,
    );
    if (options.baseline) {
      const names = [...new Set(plan.map((m) => m.module))];
      for (const name of names) {
        const tests = await expandTests(KERNEL_MUTATIONS[name].tests);
        const { failure } = await runTests(runners[0], tests, baseline);
        if (failure !== null) throw new Error(`the unmutated tests of ${name} fail: ${failure}`);
      }
      const times = [...baseline].map(([test, ms]) => `${test} ${seconds(ms)}`).join(", ");
      console.log(
        `mutate-kernels: unmutated tests pass (${seconds(Date.now() - started)}): ${times}`,
      );
    }
    let next = 0;
    const worker = async (runner) => {
      while (next < plan.length) {
        const index = next++;
        const mutation = plan[index];
        const t0 = Date.now();
        const { result, buildMs } = await tryMutation(runner, mutation, sources, baseline);
        const ms = Date.now() - t0;
        rows[index] = [mutation.module, mutation.id, result, seconds(ms), seconds(buildMs)];
        console.log(
          `mutate-kernels: ${index + 1}/${plan.length} ${mutation.module}/${mutation.id}: ${result} (${seconds(ms)}, build ${seconds(buildMs)})`,
        );
      }
    };
    await Promise.all(runners.map(worker));
  } finally {
    for (const runner of runners) runner.kill();
    if (!options.keep) {
      for (const copy of copies) await rm(copy, { recursive: true, force: true });
    } else console.log(`mutate-kernels: kept ${copies.join(", ")}`);
  }
  const failed = rows.filter((row) => !row[2].startsWith("killed")).length;
  const table = { columns: ["module", "mutation", "result", "time", "build"], rows };
  console.log(`\n${options.markdown ? toMarkdown(table) : formatTable(table)}`);
  console.log(
    `\n${rows.length - failed} of ${rows.length} mutations killed in ${seconds(Date.now() - started)}`,
  );
  // Named again last: a log cut to its tail (as CI shows it) still says
  // which mutation survived, not only how many.
  for (const [module, id, result] of rows) {
    if (!result.startsWith("killed")) console.log(`not killed: ${module}/${id}: ${result}`);
  }
  if (failed > 0) process.exit(1);
}

/** Applies one mutation in the runner's copy, rebuilds, runs the module's tests, and undoes it all. */
async function tryMutation(runner, mutation, sources, baseline) {
  const copy = runner.copy;
  const file = mutation.file ?? `assembly/${mutation.module}.ts`;
  const original = await readFile(join(copy, file), "utf8");
  const what = rebuildFor(file, sources);
  const restoreBuild = await snapshot(copy, await builtOutputs(copy, what));
  // Tests import src/ through vitest, which keeps what it transformed.
  if (what.ts) runner.stale.add(join(copy, file));
  try {
    await writeFile(join(copy, file), original.replace(mutation.from, mutation.to));
    const t0 = Date.now();
    const built = await rebuild(copy, what);
    const buildMs = Date.now() - t0;
    if (built.code !== 0) {
      const reason = built.output.split("\n").find((line) => /error/i.test(line));
      return { result: `BUILD FAILED: ${reason?.trim() ?? "see the build output"}`, buildMs };
    }
    const tests = await expandTests(KERNEL_MUTATIONS[mutation.module].tests);
    const { failure } = await runTests(runner, tests, baseline);
    return { result: failure === null ? "SURVIVED" : `killed by ${failure}`, buildMs };
  } finally {
    await writeFile(join(copy, file), original);
    await restoreBuild();
    if (what.ts) runner.stale.add(join(copy, file));
  }
}

main().catch((error) => {
  console.error(`mutate-kernels: ${error.message}`);
  process.exit(1);
});
