// Stryker writes the machine it ran on into its incremental files: the
// project root, and the absolute paths of its sandbox, of node_modules and
// of temporary folders inside test failure messages. The files are
// committed, so each is rewritten with those paths made relative to the
// project (the root as "."); a later run reuses every result as before,
// since Stryker matches mutants by file name, source and location.
//
//   node scripts/scrub-incremental.mjs [file.json ...]   (default: every stryker-incremental/*.json)
//
// scripts/mutate-engines.mjs runs it after each engine; run it by hand after
// a `npx stryker run` of your own.

import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const DIR = "stryker-incremental";

/** Rewrites one string: every absolute path into the project made relative, temporary folders named as such. */
function scrub(text, root) {
  let out = text
    // A sandbox's copy of the project: <root>/reports/.stryker-tmp-<engine>/sandbox-<id>/src/...
    .replace(
      /(?<![:\w/])(?:file:\/\/)?\/[^\s"'()<>]*?\/reports\/\.stryker-tmp-[^/\s]+\/sandbox-[^/\s]+\//g,
      "",
    )
    // Installed packages, wherever the project was.
    .replace(/(?<![:\w/])(?:file:\/\/)?\/[^\s"'()<>]*?\/node_modules\//g, "node_modules/");
  if (root && root !== ".") out = out.split(`file://${root}/`).join("").split(`${root}/`).join("");
  // The project's own files under any other absolute root.
  out = out.replace(
    /(?<![:\w/])(?:file:\/\/)?\/(?:[^\s"'()<>/]+\/)+?((?:src|test|bench|scripts)\/)/g,
    "$1",
  );
  const tmp = tmpdir();
  return out.split(`${tmp}/`).join("<tmp>/");
}

function walk(value, root) {
  if (typeof value === "string") return scrub(value, root);
  if (Array.isArray(value)) return value.map((v) => walk(v, root));
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = walk(v, root);
    return out;
  }
  return value;
}

const files =
  process.argv.length > 2
    ? process.argv.slice(2)
    : readdirSync(DIR)
        .filter((f) => f.endsWith(".json"))
        .map((f) => join(DIR, f));
for (const file of files) {
  const before = readFileSync(file, "utf8");
  const report = JSON.parse(before);
  const root = typeof report.projectRoot === "string" ? report.projectRoot : undefined;
  // Source texts are the project's own bytes: left as they are.
  const scrubbed = walk({ ...report, files: undefined, testFiles: undefined }, root);
  const keepSource = (entries) =>
    entries &&
    Object.fromEntries(
      Object.entries(entries).map(([name, entry]) => {
        const { source, ...rest } = entry;
        return [name, { ...walk(rest, root), source }];
      }),
    );
  const out = {
    ...scrubbed,
    files: keepSource(report.files),
    ...(report.testFiles ? { testFiles: keepSource(report.testFiles) } : {}),
    projectRoot: ".",
  };
  const after = `${JSON.stringify(out, null, 2)}\n`;
  if (after !== before) {
    writeFileSync(file, after);
    console.log(`${file}: machine paths made relative`);
  }
}
