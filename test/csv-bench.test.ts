import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { hvlabAsync } from "./support/cli.js";
import { testTempDir } from "./support/temp.js";

describe("hvlab csv bench", () => {
  it("kills the coordinator of a running cluster, names its successor, draws the timeline and checks the volume", async () => {
    const out = testTempDir("csv-bench");
    const html = join(out, "bench.html");
    const run = await hvlabAsync([
      "csv",
      "bench",
      "--nodes",
      "3",
      "--before",
      "1000",
      "--after",
      "1500",
      "--html",
      html,
      "--json",
    ]);
    expect(run.code, run.stderr).toBe(0);
    const r = JSON.parse(run.stdout);
    expect(r).toMatchObject({ nodes: 3, heartbeatMs: 100, misses: 5, thresholdMs: 500 });
    expect(r.successor.node).not.toBe(r.killed.node);
    expect(r.successor.epoch).toBeGreaterThan(r.killed.epoch);
    // Survivors declare the coordinator dead only after the threshold (less the one
    // heartbeat interval it may have been silent before the kill), and metadata
    // resumes only once the new term is open.
    expect(r.takeoverMs).toBeGreaterThanOrEqual(r.thresholdMs - r.heartbeatMs);
    expect(r.pauseMs).toBeGreaterThanOrEqual(r.takeoverMs - r.pollMs);
    expect(r.pauseOverThreshold).toBeCloseTo(r.pauseMs / r.thresholdMs, 6);
    expect(r.planned).toMatchObject({ from: r.successor.node, epoch: r.successor.epoch + 1 });
    expect(r.check).toMatchObject({ ok: true, problems: [], epoch: r.planned.epoch });
    expect(r.acks.checked).toBeGreaterThan(0);
    expect(r.acks.intact).toBe(r.acks.checked);
    expect(r.perNode.filter((n: { killed: boolean }) => n.killed)).toMatchObject([
      { node: r.killed.node },
    ]);
    const nodes = new Set(r.timeline.map((p: { node: number }) => p.node));
    expect([...nodes].sort()).toEqual([1, 2, 3]);
    expect(r.marks.map((m: { what: string }) => m.what)).toContain(
      `node ${r.killed.node} killed (SIGKILL)`,
    );
    // The last node's path was cut before the kill: its writes went through the coordinator
    // meanwhile, the timeline counts them, and the chart marks the cut and the restore.
    expect(r.redirected).toMatchObject({ node: 3 });
    expect(r.redirected.redirectedWrites).toBeGreaterThan(0);
    expect(r.redirected.restoredAtMs).toBeGreaterThan(r.redirected.cutAtMs);
    expect(r.redirected.restoredAtMs).toBeLessThan(r.killed.atMs);
    const redirectedInTimeline = r.timeline
      .filter((p: { node: number }) => p.node === 3)
      .reduce((n: number, p: { redirectedWrites: number }) => n + p.redirectedWrites, 0);
    expect(redirectedInTimeline).toBeGreaterThanOrEqual(r.redirected.redirectedWrites);
    expect(r.marks.map((m: { what: string }) => m.what)).toEqual(
      expect.arrayContaining([
        "node 3 path cut: redirected I/O",
        "node 3 path restored: direct I/O",
      ]),
    );
    // Live migration hands the VHD over; quick migration moved the LUN: both measured.
    expect(r.vhdHandoverMs).toBeGreaterThan(0);
    expect(r.planned.pauseMs).toBeGreaterThan(0);
    const measured = join(out, "bench.json");
    writeFileSync(measured, run.stdout);
    const quick = await hvlabAsync([
      "quick-migrate",
      "--guest",
      "4MiB",
      "--failover-from",
      measured,
    ]);
    expect(quick.code, quick.stderr).toBe(0);
    expect(quick.stdout).toContain(`failover ${Math.round(r.planned.pauseMs)} ms`);
    const both = await hvlabAsync([
      "quick-migrate",
      "--failover",
      "5",
      "--failover-from",
      measured,
    ]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/choose one of --failover and --failover-from/);
    writeFileSync(join(out, "empty.json"), "{}");
    const empty = await hvlabAsync(["quick-migrate", "--failover-from", join(out, "empty.json")]);
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/planned.pauseMs is missing/);
    const page = readFileSync(html, "utf8");
    expect(page).toMatch(/live migration against quick migration/);
    expect(page).toMatch(/the coordinator killed, the new coordinator named/);
    expect(page).toContain(`node ${r.killed.node} killed (SIGKILL)`);
    expect(page).toContain("node 3 path cut: redirected I/O");
    expect(page).toContain("node 3 redirected");
    expect(page).toContain(`node ${r.successor.node} coordinator (epoch ${r.successor.epoch})`);
  }, 300_000);

  it("refuses bad usage with exit code 2", async () => {
    const one = await hvlabAsync(["csv", "bench", "--nodes", "1"]);
    expect(one.code).toBe(2);
    expect(one.stderr).toMatch(/--nodes.*must be from 2 to 16/);
    const both = await hvlabAsync(["csv", "bench", "--json", "--csv"]);
    expect(both.code).toBe(2);
  });

  it("is a section of the tour", async () => {
    const out = testTempDir("tour-csv");
    const run = await hvlabAsync(["tour", "--quick", "--only", "csv", "--out", out]);
    expect(run.code, run.stderr).toBe(0);
    const json = JSON.parse(readFileSync(join(out, "tour.json"), "utf8"));
    const section = json.sections.find((s: { id: string }) => s.id === "csv");
    expect(section.headline.figure).toMatch(/I\/O paused \d+ ms after the coordinator was killed/);
    expect(section.data.check.ok).toBe(true);
    expect(readFileSync(join(out, "tour.html"), "utf8")).toMatch(/<svg/);
  }, 300_000);
});
