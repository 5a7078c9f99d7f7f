import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { QueryMigrateRound, QueryMigrateSummary } from "../src/migration/query-migrate.js";
import { guestImage } from "../src/qemu/guest-image.js";
import { waitUntilWriting } from "../src/qemu/guest-rate.js";
import { freeLoopbackPort, QemuProcess } from "../src/qemu/qemu-process.js";
import { hvlabAsync, requireTool } from "./support/cli.js";

const hasQemu = requireTool("qemu-system-x86_64");
const MiB = 2 ** 20;

describe.skipIf(!hasQemu)("hvlab qemu profile attaches to a QEMU it did not start", () => {
  it("read-only, it waits for a migration and says so when none starts; with --start it records one with its charts", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hvlab-qemu-profile-"));
    const kernel = join(dir, "guest.elf");
    await writeFile(
      kernel,
      guestImage({ ramBytes: 64 * MiB, pattern: "hotset", writesPerSecond: 5000, seed: 3 }),
    );
    const launch = { kernel, ramBytes: 64 * MiB, accel: "tcg", dir } as const;
    const source = await QemuProcess.start({ ...launch, name: "source" });
    const destination = await QemuProcess.start({ ...launch, name: "destination", incoming: true });
    try {
      const port = await freeLoopbackPort();
      await destination.qmp.execute("migrate-incoming", { uri: `tcp:127.0.0.1:${port}` });
      await waitUntilWriting(source.qmp, 60_000);
      // QEMU's QMP socket takes one client at a time: hand it over.
      source.qmp.close();
      const qmp = `unix:${join(dir, "source.qmp")}`;
      const idle = await hvlabAsync(["qemu", "profile", "--qmp", qmp, "--timeout", "1"]);
      expect(idle.code).toBe(1);
      expect(idle.stderr).toMatch(/no migration started on unix:.*source\.qmp in 1 s/);
      const report = join(dir, "report.html");
      const run = await hvlabAsync([
        "qemu",
        "profile",
        "--qmp",
        qmp,
        "--start",
        `tcp:127.0.0.1:${port}`,
        "--json",
        "--report",
        report,
      ]);
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      const out = JSON.parse(run.stdout) as {
        rounds: QueryMigrateRound[];
        summary: QueryMigrateSummary;
      };
      expect(out.summary.status).toBe("completed");
      expect(out.rounds.length).toBe(out.summary.ram["dirty-sync-count"]);
      expect(out.summary.ram.transferred).toBeGreaterThan(47 * MiB);
      const html = readFileSync(report, "utf8");
      expect(html).toContain("Remaining bytes after each pre-copy round");
      expect(html).toMatch(/<svg/);
    } finally {
      source.kill();
      await destination.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it("refuses a --qmp that is not unix:PATH or tcp:HOST:PORT (exit 2)", async () => {
    const run = await hvlabAsync(["qemu", "profile", "--qmp", "/tmp/x.qmp"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/--qmp '\/tmp\/x.qmp' is neither unix:PATH nor tcp:HOST:PORT/);
  });
});
