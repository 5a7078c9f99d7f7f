/*
 * The block target behind TLS, and the path's latency against a conflict
 * (src/csv/target.ts; docs/csv.md, "The target and its protocol"): a TLS
 * target with no refusal callback refuses a plain peer and serves on; a
 * refused peer that keeps its end open is cut a second after its error
 * frame; a TLS hello inside a TLS session is bad framing, not a TLS peer
 * of a plain listener; and a request that meets a reservation is answered
 * at once, not after the path's latency. The target runs on the test's
 * thread over loopback, with a pre-shared key (no certificates to make).
 */
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished, vi } from "vitest";
import { encodeFrame, type Frame, FrameReader, Op, REPLY, Status } from "../src/csv/protocol.js";
import { ReservationType, ServiceAction } from "../src/csv/reservations.js";
import { LunTarget, type TargetOptions } from "../src/csv/target.js";
import { TargetClient } from "../src/csv/target-client.js";
import { MemoryFile } from "../src/storage/block-file.js";
import {
  connectSecure,
  loadTransportSecurity,
  PLAIN_PEER_OF_TLS,
  TLS_PEER_OF_PLAIN,
  type TransportSecurity,
} from "../src/transport/secure.js";
import { decoded, realSetTimeout, TargetPeer, within } from "./support/csv-target-peer.js";

let root = "";
const psk = (role: "server" | "client"): TransportSecurity =>
  loadTransportSecurity({ tlsPsk: join(root, "cluster.psk") }, role);

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "hvlab-target-tls-"));
  writeFileSync(join(root, "cluster.psk"), `node-1:${"3c".repeat(32)}\n`);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));
afterEach(() => {
  vi.useRealTimers();
});

/** A LUN of `bytes` numbered bytes in memory. */
function lun(bytes = 64 * 1024): MemoryFile {
  return new MemoryFile(
    "/tls-rules/lun",
    Uint8Array.from({ length: bytes }, (_, i) => i & 0xff),
    bytes,
  );
}

/** A target listening on loopback with `options` (no refusal callback unless given), closed when the test ends. */
async function served(options: TargetOptions): Promise<{ target: LunTarget; port: number }> {
  const target = new LunTarget(lun(), { durable: false, ...options });
  const port = await target.listen();
  onTestFinished(() => target.close());
  return { target, port };
}

describe("a TLS target's refusals", () => {
  it("refuses a plain peer with no onRefused given, counts it, and serves a TLS node on", async () => {
    const { target, port } = await served({ security: psk("server") });
    const plain = await TargetPeer.open(port);
    plain.send(encodeFrame(Op.login, 1, new TextEncoder().encode("node-1")));
    expect(await plain.refusal()).toBe(PLAIN_PEER_OF_TLS);
    expect(target.counters.refused).toBe(1);
    expect(target.counters.connections).toBe(0);
    // The target is still up, and a node with the key reads its LUN.
    const client = await TargetClient.connect(port, "node-1", 5000, { security: psk("client") });
    try {
      expect([...(await client.read(256, 4))]).toEqual([0, 1, 2, 3]);
    } finally {
      client.close();
    }
    expect(target.counters.refused).toBe(1);
    expect(target.counters.connections).toBe(1);
  });

  // As a plain target does with a peer it refuses (test/csv-target-rules.test.ts).
  it("destroys a refused peer's connection 1000 ms after the error frame even if the peer keeps its end open", async () => {
    const { target, port } = await served({ security: psk("server") });
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const peer = await TargetPeer.open(port, true);
    const ended = once(peer.socket, "end");
    peer.send(encodeFrame(Op.login, 1, new TextEncoder().encode("node-1")));
    expect((await peer.next("the error frame")).text).toBe(PLAIN_PEER_OF_TLS);
    await within(ended, "the target's end of the connection");
    let gone = false;
    void peer.closed.then(() => {
      gone = true;
    });
    // Bytes sent to a connection the target still holds go unanswered;
    // once it has destroyed the connection, they are answered with a reset.
    const poke = async (times: number) => {
      for (let i = 0; i < times && !gone; i++) {
        peer.send(Uint8Array.of(0));
        await new Promise((resolve) => realSetTimeout(resolve, 10));
      }
    };
    await vi.advanceTimersByTimeAsync(999);
    await poke(5);
    expect(gone).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await poke(200);
    expect(gone).toBe(true);
    expect(target.counters.refused).toBe(1);
  });

  // Only a plain listener reads a first frame that looks like a ClientHello
  // as a TLS peer; inside a TLS session the same bytes are bad framing.
  it("reads a TLS hello sent inside a TLS session as a frame, not as a TLS peer of a plain listener", async () => {
    // A handshake record of 47 bytes holding a ClientHello's opening: longer than a frame header.
    const hello = new Uint8Array(5 + 0x2f);
    hello.set([0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03]);
    let framing = "";
    try {
      new FrameReader().push(Buffer.from(hello));
    } catch (error) {
      framing = (error as Error).message;
    }
    expect(framing).not.toBe("");
    const { target, port } = await served({ security: psk("server") });
    const socket = await connectSecure("127.0.0.1", port, psk("client"), 5000, (e) => e.message);
    const peer = new TargetPeer(socket);
    peer.send(hello);
    const reason = await peer.refusal();
    expect(reason).not.toBe(TLS_PEER_OF_PLAIN);
    expect(reason).toBe(framing);
    expect(target.counters.connections).toBe(1);
    expect(target.counters.protocolErrors).toBe(1);
    expect(target.counters.refused).toBe(0);
  });
});

describe("a conflict and the path's latency", () => {
  it("answers a WRITE that meets a reservation at once, before the path's latency, and counts it once", async () => {
    const target = new LunTarget(lun(), { durable: false, latencyMs: 10_000 });
    const out = (initiator: string, action: number, type: number, key: bigint, sa = 0n) => {
      const payload = new Uint8Array(20);
      const view = new DataView(payload.buffer);
      payload[0] = action;
      payload[1] = type;
      view.setBigUint64(4, key, true);
      view.setBigUint64(12, sa, true);
      return target.execute(initiator, { type: Op.reserveOut, status: 0, tag: 1, payload });
    };
    await out("node-1", ServiceAction.register, 0, 0n, 0xa1n);
    await out("node-1", ServiceAction.reserve, ReservationType.writeExclusive, 0xa1n);
    const address = new Uint8Array(16);
    new DataView(address.buffer).setUint32(8, 4, true);
    const write: Frame = { type: Op.write, status: 0, tag: 2, payload: address };
    let reply: Uint8Array[] | undefined;
    void target.execute("node-2", write).then((parts) => {
      reply = parts;
    });
    // One turn of the event loop runs no 10 s timer: the answer is there
    // before the path's latency, not after it.
    await new Promise((resolve) => setImmediate(resolve));
    expect(reply).toBeDefined();
    const frames = new FrameReader().push(Buffer.concat(reply ?? []));
    expect(frames).toHaveLength(1);
    const answer = decoded(frames[0] as Frame);
    expect(answer.type).toBe(Op.write | REPLY);
    expect(answer.status).toBe(Status.reservationConflict);
    expect(answer.text).toBe("node-2 is not registered: the LUN is reserved");
    expect(target.counters.conflicts).toBe(1);
    expect(target.counters.writes).toBe(0);
  });
});
