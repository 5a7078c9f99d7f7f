/*
 * The block target's connections at their edges (src/csv/target.ts): a
 * listener that cannot listen says so instead of hanging; a connection is
 * refused once, and what its peer sends after the refusal is not run; a
 * request still queued when its connection closes is not run either; and
 * the reservation checked again after the path's latency counts its
 * conflict. Each runs the target on the test's thread, over loopback.
 */
import { once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { encodeFrame, FrameReader, Op, Status } from "../src/csv/protocol.js";
import { ReservationType, ServiceAction } from "../src/csv/reservations.js";
import { LunTarget, type TargetOptions } from "../src/csv/target.js";
import { MemoryFile } from "../src/storage/block-file.js";
import { within } from "./support/csv-target-peer.js";
import { rejection } from "./support/refusal.js";
import { testTempDir } from "./support/temp.js";

const utf8 = new TextEncoder();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function served(lun: MemoryFile, options: TargetOptions = {}) {
  const target = new LunTarget(lun, { durable: false, ...options });
  const port = await target.listen();
  onTestFinished(() => target.close());
  return { target, port };
}

/** A loopback connection that keeps its end open when the target ends its own, and the frames it got. */
async function halfOpenPeer(port: number): Promise<{ socket: Socket; types: number[] }> {
  const socket = connect({ host: "127.0.0.1", port, allowHalfOpen: true });
  socket.on("error", () => {});
  onTestFinished(() => {
    socket.destroy();
  });
  await within(once(socket, "connect"), "the connection", 3000);
  const reader = new FrameReader();
  const types: number[] = [];
  socket.on("data", (chunk: Buffer) => {
    for (const frame of reader.push(chunk)) types.push(frame.type);
  });
  return { socket, types };
}

/** A WRITE of `data` at `offset`. */
function write(tag: number, offset: number, data: Uint8Array): Uint8Array {
  const payload = new Uint8Array(12 + data.length);
  const view = new DataView(payload.buffer);
  view.setBigUint64(0, BigInt(offset), true);
  view.setUint32(8, data.length, true);
  payload.set(data, 12);
  return encodeFrame(Op.write, tag, payload);
}

/** PERSISTENT RESERVE OUT's frame: action, type, key, service action key. */
function reserveOut(action: number, type: number, key: bigint, serviceKey = 0n) {
  const payload = new Uint8Array(20);
  const view = new DataView(payload.buffer);
  payload[0] = action;
  payload[1] = type;
  view.setBigUint64(4, key, true);
  view.setBigUint64(12, serviceKey, true);
  return { type: Op.reserveOut, status: 0, tag: 1, payload };
}

describe("listening", () => {
  it("listen() rejects when the port is taken, naming the error", async () => {
    const other = createServer();
    await new Promise<void>((resolve) => other.listen(0, "127.0.0.1", resolve));
    onTestFinished(() => new Promise<void>((resolve) => other.close(() => resolve())));
    const address = other.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    const target = new LunTarget(new MemoryFile("lun", new Uint8Array(4096)), { durable: false });
    const error = await within(rejection(target.listen(address.port)), "the refusal", 3000);
    expect((error as NodeJS.ErrnoException).code).toBe("EADDRINUSE");
  });

  it("listens on loopback by default", async () => {
    const { target } = await served(new MemoryFile("lun", new Uint8Array(4096)));
    const server = (target as unknown as { server: import("node:net").Server }).server;
    expect(server.address()).toMatchObject({ address: "127.0.0.1" });
  });

  it("listenLocal() rejects in a folder that does not exist", async () => {
    const target = new LunTarget(new MemoryFile("lun", new Uint8Array(4096)), { durable: false });
    const path = join(testTempDir("csv-target"), "absent", "lun.sock");
    const error = await within(rejection(target.listenLocal(path)), "the refusal", 3000);
    expect((error as NodeJS.ErrnoException).syscall).toBe("listen");
  });
});

describe("a refused connection", () => {
  // The refusal ends the target's side; a peer that keeps its own open is
  // held a second before it is destroyed, and meanwhile nothing it sends runs.
  it("meeting its idle timeout after the refusal is refused once", async () => {
    const { target, port } = await served(new MemoryFile("lun", new Uint8Array(4096)), {
      idleTimeoutMs: 150,
    });
    const peer = await halfOpenPeer(port);
    peer.socket.write(encodeFrame(Op.flush, 1));
    await within(
      (async () => {
        while (peer.types.length === 0) await sleep(5);
      })(),
      "the error frame",
      3000,
    );
    await sleep(400);
    expect(peer.types).toStrictEqual([Op.error]);
    expect(target.counters.protocolErrors).toBe(1);
  });

  it("runs nothing its peer sends after the refusal", async () => {
    const lun = new MemoryFile("lun", new Uint8Array(4096));
    const { target, port } = await served(lun, { handshakeTimeoutMs: 100 });
    const peer = await halfOpenPeer(port);
    await within(
      (async () => {
        while (peer.types.length === 0) await sleep(5);
      })(),
      "the handshake refusal",
      3000,
    );
    peer.socket.write(
      Buffer.concat([encodeFrame(Op.login, 1, utf8.encode("late")), write(2, 0, Uint8Array.of(7))]),
    );
    await sleep(200);
    expect(target.counters.writes).toBe(0);
    expect(lun.contents()[0]).toBe(0);
    expect(peer.types).toStrictEqual([Op.error]);
  });
});

describe("a connection that closes", () => {
  // Requests of one connection run in order; one still waiting its turn
  // when the connection closes has nobody to answer and is not run.
  it("does not run a request still queued when it closed; the one running finishes", async () => {
    const lun = new MemoryFile("lun", new Uint8Array(4096));
    const { target, port } = await served(lun, { latencyMs: 100 });
    const socket = connect({ host: "127.0.0.1", port });
    socket.on("error", () => {});
    await within(once(socket, "connect"), "the connection", 3000);
    socket.write(encodeFrame(Op.login, 1, utf8.encode("node-1")));
    await within(once(socket, "data"), "the LOGIN reply", 3000);
    socket.write(Buffer.concat([write(2, 0, Uint8Array.of(1)), write(3, 1, Uint8Array.of(2))]));
    await sleep(40);
    socket.destroy();
    await sleep(400);
    expect(target.counters.writes).toBe(1);
    expect([...lun.contents().subarray(0, 2)]).toStrictEqual([1, 0]);
  });
});

describe("the reservation checked again after the path's wait", () => {
  it("counts the conflict it finds, and writes nothing", async () => {
    const lun = new MemoryFile("lun", new Uint8Array(4096));
    const target = new LunTarget(lun, { durable: false, latencyMs: 50 });
    const WERO = ReservationType.writeExclusiveRegistrantsOnly;
    const good = async (who: string, frame: ReturnType<typeof reserveOut>) => {
      const parts = await target.execute(who, frame);
      expect(new FrameReader().push(Buffer.concat(parts))[0]?.status).toBe(Status.good);
    };
    await good("node-1", reserveOut(ServiceAction.register, 0, 0n, 0xa1n));
    await good("node-2", reserveOut(ServiceAction.register, 0, 0n, 0xa2n));
    await good("node-1", reserveOut(ServiceAction.reserve, WERO, 0xa1n));
    const payload = new Uint8Array(13);
    new DataView(payload.buffer).setUint32(8, 1, true);
    payload[12] = 9;
    const writing = target.execute("node-2", { type: Op.write, status: 0, tag: 5, payload });
    await good("node-1", reserveOut(ServiceAction.preempt, WERO, 0xa1n, 0xa2n));
    const reply = new FrameReader().push(Buffer.concat(await writing))[0];
    expect(reply?.status).toBe(Status.reservationConflict);
    expect(target.counters.conflicts).toBe(1);
    expect(target.counters.writes).toBe(0);
    expect(lun.contents()[0]).toBe(0);
  });
});
