import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FdFile } from "../src/storage/block-file.js";
import { VhdImage } from "../src/storage/vhd.js";
import { type CliRun, hvlab } from "./support/cli.js";
import { fileTempDir } from "./support/temp.js";

// `hvlab storage convert` runs from a bundle of only what it needs
// (dist/bundle/, made by npm run build), and every other command line
// through the whole CLI (dist/src/cli/main.js). Both must be one CLI: the
// same help, checks, errors, exit codes and output.
const ROOT = join(import.meta.dirname, "..");
const BIN = join(ROOT, "bin", "hvlab.js");
const MAIN = new URL("../dist/src/cli/main.js", import.meta.url).href;

const dir = fileTempDir("storage-convert-command");

/**
 * Every module URL a run of bin/hvlab.js resolves: a resolve hook prints
 * the ES modules', a preloaded wrapper of CommonJS's resolver the required
 * files' (the bin and the convert bundle are CommonJS).
 */
function modulesLoaded(args: readonly string[]): string[] {
  const hook = join(dir, "hook.mjs");
  writeFileSync(
    hook,
    `import { writeSync } from "node:fs";
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  writeSync(2, "resolved " + result.url + "\\n");
  return result;
}
`,
  );
  const register = join(dir, "register.mjs");
  writeFileSync(
    register,
    `import { register } from "node:module";\nregister(${JSON.stringify(new URL(`file://${hook}`).href)});\n`,
  );
  const required = join(dir, "required.cjs");
  writeFileSync(
    required,
    `const Module = require("node:module");
const { writeSync } = require("node:fs");
const { pathToFileURL } = require("node:url");
const resolve = Module._resolveFilename;
Module._resolveFilename = function (...args) {
  const file = resolve.apply(this, args);
  if (file.startsWith("/")) writeSync(2, "resolved " + pathToFileURL(file).href + "\\n");
  return file;
};
`,
  );
  const run = spawnSync(
    process.execPath,
    ["--import", register, "--require", required, BIN, ...args],
    {
      encoding: "utf8",
    },
  );
  expect(run.status, run.stderr).toBe(0);
  return [...run.stderr.matchAll(/^resolved (.*)$/gm)].map((m) => m[1] ?? "");
}

/** The same command line through the whole CLI (src/cli/main.ts), as bin/hvlab.js runs it without the bundle. */
function wholeCli(args: readonly string[]): CliRun {
  const run = spawnSync(
    process.execPath,
    [
      "--input-type=module",
      "-e",
      `const { main } = await import(${JSON.stringify(MAIN)}); process.exitCode = await main(${JSON.stringify(args)});`,
    ],
    { encoding: "utf8", env: { ...process.env, HVLAB_DEBUG: "" } },
  );
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe("hvlab storage convert's own entry", () => {
  it("loads the bundle alone: no module of dist/src/ and no package from node_modules", () => {
    const loaded = modulesLoaded(["storage", "convert", "--help"]);
    expect(loaded.some((url) => url.includes("/dist/bundle/storage-convert-main.cjs"))).toBe(true);
    expect(loaded.filter((url) => url.includes("/dist/src/"))).toEqual([]);
    expect(loaded.filter((url) => url.includes("/node_modules/"))).toEqual([]);
    // The probe's own check: another storage command goes through the whole CLI.
    const other = modulesLoaded(["storage", "info", "--help"]);
    expect(other.some((url) => url.includes("/dist/src/cli/main.js"))).toBe(true);
    expect(other.some((url) => url.includes("/dist/bundle/"))).toBe(false);
  });

  it("is the same command as through the whole CLI: help, errors and exit codes", () => {
    const lines: string[][] = [
      ["storage", "convert", "--help"],
      ["storage", "convert", "x", "y", "--to", "vhdx"],
      ["storage", "convert", "x", "y"],
      ["storage", "convert", "x"],
      ["storage", "convert", "x", "y", "--to", "raw", "--block-size", "3MiB"],
      ["storage", "convert", "x", "y", "--to", "raw", "--no-such-option"],
      ["storage", "convert", join(dir, "missing.vhd"), join(dir, "out.raw"), "--to", "raw"],
      ["--version"],
    ];
    for (const args of lines) {
      const fast = hvlab(args);
      const whole = wholeCli(args);
      expect(fast, args.join(" ")).toEqual(whole);
    }
    // The lines above do reach different outcomes (the comparison is not of empty runs).
    expect(hvlab(lines[0] ?? []).status).toBe(0);
    expect(hvlab(lines[1] ?? []).status).toBe(2);
    expect(hvlab(lines[6] ?? []).status).toBe(1);
  });

  it("converts to the same bytes, and prints the same --json, as the whole CLI", () => {
    const src = join(dir, "src.vhd");
    const image = VhdImage.create(new FdFile(src, "w+"), { type: "dynamic", size: 9 * 2 ** 20 });
    const data = new Uint8Array(3 * 512).map((_, i) => (i * 7 + 1) & 0xff);
    image.write(2 ** 20 + 512, data);
    image.write(8 * 2 ** 20, data);
    image.close();
    for (const to of ["raw", "fixed", "dynamic"]) {
      const a = join(dir, `fast.${to}`);
      const b = join(dir, `whole.${to}`);
      const fast = hvlab(["storage", "convert", src, a, "--to", to, "--json"]);
      const whole = wholeCli(["storage", "convert", src, b, "--to", to, "--json"]);
      expect(fast.status, fast.stderr).toBe(0);
      expect(whole.status, whole.stderr).toBe(0);
      expect({ ...JSON.parse(fast.stdout), dst: "" }).toEqual({
        ...JSON.parse(whole.stdout),
        dst: "",
      });
      if (to === "raw") expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
      const info = JSON.parse(hvlab(["storage", "info", a, "--json"]).stdout);
      expect(info["virtual-size"]).toBe(9 * 2 ** 20);
    }
  });
});
