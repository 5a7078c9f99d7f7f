import { mkdtempSync, rmSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { measureDirtyCurve, ZERO_ATTEMPTS } from "../src/qemu/dirty-curve.js";
import { type GuestSpec, guestImage } from "../src/qemu/guest-image.js";
import { waitUntilWriting } from "../src/qemu/guest-rate.js";
import { QemuProcess } from "../src/qemu/qemu-process.js";
import { requireTool } from "./support/cli.js";

const MiB = 2 ** 20;
const hasQemu = requireTool("qemu-system-x86_64");

describe.skipIf(!hasQemu)("calc-dirty-rate against the guest's own write counter", () => {
  const dir = mkdtempSync(join(tmpdir(), "hvlab-dirty-rate-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function writingGuest(spec: GuestSpec, name: string): Promise<QemuProcess> {
    const kernel = join(dir, `${name}.elf`);
    await writeFile(kernel, guestImage(spec));
    const q = await QemuProcess.start({ kernel, ramBytes: spec.ramBytes, accel: "tcg", dir, name });
    await waitUntilWriting(q.qmp, 120_000);
    return q;
  }

  it("a paused guest: 0, measured once, because it wrote nothing", async () => {
    const q = await writingGuest(
      { ramBytes: 32 * MiB, pattern: "uniform", writesPerSecond: 20_000, seed: 3 },
      "paused",
    );
    try {
      await q.qmp.execute("stop");
      const [point] = await measureDirtyCurve(q.qmp, [1]);
      expect(point).toEqual({
        calcTimeS: 1,
        dirtyRateMiBps: 0,
        guestWrites: 0,
        attempts: 1,
        zeroReason: "the guest wrote nothing over the 1 s (paused, or not writing yet)",
      });
    } finally {
      await q.stop();
    }
  }, 180_000);

  it("a guest writing below what the sample resolves: 0 measured again while it writes, then says so", async () => {
    // One page written over and over: 4 KiB/s of distinct pages, under the
    // whole MiB/s QEMU answers in however many pages it samples.
    const q = await writingGuest(
      {
        ramBytes: 32 * MiB,
        pattern: "sequential",
        workingSetPages: 1,
        writesPerSecond: 2000,
        seed: 3,
      },
      "one-page",
    );
    try {
      const [point] = await measureDirtyCurve(q.qmp, [1]);
      expect(point?.dirtyRateMiBps).toBe(0);
      expect(point?.attempts).toBe(ZERO_ATTEMPTS);
      expect(point?.guestWrites).toBeGreaterThan(0);
      expect(point?.zeroReason).toMatch(
        /^the guest wrote \d+ times, but in 3 measurements QEMU saw under 1 MiB\/s of 16384 sampled pages a GiB/,
      );
    } finally {
      await q.stop();
    }
  }, 180_000);

  it("a guest dirtying some 4.5 MiB/s in 64 MiB: resolved, once", async () => {
    // The flaky case: 10,000 writes/s, 90 % to 188 hot pages, over 12,032
    // pages, some 1,150 distinct pages a second (7 % of the RAM): QEMU's
    // default 32 samples of 64 MiB miss them all one time in ten.
    const q = await writingGuest(
      { ramBytes: 64 * MiB, pattern: "hotset", writesPerSecond: 10_000, seed: 1 },
      "hotset",
    );
    try {
      const [point] = await measureDirtyCurve(q.qmp, [1]);
      expect(point?.guestWrites).toBeGreaterThan(0);
      expect(point?.dirtyRateMiBps).toBeGreaterThan(0);
      expect(point?.attempts).toBe(1);
      expect(point?.zeroReason).toBeUndefined();
    } finally {
      await q.stop();
    }
  }, 180_000);
});
