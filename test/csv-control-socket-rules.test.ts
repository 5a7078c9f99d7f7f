import {
  linkSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, it, onTestFinished, vi } from "vitest";
import {
  CONTROL_COMMANDS,
  ControlError,
  type ControlledNode,
  controlNode,
  runControlLine,
  serveControl,
  waitForControl,
} from "../src/csv/control-socket.js";
import { testTempDir } from "./support/temp.js";

// A node's control socket (docs/csv.md, "The control socket"): one JSON
// object per line each way in QMP's shape, `{"execute", "arguments"}` in,
// `{"return"}` or `{"error": {"class", "desc"}}` out; a bad line is
// answered and the connection stays open. Everything here runs on the
// test's thread: runControlLine against a fake node that records what it
// is asked, serveControl on a real Unix socket in a temporary folder, and
// controlNode and waitForControl, the client side, against it or against a
// scripted socket that answers as a test needs.

afterEach(() => {
  vi.useRealTimers();
});

/** The clock's own timers and Date.now, which a test's fake timers leave alone. */
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;
const realNow = Date.now;

/** `promise`, or a failure naming `what` when it has not settled within `ms` (on the real clock). */
async function within<T>(promise: Promise<T>, what: string, ms = 2000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = realSetTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    realClearTimeout(timer);
  }
}

/**
 * Records what reaches the process as an uncaught exception until the test
 * ends; the returned check expects nothing did.
 */
function watchUncaught(): () => void {
  const uncaught: Error[] = [];
  const record = (error: Error) => uncaught.push(error);
  process.on("uncaughtException", record);
  onTestFinished(() => {
    process.off("uncaughtException", record);
  });
  return () => expect(uncaught).toStrictEqual([]);
}

/** What the fake node was asked, in order: the method's name and its arguments. */
type Call = [string, ...unknown[]];

/** The status the fake node answers query-status with (any JSON value passes through). */
const STATUS = { node: 3, role: "coordinator", epoch: 7, path: "up" };

/**
 * A node that records each call and does what `overrides` says (by
 * default: nothing, and the status above).
 */
function fakeNode(overrides: Partial<ControlledNode> = {}): {
  node: ControlledNode;
  calls: Call[];
} {
  const calls: Call[] = [];
  const node: ControlledNode = {
    status() {
      calls.push(["status"]);
      return overrides.status ? overrides.status() : STATUS;
    },
    cutPath(reason) {
      calls.push(["cutPath", reason]);
      overrides.cutPath?.(reason);
    },
    async restorePath() {
      calls.push(["restorePath"]);
      await overrides.restorePath?.();
    },
    setBackup(open) {
      calls.push(["setBackup", open]);
      overrides.setBackup?.(open);
    },
    async vmPrepare() {
      calls.push(["vmPrepare"]);
      await overrides.vmPrepare?.();
    },
    async vmStart(args) {
      calls.push(["vmStart", args]);
      return overrides.vmStart ? await overrides.vmStart(args) : { started: args };
    },
    async vmStop(args) {
      calls.push(["vmStop", args]);
      return overrides.vmStop ? await overrides.vmStop(args) : { stopped: args };
    },
    async fileWrite(args) {
      calls.push(["fileWrite", args]);
      return overrides.fileWrite ? await overrides.fileWrite(args) : { written: args };
    },
  };
  return { node, calls };
}

/** A promise and the functions that settle it. */
function deferred<T = void>(): {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: Error) => void;
} {
  let resolve: (value: T) => void = () => {};
  let reject: (error: Error) => void = () => {};
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Whether `promise` has settled, after every callback already queued has run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

const line = (request: unknown): string => JSON.stringify(request);
const errorReply = (errorClass: string, desc: string) => ({ error: { class: errorClass, desc } });
const generic = (desc: string) => errorReply("GenericError", desc);

const COMMAND_LIST =
  "query-status, cut-path, restore-path, backup-begin, backup-end, vm-prepare, vm-start, vm-stop, file-write";
const notFound = (shown: string) =>
  errorReply("CommandNotFound", `command ${shown} is not one of ${COMMAND_LIST}`);
const NOT_OBJECT = generic('expected {"execute": COMMAND}');
const BAD_ARGUMENTS = generic("arguments must be an object");
const BAD_REASON = generic("cut-path: reason must be a string of at most 200 bytes");
const TOO_LONG = generic("a command line is at most 4096 bytes");

/**
 * `{"execute":"query-status","pad":"xx..."}` of exactly `bytes` bytes, with
 * `twoByte` of its pad characters "é" (two bytes of UTF-8 each) instead of "x".
 */
function paddedLine(bytes: number, twoByte = 0): string {
  const head = '{"execute":"query-status","pad":"';
  const tail = '"}';
  const room = bytes - head.length - tail.length - 2 * twoByte;
  if (room < 0) throw new Error(`cannot pad to ${bytes} bytes`);
  const padded = `${head}${"é".repeat(twoByte)}${"x".repeat(room)}${tail}`;
  expect(Buffer.byteLength(padded)).toBe(bytes);
  return padded;
}

describe("runControlLine: the commands", () => {
  it("takes exactly the nine commands of QMP's shape, in the order the errors list them", () => {
    expect([...CONTROL_COMMANDS]).toStrictEqual(COMMAND_LIST.split(", "));
  });

  // query-status answers with whatever the node's status is: the same object.
  it("query-status returns the node's status itself and asks nothing else", async () => {
    const { node, calls } = fakeNode();
    const reply = (await runControlLine(node, line({ execute: "query-status" }))) as {
      return: unknown;
    };
    expect(reply).toStrictEqual({ return: STATUS });
    expect(reply.return).toBe(STATUS);
    expect(calls).toStrictEqual([["status"]]);
  });

  it("query-status with an empty arguments object, and fields beside execute ignored", async () => {
    const { node, calls } = fakeNode();
    expect(
      await runControlLine(node, line({ execute: "query-status", arguments: {}, id: 7 })),
    ).toStrictEqual({ return: STATUS });
    expect(calls).toStrictEqual([["status"]]);
  });

  // cut-path's reason is optional: without one the node is told "by command";
  // an empty reason is a reason, kept as it is.
  it("cut-path passes the reason, or 'by command' when none is given", async () => {
    const cases: [unknown, string][] = [
      [{ execute: "cut-path", arguments: { reason: "fault injection" } }, "fault injection"],
      [{ execute: "cut-path", arguments: { reason: "" } }, ""],
      [{ execute: "cut-path", arguments: { other: 1 } }, "by command"],
      [{ execute: "cut-path", arguments: {} }, "by command"],
      [{ execute: "cut-path" }, "by command"],
    ];
    for (const [request, reason] of cases) {
      const { node, calls } = fakeNode();
      expect(await runControlLine(node, line(request))).toStrictEqual({ return: {} });
      expect(calls).toStrictEqual([["cutPath", reason]]);
    }
  });

  it("restore-path and vm-prepare answer once the node has finished, not before", async () => {
    for (const [execute, method] of [
      ["restore-path", "restorePath"],
      ["vm-prepare", "vmPrepare"],
    ] as const) {
      const gate = deferred();
      const { node, calls } = fakeNode({ [method]: () => gate.promise });
      const reply = runControlLine(node, line({ execute }));
      expect(await settled(reply)).toBe(false);
      expect(calls).toStrictEqual([[method]]);
      gate.resolve();
      expect(await reply).toStrictEqual({ return: {} });
    }
  });

  // A backup window is opened by backup-begin and closed by backup-end.
  it("backup-begin opens the backup window and backup-end closes it", async () => {
    const { node, calls } = fakeNode();
    expect(await runControlLine(node, line({ execute: "backup-begin" }))).toStrictEqual({
      return: {},
    });
    expect(await runControlLine(node, line({ execute: "backup-end" }))).toStrictEqual({
      return: {},
    });
    expect(calls).toStrictEqual([
      ["setBackup", true],
      ["setBackup", false],
    ]);
  });

  // vm-start, vm-stop and file-write hand their arguments to the node as they
  // came (vm.ts and file-write.ts check them) and return what the node's
  // promise resolves with.
  it("vm-start, vm-stop and file-write pass their arguments on and return the node's answer", async () => {
    const args = { vm: "vm-1", vhd: "disk.vhd", memoryBytes: 1 << 20, nested: { a: [1, 2] } };
    for (const [execute, method, key] of [
      ["vm-start", "vmStart", "started"],
      ["vm-stop", "vmStop", "stopped"],
      ["file-write", "fileWrite", "written"],
    ] as const) {
      const { node, calls } = fakeNode();
      expect(await runControlLine(node, line({ execute, arguments: args }))).toStrictEqual({
        return: { [key]: args },
      });
      expect(calls).toStrictEqual([[method, args]]);
    }
  });

  it("vm-start, vm-stop and file-write without arguments pass undefined", async () => {
    for (const [execute, method] of [
      ["vm-start", "vmStart"],
      ["vm-stop", "vmStop"],
      ["file-write", "fileWrite"],
    ] as const) {
      const { node, calls } = fakeNode({ [method]: async () => 42 });
      expect(await runControlLine(node, line({ execute }))).toStrictEqual({ return: 42 });
      expect(calls).toStrictEqual([[method, undefined]]);
    }
  });

  it("vm-start's answer is awaited: the reply holds the value, not a promise", async () => {
    const gate = deferred<unknown>();
    const { node } = fakeNode({ vmStart: () => gate.promise });
    const reply = runControlLine(node, line({ execute: "vm-start", arguments: { vm: "a" } }));
    expect(await settled(reply)).toBe(false);
    gate.resolve({ vm: "a", state: "running" });
    expect(await reply).toStrictEqual({ return: { vm: "a", state: "running" } });
  });
});

describe("runControlLine: a bad line", () => {
  it("a line that is not JSON: GenericError, the node not asked", async () => {
    for (const text of ["", " ", "{", "query-status", '{"execute": "query-status"', "{'a':1}"]) {
      const { node, calls } = fakeNode();
      expect(await runControlLine(node, text)).toStrictEqual(generic("the line is not JSON"));
      expect(calls).toStrictEqual([]);
    }
  });

  it("JSON that is not an object: null, a list, a number, a string, a boolean", async () => {
    for (const text of [
      "null",
      "[]",
      '[{"execute":"query-status"}]',
      "3",
      '"query-status"',
      "true",
    ]) {
      const { node, calls } = fakeNode();
      expect(await runControlLine(node, text)).toStrictEqual(NOT_OBJECT);
      expect(calls).toStrictEqual([]);
    }
  });

  // The command is named as JSON gave it: a string in quotes, anything else as JSON shows it.
  it("a missing or unknown command: CommandNotFound, naming it and listing the nine", async () => {
    const cases: [unknown, string][] = [
      [{}, "undefined"],
      [{ arguments: {} }, "undefined"],
      [{ execute: null }, "null"],
      [{ execute: 3 }, "3"],
      [{ execute: ["query-status"] }, '["query-status"]'],
      [{ execute: { name: "cut-path" } }, '{"name":"cut-path"}'],
      [{ execute: "nonsense" }, '"nonsense"'],
      [{ execute: "" }, '""'],
      [{ execute: "Query-Status" }, '"Query-Status"'],
      [{ execute: "query-status " }, '"query-status "'],
      [{ execute: "query_status" }, '"query_status"'],
      [{ execute: "toString" }, '"toString"'],
    ];
    for (const [request, shown] of cases) {
      const { node, calls } = fakeNode();
      expect(await runControlLine(node, line(request))).toStrictEqual(notFound(shown));
      expect(calls).toStrictEqual([]);
    }
  });

  // The command is checked before its arguments.
  it("an unknown command with bad arguments is CommandNotFound", async () => {
    const { node } = fakeNode();
    expect(await runControlLine(node, line({ execute: "nope", arguments: 3 }))).toStrictEqual(
      notFound('"nope"'),
    );
  });

  it("arguments that are not an object, for every command: GenericError, the node not asked", async () => {
    for (const execute of CONTROL_COMMANDS) {
      for (const args of [null, [], [1], "reason", 3, 0, true, false]) {
        const { node, calls } = fakeNode();
        expect(await runControlLine(node, line({ execute, arguments: args }))).toStrictEqual(
          BAD_ARGUMENTS,
        );
        expect(calls).toStrictEqual([]);
      }
    }
  });

  // A cut reason is kept in the node's status and events: at most 200 bytes of UTF-8.
  it("cut-path's reason: a string of at most 200 bytes, counted in UTF-8", async () => {
    const refusedReasons = [
      null,
      5,
      true,
      {},
      ["a"],
      "r".repeat(201),
      "é".repeat(101), // 101 characters, 202 bytes
      `${"r".repeat(199)}é`, // 200 characters, 201 bytes
    ];
    for (const reason of refusedReasons) {
      const { node, calls } = fakeNode();
      expect(
        await runControlLine(node, line({ execute: "cut-path", arguments: { reason } })),
      ).toStrictEqual(BAD_REASON);
      expect(calls).toStrictEqual([]);
    }
    for (const reason of ["r".repeat(200), "é".repeat(100), `${"r".repeat(198)}é`]) {
      const { node, calls } = fakeNode();
      expect(
        await runControlLine(node, line({ execute: "cut-path", arguments: { reason } })),
      ).toStrictEqual({ return: {} });
      expect(calls).toStrictEqual([["cutPath", reason]]);
    }
  });

  // Another command's `reason` is not cut-path's: it is not checked.
  it("a reason given to another command is not checked", async () => {
    const { node, calls } = fakeNode();
    expect(
      await runControlLine(node, line({ execute: "backup-begin", arguments: { reason: 5 } })),
    ).toStrictEqual({ return: {} });
    expect(calls).toStrictEqual([["setBackup", true]]);
  });

  // A line is at most 4096 bytes of UTF-8, checked before it is parsed.
  it("a line of 4096 bytes is run; 4097 bytes are refused, counted in UTF-8 and not in characters", async () => {
    const { node, calls } = fakeNode();
    expect(await runControlLine(node, paddedLine(4096))).toStrictEqual({ return: STATUS });
    expect(await runControlLine(node, paddedLine(4096, 1000))).toStrictEqual({
      return: STATUS,
    });
    expect(calls).toStrictEqual([["status"], ["status"]]);
    // 4096 characters, 4097 bytes: the length in characters would pass.
    const multibyte = paddedLine(4097, 1);
    expect(multibyte.length).toBe(4096);
    for (const text of [paddedLine(4097), multibyte, paddedLine(5000, 900), "{".repeat(4097)]) {
      // "{" * 4097 is not JSON either: the length is what is said.
      expect(await runControlLine(node, text)).toStrictEqual(TOO_LONG);
    }
    expect(calls).toHaveLength(2);
  });
});

describe("runControlLine: the node's own errors", () => {
  // Whatever the node throws becomes the error reply; its message is the
  // desc, and its class GenericError unless it is a ControlError with its own.
  it("a node method that throws or rejects: GenericError with the method's message", async () => {
    const boom = (what: string) => () => {
      throw new Error(`${what} failed`);
    };
    const failing = (what: string) => async () => {
      throw new RangeError(`${what} refused`);
    };
    const cases: [Partial<ControlledNode>, unknown, unknown][] = [
      [{ status: boom("status") }, { execute: "query-status" }, generic("status failed")],
      [{ cutPath: boom("cut") }, { execute: "cut-path" }, generic("cut failed")],
      [
        { restorePath: failing("restore") },
        { execute: "restore-path" },
        generic("restore refused"),
      ],
      [{ setBackup: boom("backup") }, { execute: "backup-begin" }, generic("backup failed")],
      [{ setBackup: boom("backup") }, { execute: "backup-end" }, generic("backup failed")],
      [{ vmPrepare: failing("prepare") }, { execute: "vm-prepare" }, generic("prepare refused")],
      [{ vmStart: failing("start") }, { execute: "vm-start" }, generic("start refused")],
      [{ vmStop: failing("stop") }, { execute: "vm-stop" }, generic("stop refused")],
      [{ fileWrite: failing("write") }, { execute: "file-write" }, generic("write refused")],
    ];
    for (const [overrides, request, reply] of cases) {
      const { node } = fakeNode(overrides);
      expect(await runControlLine(node, line(request))).toStrictEqual(reply);
    }
  });

  it("a ControlError from the node keeps its class", async () => {
    const { node } = fakeNode({
      vmStop: async () => {
        throw new ControlError("DeviceNotFound", "no VM vm-9 on this node");
      },
    });
    expect(
      await runControlLine(node, line({ execute: "vm-stop", arguments: { vm: "vm-9" } })),
    ).toStrictEqual(errorReply("DeviceNotFound", "no VM vm-9 on this node"));
  });

  it("ControlError: an Error named ControlError with its class and message", () => {
    const error = new ControlError("Timeout", "too slow");
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe("ControlError");
    expect(error.errorClass).toBe("Timeout");
    expect(error.message).toBe("too slow");
  });
});

/** The control socket of a fake node in a fresh folder, closed when the test ends. */
async function served(overrides: Partial<ControlledNode> = {}): Promise<{
  path: string;
  dir: string;
  server: Server;
  calls: Call[];
  /** The server's side of each connection, in the order they came. */
  accepted: Socket[];
}> {
  const dir = testTempDir("csv-control");
  const path = join(dir, "node.sock");
  const { node, calls } = fakeNode(overrides);
  const server = await serveControl(path, node);
  const accepted: Socket[] = [];
  server.on("connection", (socket: Socket) => accepted.push(socket));
  onTestFinished(() => closeServer(server, accepted));
  return { path, dir, server, calls, accepted };
}

async function closeServer(server: Server, sockets: Iterable<Socket>): Promise<void> {
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** A client connection that collects the lines it is sent. */
interface LineClient {
  readonly socket: Socket;
  /** Every line received so far. */
  readonly lines: string[];
  /** The next line not yet taken by `next`. */
  next(): Promise<string>;
  /** Resolves when the connection has closed. */
  readonly closed: Promise<void>;
  send(text: string): void;
}

async function openClient(path: string, allowHalfOpen = false): Promise<LineClient> {
  const socket = connect({ path, allowHalfOpen });
  socket.on("error", () => {});
  onTestFinished(() => {
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  const lines: string[] = [];
  const waiters: ((line: string) => void)[] = [];
  let taken = 0;
  const reader = createInterface({ input: socket });
  reader.on("error", () => {});
  reader.on("line", (received) => {
    lines.push(received);
    const waiter = waiters.shift();
    if (waiter) {
      taken++;
      waiter(received);
    }
  });
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  return {
    socket,
    lines,
    closed,
    next() {
      if (taken < lines.length) return Promise.resolve(lines[taken++] as string);
      return new Promise((resolve) => waiters.push(resolve));
    },
    send(text) {
      socket.write(text);
    },
  };
}

/** Waits until `test` holds, checking every 2 ms; fails naming `what` after 5 s (on the real clock). */
async function until(test: () => boolean, what: string): Promise<void> {
  const deadline = realNow() + 5000;
  while (!test()) {
    if (realNow() > deadline) throw new Error(`${what}: not within 5 s`);
    await new Promise((resolve) => realSetTimeout(resolve, 2));
  }
}

/**
 * Sends `chunks` one at a time, each only once the server has read every
 * byte before it, so that each arrives at the server as a read of its own.
 */
async function sendApart(client: LineClient, server: () => Socket | undefined, chunks: string[]) {
  let total = 0;
  for (const chunk of chunks) {
    client.send(chunk);
    total += Buffer.byteLength(chunk);
    await until(() => (server()?.bytesRead ?? 0) === total || client.socket.destroyed, "read");
  }
}

const reply = (value: unknown): string => JSON.stringify(value);

describe("serveControl: the socket", () => {
  it("listens on a Unix socket of mode 0600", async () => {
    const { path } = await served();
    expect(lstatSync(path).isSocket()).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it("refuses a path that exists and is not a socket, leaving it as it was", async () => {
    const dir = testTempDir("csv-control");
    const { node } = fakeNode();
    const file = join(dir, "file");
    writeFileSync(file, "keep me");
    await expect(serveControl(file, node)).rejects.toThrow(
      new Error(`--control ${file}: exists and is not a socket`),
    );
    expect(readFileSync(file, "utf8")).toBe("keep me");
    const folder = join(dir, "folder");
    mkdirSync(folder);
    await expect(serveControl(folder, node)).rejects.toThrow(
      `--control ${folder}: exists and is not a socket`,
    );
    expect(lstatSync(folder).isDirectory()).toBe(true);
  });

  // The path itself is judged (lstat): a symbolic link is not a socket, even to one.
  it("refuses a symbolic link to a socket", async () => {
    const { path, dir } = await served();
    const link = join(dir, "link.sock");
    symlinkSync(path, link);
    const { node } = fakeNode();
    await expect(serveControl(link, node)).rejects.toThrow(
      `--control ${link}: exists and is not a socket`,
    );
    expect(lstatSync(link).isSymbolicLink()).toBe(true);
  });

  // A node killed with SIGKILL leaves its socket file behind, with nobody listening.
  it("replaces a stale socket file that nobody listens on", async () => {
    const dir = testTempDir("csv-control");
    const path = join(dir, "node.sock");
    // A socket file with nobody behind it: a second name for a listening
    // socket, whose listener then closes (removing only its own name).
    const old = createServer();
    const oldPath = join(dir, "old.sock");
    await new Promise<void>((resolve) => old.listen(oldPath, resolve));
    linkSync(oldPath, path);
    await new Promise<void>((resolve) => old.close(() => resolve()));
    expect(lstatSync(path).isSocket()).toBe(true);
    await expect(controlNode(path, "query-status")).rejects.toThrow(
      new ControlError("Unreachable", `${path}: connect ECONNREFUSED ${path}`),
    );

    const { node, calls } = fakeNode();
    const server = await serveControl(path, node);
    onTestFinished(() => closeServer(server, []));
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(await controlNode(path, "query-status")).toStrictEqual(STATUS);
    expect(calls).toStrictEqual([["status"]]);
  });

  // It does not ask whether a socket at the path is still served: a second
  // node given the same path takes it over, and new connections reach it.
  it("replaces a socket that another server still listens on", async () => {
    const first = await served();
    const { node, calls } = fakeNode({ status: () => ({ node: 2 }) });
    const second = await serveControl(first.path, node);
    onTestFinished(() => closeServer(second, []));
    expect(statSync(first.path).mode & 0o777).toBe(0o600);
    expect(await controlNode(first.path, "query-status")).toStrictEqual({ node: 2 });
    expect(calls).toStrictEqual([["status"]]);
    expect(first.calls).toStrictEqual([]);
  });

  it("rejects when it cannot listen: a folder that does not exist", async () => {
    const dir = testTempDir("csv-control");
    const path = join(dir, "missing", "node.sock");
    const { node } = fakeNode();
    const error = await serveControl(path, node).then(
      () => expect.fail("listened in a missing folder"),
      (e: NodeJS.ErrnoException) => e,
    );
    expect(error.syscall).toBe("listen");
    expect(error.message).toContain(path);
  });
});

describe("serveControl: lines on a connection", () => {
  it("answers several lines on one connection in order, one reply line each", async () => {
    const { path, calls } = await served();
    const client = await openClient(path);
    client.send(
      [
        line({ execute: "query-status" }),
        line({ execute: "cut-path", arguments: { reason: "HBA pulled" } }),
        line({ execute: "backup-begin" }),
        line({ execute: "restore-path" }),
        line({ execute: "vm-start", arguments: { vm: "a" } }),
        "",
      ].join("\n"),
    );
    expect(await client.next()).toBe(reply({ return: STATUS }));
    expect(await client.next()).toBe(reply({ return: {} }));
    expect(await client.next()).toBe(reply({ return: {} }));
    expect(await client.next()).toBe(reply({ return: {} }));
    expect(await client.next()).toBe(reply({ return: { started: { vm: "a" } } }));
    expect(calls).toStrictEqual([
      ["status"],
      ["cutPath", "HBA pulled"],
      ["setBackup", true],
      ["restorePath"],
      ["vmStart", { vm: "a" }],
    ]);
  });

  // QMP keeps a connection open after a bad command, and so does the node.
  it("a bad line is answered with its error and the connection stays open", async () => {
    const { path, calls } = await served();
    const client = await openClient(path);
    client.send("not json\n");
    expect(await client.next()).toBe(reply(generic("the line is not JSON")));
    client.send(`${line({ execute: "nonsense" })}\n`);
    expect(await client.next()).toBe(reply(notFound('"nonsense"')));
    client.send(`${line({ execute: "cut-path", arguments: { reason: 5 } })}\n`);
    expect(await client.next()).toBe(reply(BAD_REASON));
    client.send("[]\n");
    expect(await client.next()).toBe(reply(NOT_OBJECT));
    client.send(`${line({ execute: "query-status" })}\n`);
    expect(await client.next()).toBe(reply({ return: STATUS }));
    expect(client.socket.destroyed).toBe(false);
    expect(calls).toStrictEqual([["status"]]);
  });

  it("a node's failure is answered as an error and the connection stays open", async () => {
    const { path } = await served({
      restorePath: async () => {
        throw new Error("the path is still cut");
      },
    });
    const client = await openClient(path);
    client.send(`${line({ execute: "restore-path" })}\n${line({ execute: "backup-end" })}\n`);
    expect(await client.next()).toBe(reply(generic("the path is still cut")));
    expect(await client.next()).toBe(reply({ return: {} }));
  });

  // Blank lines, and lines of spaces and tabs, are not commands: no reply.
  it("blank lines get no reply", async () => {
    const { path, calls } = await served();
    const client = await openClient(path);
    client.send(`\n   \n\t\n \t \n${line({ execute: "backup-end" })}\n\n`);
    expect(await client.next()).toBe(reply({ return: {} }));
    client.send(`${line({ execute: "query-status" })}\n`);
    expect(await client.next()).toBe(reply({ return: STATUS }));
    expect(client.lines).toHaveLength(2);
    expect(calls).toStrictEqual([["setBackup", false], ["status"]]);
  });

  it("takes CRLF line ends, a CR and its LF arriving apart", async () => {
    const { path, accepted } = await served();
    const client = await openClient(path);
    await sendApart(client, () => accepted[0], [`${line({ execute: "backup-begin" })}\r`]);
    await new Promise((resolve) => setTimeout(resolve, 150));
    client.send(`\n${line({ execute: "backup-end" })}\r\n`);
    expect(await client.next()).toBe(reply({ return: {} }));
    expect(await client.next()).toBe(reply({ return: {} }));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(client.lines).toHaveLength(2);
  });

  // One command at a time per connection: a slow one holds back the next,
  // which the node is not asked to run until the first is answered.
  it("runs a connection's commands one after another, answering in order", async () => {
    const gate = deferred();
    const { path, calls } = await served({ restorePath: () => gate.promise });
    const client = await openClient(path);
    client.send(`${line({ execute: "restore-path" })}\n${line({ execute: "query-status" })}\n`);
    await until(() => calls.length === 1, "restore-path asked");
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(calls).toStrictEqual([["restorePath"]]);
    expect(client.lines).toStrictEqual([]);
    gate.resolve();
    expect(await client.next()).toBe(reply({ return: {} }));
    expect(await client.next()).toBe(reply({ return: STATUS }));
    expect(calls).toStrictEqual([["restorePath"], ["status"]]);
  });

  it("serves connections side by side: one waiting does not hold back another", async () => {
    const gate = deferred();
    const { path } = await served({ vmPrepare: () => gate.promise });
    const slow = await openClient(path);
    const quick = await openClient(path);
    slow.send(`${line({ execute: "vm-prepare" })}\n`);
    quick.send(`${line({ execute: "query-status" })}\n`);
    expect(await quick.next()).toBe(reply({ return: STATUS }));
    expect(slow.lines).toStrictEqual([]);
    gate.resolve();
    expect(await slow.next()).toBe(reply({ return: {} }));
  });
});

describe("serveControl: the line limit", () => {
  const ERROR_LINE = reply(TOO_LONG);

  it("closes a connection whose line passes 4096 bytes without a newline, saying why", async () => {
    const { path, calls } = await served();
    const client = await openClient(path);
    client.send("x".repeat(4097));
    await within(client.closed, "the connection closed");
    expect(client.lines).toStrictEqual([ERROR_LINE]);
    expect(calls).toStrictEqual([]);
  });

  it("a line of exactly 4096 bytes, arriving apart from its newline, is run", async () => {
    const { path, accepted } = await served();
    const client = await openClient(path);
    await sendApart(client, () => accepted[0], [paddedLine(4096), "\n"]);
    expect(await client.next()).toBe(reply({ return: STATUS }));
    expect(client.socket.destroyed).toBe(false);
  });

  // What counts is the bytes since the last newline, however they arrive.
  it("counts a line's bytes across reads: 3000 then 1097 closes the connection", async () => {
    const { path, accepted } = await served();
    const client = await openClient(path);
    await sendApart(client, () => accepted[0], ["x".repeat(3000), "x".repeat(1097)]);
    await within(client.closed, "the connection closed");
    expect(client.lines).toStrictEqual([ERROR_LINE]);
  });

  it("counts a line's bytes across reads: 3000 then 1096, then its newline, is run", async () => {
    const { path, accepted } = await served();
    const client = await openClient(path);
    const full = paddedLine(4096);
    await sendApart(client, () => accepted[0], [full.slice(0, 3000), full.slice(3000), "\n"]);
    expect(await client.next()).toBe(reply({ return: STATUS }));
  });

  // After a newline, only what follows it counts.
  it("a read that ends one line and holds 4096 bytes of the next is taken", async () => {
    const { path, accepted } = await served();
    const client = await openClient(path);
    const full = paddedLine(4096);
    await sendApart(client, () => accepted[0], [
      `${line({ execute: "backup-begin" })}\n${full}`,
      "\n",
    ]);
    expect(await client.next()).toBe(reply({ return: {} }));
    expect(await client.next()).toBe(reply({ return: STATUS }));
  });

  it("a read that ends one line and holds 4097 bytes of the next closes the connection", async () => {
    const { path, calls } = await served();
    const client = await openClient(path);
    client.send(`${line({ execute: "backup-begin" })}\n${"x".repeat(4097)}`);
    await within(client.closed, "the connection closed");
    // The connection is gone before the first line's answer could be sent.
    expect(client.lines).toStrictEqual([ERROR_LINE]);
    await until(() => calls.length === 1, "backup-begin run");
    expect(calls).toStrictEqual([["setBackup", true]]);
  });

  // The count starts after the read's last newline, not its first.
  it("counts from a read's last newline: two whole lines and 4090 bytes of a third are taken", async () => {
    const { path, accepted } = await served();
    const client = await openClient(path);
    const third = paddedLine(4090);
    await sendApart(client, () => accepted[0], [
      `${line({ execute: "backup-begin" })}\n${line({ execute: "backup-end" })}\n${third}`,
      "\n",
    ]);
    expect(await client.next()).toBe(reply({ return: {} }));
    expect(await client.next()).toBe(reply({ return: {} }));
    expect(await client.next()).toBe(reply({ return: STATUS }));
  });

  // The connection is closed at once: what the client sends after is not read.
  it("reads nothing more on a connection closed for a long line", async () => {
    const { path, accepted, calls } = await served();
    const client = await openClient(path, true);
    await sendApart(client, () => accepted[0], ["x".repeat(4097)]);
    expect(await client.next()).toBe(ERROR_LINE);
    client.send(`\n${line({ execute: "backup-end" })}\n`);
    await within(client.closed, "the connection closed");
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(calls).toStrictEqual([]);
    expect(client.lines).toStrictEqual([ERROR_LINE]);
  });

  // A newline as the read's first byte ends the line held before it.
  it("a read that starts with a newline ends the line before it", async () => {
    const { path, accepted } = await served();
    const client = await openClient(path);
    const first = paddedLine(4000);
    const second = line({ execute: "backup-end", arguments: { pad: "y".repeat(500) } });
    await sendApart(client, () => accepted[0], [
      first,
      `\n${second.slice(0, 200)}`,
      `${second.slice(200)}\n`,
    ]);
    expect(await client.next()).toBe(reply({ return: STATUS }));
    expect(await client.next()).toBe(reply({ return: {} }));
  });

  // Many short lines together pass 4096 bytes; each line is short, so none is refused.
  it("many short lines in one read are all answered", async () => {
    const { path, calls } = await served();
    const client = await openClient(path);
    const one = `${line({ execute: "query-status" })}\n`;
    const count = Math.ceil((3 * 4096) / one.length);
    client.send(one.repeat(count));
    for (let i = 0; i < count; i++) expect(await client.next()).toBe(reply({ return: STATUS }));
    expect(calls).toHaveLength(count);
  });

  it("short lines in reads of their own, 5000 bytes in all, are all answered", async () => {
    const { path, accepted, calls } = await served();
    const client = await openClient(path);
    const one = `${line({ execute: "backup-end", arguments: { pad: "z".repeat(960) } })}\n`;
    await sendApart(client, () => accepted[0], [one, one, one, one, one]);
    for (let i = 0; i < 5; i++) expect(await client.next()).toBe(reply({ return: {} }));
    expect(calls).toHaveLength(5);
  });
});

describe("serveControl: a connection that fails", () => {
  // An error on one control connection (a reset, a write to a client that
  // has gone) must not reach the process as an uncaught exception: the node
  // would die of a client's mistake.
  it("an error on a connection is not thrown, and the socket serves on", async () => {
    const nothingUncaught = watchUncaught();
    const { path, accepted } = await served();
    const client = await openClient(path);
    await until(() => accepted.length === 1, "accepted");
    accepted[0]?.destroy(new Error("connection reset by the test"));
    await within(client.closed, "the connection closed");
    await new Promise((resolve) => setTimeout(resolve, 20));
    nothingUncaught();
    expect(await controlNode(path, "query-status")).toStrictEqual(STATUS);
  });

  it("clients that send a command and leave before the answer do not bring the node down", async () => {
    const nothingUncaught = watchUncaught();
    const { path, calls } = await served();
    for (let i = 0; i < 20; i++) {
      const client = await openClient(path);
      client.send(`${line({ execute: "query-status" })}\n`);
      client.socket.destroy();
    }
    await until(() => calls.length === 20, "all twenty asked");
    await new Promise((resolve) => setTimeout(resolve, 50));
    nothingUncaught();
    expect(await controlNode(path, "query-status")).toStrictEqual(STATUS);
  });
});

/** A Unix socket that records each line it receives and answers as `answer` says. */
async function scriptedSocket(answer: (received: string, socket: Socket) => void = () => {}) {
  const dir = testTempDir("csv-control");
  const path = join(dir, "scripted.sock");
  const received: string[] = [];
  const sockets: Socket[] = [];
  const ended: Promise<void>[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on("error", () => {});
    ended.push(new Promise((resolve) => socket.once("end", () => resolve())));
    createInterface({ input: socket }).on("line", (text) => {
      received.push(text);
      answer(text, socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  onTestFinished(() => closeServer(server, sockets));
  return { path, received, sockets, ended };
}

/** The error a promise rejects with, checked to be a ControlError. */
async function controlRefusal(promise: Promise<unknown>): Promise<ControlError> {
  const error = await promise.then(
    (value) => expect.fail(`answered ${JSON.stringify(value)}`),
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ControlError);
  return error as ControlError;
}

describe("controlNode: the client side", () => {
  it("returns the node's `return` value", async () => {
    const { path, calls } = await served();
    expect(await controlNode(path, "query-status")).toStrictEqual(STATUS);
    expect(await controlNode(path, "cut-path", { reason: "test" })).toStrictEqual({});
    expect(await controlNode(path, "file-write", { name: "f" })).toStrictEqual({
      written: { name: "f" },
    });
    expect(calls).toStrictEqual([["status"], ["cutPath", "test"], ["fileWrite", { name: "f" }]]);
  });

  it("throws the node's error as a ControlError of its class and desc", async () => {
    const { path } = await served();
    const error = await controlRefusal(controlNode(path, "cut-path", { reason: "r".repeat(201) }));
    expect(error.errorClass).toBe("GenericError");
    expect(error.message).toBe("cut-path: reason must be a string of at most 200 bytes");
    const unknown = await controlRefusal(controlNode(path, "eject" as never));
    expect(unknown.errorClass).toBe("CommandNotFound");
    expect(unknown.message).toBe(`command "eject" is not one of ${COMMAND_LIST}`);
  });

  // The request is one line: execute, and arguments only when given.
  it("sends one line: the command, with its arguments only when there are some", async () => {
    const scripted = await scriptedSocket((_, socket) => socket.write('{"return":{}}\n'));
    await controlNode(scripted.path, "query-status");
    await controlNode(scripted.path, "cut-path", { reason: "by test" });
    await controlNode(scripted.path, "backup-end", {});
    expect(scripted.received).toStrictEqual([
      '{"execute":"query-status"}',
      '{"execute":"cut-path","arguments":{"reason":"by test"}}',
      '{"execute":"backup-end","arguments":{}}',
    ]);
  });

  it("ends its connection once answered", async () => {
    const scripted = await scriptedSocket((_, socket) => socket.write('{"return":1}\n'));
    expect(await controlNode(scripted.path, "query-status")).toBe(1);
    await within(scripted.ended[0] as Promise<void>, "the client's end");
  });

  // Only the first line is the answer.
  it("takes the first reply line and ignores what follows", async () => {
    const scripted = await scriptedSocket((_, socket) =>
      socket.write('{"return":1}\n{"return":2}\n{"error":{"class":"C","desc":"d"}}\n'),
    );
    expect(await controlNode(scripted.path, "query-status")).toBe(1);
  });

  it("the value of `return` as it is: null, a list, or undefined when absent", async () => {
    const answers = [
      ['{"return":null}', null],
      ['{"return":[1,"a"]}', [1, "a"]],
      ['{"return":"text"}', "text"],
      ["{}", undefined],
      ['{"error":null,"return":5}', 5],
      ['{"error":false,"return":6}', 6],
    ] as const;
    for (const [text, value] of answers) {
      const scripted = await scriptedSocket((_, socket) => socket.write(`${text}\n`));
      expect(await controlNode(scripted.path, "query-status")).toStrictEqual(value);
    }
  });

  // An error without a class is a GenericError; without a desc its message is "error".
  it("an error reply: its class and desc, GenericError and 'error' where absent", async () => {
    const answers: [string, string, string][] = [
      [
        '{"error":{"class":"DeviceNotActive","desc":"the VM is stopped"}}',
        "DeviceNotActive",
        "the VM is stopped",
      ],
      ['{"error":{"desc":"no class"}}', "GenericError", "no class"],
      ['{"error":{"class":"Custom"}}', "Custom", "error"],
      ['{"error":{}}', "GenericError", "error"],
      ['{"error":{"class":"A","desc":"b"},"return":{}}', "A", "b"],
    ];
    for (const [text, errorClass, message] of answers) {
      const scripted = await scriptedSocket((_, socket) => socket.write(`${text}\n`));
      const error = await controlRefusal(controlNode(scripted.path, "vm-stop", { vm: "x" }));
      expect(error.errorClass).toBe(errorClass);
      expect(error.message).toBe(message);
    }
  });

  it("a reply that is not JSON: GenericError naming the socket", async () => {
    const scripted = await scriptedSocket((_, socket) => socket.write("ok\n"));
    const error = await controlRefusal(controlNode(scripted.path, "query-status"));
    expect(error.errorClass).toBe("GenericError");
    expect(error.message).toBe(`${scripted.path}: the reply is not JSON`);
  });

  // readline passes the socket's error on too: it must not be thrown as well.
  it("no socket at the path: Unreachable, with the path and the system's reason", async () => {
    const nothingUncaught = watchUncaught();
    const path = join(testTempDir("csv-control"), "absent.sock");
    const error = await controlRefusal(controlNode(path, "query-status"));
    expect(error.errorClass).toBe("Unreachable");
    expect(error.message).toBe(`${path}: connect ENOENT ${path}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    nothingUncaught();
  });

  it("a path that is a plain file: Unreachable", async () => {
    const nothingUncaught = watchUncaught();
    const path = join(testTempDir("csv-control"), "plain");
    writeFileSync(path, "");
    const error = await controlRefusal(controlNode(path, "restore-path"));
    expect(error.errorClass).toBe("Unreachable");
    expect(error.message).toBe(`${path}: connect ECONNREFUSED ${path}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    nothingUncaught();
  });

  // A paused node accepts the connection and answers nothing.
  it("a node that does not answer: Timeout after timeoutMs, naming the path and command; the connection dropped", async () => {
    const scripted = await scriptedSocket();
    const closed = new Promise<void>((resolve) => {
      const watch = () => {
        const socket = scripted.sockets[0];
        if (socket) socket.once("close", () => resolve());
        else setTimeout(watch, 2);
      };
      watch();
    });
    const error = await controlRefusal(controlNode(scripted.path, "vm-prepare", undefined, 120));
    expect(error.errorClass).toBe("Timeout");
    expect(error.message).toBe(`${scripted.path}: no answer to vm-prepare within 120 ms`);
    await within(closed, "the connection dropped");
    expect(scripted.received).toStrictEqual(['{"execute":"vm-prepare"}']);
  });

  // A node killed mid-command closes the connection: no need to wait 5 s.
  it("a node that closes the connection unanswered: Unreachable at once, naming the path and command", async () => {
    const scripted = await scriptedSocket((_, socket) => socket.end());
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const error = await within(
      controlRefusal(controlNode(scripted.path, "vm-stop", { vm: "a" })),
      "the refusal",
    );
    expect(error.errorClass).toBe("Unreachable");
    expect(error.message).toBe(`${scripted.path}: the connection closed with no answer to vm-stop`);
    expect(vi.getTimerCount()).toBe(0);
    expect(scripted.received).toStrictEqual(['{"execute":"vm-stop","arguments":{"vm":"a"}}']);
  });

  it("a reply whose newline never comes, the connection then closed, is still the answer", async () => {
    const scripted = await scriptedSocket((_, socket) => socket.end('{"return":7}'));
    expect(await controlNode(scripted.path, "query-status")).toBe(7);
  });

  it("waits 5000 ms by default, and not a millisecond less", async () => {
    const scripted = await scriptedSocket();
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const asked = controlNode(scripted.path, "query-status");
    asked.catch(() => {});
    await until(() => scripted.received.length === 1, "request received");
    await vi.advanceTimersByTimeAsync(4999);
    expect(await settled(asked)).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await settled(asked)).toBe(true);
    const error = await controlRefusal(asked);
    expect(error.errorClass).toBe("Timeout");
    expect(error.message).toBe(`${scripted.path}: no answer to query-status within 5000 ms`);
  });

  // Once answered, or refused, no timer is left behind.
  it("leaves no timer once answered or refused", async () => {
    const answered = await scriptedSocket((_, socket) => socket.write('{"return":{}}\n'));
    const failing = await scriptedSocket((_, socket) =>
      socket.write('{"error":{"class":"X","desc":"y"}}\n'),
    );
    const notJson = await scriptedSocket((_, socket) => socket.write("?\n"));
    const absent = join(testTempDir("csv-control"), "absent.sock");
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    expect(await controlNode(answered.path, "query-status")).toStrictEqual({});
    expect(vi.getTimerCount()).toBe(0);
    await controlRefusal(controlNode(failing.path, "query-status"));
    expect(vi.getTimerCount()).toBe(0);
    await controlRefusal(controlNode(notJson.path, "query-status"));
    expect(vi.getTimerCount()).toBe(0);
    await controlRefusal(controlNode(absent, "query-status"));
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("waitForControl", () => {
  it("returns at once when the socket answers", async () => {
    const { path, calls } = await served();
    await expect(waitForControl(path, 1000)).resolves.toBeUndefined();
    expect(calls).toStrictEqual([["status"]]);
  });

  // A node prints "listening" before its control socket is up.
  it("waits for a socket that appears later, asking query-status once it is there", async () => {
    const dir = testTempDir("csv-control");
    const path = join(dir, "late.sock");
    const { node, calls } = fakeNode();
    let server: Server | undefined;
    onTestFinished(() => (server ? closeServer(server, []) : undefined));
    const waiting = waitForControl(path, 5000);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(await settled(waiting)).toBe(false);
    server = await serveControl(path, node);
    await waiting;
    expect(calls).toStrictEqual([["status"]]);
  });

  it("a socket that never appears: Unreachable after timeoutMs, with the last attempt's reason", async () => {
    const nothingUncaught = watchUncaught();
    const path = join(testTempDir("csv-control"), "never.sock");
    const started = performance.now();
    const error = await controlRefusal(waitForControl(path, 200));
    expect(performance.now() - started).toBeGreaterThanOrEqual(199);
    expect(error.errorClass).toBe("Unreachable");
    expect(error.message).toBe(
      `${path}: no answer within 200 ms (${path}: connect ENOENT ${path})`,
    );
    nothingUncaught();
  });

  // A node that answers with an error has not come up: asked again every 50 ms.
  it("asks again every 50 ms while the node answers with an error", async () => {
    let asked = 0;
    const scripted = await scriptedSocket((_, socket) => {
      asked++;
      socket.write('{"error":{"class":"GenericError","desc":"not ready"}}\n');
    });
    const error = await controlRefusal(waitForControl(scripted.path, 500));
    expect(error.errorClass).toBe("Unreachable");
    expect(error.message).toBe(`${scripted.path}: no answer within 500 ms (not ready)`);
    expect(asked).toBeGreaterThanOrEqual(2);
    expect(asked).toBeLessThanOrEqual(11);
  });

  // Each attempt waits what is left of the deadline, at least 100 ms. On a
  // fake clock the deadline is exact: an attempt that waits it all out ends
  // the wait, and says so.
  it("an attempt waits out the time left; at its end the wait is over", async () => {
    const scripted = await scriptedSocket();
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    // The deadline is the clock's reading plus timeoutMs: a clock that does not read 0.
    vi.advanceTimersByTime(10_000);
    const waiting = waitForControl(scripted.path, 1000);
    waiting.catch(() => {});
    await until(() => scripted.received.length === 1, "query-status received");
    await vi.advanceTimersByTimeAsync(999);
    expect(await settled(waiting)).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await settled(waiting)).toBe(true);
    const error = await controlRefusal(waiting);
    expect(error.errorClass).toBe("Unreachable");
    expect(error.message).toBe(
      `${scripted.path}: no answer within 1000 ms (${scripted.path}: no answer to query-status within 1000 ms)`,
    );
    expect(scripted.received).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("an attempt waits at least 100 ms, even when less is left", async () => {
    const scripted = await scriptedSocket();
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    vi.advanceTimersByTime(10_000);
    const waiting = waitForControl(scripted.path, 30);
    waiting.catch(() => {});
    await until(() => scripted.received.length === 1, "query-status received");
    await vi.advanceTimersByTimeAsync(99);
    expect(await settled(waiting)).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(await settled(waiting)).toBe(true);
    const error = await controlRefusal(waiting);
    expect(error.message).toBe(
      `${scripted.path}: no answer within 30 ms (${scripted.path}: no answer to query-status within 100 ms)`,
    );
    expect(scripted.received).toHaveLength(1);
  });
});
