import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireTool } from "./cli.js";

/** A redis-server of a test's own: a free loopback port, a temporary directory, stopped by its PID. */
export interface TestRedis {
  readonly port: number;
  readonly dir: string;
  readonly pid: number;
  /** redis:// URL to it (with the password when one was set; TLS: rediss://). */
  readonly url: string;
  /** Stops it (SIGTERM to its PID; with AOF on, it writes its log first). */
  stop(): Promise<void>;
  /** Stops it and starts it again on the same port and directory (its AOF read back). */
  restart(): Promise<void>;
  /** Stops it and removes its directory. */
  close(): Promise<void>;
}

/** Whether redis-server is here; in CI its absence fails (requireTool). */
export function haveRedis(): boolean {
  return requireTool("redis-server");
}

/** A free TCP port on loopback (bound, read, released). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

async function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: "127.0.0.1" });
    socket.setTimeout(500);
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.once("data", (data) => {
      socket.destroy();
      // +PONG, or -NOAUTH when a password is set: either way the server is up.
      resolve(/^(\+PONG|-NOAUTH)/.test(data.toString()));
    });
    socket.once("error", () => resolve(false));
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/**
 * Starts a redis-server: `--port N --dir TMP --save "" --appendonly yes`
 * on 127.0.0.1, optionally with a password or TLS (then the plain port is
 * off and `tls` names the certificate files).
 */
export async function startRedis(
  options: { password?: string; tls?: { cert: string; key: string; ca: string } } = {},
): Promise<TestRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "hvlab-redis-"));
  const args = [
    "--bind",
    "127.0.0.1",
    "--dir",
    dir,
    "--save",
    "",
    "--appendonly",
    "yes",
    "--appendfsync",
    "always",
    "--protected-mode",
    "no",
    ...(options.password ? ["--requirepass", options.password] : []),
    ...(options.tls
      ? [
          "--port",
          "0",
          "--tls-port",
          String(port),
          "--tls-cert-file",
          options.tls.cert,
          "--tls-key-file",
          options.tls.key,
          "--tls-ca-cert-file",
          options.tls.ca,
          "--tls-auth-clients",
          "no",
        ]
      : ["--port", String(port)]),
  ];
  let child: ChildProcess;
  const launch = async () => {
    child = spawn("redis-server", args, { stdio: "ignore" });
    const deadline = Date.now() + 10_000;
    // A TLS port does not answer a plain PING; wait for it to accept connections instead.
    for (;;) {
      if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode})`);
      const up = options.tls ? await accepts(port) : await answersPing(port);
      if (up) return;
      if (Date.now() > deadline) throw new Error("redis-server did not start in 10 s");
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    process.kill(child.pid ?? 0, "SIGTERM");
    await exited;
  };
  await launch();
  const auth = options.password ? `:${encodeURIComponent(options.password)}@` : "";
  return {
    port,
    dir,
    get pid() {
      return child.pid ?? 0;
    },
    url: `${options.tls ? "rediss" : "redis"}://${auth}${options.tls ? "localhost" : "127.0.0.1"}:${port}/0`,
    stop,
    async restart() {
      await stop();
      await launch();
    },
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: "127.0.0.1" });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
