import type { ChildProcess } from "node:child_process";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hvlabAsync, requireTool } from "./support/cli.js";
import {
  haveRedis,
  startRedis,
  startWorkers,
  stopWorkers,
  type TestRedis,
  workerOutput,
} from "./support/redis.js";

// A password in the queue URL is used and never shown; rediss:// reaches a
// Redis that speaks TLS only, its certificate checked against a CA.
const ready = haveRedis() && requireTool("openssl");
const PASSWORD = "s3cret-Pa55word";
const POWER = ["power", "sweep", "--duration", "0.2", "--x-values", "0,100", "--y-values", "50"];

describe.skipIf(!ready)("queue URLs with a password and with TLS", () => {
  let dir = "";
  const servers: TestRedis[] = [];
  const workers: ChildProcess[] = [];
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "hvlab-redis-tls-"));
  });
  afterAll(async () => {
    await stopWorkers(workers);
    for (const s of servers) await s.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("redis://:password@host works, and the password is in no output, message or report", async () => {
    const redis = await startRedis({ password: PASSWORD });
    servers.push(redis);
    expect(redis.url).toContain(PASSWORD);
    const pair = await startWorkers(redis.url, ["p1"], ["--lock-duration", "5000"]);
    workers.push(...pair);
    const report = join(dir, "sweep.html");
    const sweep = await hvlabAsync([
      "migrate",
      "sweep",
      "--guest",
      "64MiB",
      "--mode",
      "metadata",
      "--dirty-rates",
      "20000",
      "--bandwidths",
      "1Gbit",
      "--downtime-limits",
      "300",
      "--queue",
      redis.url,
      "--sweep-id",
      "secret",
      "--report",
      report,
      "--json",
    ]);
    expect(sweep.code, sweep.stderr).toBe(0);
    expect((JSON.parse(sweep.stdout) as { points: unknown[] }).points).toHaveLength(3);
    const status = await hvlabAsync(["queue", "status", "--queue", redis.url, "--all"]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain("p1");
    expect(status.stdout).toContain("redis://:***@127.0.0.1");
    const wrong = await hvlabAsync([
      "queue",
      "status",
      "--queue",
      redis.url.replace(PASSWORD, `${PASSWORD}x`),
    ]);
    expect(wrong.code).not.toBe(0);
    const bad = await hvlabAsync(["queue", "status", "--queue", `http://:${PASSWORD}@host`]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("redis: or rediss:");
    const everything = [
      sweep.stdout,
      sweep.stderr,
      status.stdout,
      status.stderr,
      wrong.stdout,
      wrong.stderr,
      bad.stderr,
      readFileSync(report, "utf8"),
      ...pair.map(workerOutput),
    ].join("\n");
    expect(everything).toContain("***");
    expect(everything).not.toContain(PASSWORD);
    expect(everything).not.toContain(encodeURIComponent(PASSWORD));
  }, 120_000);

  it("rediss:// reaches a TLS-only Redis whose certificate a CA vouches for", async () => {
    const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
    run(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "1",
      "-subj",
      "/CN=hvlab test CA",
    );
    run(
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
      "-subj",
      "/CN=localhost",
    );
    writeFileSync(join(dir, "ext"), "subjectAltName=DNS:localhost\n");
    run(
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "server.pem",
      "-days",
      "1",
      "-extfile",
      "ext",
    );
    const redis = await startRedis({
      password: PASSWORD,
      tls: { cert: join(dir, "server.pem"), key: join(dir, "server.key"), ca: join(dir, "ca.pem") },
    });
    servers.push(redis);
    expect(redis.url.startsWith("rediss://")).toBe(true);
    const env = { NODE_EXTRA_CA_CERTS: join(dir, "ca.pem") };
    const pair = await startWorkers(redis.url, ["t1"], ["--lock-duration", "5000"], env);
    workers.push(...pair);
    const local = await hvlabAsync([...POWER, "--json"]);
    const far = await hvlabAsync(
      [...POWER, "--json", "--queue", redis.url, "--sweep-id", "tls"],
      env,
    );
    expect(far.code, far.stderr).toBe(0);
    const strip = (text: string) => {
      const {
        wallMs: _w,
        workers: _k,
        distributed: _d,
        ...rest
      } = JSON.parse(text) as Record<string, unknown>;
      return rest;
    };
    expect(strip(far.stdout)).toEqual(strip(local.stdout));
    // Without the CA the certificate is refused: TLS is checked, not only spoken.
    const untrusted = await hvlabAsync(["queue", "status", "--queue", redis.url], {}, 8_000);
    expect(untrusted.code).not.toBe(0);
    expect(`${far.stderr}${untrusted.stderr}`).not.toContain(PASSWORD);
  }, 120_000);
});
