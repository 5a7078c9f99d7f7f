import { spawn } from "node:child_process";
import { once } from "node:events";
import { expect, it } from "vitest";

const BIN = new URL("../bin/hvlab.js", import.meta.url).pathname;

it("hvlab bench migrate-live --quick verifies every case and times each peer", async () => {
  const child = spawn(
    process.execPath,
    [BIN, "bench", "migrate-live", "--quick", "--time", "20", "--json"],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => {
    stdout += c.toString();
  });
  child.stderr.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  const [code] = (await once(child, "exit")) as [number];
  expect(code, stderr).toBe(0);
  const result = JSON.parse(stdout) as {
    suite: string;
    results: { case: string; impl: string; hz: number; bytesPerSecond: number | null }[];
  };
  expect(result.suite).toBe("migrate-live");
  expect(result.results.map((r) => r.impl)).toEqual([
    "hvlab live-tcp (framed, XXH64 per frame)",
    "hvlab live-tcp + every page verified",
    "hvlab live-tcp over TLS 1.3 (PSK, AES-128-GCM)",
    "raw socket pipe, no framing (peer)",
    "memory copy in-process (bound)",
    "hvlab saved-state write + read",
    "plain file write + fsync + read (peer)",
  ]);
  for (const row of result.results) {
    expect(row.hz).toBeGreaterThan(0);
    expect(row.bytesPerSecond).toBeGreaterThan(0);
  }
}, 180_000);
