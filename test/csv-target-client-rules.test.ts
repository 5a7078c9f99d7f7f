import { createServer, type Socket } from "node:net";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { VolumeRangeError } from "../src/csv/errors.js";
import { encodeFrame, FrameReader, MAX_IO_BYTES, Op, REPLY, Status } from "../src/csv/protocol.js";
import { ReservationType, ServiceAction } from "../src/csv/reservations.js";
import { LunTarget } from "../src/csv/target.js";
import {
  BusyError,
  ReservationConflictError,
  TargetClient,
  TargetCommandError,
  TargetConnectionError,
} from "../src/csv/target-client.js";
import { MemoryFile } from "../src/storage/block-file.js";
import { expectSameBytes } from "./support/bytes.js";
import { freePort } from "./support/csv-cluster.js";
import { testTempDir } from "./support/temp.js";
import { xorshiftBytes } from "./support/xorshift.js";

// The node side of the block protocol (docs/csv.md, "The block protocol"):
// LOGIN and the LUN's size, requests pipelined by tag, READ and WRITE cut
// into requests of at most 1 MiB, the SAM status of each reply turned into
// its error, the PERSISTENT RESERVE OUT and IN payloads (SPC-3), and how a
// broken or closed connection fails every request in flight. Each test
// talks to a target in this thread on loopback: the real one (target.ts)
// over a LUN in memory, or a scripted one that answers as a test needs.

/** 3 MiB and 4 KiB: room for a READ or WRITE cut into three requests. */
const LUN_BYTES = 3 * MAX_IO_BYTES + 4096;

/** The real target over a patterned LUN in memory, on a loopback port, closed when the test ends. */
async function realTarget(): Promise<{ target: LunTarget; memory: MemoryFile; port: number }> {
  const memory = new MemoryFile("/rules/lun", xorshiftBytes(7, LUN_BYTES), LUN_BYTES);
  const target = new LunTarget(memory, { durable: false });
  const port = await target.listen();
  onTestFinished(() => target.close());
  return { target, memory, port };
}

async function login(port: number, initiator = "node-1"): Promise<TargetClient> {
  const client = await TargetClient.connect(port, initiator);
  onTestFinished(() => client.close());
  return client;
}

/** A request as the scripted target received it. */
interface Received {
  readonly type: number;
  readonly tag: number;
  readonly payload: Uint8Array;
}

/** Sends the reply of `request` with `status` and `payload`. */
function answer(socket: Socket, request: Received, status = 0, payload?: Uint8Array): void {
  socket.write(encodeFrame(request.type | REPLY, request.tag, payload, status));
}

function u64(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, value, true);
  return out;
}

/**
 * A target that answers LOGIN with `lunBytes` and every other request as
 * `script` does, and records what it received. `closed` resolves when the
 * first connection closes.
 */
async function scriptedTarget(
  script: (request: Received, socket: Socket) => void,
  lunBytes = BigInt(LUN_BYTES),
): Promise<{ port: number; received: Received[]; closed: Promise<void> }> {
  const received: Received[] = [];
  const sockets = new Set<Socket>();
  let closedNow: () => void = () => {};
  const closed = new Promise<void>((resolve) => {
    closedNow = resolve;
  });
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.once("close", () => {
      sockets.delete(socket);
      closedNow();
    });
    const reader = new FrameReader();
    socket.on("data", (chunk: Buffer) => {
      for (const frame of reader.push(chunk)) {
        const request = {
          type: frame.type,
          tag: frame.tag,
          payload: Uint8Array.from(frame.payload),
        };
        received.push(request);
        if (request.type === Op.login) answer(socket, request, Status.good, u64(lunBytes));
        else script(request, socket);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  onTestFinished(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  return { port: address.port, received, closed };
}

/** The error a promise rejects with (a fulfilled promise fails the test). */
async function refusal(promise: Promise<unknown>): Promise<Error> {
  return await promise.then(
    () => expect.fail("the request was answered GOOD"),
    (error: Error) => error,
  );
}

describe("LOGIN", () => {
  // LOGIN carries the initiator's name; its reply is the LUN's size, a u64
  // (docs/csv.md, the block protocol's table). The client is named for the
  // address and the initiator, as every error it raises is.
  it("sends the initiator's name first, with tag 1, and takes the LUN's size from all 8 bytes of the reply", async () => {
    const bytes = (1n << 40n) + (3n << 32n) + 5n;
    const scripted = await scriptedTarget(() => {}, bytes);
    const client = await login(scripted.port, "node-7");
    expect(client.bytes).toBe(Number(bytes));
    expect(client.name).toBe(`127.0.0.1:${scripted.port} as node-7`);
    expect(scripted.received).toHaveLength(1);
    expect(scripted.received[0]?.type).toBe(Op.login);
    expect(scripted.received[0]?.tag).toBe(1);
    expect(new TextDecoder().decode(scripted.received[0]?.payload)).toBe("node-7");
  });

  it("learns the size of the real target's LUN", async () => {
    const { port } = await realTarget();
    const client = await login(port);
    expect(client.bytes).toBe(LUN_BYTES);
  });

  // A target that is not there is a TargetConnectionError naming where it was looked for.
  it("names host and port when nothing listens there", async () => {
    const port = await freePort();
    const error = await refusal(TargetClient.connect(port, "node-1"));
    expect(error).toBeInstanceOf(TargetConnectionError);
    expect(error.message).toBe(`127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`);
  });

  // docs/csv.md, "The local path: a Unix socket": same frames, same LUN.
  it("reaches a target's Unix socket instead of TCP, named for the socket's path", async () => {
    const { target, memory } = await realTarget();
    const path = join(testTempDir("csv-client"), "target.sock");
    await target.listenLocal(path);
    const client = await TargetClient.connect(0, "node-1", 5000, { socketPath: path });
    try {
      expect(client.name).toBe(`${path} as node-1`);
      expect(client.bytes).toBe(LUN_BYTES);
      expectSameBytes(await client.read(4096, 512), memory.contents().subarray(4096, 4608));
    } finally {
      client.close();
    }
  });

  it("names the socket's path when no target listens there", async () => {
    const path = join(testTempDir("csv-client"), "absent.sock");
    const error = await refusal(TargetClient.connect(0, "node-1", 5000, { socketPath: path }));
    expect(error).toBeInstanceOf(TargetConnectionError);
    expect(error.message).toBe(`${path}: connect ENOENT ${path}`);
  });
});

describe("reply status", () => {
  // SAM status codes (docs/csv.md): RESERVATION CONFLICT 0x18 is the fence,
  // BUSY 0x08 sends the caller to the coordinator, CHECK CONDITION 0x02 (and
  // any status that is not GOOD) carries the reason; each is its own error.
  it("RESERVATION CONFLICT: a write from an unregistered initiator under a registrants-only reservation (SPC-3 5.6)", async () => {
    const { port, memory } = await realTarget();
    const holder = await login(port, "node-1");
    const stranger = await login(port, "node-2");
    await holder.register(0x11n);
    await holder.reserveOut(
      ServiceAction.reserve,
      ReservationType.writeExclusiveRegistrantsOnly,
      0x11n,
    );
    const before = memory.contents().slice(0, 512);
    const error = await refusal(stranger.write(0, new Uint8Array(512).fill(0xee)));
    expect(error).toBeInstanceOf(ReservationConflictError);
    expect(error.message).toBe(
      "RESERVATION CONFLICT: node-2 is not registered: the LUN is reserved",
    );
    expectSameBytes(memory.contents().subarray(0, 512), before);
  });

  it("CHECK CONDITION: the target's reason, as a TargetCommandError", async () => {
    const { port } = await realTarget();
    const client = await login(port);
    const error = await refusal(client.request(Op.reserveIn, Uint8Array.of(9)));
    expect(error).toBeInstanceOf(TargetCommandError);
    expect(error.message).toBe(
      "CHECK CONDITION: PERSISTENT RESERVE IN service action 9 is not supported",
    );
  });

  it("BUSY: the peer's reason, as a BusyError", async () => {
    const scripted = await scriptedTarget((request, socket) =>
      answer(socket, request, Status.busy, new TextEncoder().encode("node 2 coordinates epoch 4")),
    );
    const client = await login(scripted.port);
    const error = await refusal(client.flush());
    expect(error).toBeInstanceOf(BusyError);
    expect(error.message).toBe("BUSY: node 2 coordinates epoch 4");
  });

  it("a status the client does not know is a CHECK CONDITION too", async () => {
    const scripted = await scriptedTarget((request, socket) =>
      answer(socket, request, 0x28, new TextEncoder().encode("task set full")),
    );
    const client = await login(scripted.port);
    const error = await refusal(client.flush());
    expect(error).toBeInstanceOf(TargetCommandError);
    expect(error.message).toBe("CHECK CONDITION: task set full");
  });

  // A reply carries its request's type with bit 0x80 set (docs/csv.md).
  it("a reply of another type than its request's breaks the connection's contract", async () => {
    const scripted = await scriptedTarget((request, socket) =>
      socket.write(encodeFrame(Op.read | REPLY, request.tag)),
    );
    const client = await login(scripted.port);
    const error = await refusal(client.flush());
    expect(error).toBeInstanceOf(TargetConnectionError);
    expect(error.message).toBe(
      `127.0.0.1:${scripted.port} as node-1: reply of type ${Op.read | REPLY} to a request of type ${Op.flush}`,
    );
  });

  it("each error says its kind by name", () => {
    expect(String(new ReservationConflictError("x"))).toBe("ReservationConflictError: x");
    expect(String(new TargetCommandError("x"))).toBe("TargetCommandError: x");
    expect(String(new BusyError("x"))).toBe("BusyError: x");
    expect(String(new TargetConnectionError("x"))).toBe("TargetConnectionError: x");
  });
});

describe("tags", () => {
  // A reply carries its request's tag, so several requests are in flight on
  // one connection (docs/csv.md): each reply goes to its own request,
  // whatever order the replies come in.
  it("gives every request its own tag and matches replies by tag, not by order", async () => {
    const held: { request: Received; socket: Socket }[] = [];
    const scripted = await scriptedTarget((request, socket) => {
      held.push({ request, socket });
      if (held.length < 3) return;
      // Answered last first, each with bytes telling its own offset.
      for (const { request: r, socket: s } of held.reverse()) {
        const offset = new DataView(r.payload.buffer).getBigUint64(0, true);
        answer(s, r, Status.good, new Uint8Array(16).fill(Number(offset) / 512));
      }
    });
    const client = await login(scripted.port);
    const [a, b, c] = await Promise.all([
      client.read(512, 16),
      client.read(1024, 16),
      client.read(1536, 16),
    ]);
    expect([a?.[0], b?.[0], c?.[0]]).toEqual([1, 2, 3]);
    expect(scripted.received.map((r) => r.tag)).toEqual([1, 2, 3, 4]);
  });

  it("ignores a reply whose tag no request carries", async () => {
    const scripted = await scriptedTarget((request, socket) => {
      // The stray reply and the real one arrive in one chunk.
      socket.write(
        Buffer.concat([
          encodeFrame(request.type | REPLY, 999),
          encodeFrame(request.type | REPLY, request.tag),
        ]),
      );
    });
    const client = await login(scripted.port);
    await client.flush();
    await client.flush();
    expect(scripted.received.map((r) => [r.type, r.tag])).toEqual([
      [Op.login, 1],
      [Op.flush, 2],
      [Op.flush, 3],
    ]);
  });

  // Tag 0 is the error frame's: after tag 2^32 - 1 the client starts again at 1.
  it("wraps from tag 0xffffffff to 1, never to 0", async () => {
    const scripted = await scriptedTarget((request, socket) => answer(socket, request));
    const client = await login(scripted.port);
    (client as unknown as { nextTag: number }).nextTag = 0xffff_ffff;
    await client.flush();
    await client.flush();
    expect(scripted.received.map((r) => r.tag)).toEqual([1, 0xffff_ffff, 1]);
  });
});

describe("READ and WRITE", () => {
  // A READ or WRITE carries at most 1 MiB (docs/csv.md): a longer one is
  // sent as requests of 1 MiB and the rest, each at its own offset, and
  // comes back whole; one of no bytes sends nothing.
  it("reads 2 MiB and 1000 bytes at an odd offset as three requests, byte for byte the LUN's", async () => {
    const { target, memory, port } = await realTarget();
    const client = await login(port);
    const offset = 4093;
    const length = 2 * MAX_IO_BYTES + 1000;
    expectSameBytes(
      await client.read(offset, length),
      memory.contents().subarray(offset, offset + length),
    );
    expect(target.counters.reads).toBe(3);
    expect(target.counters.bytesRead).toBe(length);
  });

  it("reads exactly 1 MiB as one request, and no bytes as none", async () => {
    const { target, memory, port } = await realTarget();
    const client = await login(port);
    expectSameBytes(
      await client.read(MAX_IO_BYTES, MAX_IO_BYTES),
      memory.contents().subarray(MAX_IO_BYTES, 2 * MAX_IO_BYTES),
    );
    expect(await client.read(100, 0)).toHaveLength(0);
    expect(target.counters.reads).toBe(1);
  });

  it("writes 2 MiB and 1000 bytes at an odd offset as three requests, landing where they were aimed", async () => {
    const { target, memory, port } = await realTarget();
    const client = await login(port);
    const offset = 4093;
    const data = xorshiftBytes(99, 2 * MAX_IO_BYTES + 1000);
    const before = memory.contents().slice();
    await client.write(offset, data);
    const after = memory.contents();
    expectSameBytes(after.subarray(offset, offset + data.length), data);
    expectSameBytes(after.subarray(0, offset), before.subarray(0, offset), "bytes before");
    expectSameBytes(
      after.subarray(offset + data.length),
      before.subarray(offset + data.length),
      "bytes after",
    );
    expect(target.counters.writes).toBe(3);
    expect(target.counters.bytesWritten).toBe(data.length);
  });

  it("writes exactly 1 MiB as one request, and no bytes as none", async () => {
    const { target, memory, port } = await realTarget();
    const client = await login(port);
    const data = xorshiftBytes(5, MAX_IO_BYTES);
    await client.write(MAX_IO_BYTES, data);
    await client.write(100, new Uint8Array(0));
    expectSameBytes(memory.contents().subarray(MAX_IO_BYTES, 2 * MAX_IO_BYTES), data);
    expect(target.counters.writes).toBe(1);
  });

  // A range past the LUN's end is refused before it is sent (lun.ts's checkLunRange).
  it("refuses a range one byte past the LUN's end before sending it, and takes one ending at it", async () => {
    const { target, memory, port } = await realTarget();
    const client = await login(port);
    const at = LUN_BYTES - 100;
    const where = `127.0.0.1:${port} as node-1`;
    const read = await refusal(client.read(at, 101));
    expect(read).toBeInstanceOf(VolumeRangeError);
    expect(read.message).toBe(
      `${where}: bytes ${at}..${LUN_BYTES + 1} are outside the LUN's ${LUN_BYTES} bytes`,
    );
    const write = await refusal(client.write(at, new Uint8Array(101)));
    expect(write).toBeInstanceOf(VolumeRangeError);
    expect(write.message).toBe(read.message);
    expect(target.counters.reads + target.counters.writes + target.counters.protocolErrors).toBe(0);
    expectSameBytes(await client.read(at, 100), memory.contents().subarray(at));
  });

  it("refuses a READ answered with fewer bytes than asked", async () => {
    const scripted = await scriptedTarget((request, socket) =>
      answer(socket, request, Status.good, Uint8Array.of(1, 2, 3)),
    );
    const client = await login(scripted.port);
    const error = await refusal(client.read(0, 512));
    expect(error).toBeInstanceOf(TargetCommandError);
    expect(error.message).toBe("READ returned 3 of 512 bytes");
  });

  // READ's payload: offset u64, length u32 (docs/csv.md); FLUSH has none.
  it("sends READ as offset u64 and length u32, little-endian, and FLUSH with no payload", async () => {
    const scripted = await scriptedTarget(
      (request, socket) =>
        answer(
          socket,
          request,
          Status.good,
          request.type === Op.read ? new Uint8Array(0x0203) : undefined,
        ),
      1n << 41n,
    );
    const client = await login(scripted.port);
    await client.read(2 ** 40 + 0x0506, 0x0203);
    await client.flush();
    const [, read, flush] = scripted.received;
    expect(read?.type).toBe(Op.read);
    expect([...(read?.payload ?? [])]).toEqual([6, 5, 0, 0, 0, 1, 0, 0, 3, 2, 0, 0]);
    expect(flush?.type).toBe(Op.flush);
    expect(flush?.payload).toHaveLength(0);
  });
});

describe("persistent reservations", () => {
  // PERSISTENT RESERVE OUT (SPC-3 6.14, docs/csv.md's table): service action
  // u8, type u8, 2 reserved, reservation key u64, service action key u64.
  it("lays out PERSISTENT RESERVE OUT's 20 bytes, and REGISTER as a new key from key 0", async () => {
    const scripted = await scriptedTarget((request, socket) => answer(socket, request));
    const client = await login(scripted.port);
    await client.reserveOut(
      ServiceAction.preempt,
      ReservationType.writeExclusiveRegistrantsOnly,
      0x0102030405060708n,
      0x1112131415161718n,
    );
    await client.reserveOut(ServiceAction.reserve, ReservationType.exclusiveAccess, 0xa1n);
    await client.register(0xabcdn);
    const sent = scripted.received.slice(1);
    expect(sent.map((r) => r.type)).toEqual([Op.reserveOut, Op.reserveOut, Op.reserveOut]);
    expect(sent.map((r) => [...r.payload])).toEqual([
      [4, 5, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, 0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11],
      [1, 3, 0, 0, 0xa1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
      [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xcd, 0xab, 0, 0, 0, 0, 0, 0],
    ]);
  });

  // READ KEYS: PRgeneration u32, then every registered key (SPC-3 6.11.2).
  it("READ KEYS returns the generation and every key, the last one included", async () => {
    const { port } = await realTarget();
    const one = await login(port, "node-1");
    const two = await login(port, "node-2");
    expect(await one.readKeys()).toEqual({ generation: 0, keys: [] });
    await one.register(0x1122334455667788n);
    await two.register(0x22n);
    expect(await two.readKeys()).toEqual({ generation: 2, keys: [0x1122334455667788n, 0x22n] });
  });

  // READ RESERVATION: PRgeneration u32, and the holder's key u64 and type u8 when one is held (SPC-3 6.11.3).
  it("READ RESERVATION returns no reservation until one is held, then its key and type", async () => {
    const { port } = await realTarget();
    const client = await login(port);
    await client.register(0x5an);
    const none = await client.readReservation();
    expect(none).toEqual({ generation: 1 });
    expect("reservation" in none).toBe(false);
    await client.reserveOut(
      ServiceAction.reserve,
      ReservationType.exclusiveAccessRegistrantsOnly,
      0x5an,
    );
    expect(await client.readReservation()).toEqual({
      generation: 1,
      reservation: { key: 0x5an, type: ReservationType.exclusiveAccessRegistrantsOnly },
    });
  });
});

describe("a broken or closed connection", () => {
  // Either side may close with an error frame whose payload says why
  // (docs/csv.md, type 127): every request in flight fails with that reason,
  // and so does every later one: the first reason is the one kept.
  it("fails the request in flight, and every later one, with the reason of the target's error frame", async () => {
    const scripted = await scriptedTarget((_request, socket) =>
      socket.end(encodeFrame(Op.error, 0, new TextEncoder().encode("idle timeout"))),
    );
    const client = await login(scripted.port);
    const reason = `127.0.0.1:${scripted.port} as node-1: the target closed the connection: idle timeout`;
    const first = await refusal(client.flush());
    expect(first).toBeInstanceOf(TargetConnectionError);
    expect(first.message).toBe(reason);
    await scripted.closed;
    const later = await refusal(client.flush());
    expect(later).toBeInstanceOf(TargetConnectionError);
    expect(later.message).toBe(reason);
  });

  // A stream that breaks the protocol cannot be trusted: the client says
  // which field, and closes its side.
  it("fails on bytes that are not a frame, naming the field, and closes the connection", async () => {
    const scripted = await scriptedTarget((_request, socket) => socket.write(new Uint8Array(24)));
    const client = await login(scripted.port);
    const error = await refusal(client.flush());
    expect(error).toBeInstanceOf(TargetConnectionError);
    expect(error.message).toBe(
      `127.0.0.1:${scripted.port} as node-1: frame at stream byte 32: magic: not HVCS`,
    );
    await scripted.closed;
  });

  it("fails the request in flight when the target closes without a word", async () => {
    const scripted = await scriptedTarget((_request, socket) => socket.destroy());
    const client = await login(scripted.port);
    const error = await refusal(client.flush());
    expect(error).toBeInstanceOf(TargetConnectionError);
    expect(error.message).toBe(
      `127.0.0.1:${scripted.port} as node-1: the connection to the target closed`,
    );
  });

  it("fails the request in flight with the socket's error when the target resets the connection", async () => {
    const scripted = await scriptedTarget((_request, socket) => socket.resetAndDestroy());
    const client = await login(scripted.port);
    const error = await refusal(client.flush());
    expect(error).toBeInstanceOf(TargetConnectionError);
    expect(error.message).toBe(`127.0.0.1:${scripted.port} as node-1: read ECONNRESET`);
  });

  it("close() fails the request in flight and every later one, and ends the connection", async () => {
    const scripted = await scriptedTarget(() => {});
    const client = await login(scripted.port);
    const pending = refusal(client.flush());
    client.close();
    const reason = `127.0.0.1:${scripted.port} as node-1: closed`;
    expect((await pending).message).toBe(reason);
    const later = await refusal(client.read(0, 512));
    expect(later).toBeInstanceOf(TargetConnectionError);
    expect(later.message).toBe(reason);
    await scripted.closed;
  });
});
