import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseTrace } from "../src/power/trace.js";
import { hvlab } from "./support/cli.js";
import { fileTempDir } from "./support/temp.js";

const dir = fileTempDir("power");
const file = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

describe("hvlab power", () => {
  it("simulates a policy against no parking, as JSON and as CSV", () => {
    const args = ["power", "simulate", "--utilization", "20", "--duration", "0.5", "--seed", "3"];
    const json = hvlab([...args, "--json"]);
    expect(json.stderr).toBe("");
    expect(json.status).toBe(0);
    const out = JSON.parse(json.stdout) as {
      savingsPercent: number;
      claim: string;
      result: { policy: string; energyJ: number; wattsSource: string; residency: unknown[] };
      baseline: { policy: string; energyJ: number };
    };
    expect(out.result.policy).toBe("parking");
    expect(out.baseline.policy).toBe("none");
    expect(out.savingsPercent).toBeCloseTo(
      (1 - out.result.energyJ / out.baseline.energyJ) * 100,
      9,
    );
    expect(out.result.wattsSource).toContain("nehalem-ep");
    expect(out.claim).toContain("10-18 %");
    const csv = hvlab([...args, "--csv"]);
    const lines = csv.stdout.trimEnd().split("\r\n");
    expect(lines).toHaveLength(3);
    expect(lines[0]?.split(",")).toContain("savings (%)");
    const text = hvlab(args);
    expect(text.stdout).toContain("Microsoft claimed 10-18 %");
    expect(text.stdout).toContain("watts are presets, not measurements");
  });

  it("replays a trace and takes a processor table of the user's", () => {
    const trace = file("trace.csv", "time,cpu0,cpu1\n0.1,50,10\n0.2,80,0\n0.3,20,20\n");
    const model = file(
      "cpu.json",
      JSON.stringify({
        name: "tiny",
        sockets: 1,
        coresPerSocket: 2,
        threadsPerCore: 2,
        numaNodes: 1,
        cstates: [
          { name: "C1", exitLatencyUs: 2, targetResidencyUs: 4, watts: 2 },
          { name: "C6", exitLatencyUs: 100, targetResidencyUs: 400, watts: 0.2 },
        ],
        pstates: [{ name: "P0", mhz: 3000, watts: 8 }],
        platformWatts: 20,
      }),
    );
    const run = hvlab([
      "power",
      "simulate",
      "--processor-file",
      model,
      "--load",
      "trace",
      "--trace",
      trace,
      "--json",
    ]);
    expect(run.stderr).toBe("");
    const out = JSON.parse(run.stdout) as {
      result: { processors: number; seconds: number; wattsSource: string };
    };
    expect(out.result.processors).toBe(4);
    expect(out.result.seconds).toBeCloseTo(0.3, 9);
    expect(out.result.wattsSource).toContain("'tiny'");
  });

  it("sweeps two parking parameters on two workers", () => {
    const run = hvlab([
      "power",
      "sweep",
      "--duration",
      "0.3",
      "--x-values",
      "0,100",
      "--y",
      "CPDistribution",
      "--y-values",
      "50,90",
      "--json",
    ]);
    expect(run.stderr).toBe("");
    const out = JSON.parse(run.stdout) as {
      x: string;
      y: string;
      workers: number;
      points: { x: number; y: number; savingsPercent: number }[];
    };
    expect([out.x, out.y, out.workers]).toEqual(["CPMinCores", "CPDistribution", 2]);
    expect(out.points.map((p) => [p.x, p.y])).toEqual([
      [0, 50],
      [0, 90],
      [100, 50],
      [100, 90],
    ]);
    // CPMinCores 100 parks nothing: no savings at all.
    expect(out.points[2]?.savingsPercent).toBe(0);
    expect(out.points[0]?.savingsPercent).toBeGreaterThan(0);
  });

  it("records this machine's utilization from /proc/stat into a trace it can replay", () => {
    const out = join(dir, "recorded.csv");
    const run = hvlab([
      "power",
      "record",
      "--seconds",
      "0.3",
      "--interval-ms",
      "100",
      "--out",
      out,
    ]);
    expect(run.status).toBe(0);
    const trace = parseTrace(readFileSync(out, "utf8"));
    expect(trace.times.length).toBe(3);
    expect(trace.columns).toBeGreaterThanOrEqual(1);
  });

  it.each([
    [["--tick-us", "0"], "tick 0 us must be"],
    [["--tick-us", "-2"], "tick -2 us must be"],
    [["--cp-min-cores", "120"], "CPMinCores 120"],
    [["--cp-min-cores", "60", "--cp-max-cores", "50"], "CPMinCores 60 is above CPMaxCores 50"],
    [["--utilization", "abc"], '"abc" is not a number'],
    [["--processor", "p4"], "unknown processor 'p4'"],
    [["--vmq-queues", "4", "--vmq-steering", "random"], "--vmq-steering must be"],
    [["--json", "--csv"], "one of --json and --csv"],
  ])("refuses simulate %j with one line and exit code 2", (args, message) => {
    const run = hvlab(["power", "simulate", "--duration", "0.1", ...args]);
    expect(run.status).toBe(2);
    const lines = run.stderr
      .trim()
      .split("\n")
      .filter((l) => !l.startsWith("(run with"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(message);
    expect(run.stdout).toBe("");
  });

  it.each([
    ["missing.csv", null, "cannot read --trace"],
    ["short.csv", "time,cpu0,cpu1\n0.1,10\n", "line 2 has 2 cells but the header has 3"],
    ["word.csv", "time,cpu0\n0.1,busy\n", "line 2, column 2 (cpu0): 'busy' is not a number"],
    [
      "wide.csv",
      `time,${Array.from({ length: 20 }, (_, i) => `cpu${i}`).join(",")}\n0.1${",5".repeat(20)}\n`,
      "the trace has 20 processors but the machine has 16",
    ],
  ])("refuses the trace %s with one line and exit code 2", (name, text, message) => {
    const path = text === null ? join(dir, name) : file(name, text);
    const run = hvlab(["power", "simulate", "--load", "trace", "--trace", path]);
    expect(run.status).toBe(2);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toContain(message);
  });

  it("refuses a sweep over an unknown parameter and a processor table with a bad field", () => {
    const sweep = hvlab(["power", "sweep", "--x", "CPTurbo"]);
    expect(sweep.status).toBe(2);
    expect(sweep.stderr).toContain("unknown sweep parameter 'CPTurbo'");
    const bad = file("bad.json", JSON.stringify({ name: "x", sockets: 0 }));
    const model = hvlab(["power", "simulate", "--processor-file", bad]);
    expect(model.status).toBe(2);
    expect(model.stderr).toContain("sockets");
    expect(model.stderr.trim().split("\n")).toHaveLength(1);
  });
});
