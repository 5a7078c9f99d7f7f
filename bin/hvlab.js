#!/usr/bin/env node
// The hvlab command: runs the compiled CLI (npm run build produces dist/).
//
// CommonJS (bin/package.json), not an ES module: `hvlab storage convert` is
// timed as a whole command against `qemu-img convert`, start-up included,
// and an ES module entry costs Node.js its module loader's start-up and an
// asynchronous resolve, link and evaluate for every module it imports (about
// 10 ms of CPU before the first line of the command runs, measured).
const { existsSync } = require("node:fs");
const { join } = require("node:path");
const { pathToFileURL } = require("node:url");

const argv = process.argv.slice(2);
const main = join(__dirname, "..", "dist", "src", "cli", "main.js");
// `storage convert` runs from one CommonJS file bundled at build time with
// only the modules it needs (the same command and options; see
// src/cli/storage-convert-main.ts); every other command line, or a missing
// bundle, goes through the whole CLI, which is ES modules.
const bundle = join(__dirname, "..", "dist", "bundle", "storage-convert-main.cjs");

if (argv[0] === "storage" && argv[1] === "convert" && existsSync(bundle)) {
  require(bundle)
    .main(argv)
    .then((code) => {
      // The conversion is over and its destination closed (its output
      // written: stdout and stderr are synchronous on Linux): exit without
      // tearing the runtime down, which only adds to the command's time.
      if (process.platform === "linux") process.exit(code);
      process.exitCode = code;
    });
} else if (!existsSync(main)) {
  console.error("hvlab: not built yet: run npm run build (npm install does it too)");
  process.exit(1);
} else {
  import(pathToFileURL(main).href)
    .then((entry) => entry.main(argv))
    .then((code) => {
      process.exitCode = code;
    });
}
