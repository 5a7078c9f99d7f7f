import { connect, type Socket } from "node:net";
import { formatQmpAddress, type QmpAddress } from "./qmp-address.js";
import { QmpLineReader, type QmpMessage } from "./qmp-lines.js";

/** QEMU refused a command: its error class and description. */
export class QmpCommandError extends Error {
  override name = "QmpCommandError";
  constructor(
    readonly command: string,
    readonly errorClass: string,
    desc: string,
  ) {
    super(`QMP ${command}: ${desc} (${errorClass})`);
  }
}

/** The monitor did not answer, or went away. */
export class QmpConnectionError extends Error {
  override name = "QmpConnectionError";
}

/** An event QEMU sent, with the time it says it happened. */
export interface QmpEvent {
  readonly event: string;
  readonly data: unknown;
  readonly timestampMs: number | undefined;
}

interface Waiter {
  readonly command: string;
  resolve(value: unknown): void;
  reject(error: Error): void;
  readonly timer: NodeJS.Timeout;
}

/**
 * A QMP client: connects, negotiates capabilities (`qmp_capabilities`),
 * runs commands one answer per id, and hands events to listeners.
 */
export class QmpClient {
  private readonly waiters = new Map<string, Waiter>();
  private readonly listeners = new Set<(event: QmpEvent) => void>();
  private nextId = 1;
  private closedError: Error | undefined;
  /** QEMU's version from the greeting (`major.minor.micro`). */
  version = "?";

  private constructor(
    private readonly socket: Socket,
    private readonly where: string,
    private readonly timeoutMs: number,
  ) {}

  /**
   * Connects to a monitor and leaves it in command mode. Fails after
   * `timeoutMs` without a greeting.
   */
  static async connect(address: QmpAddress, timeoutMs = 5000): Promise<QmpClient> {
    const where = formatQmpAddress(address);
    const socket =
      address.kind === "unix" ? connect(address.path) : connect(address.port, address.host);
    const client = new QmpClient(socket, where, timeoutMs);
    const greeting = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new QmpConnectionError(`no QMP greeting from ${where} in ${timeoutMs} ms`)),
        timeoutMs,
      );
      client.onGreeting = (version) => {
        clearTimeout(timer);
        resolve(version);
      };
      client.onFailure = (error) => {
        clearTimeout(timer);
        reject(error);
      };
    });
    client.attach();
    client.version = await greeting;
    await client.execute("qmp_capabilities");
    return client;
  }

  private onGreeting: (version: string) => void = () => {};
  private onFailure: (error: Error) => void = () => {};

  private attach(): void {
    const reader = new QmpLineReader();
    this.socket.setEncoding("utf8");
    this.socket.on("data", (chunk: string) => {
      let messages: QmpMessage[];
      try {
        messages = reader.push(chunk);
      } catch (error) {
        this.fail(error as Error);
        this.socket.destroy();
        return;
      }
      for (const m of messages) this.dispatch(m);
    });
    this.socket.on("error", (error: NodeJS.ErrnoException) => {
      this.fail(new QmpConnectionError(`QMP at ${this.where}: ${error.code ?? error.message}`));
    });
    this.socket.on("close", () => {
      this.fail(new QmpConnectionError(`QMP at ${this.where} closed the connection`));
    });
  }

  private dispatch(m: QmpMessage): void {
    if (m.type === "greeting") {
      this.onGreeting(m.version);
      return;
    }
    if (m.type === "event") {
      for (const listener of this.listeners) listener(m);
      return;
    }
    const waiter = m.id === undefined ? undefined : this.waiters.get(m.id);
    if (!waiter || m.id === undefined) return;
    this.waiters.delete(m.id);
    clearTimeout(waiter.timer);
    if (m.type === "return") waiter.resolve(m.value);
    else waiter.reject(new QmpCommandError(waiter.command, m.errorClass, m.desc));
  }

  private fail(error: Error): void {
    if (this.closedError) return;
    this.closedError = error;
    this.onFailure(error);
    for (const w of this.waiters.values()) {
      clearTimeout(w.timer);
      w.reject(error);
    }
    this.waiters.clear();
  }

  /**
   * Runs one command and resolves with its `return` value; rejects when no
   * answer came in `timeoutMs` (the client's default unless given: a
   * monitor blocked by a long stop-and-copy answers late).
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    timeoutMs = this.timeoutMs,
  ): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = `hvlab-${this.nextId++}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        reject(
          new QmpConnectionError(`QMP ${command} at ${this.where}: no answer in ${timeoutMs} ms`),
        );
      }, timeoutMs);
      this.waiters.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.socket.write(
        `${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`,
      );
    });
  }

  /** Runs an HMP command through `human-monitor-command`; resolves with its text. */
  async hmp(commandLine: string): Promise<string> {
    const out = await this.execute<unknown>("human-monitor-command", {
      "command-line": commandLine,
    });
    return typeof out === "string" ? out : "";
  }

  /** Calls `listener` with every event until the returned function is called. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves with the first event named `name` (and matching `filter`), or rejects after `timeoutMs`. */
  waitForEvent(
    name: string,
    timeoutMs: number,
    filter: (data: unknown) => boolean = () => true,
  ): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new QmpConnectionError(`no ${name} event from ${this.where} in ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.onEvent((e) => {
        if (e.event !== name || !filter(e.data)) return;
        clearTimeout(timer);
        off();
        resolve(e);
      });
    });
  }

  /** Closes the connection (QEMU keeps running). */
  close(): void {
    this.fail(new QmpConnectionError(`QMP at ${this.where} was closed by hvlab`));
    this.socket.destroy();
  }
}
