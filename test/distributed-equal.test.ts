import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hvlab, hvlabAsync } from "./support/cli.js";
import {
  haveRedis,
  startRedis,
  startWorkers,
  stopWorkers,
  type TestRedis,
} from "./support/redis.js";

// Local and distributed runs of the same study give the same records, point
// for point (all but timings and who ran them), through 3 worker processes.
const fixture = join(import.meta.dirname, "fixtures", "touch.lackey.gz");
const ready = haveRedis();

/** A record with its timing and run fields removed, to compare local and distributed runs. */
function withoutTimings(value: Record<string, unknown>): Record<string, unknown> {
  const { wallMs: _w, workers: _k, distributed: _d, ...rest } = value;
  return rest;
}

describe.skipIf(!ready)("a study run through Redis equals the local run", () => {
  let redis: TestRedis;
  let workers: ChildProcess[] = [];
  let dir = "";
  beforeAll(async () => {
    redis = await startRedis();
    workers = await startWorkers(redis.url, ["w1", "w2", "w3"], ["--lock-duration", "5000"]);
    dir = mkdtempSync(join(tmpdir(), "hvlab-distributed-"));
  }, 120_000);
  afterAll(async () => {
    await stopWorkers(workers);
    await redis?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("a migrate sweep, point for point, with every worker taking part", async () => {
    const grid = ["--guest", "64MiB", "--mode", "metadata", "--dirty-rates", "20000,400000"];
    const local = hvlab(["migrate", "sweep", ...grid, "--json"]);
    expect(local.status, local.stderr).toBe(0);
    const far = await hvlabAsync([
      "migrate",
      "sweep",
      ...grid,
      "--queue",
      redis.url,
      "--sweep-id",
      "equal-migrate",
      "--json",
    ]);
    expect(far.code, far.stderr).toBe(0);
    const l = JSON.parse(local.stdout) as { points: unknown[] };
    const d = JSON.parse(far.stdout) as {
      points: unknown[];
      distributed: { workers: string[]; failed: unknown[] };
    };
    expect(d.points).toHaveLength(24);
    expect(d.points).toEqual(l.points);
    expect(withoutTimings(d)).toEqual(withoutTimings(l));
    expect(d.distributed.failed).toEqual([]);
    expect(d.distributed.workers.length).toBeGreaterThanOrEqual(2);
    // CSV goes through the same writer.
    const csvLocal = hvlab(["migrate", "sweep", ...grid, "--csv"]);
    const csvFar = await hvlabAsync([
      "migrate",
      "sweep",
      ...grid,
      "--queue",
      redis.url,
      "--sweep-id",
      "equal-migrate",
      "--csv",
    ]);
    expect(csvFar.stdout).toBe(csvLocal.stdout);
    expect(csvFar.stderr).toContain("24 points were already finished");
  }, 180_000);

  it("a migrate sweep in batches of points, point for point", async () => {
    const grid = ["--guest", "64MiB", "--mode", "metadata", "--dirty-rates", "20000,400000"];
    const local = hvlab(["migrate", "sweep", ...grid, "--json"]);
    expect(local.status, local.stderr).toBe(0);
    const far = await hvlabAsync([
      "migrate",
      "sweep",
      ...grid,
      "--queue",
      redis.url,
      "--sweep-id",
      "equal-batches",
      "--points-per-job",
      "5",
      "--json",
    ]);
    expect(far.code, far.stderr).toBe(0);
    expect(far.stderr).toContain("24 points in 5 jobs");
    const l = JSON.parse(local.stdout) as Record<string, unknown>;
    const d = JSON.parse(far.stdout) as Record<string, unknown> & { points: unknown[] };
    expect(d.points).toHaveLength(24);
    expect(withoutTimings(d)).toEqual(withoutTimings(l));
  }, 180_000);

  it("a paging comparison over two traces, configuration for configuration", async () => {
    const plain = join(dir, "strided.trace");
    const lines: string[] = [];
    for (let i = 0; i < 20_000; i++) {
      const address = 0x7f0000000000 + ((i * 4160) % (64 * 1024 * 1024));
      lines.push(`${i % 5 === 0 ? "W" : "R"} ${address.toString(16)}`);
    }
    writeFileSync(plain, `${lines.join("\n")}\n`);
    const args = ["paging", "compare", "--trace", fixture, "--trace", plain, "--guest", "4GiB"];
    const local = hvlab([...args, "--json"]);
    expect(local.status, local.stderr).toBe(0);
    const far = await hvlabAsync([
      ...args.slice(0, 4),
      "--trace",
      `file://${plain}`,
      "--guest",
      "4GiB",
      "--queue",
      redis.url,
      "--sweep-id",
      "equal-paging",
      "--json",
    ]);
    expect(far.code, far.stderr).toBe(0);
    const l = JSON.parse(local.stdout) as { source: string; rows: unknown[] }[];
    const d = JSON.parse(far.stdout) as { source: string; rows: unknown[] }[];
    expect(l).toHaveLength(2);
    expect(d).toHaveLength(2);
    expect(d[0]).toEqual(l[0]);
    // The second trace was named by URL on the distributed run: all else is equal.
    expect(d[1]?.source).toBe(`file://${plain}`);
    expect({ ...d[1], source: plain }).toEqual(l[1]);
    expect(d[1]?.rows).toHaveLength(5);
  }, 180_000);

  it("a paging comparison over a trace every worker fetches by http URL", async () => {
    const gz = readFileSync(fixture);
    const server = createServer((req, res) => {
      if (req.url !== "/touch.lackey.gz") {
        res.writeHead(404);
        res.end();
        return;
      }
      res.writeHead(200, { "content-length": gz.length });
      res.end(gz);
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/touch.lackey.gz`;
    try {
      const args = ["paging", "compare", "--guest", "4GiB", "--json"];
      const local = hvlab([...args, "--trace", fixture]);
      expect(local.status, local.stderr).toBe(0);
      const far = await hvlabAsync([
        ...args,
        "--trace",
        url,
        "--queue",
        redis.url,
        "--sweep-id",
        "equal-paging-url",
      ]);
      expect(far.code, far.stderr).toBe(0);
      const l = JSON.parse(local.stdout) as { source: string; rows: unknown[] };
      const d = JSON.parse(far.stdout) as { source: string; rows: unknown[] };
      expect(d.source).toBe(url);
      expect(d.rows).toHaveLength(5);
      expect({ ...d, source: fixture }).toEqual(l);
      // A URL that is not there fails its points with the server's answer, not a hang.
      const missing = await hvlabAsync([
        ...args,
        "--trace",
        url.replace("touch", "nothing"),
        "--queue",
        redis.url,
        "--sweep-id",
        "equal-paging-404",
        "--attempts",
        "1",
      ]);
      expect(missing.stderr).toMatch(/nothing.lackey.gz: HTTP 404/);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  }, 180_000);

  it("a power sweep, point for point and its baseline", async () => {
    const args = [
      "power",
      "sweep",
      "--duration",
      "0.3",
      "--x-values",
      "0,50,100",
      "--y",
      "CPDistribution",
      "--y-values",
      "50,90",
      "--json",
    ];
    const local = hvlab(args);
    expect(local.status, local.stderr).toBe(0);
    const far = await hvlabAsync([...args, "--queue", redis.url, "--sweep-id", "equal-power"]);
    expect(far.code, far.stderr).toBe(0);
    const l = JSON.parse(local.stdout) as Record<string, unknown> & { points: unknown[] };
    const d = JSON.parse(far.stdout) as Record<string, unknown> & { points: unknown[] };
    expect(d.points).toHaveLength(6);
    expect(withoutTimings(d)).toEqual(withoutTimings(l));
  }, 180_000);
});
