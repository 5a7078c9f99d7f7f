import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hvlabAsync as hvlab } from "./support/cli.js";

// `hvlab migrate-live --handover-from`: the VHD handover a cluster run
// measured (`hvlab csv vms --json`, live.downtimeMs) is paused inside the
// live TCP migration's blackout, so the downtime measured on the wire holds it.

const BIN = new URL("../bin/hvlab.js", import.meta.url).pathname;
/** A handover far above the stop-and-copy of an idle 4 MiB guest on loopback (milliseconds; a few hundred on a loaded host). */
const HANDOVER_MS = 1500;

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-csv-live-handover-"));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** One live migration of an idle 4 MiB guest over loopback; its JSON result. */
async function migrate(
  command: string,
  extra: readonly string[],
): Promise<Record<string, unknown>> {
  const destination = spawn(process.execPath, [BIN, command, "--listen", "0"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = once(destination, "exit");
  let out = "";
  const port = await new Promise<number>((resolve, reject) => {
    destination.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
      if (match) resolve(Number(match[1]));
    });
    destination.once("exit", () => reject(new Error(`the destination exited: ${out}`)));
  });
  const args =
    command === "migrate"
      ? ["--guest", "4MiB", "--dirty-rate", "0", "--bandwidth", "unlimited"]
      : ["--guest", "4MiB", "--rate", "0"];
  const run = await hvlab([command, "--to", `127.0.0.1:${port}`, ...args, "--json", ...extra]);
  expect(run.stderr).toBe("");
  expect(run.code).toBe(0);
  await exited;
  return JSON.parse(run.stdout) as Record<string, unknown>;
}

const downtimeOf = (r: Record<string, unknown>) =>
  Number((r.summary as Record<string, unknown>).downtime);

describe("migrate-live --handover-from", () => {
  it("pauses the guest for the measured VHD handover inside the blackout, in migrate-live and migrate --to", async () => {
    const measured = join(dir, "vms.json");
    writeFileSync(measured, JSON.stringify({ live: { downtimeMs: HANDOVER_MS } }));
    const plain = await migrate("migrate-live", []);
    const withHandover = await migrate("migrate-live", ["--handover-from", measured]);
    expect(downtimeOf(plain)).toBeLessThan(HANDOVER_MS);
    expect(downtimeOf(withHandover)).toBeGreaterThanOrEqual(HANDOVER_MS);
    expect(downtimeOf(withHandover)).toBeGreaterThanOrEqual(downtimeOf(plain));
    // hvlab migrate's live mode takes the same option through the same parser.
    const viaMigrate = await migrate("migrate", ["--handover-from", measured]);
    expect(downtimeOf(viaMigrate)).toBeGreaterThanOrEqual(HANDOVER_MS);
  }, 120_000);

  it("refuses a file that is not a cluster run's result with one line, exit 2, before migrating", async () => {
    const bad = join(dir, "bad.json");
    for (const [text, why] of [
      ["{nope", "not JSON (the output of hvlab csv vms --json)"],
      [
        JSON.stringify({ live: { downtimeMs: -1 } }),
        "live.downtimeMs is missing or not 0 to 3600000 ms (the output of hvlab csv vms --json)",
      ],
      [
        JSON.stringify({ quick: { lunMoveMs: 5 } }),
        "live.downtimeMs is missing or not 0 to 3600000 ms (the output of hvlab csv vms --json)",
      ],
    ] as const) {
      writeFileSync(bad, text);
      // Port 9: nothing is contacted, the file is refused first.
      const run = await hvlab(["migrate-live", "--to", "127.0.0.1:9", "--handover-from", bad]);
      expect(run.code).toBe(2);
      expect(run.stdout).toBe("");
      expect(run.stderr).toBe(`hvlab: --handover-from ${bad}: ${why}\n`);
    }
    const missing = await hvlab([
      "migrate-live",
      "--to",
      "127.0.0.1:9",
      "--handover-from",
      join(dir, "missing.json"),
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^hvlab: --handover-from .*missing\.json: ENOENT/);
  }, 60_000);
});
