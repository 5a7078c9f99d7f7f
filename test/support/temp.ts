import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, onTestFinished } from "vitest";

function make(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `hvlab-${prefix}-`));
}

function remove(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A fresh `hvlab-<prefix>-XXXXXX` folder, removed when the calling test ends. */
export function testTempDir(prefix: string): string {
  const dir = make(prefix);
  onTestFinished(() => remove(dir));
  return dir;
}

/** A fresh `hvlab-<prefix>-XXXXXX` folder, removed when the test file's tests end. */
export function fileTempDir(prefix: string): string {
  const dir = make(prefix);
  afterAll(() => remove(dir));
  return dir;
}
