import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { type DestinationReport, DestinationServer } from "../src/migration/live/destination.js";
import { until } from "./support/until.js";

const BIN = new URL("../bin/hvlab.js", import.meta.url).pathname;
// The children get a temporary folder of their own, so "nothing left" is checked exactly.
const scratch = mkdtempSync(join(tmpdir(), "hvlab-interrupt-test-"));
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await once(child, "exit");
    }
  }
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Running {
  readonly child: ChildProcess;
  stdout: string;
  stderr: string;
  readonly exited: Promise<number | null>;
}

function hvlab(args: string[], tmp: string): Running {
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, TMPDIR: tmp, HVLAB_DEBUG: "" },
  });
  children.push(child);
  const run: Running = {
    child,
    stdout: "",
    stderr: "",
    exited: once(child, "exit").then(([code]) => code as number | null),
  };
  child.stdout?.on("data", (c: Buffer) => {
    run.stdout += c.toString();
  });
  child.stderr?.on("data", (c: Buffer) => {
    run.stderr += c.toString();
  });
  return run;
}

describe("Ctrl-C and SIGTERM", () => {
  it("quick-migrate interrupted after saving removes its temporary saved state", async () => {
    const tmp = mkdtempSync(join(scratch, "quick-"));
    // A long failover: the saved state is written and waits there to be read back.
    const run = hvlab(["quick-migrate", "--guest", "8MiB", "--failover", "60000"], tmp);
    await until(
      () => readdirSync(tmp).some((name) => /^hvlab-saved-state-.*\.hvls$/.test(name)),
      30_000,
      "the saved state appearing",
    );
    run.child.kill("SIGINT");
    expect(await run.exited).toBe(130);
    expect(run.stderr.trim()).toBe("hvlab: interrupted (SIGINT)");
    expect(readdirSync(tmp)).toEqual([]);
  });

  it("a throttled live source is still sending long after one burst, and Ctrl-C says what it was doing and that the guest stays on the source", async () => {
    const tmp = mkdtempSync(join(scratch, "live-"));
    const reports: DestinationReport[] = [];
    const server = await DestinationServer.listen({
      port: 0,
      sessions: 0,
      onSession: (r) => reports.push(r),
    });
    try {
      const { port } = server.address;
      const source = hvlab(
        [
          "migrate-live",
          "--to",
          `127.0.0.1:${port}`,
          "--guest",
          "1MiB",
          "--max-bandwidth",
          "1000",
          "--rate",
          "0",
          "--threads",
          "0",
        ],
        tmp,
      );
      await until(() => server.receiving, 30_000, "the source connecting");
      // 1 MiB at 1,000 bytes/s is 18 minutes; a 2 MiB burst once made it 96 ms.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(source.child.exitCode).toBeNull();
      expect(server.receiving).toBe(true);
      expect(reports).toEqual([]);
      source.child.kill("SIGINT");
      expect(await source.exited).toBe(130);
      expect(source.stderr).toMatch(
        new RegExp(
          `^hvlab: interrupted \\(SIGINT\\) during pre-copy pass 1 of the migration to 127\\.0\\.0\\.1:${port} \\(attempt 1, [0-9.]+ (B|KiB) sent\\): migration cancelled; the guest was never switched over and keeps running on the source; the destination discards its partial copy$`,
          "m",
        ),
      );
      // The destination ends the session as failed, frees its slot and keeps listening.
      await until(() => reports.length === 1, 10_000, "the destination's report");
      expect(reports[0]?.status).toBe("failed");
      expect(reports[0]?.reason).toMatch(/^the connection closed mid-migration after \d+ pages$/);
      expect(server.receiving).toBe(false);
      expect(readdirSync(tmp)).toEqual([]);
    } finally {
      await server.close();
    }
  });

  it("SIGTERM on a destination says where it was listening and what it had received", async () => {
    const tmp = mkdtempSync(join(scratch, "destination-"));
    const destination = hvlab(["migrate-live", "--listen", "0", "--sessions", "0"], tmp);
    await until(() => /listening on /.test(destination.stdout), 30_000, "the destination");
    const port = /listening on 127\.0\.0\.1:(\d+)/.exec(destination.stdout)?.[1];
    destination.child.kill("SIGTERM");
    expect(await destination.exited).toBe(143);
    expect(destination.stderr.trim()).toBe(
      `hvlab: terminated (SIGTERM) while listening on 127.0.0.1:${port} (0 migrations received)`,
    );
    expect(readdirSync(tmp)).toEqual([]);
  });
});
