/*
 * What a quick migration does with the host's resources
 * (src/migration/quick/quick-migration.ts; docs/migration-live.md: "write
 * the file (fsync by default)"): the saved-state file is fsynced before the
 * storage fails over unless `sync: false` (a VMM must not fail storage over
 * with the guest's state still in the page cache), and the pool that ran the
 * guest's writes is stopped once they are done.
 */
import { type FileHandle, open } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  type QuickMigrationOptions,
  runQuickMigration,
} from "../src/migration/quick/quick-migration.js";
import { KernelPool } from "../src/pool/pool.js";
import { testTempDir } from "./support/temp.js";

afterEach(() => {
  vi.restoreAllMocks();
});

/** A 1 MiB guest with no failover wait and a few writes. */
function quick(options: Partial<QuickMigrationOptions> = {}): QuickMigrationOptions {
  return {
    guestBytes: 1024 ** 2,
    vcpus: 1,
    workload: { kind: "uniform" },
    seed: 3,
    writes: 4,
    failoverMs: 0,
    ...options,
  };
}

/** The prototype every fs/promises file handle shares, to watch its fsync. */
async function fileHandlePrototype(dir: string): Promise<FileHandle> {
  const handle = await open(join(dir, "probe"), "w");
  await handle.close();
  return Object.getPrototypeOf(handle) as FileHandle;
}

describe("the saved-state file reaches the disk before failover", () => {
  // Default and `sync: true`: one fsync of the file; `sync: false`: none.
  it("fsyncs the file once by default and when asked, and not when told not to", async () => {
    const dir = testTempDir("quick-resources");
    const sync = vi.spyOn(await fileHandlePrototype(dir), "sync");
    for (const [asked, fsyncs] of [
      [undefined, 1],
      [true, 1],
      [false, 0],
    ] as const) {
      sync.mockClear();
      const options = asked === undefined ? quick() : quick({ sync: asked });
      const result = await runQuickMigration(options);
      expect(result.summary.verified, `sync ${asked}`).toBe(true);
      expect(sync, `sync ${asked}`).toHaveBeenCalledTimes(fsyncs);
    }
  });
});

describe("the guest's write pool", () => {
  // Writes on pool workers (threads > 0): the pool is stopped after them,
  // before the pause; with no threads no pool is started or stopped.
  it("stops the pool that ran the guest's writes, once", async () => {
    const close = vi.spyOn(KernelPool.prototype, "close");
    const result = await runQuickMigration(quick({ threads: 1, sync: false }));
    expect(result.summary.verified).toBe(true);
    expect(close).toHaveBeenCalledTimes(1);
    close.mockClear();
    await runQuickMigration(quick({ sync: false }));
    expect(close).not.toHaveBeenCalled();
  });
});
