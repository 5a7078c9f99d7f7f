import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { AutoConverge } from "../src/migration/auto-converge.js";

// The command runs the compiled CLI: `npm test` builds first.
function hvlab(...args: string[]) {
  const run = spawnSync(process.execPath, ["bin/hvlab.js", ...args], { encoding: "utf8" });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

const SMALL = ["--guest", "16MiB", "--dirty-rate", "20000", "--bandwidth", "100Mbit", "--json"];

describe("hvlab migrate takes QEMU's parameters by their names", () => {
  it("--multifd alone means QEMU's default of 2 channels; a count is taken as given", () => {
    const alone = hvlab("migrate", ...SMALL, "--multifd");
    expect(alone.code, alone.stderr).toBe(0);
    expect(JSON.parse(alone.stdout).summary.hvlab["multifd-channels"]).toBe(2);
    const three = hvlab("migrate", ...SMALL, "--multifd", "3");
    expect(JSON.parse(three.stdout).summary.hvlab["multifd-channels"]).toBe(3);
    const none = hvlab("migrate", ...SMALL);
    expect(JSON.parse(none.stdout).summary.hvlab["multifd-channels"]).toBe(0);
  });

  it("--cpu-throttle-initial, --cpu-throttle-increment and --max-cpu-throttle set the steps", () => {
    // At 98 % the guest writes 3,000 pages/s (12 MiB/s) over 7.5 MB/s: not
    // converged, but every step is taken first.
    const run = hvlab(
      "migrate",
      "--guest",
      "256MiB",
      "--mode",
      "metadata",
      "--workload",
      "uniform",
      "--dirty-rate",
      "150000",
      "--bandwidth",
      "60Mbit",
      "--downtime-limit",
      "200",
      "--auto-converge",
      "--cpu-throttle-initial",
      "30",
      "--cpu-throttle-increment",
      "25",
      "--max-cpu-throttle",
      "98",
      "--json",
    );
    expect(run.stderr).toMatch(/not-converged/);
    const steps = [
      ...new Set(
        (JSON.parse(run.stdout).rounds as { "cpu-throttle-percentage": number }[])
          .map((r) => r["cpu-throttle-percentage"])
          .filter((p) => p > 0),
      ),
    ];
    expect(steps).toEqual([30, 55, 80, 98]);
  });

  it("refuses an unknown --give-up rule in one line", () => {
    const run = hvlab("migrate", ...SMALL, "--give-up", "sometimes");
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(
      "hvlab: unknown --give-up rule 'sometimes' (one of projection, never)\n",
    );
  });
});

describe("auto-converge's trigger and tailslow (QEMU's mig_throttle_guest_down)", () => {
  const base = {
    autoConverge: true,
    throttleInitial: 20,
    throttleIncrement: 10,
    throttleMax: 99,
  };

  // Each period here lasts 1,001 ms: QEMU checks once more than 1,000 ms have passed.
  it("throttles when dirtied bytes pass the trigger threshold of sent bytes, twice", () => {
    const strict = new AutoConverge({
      ...base,
      throttleTriggerThreshold: 80,
      throttleTailslow: false,
    });
    // 70 % of sent: under an 80 % threshold, never throttled.
    for (let i = 0; i < 4; i++) expect(strict.afterSync(70, 100, 1001)).toBe(false);
    expect(strict.percentage).toBe(0);
    // 90 %: the second period over it throttles.
    expect(strict.afterSync(90, 100, 1001)).toBe(false);
    expect(strict.afterSync(90, 100, 1001)).toBe(true);
    expect(strict.percentage).toBe(20);
  });

  it("with tailslow, a step is only what brings dirtied bytes to the threshold", () => {
    const slow = new AutoConverge({
      ...base,
      throttleTriggerThreshold: 50,
      throttleTailslow: true,
    });
    slow.afterSync(100, 100, 1001);
    slow.afterSync(100, 100, 1001);
    expect(slow.percentage).toBe(20);
    // Dirtied 55 of 100 sent at 20 %: cpu now 80, ideal 80 x 50 / 55 = 72.73,
    // a step of 7.27 (under the increment of 10).
    slow.afterSync(55, 100, 1001);
    slow.afterSync(55, 100, 1001);
    expect(slow.percentage).toBeCloseTo(20 + (80 - (80 * 50) / 55), 10);
  });
});
