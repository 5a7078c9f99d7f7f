import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { testTempDir } from "./support/temp.js";

// `hvlab storage convert` is timed as a whole command against qemu-img, so
// what the storage command loads at start-up is part of convert's time: the
// worker pool, the histogram library and node:crypto are loaded only by the
// work that needs them (an I/O run, a new disk's unique id).
const STORAGE_COMMAND = new URL("../dist/src/cli/commands/storage.js", import.meta.url).href;
// The bundle `hvlab storage convert` runs from (npm run build makes it).
const CONVERT_BUNDLE = new URL("../dist/bundle/storage-convert-main.cjs", import.meta.url).href;
const PISCINA = import.meta.resolve("piscina");

interface Loaded {
  readonly crypto: boolean;
  readonly libraries: string[];
}

/** What a fresh Node process has loaded after importing `modules` in turn. */
function loadedAfter(modules: readonly string[]): Loaded {
  const dir = testTempDir("storage-startup");
  const script = join(dir, "probe.mjs");
  writeFileSync(
    script,
    `import { createRequire } from "node:module";
for (const m of ${JSON.stringify(modules)}) await import(m);
const require = createRequire(import.meta.url);
console.log(JSON.stringify({
  crypto: process.moduleLoadList.includes("NativeModule crypto"),
  libraries: Object.keys(require.cache).filter((k) => /piscina|hdr-histogram/.test(k)),
}));
`,
  );
  const run = spawnSync(process.execPath, [script], { encoding: "utf8" });
  expect(run.status, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as Loaded;
}

describe("the storage command's start-up", () => {
  it("loads neither the worker pool, the histogram library nor node:crypto", () => {
    const loaded = loadedAfter([STORAGE_COMMAND]);
    expect(loaded.libraries).toEqual([]);
    expect(loaded.crypto).toBe(false);
  });

  it("nor does the bundle storage convert runs from", () => {
    const loaded = loadedAfter([CONVERT_BUNDLE]);
    expect(loaded.libraries).toEqual([]);
    expect(loaded.crypto).toBe(false);
  });

  it("would see them loaded (the probe's own check)", () => {
    const loaded = loadedAfter([STORAGE_COMMAND, PISCINA, "node:crypto"]);
    expect(loaded.libraries.some((k) => k.includes("piscina"))).toBe(true);
    expect(loaded.crypto).toBe(true);
  });
});
