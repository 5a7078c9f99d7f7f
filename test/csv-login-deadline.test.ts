/*
 * LOGIN has a deadline (src/csv/target-client.ts): a process paused with
 * SIGSTOP still accepts connections in its kernel and answers nothing, and
 * a client waiting on its LOGIN held the connection, and its own process,
 * open for good. `hvlab csv status` printed its table and then never
 * exited. Here a peer on loopback accepts, reads, and answers LOGIN only
 * when the test says so.
 */
import { once } from "node:events";
import { createServer, type Socket } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it, onTestFinished, vi } from "vitest";
import { queryNode, queryTarget } from "../src/csv/control-client.js";
import { encodeFrame, type Frame, FrameReader, Op, REPLY } from "../src/csv/protocol.js";
import { TargetClient, TargetConnectionError } from "../src/csv/target-client.js";
import { hvlabAsync } from "./support/cli.js";
import { until, within } from "./support/csv-target-peer.js";
import { testTempDir } from "./support/temp.js";

afterEach(() => {
  vi.useRealTimers();
});

/** A peer that accepts connections and keeps each one's frames and whether it has closed. */
class MutePeer {
  readonly connections: { socket: Socket; frames: Frame[]; closed: boolean }[] = [];

  private constructor(readonly server: ReturnType<typeof createServer>) {}

  /** Listens on a loopback port, or on a Unix socket at `path`; closed when the test ends. */
  static async start(path?: string): Promise<MutePeer> {
    const server = createServer();
    const peer = new MutePeer(server);
    server.on("connection", (socket) => {
      const reader = new FrameReader();
      const entry = { socket, frames: [] as Frame[], closed: false };
      peer.connections.push(entry);
      socket.on("error", () => {});
      socket.on("data", (chunk: Buffer) => entry.frames.push(...reader.push(chunk)));
      socket.on("close", () => {
        entry.closed = true;
      });
    });
    if (path === undefined) server.listen(0, "127.0.0.1");
    else server.listen(path);
    await once(server, "listening");
    onTestFinished(async () => {
      for (const c of peer.connections) c.socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    return peer;
  }

  get port(): number {
    const address = this.server.address();
    if (address === null || typeof address === "string") throw new Error("no TCP port");
    return address.port;
  }

  /** The first connection, once its LOGIN has arrived. */
  async loggingIn(): Promise<{ socket: Socket; frames: Frame[]; closed: boolean }> {
    await until(() => this.connections[0]?.frames[0]?.type === Op.login, "the LOGIN");
    return this.connections[0] as { socket: Socket; frames: Frame[]; closed: boolean };
  }
}

/** The caller's rejection, failing the test if it resolves. */
async function refused(promise: Promise<unknown>): Promise<Error> {
  return await promise.then(
    (value) => expect.fail(`answered ${String(value)}`),
    (error: Error) => error,
  );
}

describe("TargetClient.connect", () => {
  it("closes the connection and rejects when LOGIN is not answered within the timeout", async () => {
    const peer = await MutePeer.start();
    const error = await within(
      refused(TargetClient.connect(peer.port, "node-9", 150)),
      "the refusal",
      3000,
    );
    expect(error).toBeInstanceOf(TargetConnectionError);
    expect(error.message).toBe(
      `127.0.0.1:${peer.port} as node-9: no answer to LOGIN within 150 ms`,
    );
    const connection = await peer.loggingIn();
    expect(new TextDecoder().decode(connection.frames[0]?.payload)).toBe("node-9");
    await until(() => connection.closed, "the client's hang-up");
  });

  it("over a Unix socket too", async () => {
    const path = join(testTempDir("csv-login"), "target.sock");
    const peer = await MutePeer.start(path);
    const error = await within(
      refused(TargetClient.connect(0, "node-9", 150, { socketPath: path })),
      "the refusal",
      3000,
    );
    expect(error).toBeInstanceOf(TargetConnectionError);
    expect(error.message).toBe(`${path} as node-9: no answer to LOGIN within 150 ms`);
    await until(() => peer.connections[0]?.closed === true, "the client's hang-up");
  });

  it("waits the whole timeout for LOGIN, counted from the connection, and not a millisecond less", async () => {
    const peer = await MutePeer.start();
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    let settled = false;
    const connecting = TargetClient.connect(peer.port, "node-9", 1000).finally(() => {
      settled = true;
    });
    connecting.catch(() => {});
    const connection = await peer.loggingIn();
    await vi.advanceTimersByTimeAsync(999);
    expect(settled).toBe(false);
    expect(connection.closed).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect((await within(refused(connecting), "the refusal")).message).toMatch(
      /no answer to LOGIN within 1000 ms$/,
    );
    await until(() => connection.closed, "the client's hang-up");
  });
});

describe("the control requests leave nothing open", () => {
  it("queryNode: a node that never answers LOGIN is refused as before, and its connection closed", async () => {
    const peer = await MutePeer.start();
    const error = await refused(queryNode(peer.port, 150));
    expect(error.message).toBe(`node 127.0.0.1:${peer.port} did not answer within 150 ms`);
    const connection = await peer.loggingIn();
    await until(() => connection.closed, "the control client's hang-up");
  });

  it("queryTarget: the same", async () => {
    const peer = await MutePeer.start();
    const error = await refused(queryTarget(peer.port, 150));
    expect(error.message).toBe(`target 127.0.0.1:${peer.port} did not answer within 150 ms`);
    const connection = await peer.loggingIn();
    await until(() => connection.closed, "the control client's hang-up");
  });

  // The request's deadline starts before the connection is made, the
  // client's LOGIN deadline after: a LOGIN answered between the two is a
  // client nobody will use, and it is closed at once.
  it("a LOGIN answered after the request's deadline but before the client's: the late client is closed", async () => {
    const peer = await MutePeer.start();
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const asked = refused(queryNode(peer.port, 100));
    // At once, before the connection is made (no turn of the event loop):
    // the client's LOGIN deadline will come 60 ms after the request's.
    vi.advanceTimersByTime(60);
    const connection = await peer.loggingIn();
    await vi.advanceTimersByTimeAsync(40);
    expect((await asked).message).toBe(`node 127.0.0.1:${peer.port} did not answer within 100 ms`);
    const login = connection.frames[0] as Frame;
    const size = new Uint8Array(8);
    connection.socket.write(encodeFrame(Op.login | REPLY, login.tag, size));
    await until(() => connection.closed, "the late client's hang-up");
    // Nothing but LOGIN was ever sent on it.
    expect(connection.frames.map((f) => f.type)).toStrictEqual([Op.login]);
  });

  it("`hvlab csv status` against a node that never answers exits once it has said so", async () => {
    const peer = await MutePeer.start();
    const run = await within(
      hvlabAsync(["csv", "status", "--nodes", `1=${peer.port}`, "--timeout", "300"], {}, 30_000),
      "hvlab csv status",
      20_000,
    );
    expect(run.stdout).toContain(
      `unreachable: node 127.0.0.1:${peer.port} did not answer within 300 ms`,
    );
    expect(run.stderr).toContain("no node of the cluster answered");
    expect(run.code).toBe(1);
  }, 30_000);
});
