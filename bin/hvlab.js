#!/usr/bin/env node
// The hvlab command: runs the compiled CLI (npm run build produces dist/).
import { existsSync } from "node:fs";

const argv = process.argv.slice(2);
const main = new URL("../dist/src/cli/main.js", import.meta.url);
// `hvlab storage convert` is timed as a whole command against `qemu-img
// convert`, start-up included: it runs from one file bundled at build time
// with only the modules it needs (the same command and options; see
// src/cli/storage-convert-main.ts), or through the whole CLI without it.
const bundle = new URL("../dist/bundle/storage-convert-main.js", import.meta.url);
const fast = argv[0] === "storage" && argv[1] === "convert" && existsSync(bundle);
if (!fast && !existsSync(main)) {
  console.error("hvlab: not built yet: run npm run build (npm install does it too)");
  process.exit(1);
}
const entry = await import((fast ? bundle : main).href);
const code = await entry.main(argv);
// The conversion is over and its destination closed (its output written:
// stdout and stderr are synchronous on Linux): exit without tearing the
// runtime down, which only adds to the command's time.
if (fast && process.platform === "linux") process.exit(code);
process.exitCode = code;
