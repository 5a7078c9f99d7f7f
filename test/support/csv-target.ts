import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";

/** A running `hvlab csv target` process. */
export interface TargetProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly pid: number;
  /** Its listening record. */
  readonly record: Record<string, unknown>;
  /** What it has written to stderr so far. */
  stderr(): string;
  /** Stops it by PID (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
}

/** Starts `hvlab csv target LUN ...args --json` and waits for its listening record. */
export async function startTarget(
  lun: string,
  args: readonly string[] = [],
): Promise<TargetProcess> {
  const child = spawn(
    process.execPath,
    [
      join(import.meta.dirname, "..", "..", "bin", "hvlab.js"),
      "csv",
      "target",
      lun,
      "--json",
      ...args,
    ],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  if (!child.stdout) throw new Error("csv target has no stdout");
  const lines = createInterface({ input: child.stdout });
  const record = await new Promise<{ port: number; pid: number } & Record<string, unknown>>(
    (resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`csv target did not listen within 30 s: ${stderr}`)),
        30_000,
      );
      lines.once("line", (line) => {
        clearTimeout(timer);
        resolve(JSON.parse(line));
      });
      child.once("exit", (code) => reject(new Error(`csv target exited with ${code}: ${stderr}`)));
    },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    child,
    port: record.port,
    pid: record.pid,
    record,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null) process.kill(record.pid, "SIGTERM");
      await exited;
    },
  };
}
