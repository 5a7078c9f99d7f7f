/*
 * runQuickMigration's options and run (src/migration/quick/quick-migration.ts;
 * docs/migration-live.md, "The saved-state file (quick migration)"): a guest
 * of whole 4 KiB pages from 1 MiB to 2 GiB, failover and resume times of 0
 * or more, device state from 0 to 4 MiB, each refused before anything runs;
 * the source is the seeded prefill with the guest's writes and the seeded
 * device blob; the clock starts at the pause; a temporary file is removed
 * afterwards and a named one kept.
 */
import { existsSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { LiveConfigError } from "../src/migration/live/errors.js";
import { fillDeviceState, prefillGuest } from "../src/migration/live/guest-image.js";
import {
  DEFAULT_FAILOVER_MS,
  MAX_QUICK_GUEST_BYTES,
  type QuickMigrationOptions,
  runQuickMigration,
} from "../src/migration/quick/quick-migration.js";
import { readSavedState } from "../src/migration/quick/saved-state.js";
import { region } from "../src/migration/quick/saved-state-transport.js";
import { trackedTemporaries } from "../src/util/temporary.js";
import { savedStateContext } from "./support/saved-state-context.js";
import { testTempDir } from "./support/temp.js";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

/** A 1 MiB guest that migrates at once: no failover wait, no fsync. */
function quick(options: Partial<QuickMigrationOptions> = {}): QuickMigrationOptions {
  return {
    guestBytes: MiB,
    vcpus: 1,
    workload: { kind: "uniform" },
    seed: 17,
    failoverMs: 0,
    sync: false,
    ...options,
  };
}

/** What a kept saved-state file holds: its header, RAM and device bytes. */
async function readBack(file: string) {
  const layout = new MemoryLayout();
  const state = await readSavedState(
    file,
    savedStateContext(layout),
    { maxGuestBytes: MAX_QUICK_GUEST_BYTES },
    (ram, device) => ({
      ram: layout.allocate("ram", ram, 4096),
      device: region(layout, "device", device),
    }),
  );
  return {
    header: state.header,
    ram: state.ram.bytes(layout.memory),
    device: state.device.bytes(layout.memory),
  };
}

/** Pages of `ram` that differ from `image`, 4 KiB each. */
function differingPages(ram: Uint8Array, image: Uint8Array): number {
  let count = 0;
  for (let at = 0; at < ram.length; at += 4096) {
    const a = Buffer.from(ram.subarray(at, at + 4096));
    if (!a.equals(Buffer.from(image.subarray(at, at + 4096)))) count++;
  }
  return count;
}

describe("what a quick migration refuses, before anything runs", () => {
  // The guest: a safe whole number from 1 MiB to 2 GiB, message with the size given.
  it("a guest under 1 MiB, over 2 GiB or not a whole number", async () => {
    for (const bytes of [MiB - 4096, 2 * GiB + 4096, MiB + 0.5, Number.NaN, 2 ** 53]) {
      await expect(runQuickMigration(quick({ guestBytes: bytes }))).rejects.toThrowError(
        new LiveConfigError(
          `quick-migration guest must be from 1 MiB to 2 GiB, not ${bytes} bytes`,
        ),
      );
    }
  });

  // Within the bounds, a size that is not whole 4 KiB pages.
  it("a guest that is not a whole number of 4 KiB pages", async () => {
    await expect(runQuickMigration(quick({ guestBytes: MiB + 100 }))).rejects.toThrowError(
      "guest size 1048676 bytes is not a whole number of 4 KiB pages",
    );
    await expect(runQuickMigration(quick({ guestBytes: 2 * GiB - 2048 }))).rejects.toThrowError(
      /^guest size 2147481600 bytes is not a whole number of 4 KiB pages$/,
    );
  });

  // Failover and resume: 0 or more, NaN refused.
  it("a failover or resume time below 0 or not a number", async () => {
    for (const times of [
      { failoverMs: -1 },
      { failoverMs: Number.NaN },
      { resumeMs: -0.5 },
      { resumeMs: Number.NaN },
    ]) {
      await expect(runQuickMigration(quick(times))).rejects.toThrowError(
        /^failover and resume times must be 0 or more$/,
      );
    }
  });

  // Device state: a whole number of bytes from 0 to 4 MiB.
  it("device state below 0, past 4 MiB or not whole", async () => {
    for (const deviceStateBytes of [-1, 4 * MiB + 1, 10.5]) {
      await expect(runQuickMigration(quick({ deviceStateBytes }))).rejects.toThrowError(
        /^device state must be from 0 to 4\.0 MiB$/,
      );
    }
  });

  // Each bound is taken at its edge: the check after it is the one that speaks.
  it("takes each bound at its edge: 2 GiB, 1 MiB, failover and resume of 0", async () => {
    const badDevice = { deviceStateBytes: -1 };
    await expect(
      runQuickMigration(quick({ guestBytes: 2 * GiB, ...badDevice })),
    ).rejects.toThrowError(/^device state must be from 0/);
    await expect(
      runQuickMigration(quick({ guestBytes: MiB, failoverMs: 0, resumeMs: 0, ...badDevice })),
    ).rejects.toThrowError(/^device state must be from 0/);
    await expect(
      runQuickMigration(quick({ guestBytes: 2 * GiB, failoverMs: -1 })),
    ).rejects.toThrowError(/^failover and resume times/);
    expect(DEFAULT_FAILOVER_MS).toBe(2000);
  });

  // Device state of exactly 4 MiB is taken, saved and restored.
  it("takes device state of exactly 4 MiB", async () => {
    const result = await runQuickMigration(quick({ deviceStateBytes: 4 * MiB }));
    expect(result.summary.verified).toBe(true);
    expect(result.fileBytes).toBe(64 + 24 + MiB + 4 * MiB);
  });
});

describe("what a quick migration saves", () => {
  // With no writes the file holds exactly the prefilled image of the seed and
  // its device blob; the chunks and device state take their defaults (4 MiB,
  // 64 KiB); a named file is kept and never listed for removal.
  it("saves the seeded image and device blob, in default chunks, and keeps a named file", async () => {
    const file = join(testTempDir("quick-run"), "vm.hvls");
    const run = runQuickMigration(quick({ file, writes: 0, guestBytes: 2 * MiB }));
    expect(trackedTemporaries()).not.toContain(file);
    const result = await run;
    expect(result.summary).toMatchObject({ status: "completed", verified: true });
    expect(result.file).toBe(file);
    expect(trackedTemporaries()).not.toContain(file);
    const back = await readBack(file);
    expect(back.header).toMatchObject({
      guestBytes: 2 * MiB,
      chunkBytes: 4 * MiB,
      chunkCount: 1,
      deviceBytes: 64 * 1024,
    });
    expect(statSync(file).size).toBe(64 + 24 + 2 * MiB + 64 * 1024);
    const image = new Uint8Array(2 * MiB);
    prefillGuest(image, 4096, 17);
    expect(differingPages(back.ram, image)).toBe(0);
    const device = new Uint8Array(64 * 1024);
    fillDeviceState(device, 17);
    expect(Buffer.from(back.device).equals(Buffer.from(device))).toBe(true);
  });

  // The guest runs its writes before the pause: one per page by default, or
  // the number asked (each write changes at most its one page).
  it("saves the guest after its writes: one per page by default, or as many as asked", async () => {
    const dir = testTempDir("quick-run");
    const image = new Uint8Array(MiB);
    prefillGuest(image, 4096, 17);
    const few = await runQuickMigration(quick({ file: join(dir, "few.hvls"), writes: 5 }));
    expect(few.summary.verified).toBe(true);
    const fewChanged = differingPages((await readBack(few.file)).ram, image);
    expect(fewChanged).toBeGreaterThanOrEqual(1);
    expect(fewChanged).toBeLessThanOrEqual(5);
    const all = await runQuickMigration(quick({ file: join(dir, "all.hvls") }));
    expect(differingPages((await readBack(all.file)).ram, image)).toBeGreaterThan(5);
  });

  // Writes on a pool worker (threads > 0) land in the same RAM the file saves.
  it("saves the writes a pool worker ran", async () => {
    const image = new Uint8Array(MiB);
    prefillGuest(image, 4096, 17);
    const file = join(testTempDir("quick-run"), "pool.hvls");
    const result = await runQuickMigration(quick({ file, writes: 5, threads: 1 }));
    expect(result.summary.verified).toBe(true);
    const changed = differingPages((await readBack(file)).ram, image);
    expect(changed).toBeGreaterThanOrEqual(1);
    expect(changed).toBeLessThanOrEqual(5);
  });

  // deviceStateBytes and chunkBytes given are what the file holds; no device state at all restores.
  it("saves the device state and chunks asked for, none included", async () => {
    const file = join(testTempDir("quick-run"), "vm.hvls");
    const result = await runQuickMigration(
      quick({ file, deviceStateBytes: 0, chunkBytes: 256 * 1024, resumeMs: 0 }),
    );
    expect(result.summary.verified).toBe(true);
    expect(result.fileBytes).toBe(64 + 4 * 24 + MiB);
    expect((await readBack(file)).header).toMatchObject({ chunkBytes: 256 * 1024, deviceBytes: 0 });
    expect(result.rounds[0]?.reason).toBe(
      "VM paused; RAM and 0 B of device state saved to 1.0 MiB file",
    );
  });
});

describe("the saved-state file's life", () => {
  // With no file named, a temporary file in the temporary folder is listed for
  // removal on interrupt while the run lasts, and removed after.
  it("removes a temporary file afterwards and forgets it", async () => {
    const before = new Set(trackedTemporaries());
    const run = runQuickMigration(quick());
    const listed = trackedTemporaries().filter((path) => !before.has(path));
    expect(listed).toHaveLength(1);
    const result = await run;
    expect(listed[0]).toBe(result.file);
    expect(result.file).toMatch(/hvlab-saved-state-\d+-\d+\.hvls$/);
    expect(result.file.startsWith(tmpdir())).toBe(true);
    expect(result.summary.verified).toBe(true);
    expect(existsSync(result.file)).toBe(false);
    expect(trackedTemporaries()).not.toContain(result.file);
  });

  // keepFile overrides the default either way.
  it("keeps a temporary file when asked, and removes a named one when asked", async () => {
    const kept = await runQuickMigration(quick({ keepFile: true }));
    try {
      expect(statSync(kept.file).size).toBe(kept.fileBytes);
      expect(trackedTemporaries()).not.toContain(kept.file);
    } finally {
      rmSync(kept.file, { force: true });
    }
    const named = join(testTempDir("quick-run"), "vm.hvls");
    const removed = await runQuickMigration(quick({ file: named, keepFile: false }));
    expect(removed.summary.verified).toBe(true);
    expect(existsSync(named)).toBe(false);
    expect(trackedTemporaries()).not.toContain(named);
  });

  // A save that fails fails the migration: the reason names the phase and the
  // file, the guest was paused and runs on the source, and every page is still
  // to migrate (the pause found them all pending).
  it("fails on a file it cannot write, with every page still remaining", async () => {
    const file = join(testTempDir("quick-run"), "no-such-folder", "vm.hvls");
    const result = await runQuickMigration(quick({ file }));
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toMatch(
      /^stop-and-copy \(saved-state file .*no-such-folder\/vm\.hvls\): ENOENT.*; the guest was paused \d+\.\d ms and runs again on the source$/,
    );
    expect(result.summary.remaining).toBe(MiB);
  });
});

describe("the quick migration's clock", () => {
  // The clock starts at the pause: no setup time, the stop-and-copy starts at
  // 0, and the save, the failover and the restore lie within the downtime,
  // which lies within the call.
  it("starts at the pause and holds every step within the downtime", async () => {
    const started = performance.now();
    const result = await runQuickMigration(quick({ failoverMs: 0 }));
    const elapsed = performance.now() - started;
    const { summary } = result;
    // The policy is named "quick" in the summary (it runs no pre-copy round).
    expect(summary.policy).toBe("quick");
    expect(result.rounds.map((round) => round.phase)).toEqual(["stop-and-copy", "resume"]);
    expect(summary["setup-time"]).toBe(0);
    expect(result.rounds[0]?.["start-ms"]).toBe(0);
    expect(summary.downtime).toBe(summary["total-time"]);
    expect(summary.downtime).toBeLessThanOrEqual(elapsed);
    expect(result.saveMs).toBeGreaterThan(0);
    expect(result.restoreMs).toBeGreaterThan(0);
    expect(result.saveMs + result.failoverMs + result.restoreMs).toBeLessThanOrEqual(
      summary.downtime,
    );
    expect(result.failoverMs).toBe(0);
  });

  // The resume cost is waited within the restore step (docs/migration-live.md: "wait --resume ms").
  it("waits the resume cost within the restore", async () => {
    const result = await runQuickMigration(quick({ resumeMs: 40 }));
    // A timer's millisecond granularity: a wait of 40 ms can read as 39.
    expect(result.restoreMs).toBeGreaterThanOrEqual(39);
    expect(result.summary.downtime).toBeGreaterThanOrEqual(result.restoreMs);
  });
});
