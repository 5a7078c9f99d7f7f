import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect } from "vitest";
import { directIoRefusal } from "../../src/storage/direct-file.js";

/**
 * A folder for this test file's direct I/O files, removed when its tests
 * end: under the system's temporary folder where its file system takes
 * O_DIRECT, else under the project's folder (`.NAME-test`; tmpfs before
 * Linux 6.6 refuses O_DIRECT). `directIo` is false where neither takes it.
 */
export function directIoTestDir(name: string): { dir: string; directIo: boolean } {
  const projectDir = join(import.meta.dirname, "..", "..", `.${name}-test`);
  mkdirSync(projectDir, { recursive: true });
  const base = [tmpdir(), projectDir].find((d) => directIoRefusal(d) === undefined);
  const dir = mkdtempSync(join(base ?? tmpdir(), `hvlab-${name}-`));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(projectDir, { recursive: true, force: true });
  });
  return { dir, directIo: base !== undefined };
}

/** Where two byte strings first differ, -1 where nowhere (vitest's toEqual over MiBs takes seconds). */
export function firstDifference(got: Uint8Array, want: Uint8Array): number {
  const n = Math.min(got.length, want.length);
  for (let i = 0; i < n; i++) if (got[i] !== want[i]) return i;
  return got.length === want.length ? -1 : n;
}

/**
 * Tries `attempt` on up to 2,000 ordinary buffers (their memory comes from
 * malloc, aligned or not by chance) until one returns what the kernel did
 * with a buffer it refused for O_DIRECT (EINVAL); undefined when it refused
 * none. A device whose DMA alignment is below malloc's (NVMe's is 4 bytes
 * since Linux 6.0) takes every ordinary buffer: the test then skips with
 * `skip`, saying why, except in CI, whose machine refuses some, where it
 * fails.
 */
export function refusedBuffer<T>(
  attempt: (i: number) => T | undefined,
  skip: (note: string) => void,
): T | undefined {
  for (let i = 0; i < 2000; i++) {
    const refused = attempt(i);
    if (refused !== undefined) return refused;
  }
  expect(process.env.CI, "no ordinary buffer the kernel refused in 2,000").not.toBe("true");
  skip("this device takes every buffer's address for O_DIRECT: no refused buffer to test with");
  return undefined;
}
