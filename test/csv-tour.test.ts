import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { testTempDir } from "./support/temp.js";

const run = promisify(execFile);

interface Section {
  id: string;
  headline: { figure: string; met: boolean };
  tables: { title: string; columns: string[]; rows: (string | number | null)[][] }[];
  data: {
    pauseMs: number;
    check: { ok: boolean };
    acks: { checked: number; intact: number };
    vms: {
      live: { downtimeMs: number };
      quick: { downtimeMs: number; lunMoveMs: number };
      check: { ok: boolean };
      disks: { structure: { ok: boolean }; acknowledgedBlocks: number; intactBlocks: number }[];
    };
  };
}

describe("the tour's CSV section", () => {
  it("runs the failover scenario and the VM scenario, with live migration's handover beside quick migration's LUN move", async () => {
    const out = testTempDir("tour");
    const hvlab = join(import.meta.dirname, "..", "bin", "hvlab.js");
    await run("node", [hvlab, "tour", "--quick", "--only", "csv", "--out", out], {
      maxBuffer: 2 ** 26,
    });
    const json = JSON.parse(readFileSync(join(out, "tour.json"), "utf8")) as {
      sections: Section[];
    };
    const csv = json.sections.find((s) => s.id === "csv") as Section;
    // Nothing lost in either scenario (the pause's 2x target depends on the host's load).
    expect(csv.data.check.ok).toBe(true);
    expect(csv.data.acks.intact).toBe(csv.data.acks.checked);
    expect(csv.data.vms.check.ok).toBe(true);
    for (const d of csv.data.vms.disks) {
      expect(d.structure.ok).toBe(true);
      expect(d.intactBlocks).toBe(d.acknowledgedBlocks);
    }
    expect(csv.headline.figure).toMatch(/after the coordinator was killed/);
    expect(csv.headline.figure).toMatch(/live migration paused \d+ ms \(VHD handover\)/);
    const side = csv.tables.find((t) => t.title === "Live against quick migration (ms)");
    expect(side?.columns).toEqual(["measure", "live (VHD handover)", "quick (LUN move)"]);
    const downtime = side?.rows.find((r) => String(r[0]).startsWith("downtime"));
    expect(downtime?.[1]).toBe(Number(csv.data.vms.live.downtimeMs.toFixed(1)));
    expect(downtime?.[2]).toBe(Number(csv.data.vms.quick.downtimeMs.toFixed(1)));
    const lunMove = side?.rows.find((r) => String(r[0]).startsWith("LUN offline"));
    expect(lunMove?.[1]).toBeNull();
    expect(Number(lunMove?.[2])).toBeGreaterThan(0);
    // The LUN move is part of quick migration's downtime, which live migration does not pay.
    expect(csv.data.vms.quick.downtimeMs).toBeGreaterThan(csv.data.vms.quick.lunMoveMs);
    expect(csv.tables.map((t) => t.title)).toContain("Failover");
    expect(csv.data.pauseMs).toBeGreaterThan(0);
    const html = readFileSync(join(out, "tour.html"), "utf8");
    expect(html).toMatch(/Live against quick migration/);
  }, 300_000);
});
