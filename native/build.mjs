// Builds the copy_range addon (native/copy_range.c) with node-gyp, against
// the headers of the Node.js that runs this script where they are installed
// beside it (<prefix>/include/node: no download). A failed build is not an
// error: hvlab then copies with pread and pwrite, and says why here.
import { spawnSync } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";

const here = import.meta.dirname;
const skip = (why) => {
  console.warn(
    `hvlab: the copy_range addon is not built (${why}); convert copies with pread/pwrite`,
  );
  rmSync(join(here, "build"), { recursive: true, force: true });
  process.exit(0);
};
if (process.platform !== "linux")
  skip(`copy_file_range(2) is Linux's, this is ${process.platform}`);
if (process.env.HVLAB_NO_NATIVE) skip("HVLAB_NO_NATIVE is set");

// npm tells its scripts where its own node-gyp is; elsewhere, npm's copy beside this Node.
let gyp = process.env.npm_config_node_gyp;
if (!gyp || !existsSync(gyp)) {
  try {
    gyp = createRequire(
      join(dirname(process.execPath), "..", "lib", "node_modules", "npm", "package.json"),
    ).resolve("node-gyp/bin/node-gyp.js");
  } catch {
    skip("node-gyp was not found");
  }
}
const prefix = resolve(dirname(process.execPath), "..");
const nodedir = existsSync(join(prefix, "include", "node", "node_api.h"))
  ? [`--nodedir=${prefix}`]
  : [];
const run = spawnSync(process.execPath, [gyp, "rebuild", ...nodedir, "--loglevel=warn"], {
  cwd: here,
  stdio: ["ignore", "ignore", "pipe"],
  encoding: "utf8",
  timeout: 300_000,
});
if (run.status !== 0) {
  const lines = (run.stderr ?? "").split("\n");
  const first =
    lines.find((l) => /error/i.test(l) && !l.startsWith("gyp ERR!")) ??
    lines.find(Boolean) ??
    `exit ${run.status}`;
  skip(`node-gyp failed: ${first.trim()}`);
}
