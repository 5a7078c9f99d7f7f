import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

let cached: string | undefined;

/**
 * The hvlab package's root folder, found by walking up from this file. The
 * same code runs from src/ (tests) and from dist/src/ (the command and the
 * pool's workers), at different depths, so a fixed relative path would not do.
 */
export function packageRoot(): string {
  if (cached !== undefined) return cached;
  let folder = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(folder, "package.json");
    if (existsSync(manifest)) {
      const { name } = JSON.parse(readFileSync(manifest, "utf8")) as { name?: unknown };
      if (name === "hvlab") {
        cached = folder;
        return folder;
      }
    }
    const parent = dirname(folder);
    if (parent === folder) throw new Error("cannot find the hvlab package root");
    folder = parent;
  }
}
