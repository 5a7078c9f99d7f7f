import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants, existsSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { QmpClient, QmpConnectionError } from "./qmp-client.js";
import { findExecutable, tiedToParent, whyNotExecutable } from "./tied-launch.js";

/** The accelerators hvlab starts QEMU with. */
export const ACCELERATORS = ["tcg", "kvm"] as const;
/** An accelerator. */
export type Accelerator = (typeof ACCELERATORS)[number];

/** The QEMU binary hvlab runs (Debian package qemu-system-x86). */
export const QEMU_BINARY = "qemu-system-x86_64";

/** QEMU could not be started or did not come up: the message says why. */
export class QemuStartError extends Error {
  override name = "QemuStartError";
}

/** How to start one QEMU process running the write guest. */
export interface QemuLaunch {
  /** The guest image (`hvlab qemu guest` writes it). */
  readonly kernel: string;
  readonly ramBytes: number;
  readonly accel: Accelerator;
  /** Folder for the QMP socket. */
  readonly dir: string;
  /** A name for the socket and messages ("source", "destination"). */
  readonly name: string;
  /** Start as a migration destination waiting for `migrate-incoming`. */
  readonly incoming?: boolean;
  /** The binary; default {@link QEMU_BINARY} from PATH. */
  readonly binary?: string;
}

/** Throws a {@link QemuStartError} saying why `accel` cannot run here. */
export function checkAccelerator(accel: Accelerator): void {
  if (accel !== "kvm") return;
  if (!existsSync("/dev/kvm"))
    throw new QemuStartError(
      "--accel kvm: /dev/kvm does not exist (no KVM on this machine); use --accel tcg",
    );
  try {
    accessSync("/dev/kvm", constants.R_OK | constants.W_OK);
  } catch {
    throw new QemuStartError(
      "--accel kvm: /dev/kvm is not readable and writable by this user; use --accel tcg",
    );
  }
}

/** QEMU's command line for a launch. */
export function qemuArguments(launch: QemuLaunch, qmpPath: string): string[] {
  return [
    "-machine",
    "pc",
    "-accel",
    launch.accel,
    "-m",
    `${Math.round(launch.ramBytes / 2 ** 20)}M`,
    "-smp",
    "1",
    // No default devices: the device state that crosses at switchover is the
    // machine's own, nothing a guest that never touches them would need.
    "-nodefaults",
    "-display",
    "none",
    "-serial",
    "none",
    "-monitor",
    "none",
    "-kernel",
    launch.kernel,
    "-qmp",
    `unix:${qmpPath},server=on,wait=off`,
    "-no-shutdown",
    ...(launch.incoming ? ["-incoming", "defer"] : []),
  ];
}

/** A running QEMU and its monitor. */
export class QemuProcess {
  private exited = false;
  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    readonly qmp: QmpClient,
    private readonly stderr: () => string,
  ) {
    child.once("exit", () => {
      this.exited = true;
    });
  }

  /** The process id. */
  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Starts QEMU and connects to its monitor; throws {@link QemuStartError}. */
  static async start(launch: QemuLaunch, timeoutMs = 10_000): Promise<QemuProcess> {
    checkAccelerator(launch.accel);
    const binary = launch.binary ?? QEMU_BINARY;
    const executable = findExecutable(binary);
    if (executable === undefined) throw cannotRun(binary);
    const qmpPath = join(launch.dir, `${launch.name}.qmp`);
    // Tied to this process: a killed hvlab leaves no QEMU running.
    const command = tiedToParent(executable, qemuArguments(launch, qmpPath));
    const child = spawn(command.command, command.args, {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (chunk: string) => {
      if (stderr.length < 64 * 1024) stderr += chunk;
    });
    const failed = new Promise<never>((_, reject) => {
      child.once("error", (error: NodeJS.ErrnoException) => {
        reject(
          new QemuStartError(
            error.code === "ENOENT"
              ? notInstalled(binary).message
              : `${binary} could not start: ${error.message}`,
          ),
        );
      });
      child.once("exit", (code, signal) => {
        const why = stderr.trim().split("\n")[0] ?? "";
        reject(
          new QemuStartError(
            `${launch.name} QEMU exited at start (${signal ?? `code ${code}`})${why ? `: ${why}` : ""}`,
          ),
        );
      });
    });
    failed.catch(() => {});
    const deadline = Date.now() + timeoutMs;
    try {
      for (;;) {
        if (existsSync(qmpPath)) {
          try {
            const qmp = await Promise.race([
              QmpClient.connect({ kind: "unix", path: qmpPath }),
              failed,
            ]);
            return new QemuProcess(launch.name, child, qmp, () => stderr);
          } catch (error) {
            // The socket file appears just before QEMU listens on it.
            if (!(error instanceof QmpConnectionError && /ECONNREFUSED/.test(error.message)))
              throw error;
          }
        }
        if (Date.now() > deadline)
          throw new QemuStartError(`${launch.name} QEMU made no QMP socket in ${timeoutMs} ms`);
        await Promise.race([new Promise((r) => setTimeout(r, 20)), failed]);
      }
    } catch (error) {
      if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, "SIGKILL");
      throw error;
    }
  }

  /** What QEMU printed on stderr so far (first 64 KiB). */
  get errors(): string {
    return this.stderr();
  }

  /** Stops the process: `quit` over QMP, then SIGKILL to its PID after `graceMs`. */
  async stop(graceMs = 2000): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.qmp.execute("quit").catch(() => {});
    const timer = setTimeout(() => {
      if (!this.exited && this.child.pid !== undefined) process.kill(this.child.pid, "SIGKILL");
    }, graceMs);
    await gone;
    clearTimeout(timer);
    this.qmp.close();
  }

  /** Kills the process by PID at once (for exit paths that cannot wait). */
  kill(): void {
    if (!this.exited && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
}

/** Why `binary` cannot start: not installed, or a path given that is no executable file. */
function cannotRun(binary: string): QemuStartError {
  const why = binary.includes("/") ? whyNotExecutable(binary) : undefined;
  if (why === undefined || why === "no such file") return notInstalled(binary);
  return new QemuStartError(`${binary} cannot run: ${why}`);
}

function notInstalled(binary: string): QemuStartError {
  return new QemuStartError(`${binary} is not installed (Debian: apt-get install qemu-system-x86)`);
}

/** A TCP port on 127.0.0.1 free right now (the kernel picks it). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
