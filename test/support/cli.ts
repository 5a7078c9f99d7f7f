import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";

/** What one run of the built `hvlab` command did. */
export interface CliRun {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the built `hvlab` command (bin/hvlab.js) with arguments. */
export function hvlab(args: readonly string[], timeoutMs = 120_000): CliRun {
  const result = spawnSync(
    process.execPath,
    [join(import.meta.dirname, "..", "..", "bin", "hvlab.js"), ...args],
    {
      encoding: "utf8",
      timeout: timeoutMs,
      env: { ...process.env, HVLAB_DEBUG: "" },
    },
  );
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Whether a tool is on PATH. */
export function hasTool(tool: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" }).status === 0;
}

/**
 * For tests that need an outside tool: skip (with the tool's name) when it is
 * missing, except in CI, where a missing tool is a failure.
 */
export function requireTool(tool: string): boolean {
  if (hasTool(tool)) return true;
  if (process.env.CI === "true") {
    throw new Error(`${tool} is required in CI but is not installed`);
  }
  console.warn(`skipping: ${tool} is not installed`);
  return false;
}

/**
 * Runs the built `hvlab` command to its end without blocking the event loop,
 * for tests that serve sockets in this process meanwhile.
 */
export async function hvlabAsync(
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
  timeoutMs = 300_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const bin = join(import.meta.dirname, "..", "..", "bin", "hvlab.js");
  const child = spawn(process.execPath, [bin, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
    timeout: timeoutMs,
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, stdout, stderr };
}
