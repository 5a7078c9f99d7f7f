import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { afterEach, describe, expect, it } from "vitest";
import { hvlab } from "./support/cli.js";

const BIN = new URL("../bin/hvlab.js", import.meta.url).pathname;
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await once(child, "exit");
    }
  }
});

describe("--insecure on the command line", () => {
  it.each([
    ["migrate-live", "--listen", "0", "--host", "0.0.0.0"],
    ["migrate", "--listen", "0", "--host", "0.0.0.0", "--mode", "content"],
  ])("%s beyond loopback without TLS is refused with how to enable it (exit 2)", (...args) => {
    const run = hvlab(args, 60_000);
    expect(run.status).toBe(2);
    expect(run.stdout).toBe("");
    expect(run.stderr).toMatch(
      /^hvlab: refusing to listen on 0\.0\.0\.0 without TLS: .*give --tls-creds DIR or --tls-psk FILE \(see docs\/tls\.md\), or --insecure to accept the risk\n$/,
    );
  });

  it("with --insecure it listens, says so on stderr, and records it in the JSON report", async () => {
    const destination = spawn(
      process.execPath,
      [BIN, "migrate-live", "--listen", "0", "--host", "0.0.0.0", "--insecure", "--json"],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    children.push(destination);
    let stdout = "";
    let stderr = "";
    destination.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    destination.stderr.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    const exited = once(destination, "exit");
    const deadline = performance.now() + 30_000;
    // stdout and stderr are two pipes: the warning may arrive after the listening line.
    while (!/listening on/.test(stdout) || !stderr.endsWith("\n")) {
      expect(performance.now()).toBeLessThan(deadline);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    const port = /^listening on 0\.0\.0\.0:(\d+) over plain TCP \(--insecure\)$/m.exec(stdout)?.[1];
    expect(port).toBeDefined();
    expect(stderr).toBe(
      "hvlab: --insecure: listening on 0.0.0.0 without TLS; anyone who reaches it can push or read a guest\n",
    );
    const source = hvlab(
      [
        "migrate-live",
        "--to",
        `127.0.0.1:${port}`,
        "--guest",
        "1MiB",
        "--rate",
        "0",
        "--threads",
        "0",
      ],
      60_000,
    );
    expect(source.status, source.stderr).toBe(0);
    const [code] = (await exited) as [number];
    expect(code).toBe(0);
    const report = JSON.parse(stdout.slice(stdout.indexOf("{"))) as Record<string, unknown>;
    expect(report).toMatchObject({
      status: "completed",
      verified: true,
      transport: "plain TCP (--insecure)",
      insecure: true,
    });
  });
});
