import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Temporary files and folders this process made and has not removed yet.
 * A run that ends normally removes its own; an interrupted one (Ctrl-C,
 * SIGTERM) never reaches its `finally`, so the command line's signal
 * handler removes whatever is still listed here.
 */
const live = new Set<string>();

/** Lists `path` for removal if the process is interrupted before it removes it. */
export function trackTemporary(path: string): string {
  live.add(path);
  return path;
}

/** Makes a folder `hvlab-<prefix>-XXXXXX` in the system's temporary folder, tracked. */
export function makeTemporaryDir(prefix: string): string {
  return trackTemporary(mkdtempSync(join(tmpdir(), `hvlab-${prefix}-`)));
}

/** Removes a tracked file or folder (and everything in it) and forgets it. */
export function removeTemporary(path: string): void {
  rmSync(path, { recursive: true, force: true });
  live.delete(path);
}

/**
 * Removes every tracked path, synchronously (a signal handler cannot wait).
 * Returns those it could not remove, with why.
 */
export function removeAllTemporaries(): string[] {
  const failed: string[] = [];
  for (const path of [...live]) {
    try {
      removeTemporary(path);
    } catch (error) {
      failed.push(`${path}: ${(error as Error).message}`);
    }
  }
  return failed;
}

/** The paths still tracked (for tests and the interrupt message). */
export function trackedTemporaries(): readonly string[] {
  return [...live];
}
