import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { parseHostPort } from "../src/cli/commands/migrate-live.js";
import { UsageError } from "../src/cli/options.js";
import { BandwidthMeter } from "../src/migration/live/bandwidth-meter.js";
import { TokenBucket } from "../src/transport/token-bucket.js";
import { hvlabAsync as hvlab } from "./support/cli.js";

const BIN = new URL("../bin/hvlab.js", import.meta.url).pathname;

describe("hvlab migrate-live refuses bad input with one line", () => {
  it("a port in use", async () => {
    const taken = createServer();
    taken.listen(0, "127.0.0.1");
    await once(taken, "listening");
    const address = taken.address();
    if (!address || typeof address === "string") throw new Error("not listening");
    const run = await hvlab(["migrate-live", "--listen", String(address.port)]);
    expect(run.code).not.toBe(0);
    expect(run.stdout).toBe("");
    expect(run.stderr).toBe(`hvlab: port ${address.port} on 127.0.0.1 is in use\n`);
    taken.close();
  });

  it("a bad HOST:PORT", async () => {
    for (const bad of ["nohost", "host:0", "host:65536", "host:", ":x"]) {
      const run = await hvlab(["migrate-live", "--to", bad]);
      expect(run.code).toBe(2);
      expect(run.stdout).toBe("");
      expect(run.stderr).toBe(
        `hvlab: bad address "${bad}": expected HOST:PORT with a port from 1 to 65535\n`,
      );
    }
  });

  it("neither or both of --listen and --to", async () => {
    for (const args of [[], ["--listen", "0", "--to", "127.0.0.1:1"]]) {
      const run = await hvlab(["migrate-live", ...args]);
      expect(run.code).toBe(2);
      expect(run.stderr).toBe(
        "hvlab: give exactly one of --listen PORT (destination) and --to HOST:PORT (source)\n",
      );
    }
  });

  it("an unknown option or a bad size", async () => {
    const unknown = await hvlab(["migrate-live", "--to", "127.0.0.1:9", "--frobnicate"]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stdout).toBe("");
    expect(unknown.stderr.split("\n")[0]).toBe("hvlab: unknown option '--frobnicate'");
    const size = await hvlab(["migrate-live", "--to", "127.0.0.1:9", "--guest", "1049000"]);
    expect(size.code).toBe(2);
    expect(size.stderr).toBe("hvlab: --guest 1049000 bytes is not a whole number of 4 KiB pages\n");
  });

  it("nobody listening: the migration fails with the reason", async () => {
    const free = createServer();
    free.listen(0, "127.0.0.1");
    await once(free, "listening");
    const address = free.address();
    if (!address || typeof address === "string") throw new Error("not listening");
    await new Promise<void>((resolve) => free.close(() => resolve()));
    const run = await hvlab([
      "migrate-live",
      "--to",
      `127.0.0.1:${address.port}`,
      "--guest",
      "1MiB",
      "--json",
    ]);
    expect(run.code).toBe(1);
    expect(JSON.parse(run.stdout).summary).toMatchObject({
      status: "failed",
      hvlab: { mode: "live-tcp" },
    });
    expect(run.stderr).toBe(
      `hvlab: migration failed: cannot migrate to 127.0.0.1:${address.port}: connection refused\n`,
    );
  });
});

describe("hvlab migrate --listen / --to", () => {
  it("runs the live mode through hvlab migrate's options", async () => {
    const destination = spawn(process.execPath, [BIN, "migrate", "--listen", "0"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = once(destination, "exit");
    let out = "";
    const port = await new Promise<number>((resolve) => {
      destination.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const match = /listening on 127\.0\.0\.1:(\d+)/.exec(out);
        if (match) resolve(Number(match[1]));
      });
    });
    const run = await hvlab([
      "migrate",
      "--to",
      `127.0.0.1:${port}`,
      "--guest",
      "16MiB",
      "--dirty-rate",
      "20000",
      "--bandwidth",
      "unlimited",
      "--policy",
      "hyperv",
      "--json",
    ]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const result = JSON.parse(run.stdout);
    expect(result.summary).toMatchObject({
      status: "completed",
      hvlab: { mode: "live-tcp", verified: true },
    });
    const [code] = (await exited) as [number];
    expect(code).toBe(0);
    const refused = await hvlab(["migrate", "--to", `127.0.0.1:${port}`, "--policy", "xen"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toBe(
      "hvlab: the live mode stops by the qemu or hyperv rule, not xen's\n",
    );
  });
});

describe("addresses", () => {
  it("parses HOST:PORT, [v6]:PORT and a bare port", () => {
    expect(parseHostPort("10.0.0.2:4444")).toEqual({ host: "10.0.0.2", port: 4444 });
    expect(parseHostPort("[::1]:80")).toEqual({ host: "::1", port: 80 });
    expect(parseHostPort("migrate.example:1")).toEqual({ host: "migrate.example", port: 1 });
    expect(parseHostPort("5000")).toEqual({ host: "127.0.0.1", port: 5000 });
    expect(() => parseHostPort("a:b:c")).toThrowError(UsageError);
  });
});

describe("link throttling and bandwidth windows", () => {
  it("a token bucket holds the long-run rate for any frame size", () => {
    let now = 0;
    const bucket = new TokenBucket(1_000_000, 100_000, () => now);
    let waited = 0;
    for (let i = 0; i < 100; i++) {
      const wait = bucket.reserve(50_000);
      waited += wait;
      now += wait;
    }
    // 5 MB at 1 MB/s after a 100 KB burst: 4.9 s of waiting.
    expect(waited).toBeCloseTo(4900, 6);
    expect(() => new TokenBucket(0)).toThrowError(RangeError);
  });

  it("bandwidth is measured over windows of at least 100 ms, as QEMU does", () => {
    let now = 0;
    const meter = new BandwidthMeter(() => now);
    now = 50;
    meter.record(1_000_000);
    // No window closed yet: the running rate (1 MB in 50 ms).
    expect(meter.estimate()).toBeCloseTo(20_000_000, 3);
    now = 125;
    meter.record(1_500_000);
    // The window closed at 125 ms with 2.5 MB: 20 MB/s.
    expect(meter.estimate()).toBeCloseTo(20_000_000, 3);
    now = 200;
    meter.record(10);
    expect(meter.estimate()).toBeCloseTo(20_000_000, 3);
    expect(meter.total).toBe(2_500_010);
  });
});
