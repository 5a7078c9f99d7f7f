import { chmodSync, existsSync, lstatSync, rmSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import { createInterface } from "node:readline";

/*
 * A node's control socket: a Unix socket (mode 0600, so only its owner can
 * steer the node) speaking QMP's shape, one JSON object per line each way:
 *
 *   -> {"execute": "cut-path", "arguments": {"reason": "fault injection"}}
 *   <- {"return": {}}
 *   -> {"execute": "nonsense"}
 *   <- {"error": {"class": "CommandNotFound", "desc": "..."}}
 *
 * Commands: query-status, cut-path, restore-path, backup-begin, backup-end,
 * and for the VMs the node runs on the volume: vm-prepare, vm-start, vm-stop
 * (arguments checked in vm.ts); file-write, a sequential write of a file
 * (file-write.ts), which `hvlab bench csv` times.
 * A bad line gets an error and the connection stays open, as QMP does.
 */

/** What the control socket can ask of a node. */
export interface ControlledNode {
  status(): unknown;
  cutPath(reason?: string): void;
  restorePath(): Promise<void>;
  setBackup(open: boolean): void;
  /** Starts the VM workers ahead of a VM's arrival. */
  vmPrepare(): Promise<void>;
  /** Starts a VM on a VHD on the volume (vm.ts's VmStart, checked there). */
  vmStart(args: unknown): Promise<unknown>;
  /** Stops a VM, closing its VHD (vm.ts's VmStop). */
  vmStop(args: unknown): Promise<unknown>;
  /** Writes a file sequentially (file-write.ts's FileWrite, checked there). */
  fileWrite(args: unknown): Promise<unknown>;
}

/** The commands a node's control socket takes. */
export const CONTROL_COMMANDS = [
  "query-status",
  "cut-path",
  "restore-path",
  "backup-begin",
  "backup-end",
  "vm-prepare",
  "vm-start",
  "vm-stop",
  "file-write",
] as const;

/** One control command. */
export type ControlCommand = (typeof CONTROL_COMMANDS)[number];

/** Longest command line read; a longer one is refused without buffering it. */
const MAX_LINE_BYTES = 4096;
/** Longest cut reason kept. */
const MAX_REASON_BYTES = 200;

/** A control command's error reply, as QMP's `{"error": {"class", "desc"}}`. */
export class ControlError extends Error {
  override name = "ControlError";
  constructor(
    readonly errorClass: string,
    desc: string,
  ) {
    super(desc);
  }
}

/** Runs one command line against the node; returns the reply object. */
export async function runControlLine(node: ControlledNode, line: string): Promise<unknown> {
  try {
    if (Buffer.byteLength(line) > MAX_LINE_BYTES)
      throw new ControlError("GenericError", `a command line is at most ${MAX_LINE_BYTES} bytes`);
    let request: unknown;
    try {
      request = JSON.parse(line);
    } catch {
      throw new ControlError("GenericError", "the line is not JSON");
    }
    if (typeof request !== "object" || request === null || Array.isArray(request))
      throw new ControlError("GenericError", 'expected {"execute": COMMAND}');
    const { execute, arguments: args } = request as { execute?: unknown; arguments?: unknown };
    if (typeof execute !== "string" || !CONTROL_COMMANDS.includes(execute as ControlCommand))
      throw new ControlError(
        "CommandNotFound",
        `command ${JSON.stringify(execute)} is not one of ${CONTROL_COMMANDS.join(", ")}`,
      );
    if (args !== undefined && (typeof args !== "object" || args === null || Array.isArray(args)))
      throw new ControlError("GenericError", "arguments must be an object");
    const reason = (args as { reason?: unknown } | undefined)?.reason;
    switch (execute as ControlCommand) {
      case "query-status":
        return { return: node.status() };
      case "cut-path":
        if (
          reason !== undefined &&
          (typeof reason !== "string" || Buffer.byteLength(reason) > MAX_REASON_BYTES)
        )
          throw new ControlError(
            "GenericError",
            `cut-path: reason must be a string of at most ${MAX_REASON_BYTES} bytes`,
          );
        node.cutPath(reason ?? "by command");
        return { return: {} };
      case "restore-path":
        await node.restorePath();
        return { return: {} };
      case "backup-begin":
      case "backup-end":
        node.setBackup(execute === "backup-begin");
        return { return: {} };
      case "vm-prepare":
        await node.vmPrepare();
        return { return: {} };
      case "vm-start":
        return { return: await node.vmStart(args) };
      case "vm-stop":
        return { return: await node.vmStop(args) };
      case "file-write":
        return { return: await node.fileWrite(args) };
    }
  } catch (error) {
    const e = error as Error;
    return {
      error: {
        class: error instanceof ControlError ? error.errorClass : "GenericError",
        desc: e.message,
      },
    };
  }
}

/**
 * Listens on a Unix socket at `path` for control commands. Refuses a path
 * that exists and is not a socket; a stale socket (left by a killed node) is
 * replaced.
 */
export async function serveControl(path: string, node: ControlledNode): Promise<Server> {
  if (existsSync(path)) {
    if (!lstatSync(path).isSocket())
      throw new Error(`--control ${path}: exists and is not a socket`);
    rmSync(path);
  }
  const server = createServer((socket) => {
    socket.on("error", () => {});
    let chain = Promise.resolve();
    let held = 0;
    socket.on("data", (chunk: Buffer) => {
      // A line longer than the limit without a newline is refused before it grows.
      const nl = chunk.lastIndexOf(10);
      held = nl < 0 ? held + chunk.length : chunk.length - nl - 1;
      if (held > MAX_LINE_BYTES) {
        socket.end(
          `${JSON.stringify({ error: { class: "GenericError", desc: `a command line is at most ${MAX_LINE_BYTES} bytes` } })}\n`,
        );
        socket.destroy();
      }
    });
    const lines = createInterface({ input: socket, crlfDelay: Number.POSITIVE_INFINITY });
    // readline re-emits the socket's errors (a reset, EPIPE to a client gone
    // before its reply): unhandled, one would end the node's process.
    lines.on("error", () => {});
    lines.on("line", (line) => {
      if (line.trim() === "") return;
      chain = chain.then(async () => {
        const reply = await runControlLine(node, line);
        if (!socket.destroyed) socket.write(`${JSON.stringify(reply)}\n`);
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o600);
  return server;
}

/**
 * Sends one command to a node's control socket and returns its `return`
 * value, or throws a {@link ControlError} with the node's error.
 */
export async function controlNode(
  path: string,
  command: ControlCommand,
  args?: Record<string, unknown>,
  timeoutMs = 5000,
): Promise<unknown> {
  return await new Promise((resolve, reject) => {
    const socket = connect(path);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new ControlError("Timeout", `${path}: no answer to ${command} within ${timeoutMs} ms`),
      );
    }, timeoutMs);
    socket.on("error", (e) => {
      clearTimeout(timer);
      reject(new ControlError("Unreachable", `${path}: ${e.message}`));
    });
    socket.on("connect", () =>
      socket.write(
        `${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`,
      ),
    );
    const lines = createInterface({ input: socket });
    // The socket's error (handled above) is re-emitted by readline: not a second failure.
    lines.on("error", () => {});
    let answered = false;
    // A node that dies or drops the connection mid-command answers nothing:
    // say so now rather than wait out the timeout. A last line without its
    // newline is still read as the answer (readline gives it before closing).
    lines.once("close", () => {
      if (answered) return;
      clearTimeout(timer);
      reject(
        new ControlError(
          "Unreachable",
          `${path}: the connection closed with no answer to ${command}`,
        ),
      );
    });
    lines.once("line", (line) => {
      answered = true;
      clearTimeout(timer);
      socket.end();
      let reply: { return?: unknown; error?: { class?: string; desc?: string } };
      try {
        reply = JSON.parse(line);
      } catch {
        reject(new ControlError("GenericError", `${path}: the reply is not JSON`));
        return;
      }
      if (reply.error)
        reject(new ControlError(reply.error.class ?? "GenericError", reply.error.desc ?? "error"));
      else resolve(reply.return);
    });
  });
}

/**
 * Waits until a node's control socket answers `query-status` (a node
 * prints "listening" before its control socket is up), within `timeoutMs`.
 */
export async function waitForControl(path: string, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      await controlNode(
        path,
        "query-status",
        undefined,
        Math.max(100, deadline - performance.now()),
      );
      return;
    } catch (error) {
      if (performance.now() >= deadline)
        throw new ControlError(
          "Unreachable",
          `${path}: no answer within ${timeoutMs} ms (${(error as Error).message})`,
        );
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}
