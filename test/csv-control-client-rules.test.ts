import { writeFileSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it, onTestFinished, vi } from "vitest";
import { NODE_COUNTERS, parseFailoverReply, parseNodeStatus } from "../src/csv/control.js";
import {
  clusterStatus,
  NodeControl,
  queryNode,
  queryTarget,
  requestFailover,
} from "../src/csv/control-client.js";
import { encodeFrame, FrameReader, Op, ProtocolError, REPLY, Status } from "../src/csv/protocol.js";
import { InAction, ReservationType, ServiceAction } from "../src/csv/reservations.js";
import { LunTarget } from "../src/csv/target.js";
import {
  BusyError,
  TargetClient,
  TargetCommandError,
  TargetConnectionError,
} from "../src/csv/target-client.js";
import { MemoryFile } from "../src/storage/block-file.js";
import {
  loadTransportSecurity,
  secureIncoming,
  type TransportSecurity,
} from "../src/transport/secure.js";
import { freePort } from "./support/csv-cluster.js";
import { testTempDir } from "./support/temp.js";

// The client side of the control messages (docs/csv.md, "Status and
// planned failover"): what `hvlab csv status`, `hvlab csv failover` and the
// failover timeline ask of a running cluster. Each test runs on this
// thread against fake nodes on loopback that speak the node protocol
// (LOGIN, then STATUS and FAILOVER frames) as a test needs, and against
// the real target (target.ts) over a LUN in memory or a scripted one; TLS
// is a pre-shared key, which needs no openssl.

afterEach(() => {
  vi.useRealTimers();
});

/** The clock's own timers and Date.now, which a test's fake timers leave alone. */
const realSetTimeout = globalThis.setTimeout;
const realClearTimeout = globalThis.clearTimeout;
const realNow = Date.now;

/** Resolves when `connection` has closed; fails after 2 s (on the real clock) if it has not. */
async function hungUp(connection: { closed: Promise<void> } | undefined): Promise<void> {
  if (!connection) throw new Error("no connection was made");
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      connection.closed,
      new Promise<never>((_, reject) => {
        timer = realSetTimeout(
          () => reject(new Error("the connection was not closed within 2 s")),
          2000,
        );
      }),
    ]);
  } finally {
    realClearTimeout(timer);
  }
}

/** Waits until `test` holds, checking every 2 ms; fails naming `what` after 5 s (on the real clock). */
async function until(test: () => boolean, what: string): Promise<void> {
  const deadline = realNow() + 5000;
  while (!test()) {
    if (realNow() > deadline) throw new Error(`${what}: not within 5 s`);
    await new Promise((resolve) => realSetTimeout(resolve, 2));
  }
}

const json = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));
const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

/** A STATUS answer of node `node` that knows `epoch` and its `coordinator`. */
function statusRecord(node: number, epoch: number, coordinator: number, port = 7000 + node) {
  return {
    node,
    pid: 1000 + node,
    port,
    role: node === coordinator ? "coordinator" : "node",
    epoch,
    coordinator,
    mode: "direct",
    redirected: null,
    path: "up",
    backup: false,
    clusterBandwidth: 125_000_000,
    key: `0x${node.toString(16)}0000000${epoch.toString(16)}`,
    members: [1, 2, 3],
    heartbeatMs: 250,
    misses: 4,
    uptimeMs: 1000 * node,
    atMs: 1_800_000_000_000 + node,
    io: Object.fromEntries(NODE_COUNTERS.map((name, i) => [name, node * 100 + i])),
    peers: [{ id: 1, alive: true, pathCut: false }],
  };
}

/** What parseNodeStatus makes of that answer: what the client returns. */
const parsed = (record: unknown) => parseNodeStatus(json(record));

/** A request as a fake node or target received it. */
interface Received {
  readonly type: number;
  readonly tag: number;
  readonly payload: Uint8Array;
}

/** One connection a fake node accepted. */
interface Connection {
  readonly socket: Socket;
  readonly requests: Received[];
  /** Resolves when the connection has closed. */
  readonly closed: Promise<void>;
  /** Whether it has closed. */
  isClosed(): boolean;
}

/** Sends the reply to `request`. */
function answer(socket: Socket, request: Received, payload?: Uint8Array, status = 0): void {
  socket.write(encodeFrame(request.type | REPLY, request.tag, payload, status));
}

/**
 * A node on a loopback port that answers LOGIN (unless `silentLogin`) and
 * every other request as `script` says, with `security` (plain TCP by
 * default); stopped when the test ends.
 */
async function fakeNode(
  script: (request: Received, connection: Connection) => void,
  options: { security?: TransportSecurity; silentLogin?: boolean; port?: number } = {},
): Promise<{ port: number; connections: Connection[] }> {
  const connections: Connection[] = [];
  const sockets = new Set<Socket>();
  const serve = (socket: Socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    let closedNow = false;
    const connection: Connection = {
      socket,
      requests: [],
      closed: new Promise((resolve) =>
        socket.once("close", () => {
          closedNow = true;
          resolve();
        }),
      ),
      isClosed: () => closedNow,
    };
    connections.push(connection);
    const reader = new FrameReader();
    socket.on("data", (chunk: Buffer) => {
      for (const frame of reader.push(chunk)) {
        const request = {
          type: frame.type,
          tag: frame.tag,
          payload: Uint8Array.from(frame.payload),
        };
        connection.requests.push(request);
        if (request.type !== Op.login) script(request, connection);
        else if (!options.silentLogin) answer(socket, request, new Uint8Array(8));
      }
    });
  };
  const incoming = secureIncoming(options.security ?? { kind: "plain", insecure: false }, {
    accepted: ({ socket }) => serve(socket),
    refused: (_reason, _peer, reply) => reply?.destroy(),
  });
  const server = createServer((raw) => {
    sockets.add(raw);
    raw.on("error", () => {});
    incoming(raw);
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
  onTestFinished(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  return { port: address.port, connections };
}

/** A node that answers every STATUS with `record`. */
const answering = (record: unknown, options: { security?: TransportSecurity } = {}) =>
  fakeNode((request, { socket }) => {
    if (request.type === Op.status) answer(socket, request, json(record));
  }, options);

/** A node that accepts connections and answers nothing but LOGIN. */
const silent = () => fakeNode(() => {});

/** The error a promise rejects with (a fulfilled promise fails the test). */
async function refusal(promise: Promise<unknown>): Promise<Error> {
  return await promise.then(
    (value) => expect.fail(`answered ${JSON.stringify(value)}`),
    (error: Error) => error,
  );
}

/** A pre-shared key for both ends, in a file of the test's own folder. */
function psk(): { server: TransportSecurity; client: TransportSecurity } {
  const file = join(testTempDir("csv-control-psk"), "cluster.psk");
  writeFileSync(file, `csv-node:${"5a".repeat(32)}\n`);
  return {
    server: loadTransportSecurity({ tlsPsk: file }, "server"),
    client: loadTransportSecurity({ tlsPsk: file }, "client"),
  };
}

const INITIATOR = `control-${process.pid}`;
const refusedMessage = (port: number) =>
  `127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`;
const noAnswer = (port: number, ms: number) =>
  `node 127.0.0.1:${port} did not answer within ${ms} ms`;

describe("queryNode", () => {
  // A control request is a connection of its own: LOGIN as control-PID,
  // one STATUS with no payload, and the connection closed once answered.
  it("logs in as control-PID, sends one STATUS with no payload, returns the parsed status and hangs up", async () => {
    const record = statusRecord(2, 9, 1);
    const node = await answering(record);
    expect(await queryNode(node.port, 1000)).toStrictEqual(parsed(record));
    expect(node.connections).toHaveLength(1);
    const [connection] = node.connections;
    await hungUp(connection);
    expect(connection?.requests.map((r) => r.type)).toStrictEqual([Op.login, Op.status]);
    expect(text(connection?.requests[0]?.payload ?? new Uint8Array())).toBe(INITIATOR);
    expect(connection?.requests[1]?.payload).toHaveLength(0);
  });

  it("a port nobody listens on: the connection's error, naming host and port", async () => {
    const port = await freePort();
    const error = await refusal(queryNode(port, 1000));
    expect(error).toBeInstanceOf(TargetConnectionError);
    expect(error.message).toBe(refusedMessage(port));
  });

  // A paused node (SIGSTOP) accepts the connection in its kernel and answers nothing.
  it("a node that does not answer LOGIN: 'did not answer' after timeoutMs", async () => {
    const node = await fakeNode(() => {}, { silentLogin: true });
    const error = await refusal(queryNode(node.port, 150));
    expect(error.message).toBe(noAnswer(node.port, 150));
  });

  it("a node that answers LOGIN but not STATUS: 'did not answer', and the connection is closed", async () => {
    const node = await silent();
    const started = realNow();
    const error = await refusal(queryNode(node.port, 150));
    expect(realNow() - started).toBeGreaterThanOrEqual(145);
    expect(error.message).toBe(noAnswer(node.port, 150));
    await hungUp(node.connections[0]);
    expect(node.connections[0]?.requests.map((r) => r.type)).toStrictEqual([Op.login, Op.status]);
  });

  it("a refusal of STATUS is its status's error: CHECK CONDITION, BUSY", async () => {
    const checked = await fakeNode((request, { socket }) =>
      answer(socket, request, json("no status here"), Status.checkCondition),
    );
    const error = await refusal(queryNode(checked.port, 1000));
    expect(error).toBeInstanceOf(TargetCommandError);
    expect(error.message).toBe('CHECK CONDITION: "no status here"');
    const busy = await fakeNode((request, { socket }) =>
      answer(socket, request, new TextEncoder().encode("later"), Status.busy),
    );
    const busyError = await refusal(queryNode(busy.port, 1000));
    expect(busyError).toBeInstanceOf(BusyError);
    expect(busyError.message).toBe("BUSY: later");
  });

  // The answer is checked field by field (control.ts): a broken one is refused.
  it("an answer that breaks STATUS's rules: the parser's ProtocolError; the connection still closed", async () => {
    const node = await answering({ ...statusRecord(1, 1, 1), role: "leader" });
    const error = await refusal(queryNode(node.port, 1000));
    expect(error).toBeInstanceOf(ProtocolError);
    expect(error.message).toBe("node status: role must be coordinator or node");
    await hungUp(node.connections[0]);
  });

  it("a node that closes the connection with an error frame: the connection's error", async () => {
    const node = await fakeNode((_, { socket }) =>
      socket.end(encodeFrame(Op.error, 0, json("shutting down"))),
    );
    const error = await refusal(queryNode(node.port, 1000));
    expect(error).toBeInstanceOf(TargetConnectionError);
    expect(error.message).toBe(
      `127.0.0.1:${node.port} as ${INITIATOR}: the target closed the connection: "shutting down"`,
    );
  });

  // A node started with --tls-psk answers TLS 1.3 clients only.
  it("speaks TLS to a node that listens with TLS, when given the security", async () => {
    const keys = psk();
    const record = statusRecord(3, 4, 3);
    const node = await answering(record, { security: keys.server });
    expect(await queryNode(node.port, 2000, keys.client)).toStrictEqual(parsed(record));
    await expect(queryNode(node.port, 500)).rejects.toThrow();
  });

  it("leaves no timer once answered, or refused", async () => {
    const record = statusRecord(1, 2, 1);
    const node = await answering(record);
    const broken = await answering({ ...record, key: "nope" });
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    expect(await queryNode(node.port, 1000)).toStrictEqual(parsed(record));
    expect(vi.getTimerCount()).toBe(0);
    await refusal(queryNode(broken.port, 1000));
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("requestFailover", () => {
  // FAILOVER (type 20) carries {"to": N} to the coordinator; its answer is checked (control.ts).
  it('sends FAILOVER with {"to": N} alone and returns the coordinator\'s parsed answer', async () => {
    const reply = { ok: true, from: 1, to: 3, epoch: 12, pauseMs: 41.5 };
    const node = await fakeNode((request, { socket }) => {
      if (request.type === Op.failover) answer(socket, request, json(reply));
    });
    expect(await requestFailover(node.port, 3, 1000)).toStrictEqual(
      parseFailoverReply(json(reply)),
    );
    const [connection] = node.connections;
    await hungUp(connection);
    expect(connection?.requests.map((r) => r.type)).toStrictEqual([Op.login, Op.failover]);
    expect(text(connection?.requests[0]?.payload ?? new Uint8Array())).toBe(INITIATOR);
    expect(text(connection?.requests[1]?.payload ?? new Uint8Array())).toBe('{"to":3}');
  });

  it("a refusal the coordinator gives in its answer is returned, not thrown", async () => {
    const node = await fakeNode((request, { socket }) =>
      answer(socket, request, json({ ok: false, error: "node 5 is not a member" })),
    );
    expect(await requestFailover(node.port, 5, 1000)).toStrictEqual({
      ok: false,
      error: "node 5 is not a member",
    });
  });

  it("a node that is not the coordinator answers BUSY: a BusyError", async () => {
    const node = await fakeNode((request, { socket }) =>
      answer(socket, request, new TextEncoder().encode("not the coordinator"), Status.busy),
    );
    const error = await refusal(requestFailover(node.port, 2, 1000));
    expect(error).toBeInstanceOf(BusyError);
    expect(error.message).toBe("BUSY: not the coordinator");
  });

  it("an answer that breaks FAILOVER's rules: the parser's ProtocolError", async () => {
    const node = await fakeNode((request, { socket }) =>
      answer(socket, request, json({ ok: true, from: 1, to: 2, epoch: 3, pauseMs: -1 })),
    );
    const error = await refusal(requestFailover(node.port, 2, 1000));
    expect(error).toBeInstanceOf(ProtocolError);
    expect(error.message).toBe("failover reply: pauseMs must be a number of at least 0");
  });

  it("no answer within timeoutMs: 'did not answer', the connection closed", async () => {
    const node = await silent();
    const error = await refusal(requestFailover(node.port, 2, 120));
    expect(error.message).toBe(noAnswer(node.port, 120));
    await hungUp(node.connections[0]);
  });

  it("a port nobody listens on: the connection's error", async () => {
    const port = await freePort();
    const error = await refusal(requestFailover(port, 2, 1000));
    expect(error).toBeInstanceOf(TargetConnectionError);
    expect(error.message).toBe(refusedMessage(port));
  });

  it("speaks TLS to a coordinator that listens with TLS, when given the security", async () => {
    const keys = psk();
    const reply = { ok: true, from: 2, to: 1, epoch: 5, pauseMs: 0 };
    const node = await fakeNode((request, { socket }) => answer(socket, request, json(reply)), {
      security: keys.server,
    });
    expect(await requestFailover(node.port, 1, 2000, keys.client)).toStrictEqual(reply);
  });
});

const LUN_BYTES = 1 << 20;

/** The real target over a LUN in memory, on a loopback port, closed when the test ends. */
async function realTarget(security?: TransportSecurity): Promise<{ port: number }> {
  const memory = new MemoryFile("/control/lun", new Uint8Array(LUN_BYTES), LUN_BYTES);
  const target = new LunTarget(memory, { durable: false, ...(security ? { security } : {}) });
  const port = await target.listen();
  onTestFinished(() => target.close());
  return { port };
}

/** An initiator of the target, closed when the test ends. */
async function initiator(port: number, name: string, security?: TransportSecurity) {
  const client = await TargetClient.connect(port, name, 5000, security ? { security } : {});
  onTestFinished(() => client.close());
  return client;
}

/** Reserves the LUN for `holder` with `type`, both registered first. */
async function reserve(port: number, keys: bigint[], holderKey: bigint, type: number) {
  for (const [i, key] of keys.entries()) {
    const client = await initiator(port, `node-${i + 1}`);
    await client.register(key);
    if (key === holderKey) await client.reserveOut(ServiceAction.reserve, type, key);
  }
}

describe("queryTarget", () => {
  // PERSISTENT RESERVE IN: READ KEYS (the PRgeneration and each key) and
  // READ RESERVATION (the holder's key and type), keys in lower-case hex.
  it("a LUN with nothing registered: generation 0, no keys, no holder, no type", async () => {
    const { port } = await realTarget();
    expect(await queryTarget(port, 1000)).toStrictEqual({
      port,
      generation: 0,
      keys: [],
      holder: null,
      type: null,
    });
  });

  it("registered keys in hex, in the target's order, and the holder's key and type", async () => {
    const { port } = await realTarget();
    await reserve(
      port,
      [0xabcdef0123456789n, 0x1fn, 0x2000000001n],
      0x1fn,
      ReservationType.writeExclusiveRegistrantsOnly,
    );
    expect(await queryTarget(port, 1000)).toStrictEqual({
      port,
      generation: 3,
      keys: ["0xabcdef0123456789", "0x1f", "0x2000000001"],
      holder: "0x1f",
      type: 5,
    });
  });

  it("keys registered with nothing reserved: no holder and no type", async () => {
    const { port } = await realTarget();
    await reserve(port, [0x10n, 0x20n], 0n, 0);
    expect(await queryTarget(port, 1000)).toStrictEqual({
      port,
      generation: 2,
      keys: ["0x10", "0x20"],
      holder: null,
      type: null,
    });
  });

  /** A target that answers LOGIN, then READ KEYS and READ RESERVATION as given, and records. */
  async function scriptedTarget(keys: Uint8Array, reservation: Uint8Array, hold = false) {
    const held: Received[] = [];
    const target = await fakeNode((request, { socket }) => {
      if (request.type !== Op.reserveIn) return;
      held.push(request);
      if (hold) return;
      answer(socket, request, request.payload[0] === InAction.readKeys ? keys : reservation);
    });
    return { ...target, held };
  }

  function u32u64(generation: number, ...keys: bigint[]): Uint8Array {
    const out = new Uint8Array(4 + 8 * keys.length);
    const view = new DataView(out.buffer);
    view.setUint32(0, generation, true);
    for (const [i, key] of keys.entries()) view.setBigUint64(4 + 8 * i, key, true);
    return out;
  }

  // The generation is READ KEYS'; READ RESERVATION's is not used.
  it("logs in as status-PID and asks READ KEYS and READ RESERVATION at once; the generation is READ KEYS'", async () => {
    const reservation = new Uint8Array(13);
    new DataView(reservation.buffer).setUint32(0, 99, true);
    new DataView(reservation.buffer).setBigUint64(4, 0xfeedn, true);
    reservation[12] = 0; // type 0 is a type, not its absence
    const target = await scriptedTarget(u32u64(7, 0xfeedn, 0xbeefn), reservation);
    expect(await queryTarget(target.port, 1000)).toStrictEqual({
      port: target.port,
      generation: 7,
      keys: ["0xfeed", "0xbeef"],
      holder: "0xfeed",
      type: 0,
    });
    const [connection] = target.connections;
    await hungUp(connection);
    expect(text(connection?.requests[0]?.payload ?? new Uint8Array())).toBe(
      `status-${process.pid}`,
    );
    expect(connection?.requests.slice(1).map((r) => [r.type, [...r.payload]])).toStrictEqual([
      [Op.reserveIn, [InAction.readKeys]],
      [Op.reserveIn, [InAction.readReservation]],
    ]);
  });

  it("both questions are in flight before either is answered", async () => {
    const target = await scriptedTarget(u32u64(1), u32u64(1), true);
    const asked = queryTarget(target.port, 1000);
    await until(() => target.held.length === 2, "both READ requests sent");
    const [keys, reservation] = target.held;
    const socket = target.connections[0]?.socket as Socket;
    answer(socket, reservation as Received, u32u64(1));
    answer(socket, keys as Received, u32u64(4, 0x5n));
    expect(await asked).toStrictEqual({
      port: target.port,
      generation: 4,
      keys: ["0x5"],
      holder: null,
      type: null,
    });
  });

  it("a target that does not answer: 'target ... did not answer', the connection closed", async () => {
    const target = await scriptedTarget(u32u64(0), u32u64(0), true);
    const error = await refusal(queryTarget(target.port, 120));
    expect(error.message).toBe(`target 127.0.0.1:${target.port} did not answer within 120 ms`);
    await hungUp(target.connections[0]);
  });

  it("a target that does not answer LOGIN: 'target ... did not answer'", async () => {
    const target = await fakeNode(() => {}, { silentLogin: true });
    const error = await refusal(queryTarget(target.port, 120));
    expect(error.message).toBe(`target 127.0.0.1:${target.port} did not answer within 120 ms`);
  });

  it("a port nobody listens on: the connection's error", async () => {
    const port = await freePort();
    const error = await refusal(queryTarget(port, 1000));
    expect(error).toBeInstanceOf(TargetConnectionError);
    expect(error.message).toBe(refusedMessage(port));
  });

  it("reads a target that listens with TLS, when given the security", async () => {
    const keys = psk();
    const { port } = await realTarget(keys.server);
    const holder = await initiator(port, "node-1", keys.client);
    await holder.register(0x77n);
    await holder.reserveOut(ServiceAction.reserve, ReservationType.writeExclusive, 0x77n);
    expect(await queryTarget(port, 2000, keys.client)).toStrictEqual({
      port,
      generation: 1,
      keys: ["0x77"],
      holder: "0x77",
      type: 1,
    });
  });

  it("leaves no timer once answered", async () => {
    const { port } = await realTarget();
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    await queryTarget(port, 1000);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe("clusterStatus", () => {
  // Nodes are listed by number whatever order they are given in; the
  // cluster's epoch is the highest any node answered with, and its
  // coordinator that node's (the first in node order among equals).
  it("lists the nodes by number and takes the highest epoch's coordinator, the first among equals", async () => {
    const records = [statusRecord(1, 5, 1), statusRecord(2, 7, 2), statusRecord(3, 7, 3)];
    const [n1, n2, n3] = await Promise.all(records.map((record) => answering(record)));
    const nodes = new Map([
      [3, n3?.port as number],
      [1, n1?.port as number],
      [2, n2?.port as number],
    ]);
    expect(await clusterStatus(nodes, { timeoutMs: 1000 })).toStrictEqual({
      epoch: 7,
      coordinator: 2,
      nodes: records.map(parsed),
      unreachable: [],
    });
  });

  it("a later node with a lower epoch does not take the coordinator's place", async () => {
    const records = [statusRecord(1, 2, 3), statusRecord(2, 9, 4), statusRecord(4, 3, 4)];
    const ports = await Promise.all(records.map(async (record) => (await answering(record)).port));
    const nodes = new Map([
      [1, ports[0] as number],
      [2, ports[1] as number],
      [4, ports[2] as number],
    ]);
    const status = await clusterStatus(nodes, { timeoutMs: 1000 });
    expect([status.epoch, status.coordinator]).toStrictEqual([9, 4]);
  });

  // A node that cannot be asked, or that answers as another node, is
  // reported with why; the others are still counted.
  it("reports each node that did not answer, or answered as another, in node order with why", async () => {
    const good = statusRecord(2, 4, 2);
    const n2 = await answering(good);
    const impostor = await answering(statusRecord(2, 8, 2));
    const slow = await silent();
    const refused = await freePort();
    const broken = await answering({ ...statusRecord(6, 1, 1), path: "down" });
    const nodes = new Map([
      [6, broken.port],
      [5, slow.port],
      [4, impostor.port],
      [2, n2.port],
      [1, refused],
    ]);
    expect(await clusterStatus(nodes, { timeoutMs: 200 })).toStrictEqual({
      epoch: 4,
      coordinator: 2,
      nodes: [parsed(good)],
      unreachable: [
        { node: 1, port: refused, error: refusedMessage(refused) },
        { node: 4, port: impostor.port, error: "node 2 answered on this port" },
        { node: 5, port: slow.port, error: noAnswer(slow.port, 200) },
        { node: 6, port: broken.port, error: "node status: path must be up or cut" },
      ],
    });
  });

  it("no node answering: epoch 0 and coordinator 0, every node unreachable", async () => {
    const a = await freePort();
    const b = await freePort();
    expect(
      await clusterStatus(
        new Map([
          [2, b],
          [1, a],
        ]),
        { timeoutMs: 500 },
      ),
    ).toStrictEqual({
      epoch: 0,
      coordinator: 0,
      nodes: [],
      unreachable: [
        { node: 1, port: a, error: refusedMessage(a) },
        { node: 2, port: b, error: refusedMessage(b) },
      ],
    });
  });

  it("no nodes at all: epoch 0, coordinator 0, and empty lists", async () => {
    expect(await clusterStatus(new Map(), { timeoutMs: 100 })).toStrictEqual({
      epoch: 0,
      coordinator: 0,
      nodes: [],
      unreachable: [],
    });
  });

  // Before the first election a node knows epoch 0 and no coordinator.
  it("nodes that know no epoch yet: epoch 0 and coordinator 0", async () => {
    const record = { ...statusRecord(1, 0, 0), role: "node" };
    const node = await answering(record);
    const status = await clusterStatus(new Map([[1, node.port]]), { timeoutMs: 1000 });
    expect([status.epoch, status.coordinator, status.nodes]).toStrictEqual([
      0,
      0,
      [parsed(record)],
    ]);
  });

  // Every node is asked at once: here none answers before all three have been asked.
  it("asks every node at once", async () => {
    const waiting: (() => void)[] = [];
    const barrier = (node: number) =>
      fakeNode((request, { socket }) => {
        waiting.push(() => answer(socket, request, json(statusRecord(node, 1, 1))));
        if (waiting.length === 3) for (const release of waiting) release();
      });
    const fakes = await Promise.all([1, 2, 3].map(barrier));
    const nodes = new Map(fakes.map((fake, i) => [i + 1, fake.port]));
    const status = await clusterStatus(nodes, { timeoutMs: 2000 });
    expect(status.unreachable).toStrictEqual([]);
    expect(status.nodes.map((s) => s.node)).toStrictEqual([1, 2, 3]);
  });

  // `target` is there only when the target's port is given.
  it("adds the target's reservations when its port is given, and no target field otherwise", async () => {
    const record = statusRecord(1, 3, 1);
    const node = await answering(record);
    const { port } = await realTarget();
    await reserve(
      port,
      [0x100000003n],
      0x100000003n,
      ReservationType.writeExclusiveRegistrantsOnly,
    );
    const nodes = new Map([[1, node.port]]);
    expect(await clusterStatus(nodes, { timeoutMs: 1000, targetPort: port })).toStrictEqual({
      epoch: 3,
      coordinator: 1,
      nodes: [parsed(record)],
      unreachable: [],
      target: { port, generation: 1, keys: ["0x100000003"], holder: "0x100000003", type: 5 },
    });
    const without = await clusterStatus(nodes, { timeoutMs: 1000 });
    expect("target" in without).toBe(false);
  });

  // The nodes' failures are reported; the target's is the whole answer's.
  it("a target that cannot be reached fails the whole status", async () => {
    const node = await answering(statusRecord(1, 1, 1));
    const port = await freePort();
    const error = await refusal(
      clusterStatus(new Map([[1, node.port]]), { timeoutMs: 1000, targetPort: port }),
    );
    expect(error).toBeInstanceOf(TargetConnectionError);
    expect(error.message).toBe(refusedMessage(port));
  });

  it("asks nodes and the target over TLS when given the security", async () => {
    const keys = psk();
    const record = statusRecord(2, 6, 2);
    const node = await answering(record, { security: keys.server });
    const { port } = await realTarget(keys.server);
    const status = await clusterStatus(new Map([[2, node.port]]), {
      timeoutMs: 2000,
      targetPort: port,
      security: keys.client,
    });
    expect(status).toStrictEqual({
      epoch: 6,
      coordinator: 2,
      nodes: [parsed(record)],
      unreachable: [],
      target: { port, generation: 0, keys: [], holder: null, type: null },
    });
  });
});

describe("NodeControl", () => {
  it("keeps one connection for every STATUS, logged in once as control-PID", async () => {
    let epoch = 1;
    const node = await fakeNode((request, { socket }) =>
      answer(socket, request, json(statusRecord(2, epoch++, 1))),
    );
    const control = new NodeControl(node.port);
    onTestFinished(() => control.close());
    expect(control.port).toBe(node.port);
    expect(await control.status(1000)).toStrictEqual(parsed(statusRecord(2, 1, 1)));
    expect(await control.status(1000)).toStrictEqual(parsed(statusRecord(2, 2, 1)));
    expect(await control.status(1000)).toStrictEqual(parsed(statusRecord(2, 3, 1)));
    expect(node.connections).toHaveLength(1);
    const requests = node.connections[0]?.requests ?? [];
    expect(requests.map((r) => r.type)).toStrictEqual([Op.login, Op.status, Op.status, Op.status]);
    expect(text(requests[0]?.payload ?? new Uint8Array())).toBe(INITIATOR);
    expect(requests.slice(1).map((r) => r.payload.length)).toStrictEqual([0, 0, 0]);
    expect(node.connections[0]?.isClosed()).toBe(false);
  });

  // A failed request drops the connection: the next one starts afresh.
  it("drops the connection when a request fails, and connects again for the next", async () => {
    let answers = 0;
    const node = await fakeNode((request, { socket }) => {
      answers++;
      const record = statusRecord(1, answers, 1);
      answer(socket, request, json(answers === 1 ? { ...record, mode: "fast" } : record));
    });
    const control = new NodeControl(node.port);
    onTestFinished(() => control.close());
    const error = await refusal(control.status(1000));
    expect(error).toBeInstanceOf(ProtocolError);
    expect(error.message).toBe("node status: mode must be direct or redirected");
    await hungUp(node.connections[0]);
    expect(await control.status(1000)).toStrictEqual(parsed(statusRecord(1, 2, 1)));
    expect(node.connections).toHaveLength(2);
    expect(node.connections[1]?.isClosed()).toBe(false);
  });

  it("a node that does not answer: 'did not answer' after timeoutMs, and the connection dropped", async () => {
    let mute = true;
    const node = await fakeNode((request, { socket }) => {
      if (!mute) answer(socket, request, json(statusRecord(3, 1, 1)));
    });
    const control = new NodeControl(node.port);
    onTestFinished(() => control.close());
    const error = await refusal(control.status(120));
    expect(error.message).toBe(noAnswer(node.port, 120));
    await hungUp(node.connections[0]);
    mute = false;
    expect(await control.status(1000)).toStrictEqual(parsed(statusRecord(3, 1, 1)));
    expect(node.connections).toHaveLength(2);
  });

  it("a node that does not answer LOGIN: 'did not answer' after timeoutMs", async () => {
    const node = await fakeNode(() => {}, { silentLogin: true });
    const control = new NodeControl(node.port);
    onTestFinished(() => control.close());
    const error = await refusal(control.status(120));
    expect(error.message).toBe(noAnswer(node.port, 120));
  });

  // A refused connection is not kept: once a node listens there, it is reached.
  it("a port nobody listens on: the connection's error, and the next request tries again", async () => {
    const port = await freePort();
    const control = new NodeControl(port);
    onTestFinished(() => control.close());
    const error = await refusal(control.status(1000));
    expect(error).toBeInstanceOf(TargetConnectionError);
    expect(error.message).toBe(refusedMessage(port));
    const record = statusRecord(4, 2, 1, port);
    await fakeNode((request, { socket }) => answer(socket, request, json(record)), { port });
    expect(await control.status(1000)).toStrictEqual(parsed(record));
  });

  it("close() hangs up, and the next request connects again", async () => {
    const node = await answering(statusRecord(1, 1, 1));
    const control = new NodeControl(node.port);
    onTestFinished(() => control.close());
    await control.status(1000);
    control.close();
    await hungUp(node.connections[0]);
    expect(await control.status(1000)).toStrictEqual(parsed(statusRecord(1, 1, 1)));
    expect(node.connections).toHaveLength(2);
    expect(node.connections[1]?.isClosed()).toBe(false);
  });

  it("close() with no connection, or twice, does nothing", () => {
    const control = new NodeControl(1);
    expect(() => {
      control.close();
      control.close();
    }).not.toThrow();
  });
});
