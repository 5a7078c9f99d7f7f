// Compiles every top-level AssemblyScript module in assembly/ to build/wasm/<name>.wasm.
//
// All modules import one shared memory. Each module's static data (its data
// segments) must not land where another module's does, or re-instantiating one
// module in a worker would overwrite another's constants. So module i, in
// sorted order, gets the static slot [i * SLOT_BYTES, (i + 1) * SLOT_BYTES),
// passed to asc as --memoryBase, and this script checks that every data
// segment of the emitted binary fits inside that slot. The slots together form
// the static area that src/memory/layout.ts reserves at the start of memory.
//
// `--only a,b` rebuilds just those modules (each keeps its slot) and updates
// their entries in an existing manifest: a rebuild after one module changed.
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import asc from "assemblyscript/asc";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
// src/memory/layout.ts reserves these slots (STATIC_SLOT_BYTES, STATIC_SLOTS); the
// loader refuses a manifest whose slots differ from them.
const SLOT_BYTES = 64 * 1024;
const SLOT_COUNT = 16;
const target = process.argv.includes("--debug") ? "debug" : "release";
const onlyAt = process.argv.indexOf("--only");
const only = onlyAt < 0 ? null : (process.argv[onlyAt + 1] ?? "").split(",").filter(Boolean);

/** Reads a LEB128 unsigned integer; returns [value, nextOffset]. */
function uleb(bytes, offset) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = bytes[offset++];
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [value, offset];
    shift += 7;
  }
}

/** Reads a LEB128 signed 32-bit integer; returns [value, nextOffset]. */
function sleb(bytes, offset) {
  let value = 0;
  let shift = 0;
  let byte;
  do {
    byte = bytes[offset++];
    value |= (byte & 0x7f) << shift;
    shift += 7;
  } while (byte & 0x80);
  if (shift < 32 && byte & 0x40) value |= -1 << shift;
  return [value, offset];
}

/** Lists the active data segments of a wasm binary as {start, end}. */
function dataSegments(bytes) {
  const segments = [];
  let offset = 8;
  while (offset < bytes.length) {
    const id = bytes[offset++];
    let size;
    [size, offset] = uleb(bytes, offset);
    const end = offset + size;
    if (id === 11) {
      let count;
      let at = offset;
      [count, at] = uleb(bytes, at);
      for (let i = 0; i < count; i++) {
        let kind;
        [kind, at] = uleb(bytes, at);
        let start = null;
        if (kind === 0 || kind === 2) {
          if (kind === 2) [, at] = uleb(bytes, at);
          if (bytes[at++] !== 0x41) throw new Error("data segment offset is not i32.const");
          [start, at] = sleb(bytes, at);
          if (bytes[at++] !== 0x0b) throw new Error("data segment offset expression too long");
        }
        let length;
        [length, at] = uleb(bytes, at);
        at += length;
        if (start !== null) segments.push({ start, end: start + length });
      }
    }
    offset = end;
  }
  return segments;
}

const names = (await readdir(join(root, "assembly")))
  .filter((file) => file.endsWith(".ts"))
  .map((file) => file.slice(0, -3))
  .sort();
if (names.length > SLOT_COUNT) {
  throw new Error(`${names.length} kernel modules but only ${SLOT_COUNT} static slots`);
}
/*
 * asc's --converge (asconfig.json) re-runs Binaryen's optimizer until the
 * module stops shrinking. When the last run makes it a few bytes larger,
 * asc says "Last converge was suboptimal." and keeps the module as it is:
 * a note about a few bytes, not a problem. It is left out of the build's
 * output; everything else asc writes to stderr passes through.
 */
const quietConverge = {
  write(text) {
    const kept = String(text).replace(/^Last converge was suboptimal\.\r?\n?/gm, "");
    if (kept !== "") process.stderr.write(kept);
    return true;
  },
};
const unknown = (only ?? []).filter((name) => !names.includes(name));
if (only !== null && (only.length === 0 || unknown.length > 0)) {
  console.error(
    `--only: no kernel module named '${unknown[0] ?? ""}' (modules: ${names.join(", ")})`,
  );
  process.exit(2);
}
await mkdir(join(root, "build", "wasm"), { recursive: true });
const manifestPath = join(root, "build", "wasm", "manifest.json");
const manifest = only === null ? {} : JSON.parse(await readFile(manifestPath, "utf8")).modules;
for (const [slot, name] of names.entries()) {
  if (only !== null && !only.includes(name)) continue;
  const base = slot * SLOT_BYTES;
  const outFile = join("build", "wasm", `${name}.wasm`);
  const { error } = await asc.main(
    [
      join("assembly", `${name}.ts`),
      "--config",
      "asconfig.json",
      "--target",
      target,
      "--memoryBase",
      String(base),
      "--outFile",
      outFile,
      "--textFile",
      join("build", "wasm", `${name}.wat`),
    ],
    { stdout: process.stdout, stderr: quietConverge, cwd: root },
  );
  if (error) {
    throw new Error(`asc failed on assembly/${name}.ts: ${error.message}`);
  }
  const bytes = await readFile(join(root, outFile));
  for (const segment of dataSegments(bytes)) {
    if (segment.start < base || segment.end > base + SLOT_BYTES) {
      throw new Error(
        `assembly/${name}.ts: static data [${segment.start}, ${segment.end}) leaves its slot [${base}, ${base + SLOT_BYTES})`,
      );
    }
  }
  manifest[name] = { slot, base, bytes: bytes.length };
}
await writeFile(
  manifestPath,
  `${JSON.stringify({ slotBytes: SLOT_BYTES, slots: SLOT_COUNT, target, modules: manifest }, null, 2)}\n`,
);
const built = only ?? names;
console.log(`built ${built.length} kernel modules (${target}): ${built.join(", ")}`);
