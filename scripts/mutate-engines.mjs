// Mutation testing of the TypeScript engines: runs Stryker once per engine
// (stryker.config.mjs names each engine's files and its fast tests), each
// with its own incremental file, then prints one row per engine: its
// mutants by status and its score. Exits 1 if an engine's score is below
// the break threshold (70 %) or its run failed.
//
// usage: node scripts/mutate-engines.mjs [engine,engine...] [--markdown]
//        [--incremental-only]
// With no engine named, every engine of stryker.config.mjs, in its order.
// --incremental-only skips the engines without committed results in
// stryker-incremental/ (a first run of one takes up to hours; CI runs this),
// and mutates only what an engine's committed results cover (its `scored`
// files in stryker.config.mjs, HVLAB_MUTATE_SCORED=1), after checking that
// list names the same files as the results.
// The project must be built (npm run mutate builds, then runs this).
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const BREAK = 70;

function usage(message) {
  console.error(`mutate-engines: ${message}`);
  process.exit(2);
}

/** Runs Stryker for one engine, its output passed through; resolves with its exit code. */
/** Makes the machine's paths in the engine's incremental file relative (scripts/scrub-incremental.mjs). */
function scrubIncremental(engine) {
  const file = join(root, "stryker-incremental", `${engine}.json`);
  if (!existsSync(file)) return;
  spawnSync(process.execPath, [join(root, "scripts", "scrub-incremental.mjs"), file], {
    cwd: root,
    stdio: "inherit",
  });
}

function stryker(engine, scoredOnly) {
  return new Promise((resolve, reject) => {
    const bin = join(root, "node_modules", "@stryker-mutator", "core", "bin", "stryker.js");
    const child = spawn(process.execPath, [bin, "run"], {
      cwd: root,
      stdio: "inherit",
      env: {
        ...process.env,
        HVLAB_MUTATE_ENGINE: engine,
        ...(scoredOnly ? { HVLAB_MUTATE_SCORED: "1" } : {}),
      },
    });
    child.on("error", reject);
    child.on("close", (code, signal) => resolve(signal ? 1 : (code ?? 1)));
  });
}

/**
 * Where an engine's `scored` list (stryker.config.mjs) and the files of its
 * committed results differ: a message naming both sides, or undefined.
 */
async function scoredMismatch(engine, scored) {
  const file = join(root, "stryker-incremental", `${engine}.json`);
  const results = JSON.parse(await readFile(file, "utf8"));
  const covered = new Set(Object.keys(results.files ?? {}));
  const listed = new Set(scored.map((entry) => entry.replace(/:\d+-\d+$/, "")));
  const unlisted = [...covered].filter((f) => !listed.has(f));
  const missing = [...listed].filter((f) => !covered.has(f));
  if (unlisted.length === 0 && missing.length === 0) return undefined;
  return `${engine}: stryker.config.mjs's scored list and stryker-incremental/${engine}.json differ (results for files not listed: ${unlisted.join(", ") || "none"}; listed without results: ${missing.join(", ") || "none"})`;
}

/** Mutants by status in a mutation-testing-report-schema report. */
async function counts(engine) {
  const report = JSON.parse(
    await readFile(join(root, "reports", "mutation", `${engine}.json`), "utf8"),
  );
  const by = {};
  for (const file of Object.values(report.files ?? {})) {
    for (const mutant of file.mutants ?? []) by[mutant.status] = (by[mutant.status] ?? 0) + 1;
  }
  return by;
}

/**
 * Stryker's mutation score: detected (killed, timed out) over every valid
 * mutant, the ones no test reached (NoCoverage) included.
 */
function score(by) {
  const detected = (by.Killed ?? 0) + (by.Timeout ?? 0);
  const valid = detected + (by.Survived ?? 0) + (by.NoCoverage ?? 0);
  return valid === 0 ? null : (100 * detected) / valid;
}

async function main() {
  const args = process.argv.slice(2);
  const OPTIONS = ["--markdown", "--incremental-only"];
  const markdown = args.includes("--markdown");
  const incrementalOnly = args.includes("--incremental-only");
  const named = args.filter((arg) => !arg.startsWith("--"));
  const unknownOption = args.find((arg) => arg.startsWith("--") && !OPTIONS.includes(arg));
  if (unknownOption) usage(`unknown option '${unknownOption}' (options: ${OPTIONS.join(", ")})`);
  const { ENGINES } = await import(pathToFileURL(join(root, "stryker.config.mjs")).href);
  const engines = named.length === 0 ? Object.keys(ENGINES) : named.flatMap((a) => a.split(","));
  for (const engine of engines) {
    if (!(engine in ENGINES)) {
      usage(`no engine '${engine}' (engines: ${Object.keys(ENGINES).join(", ")})`);
    }
  }
  const { formatTable } = await import(
    pathToFileURL(join(root, "dist/src/report/table.js")).href
  ).catch(() => usage("the project is not built: run npm run build first"));
  const { toMarkdown } = await import(
    pathToFileURL(join(root, "dist/src/report/markdown.js")).href
  );

  const rows = [];
  let failed = false;
  for (const engine of engines) {
    if (incrementalOnly && !existsSync(join(root, "stryker-incremental", `${engine}.json`))) {
      console.log(
        `mutate-engines: ${engine}: no committed results in stryker-incremental/, skipped (npm run mutate -- ${engine} makes them)`,
      );
      continue;
    }
    const scored = incrementalOnly ? ENGINES[engine].scored : undefined;
    if (scored) {
      const mismatch = await scoredMismatch(engine, scored);
      if (mismatch) usage(mismatch);
    }
    const t0 = Date.now();
    const code = await stryker(engine, scored !== undefined);
    scrubIncremental(engine);
    const minutes = Math.round((Date.now() - t0) / 6_000) / 10;
    let by;
    try {
      by = await counts(engine);
    } catch {
      rows.push([engine, null, null, null, null, null, `no report (exit ${code})`, minutes]);
      failed = true;
      continue;
    }
    const value = score(by);
    const below = value !== null && value < BREAK;
    if (below || (code !== 0 && value === null)) failed = true;
    rows.push([
      engine,
      (by.Killed ?? 0) + (by.Timeout ?? 0),
      by.Survived ?? 0,
      by.NoCoverage ?? 0,
      (by.CompileError ?? 0) + (by.RuntimeError ?? 0),
      by.Ignored ?? 0,
      value === null ? "-" : `${value.toFixed(1)} %${below ? " (below 70 %)" : ""}`,
      minutes,
    ]);
  }
  const table = {
    columns: [
      "engine",
      "killed",
      "survived",
      "no coverage",
      "errors",
      "ignored",
      "score",
      "minutes",
    ],
    rows,
  };
  console.log(`\n${markdown ? toMarkdown(table) : formatTable(table)}`);
  if (failed) process.exit(1);
}

main().catch((error) => {
  console.error(`mutate-engines: ${error.message}`);
  process.exit(1);
});
