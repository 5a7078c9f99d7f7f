import { existsSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { describe, expect, it } from "vitest";
import type { QueryMigrateRound, QueryMigrateSummary } from "../src/migration/query-migrate.js";
import { roundsFromSamples } from "../src/qemu/rounds.js";
import { hvlab, hvlabAsync, requireTool } from "./support/cli.js";

describe("rounds rebuilt from dirty-sync-count", () => {
  const sample = (atMs: number, syncs: number, transferred: number, status = "active") => ({
    atMs,
    info: {
      status,
      ram: { "dirty-sync-count": syncs, transferred, remaining: 8192, "page-size": 4096 },
    },
  });
  it("makes one round per sync, an empty one for syncs no sample fell between, the last one QEMU's stop-and-copy", () => {
    const rounds = roundsFromSamples([
      sample(10, 1, 0),
      sample(60, 1, 4096 * 10),
      sample(110, 2, 4096 * 20),
      sample(160, 4, 4096 * 25),
      sample(170, 4, 4096 * 27, "completed"),
    ]);
    expect(rounds.map((r) => r.round)).toEqual([1, 2, 3, 4]);
    expect(rounds.map((r) => r["bytes-sent"])).toEqual([4096 * 20, 4096 * 5, 0, 4096 * 2]);
    expect(rounds.map((r) => r["duration-ms"])).toEqual([100, 50, 0, 10]);
    expect(rounds.map((r) => r.decision)).toEqual([
      "continue",
      "continue",
      "continue",
      "stop-and-copy",
    ]);
    // The bytes of the rounds add up to what QEMU says it transferred.
    expect(rounds.reduce((a, r) => a + r["bytes-sent"], 0)).toBe(4096 * 27);
  });
});

const hasQemu = requireTool("qemu-system-x86_64");

describe.skipIf(!hasQemu)(
  "hvlab qemu migrate between two real QEMU processes (TCG, loopback)",
  () => {
    it("completes, records query-migrate in hvlab's layout with rounds matching dirty-sync-count, and leaves no QEMU behind", async () => {
      const run = await hvlabAsync([
        "qemu",
        "migrate",
        "--guest",
        "128MiB",
        "--rate",
        "8000",
        "--bandwidth",
        "200MiB",
        "--downtime-limit",
        "100",
        "--warmup",
        "500",
        "--json",
      ]);
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      const out = JSON.parse(run.stdout) as {
        rounds: QueryMigrateRound[];
        summary: QueryMigrateSummary;
        qemu: {
          "write-rate-before": number;
          "destination-runs": boolean;
          pids: { source: number; destination: number };
        };
      };
      const s = out.summary;
      expect(s.status).toBe("completed");
      expect(s.ram["dirty-sync-count"]).toBeGreaterThanOrEqual(2);
      expect(s.hvlab.rounds).toBe(out.rounds.length);
      // One round per sync after the setup's first one.
      expect(out.rounds.length).toBe(s.ram["dirty-sync-count"]);
      // Every page of the 111 MiB working set was sent at least once, as a normal page.
      expect(s.ram["normal-bytes"]).toBeGreaterThanOrEqual(111 * 2 ** 20);
      expect(s.ram.transferred).toBe(out.rounds.at(-1)?.ram.transferred);
      // Not the answer QEMU gives between setting completed and computing its times.
      expect(s["total-time"]).toBeGreaterThan(s["setup-time"]);
      expect(s.ram.mbps).toBeGreaterThan(0);
      expect(out.qemu["write-rate-before"]).toBeGreaterThan(8000 * 0.9);
      expect(out.qemu["destination-runs"]).toBe(true);
      // Both processes were stopped by PID before hvlab exited.
      for (const pid of [out.qemu.pids.source, out.qemu.pids.destination]) {
        expect(pid).toBeGreaterThan(0);
        expect(() => process.kill(pid, 0)).toThrow(/ESRCH/);
      }
    }, 120_000);

    it("says why QEMU cannot start: a missing binary, no KVM, a port in use", async () => {
      const missing = hvlab([
        "qemu",
        "migrate",
        "--guest",
        "64MiB",
        "--qemu",
        "/nonexistent/qemu-system-x86_64",
      ]);
      expect(missing.status).toBe(1);
      expect(missing.stderr).toMatch(/\/nonexistent\/qemu-system-x86_64 is not installed/);
      if (!existsSync("/dev/kvm")) {
        const kvm = hvlab(["qemu", "migrate", "--guest", "64MiB", "--accel", "kvm"]);
        expect(kvm.status).toBe(1);
        expect(kvm.stderr).toMatch(/--accel kvm: \/dev\/kvm does not exist/);
      }
      const server: Server = createServer();
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      try {
        const busy = await hvlabAsync([
          "qemu",
          "migrate",
          "--guest",
          "64MiB",
          "--port",
          String(port),
        ]);
        expect(busy.code).toBe(1);
        expect(busy.stderr).toMatch(new RegExp(`port ${port} on 127.0.0.1 is in use`));
      } finally {
        server.close();
      }
      const usage = hvlab(["qemu", "migrate", "--downtime-limit", "0"]);
      expect(usage.status).toBe(2);
    }, 120_000);
  },
);
