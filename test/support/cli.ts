import { type ChildProcess, spawn, spawnSync } from "node:child_process";
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

/** A started `hvlab` command: its process, what it has printed so far, and its exit. */
export interface StartedHvlab {
  readonly child: ChildProcess;
  readonly output: { stdout: string; stderr: string };
  readonly exited: Promise<number | null>;
}

/**
 * Starts the built `hvlab` command and collects its output while it runs,
 * for tests that talk to it (or signal it) before it ends.
 */
export function startHvlab(
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
  timeoutMs = 300_000,
): StartedHvlab {
  const bin = join(import.meta.dirname, "..", "..", "bin", "hvlab.js");
  const child = spawn(process.execPath, [bin, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
    timeout: timeoutMs,
  });
  const output = { stdout: "", stderr: "" };
  child.stdout?.on("data", (chunk: Buffer) => {
    output.stdout += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output.stderr += chunk.toString();
  });
  const exited = once(child, "exit").then(([code]) => code as number | null);
  return { child, output, exited };
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
  const run = startHvlab(args, env, timeoutMs);
  const code = await run.exited;
  return { code, ...run.output };
}
