import { once } from "node:events";
import { connect, createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { DestinationServer } from "../src/migration/live/destination.js";
import { PLAIN_PEER_OF_TLS, type TransportSecurity } from "../src/transport/secure.js";
import { LivePostcopyRig } from "./support/live-postcopy.js";
import { RawSource } from "./support/live-raw-source.js";

// The connections a destination turns away before any session begins (TLS
// refusing a peer), the report each one leaves, and what listen() takes
// and refuses beside the bounds the destination rules check: the port at
// the top of the range, and a plain listener off loopback.

const rig = new LivePostcopyRig();
const peers: RawSource[] = [];

// A close that hangs fails at once rather than at the runner's 10 s.
afterEach(async () => {
  for (const peer of peers.splice(0)) peer.close();
  await rig.close();
}, 2_000);

const psk: TransportSecurity = {
  kind: "psk",
  file: "keys.psk",
  keys: new Map([["hvlab", Buffer.alloc(32, 7)]]),
  identity: "hvlab",
  authz: [],
};

const DEADLINE = { timeout: 4_000 };

describe("connections TLS turns away", DEADLINE, () => {
  it("a plain source is told why in its own frames, and each refusal is a failed session of its own", async () => {
    const { port, nextReport, server } = await rig.destination({ security: psk });
    for (const session of [1, 2]) {
      const p = await RawSource.connect(port);
      peers.push(p);
      const local = p.socket.localPort;
      p.hello();
      const told = await p.frame(0);
      expect(RawSource.text(told)).toBe(`refused: ${PLAIN_PEER_OF_TLS}`);
      await p.closed;
      expect(p.received).toHaveLength(1);
      expect(await nextReport()).toEqual({
        session,
        peer: `127.0.0.1:${local}`,
        status: "failed",
        reason: `refused: ${PLAIN_PEER_OF_TLS}`,
        guestBytes: 0,
        pagesReceived: 0,
        payloadBytes: 0,
        frames: 0,
        verified: null,
        mismatches: 0,
        durationMs: 0,
        discarded: false,
        channels: 0,
        syncs: 0,
      });
    }
    // No slot was taken.
    expect(server.receiving).toBe(false);
  });

  it("a connection that starts no handshake is dropped at the destination's own handshake deadline", async () => {
    const { port, nextReport } = await rig.destination({ security: psk, handshakeTimeoutMs: 150 });
    const silent = connect(port, "127.0.0.1");
    silent.on("error", () => {});
    const said: Buffer[] = [];
    silent.on("data", (chunk: Buffer) => said.push(chunk));
    const started = performance.now();
    await once(silent, "close");
    expect(performance.now() - started).toBeLessThan(2_000);
    // Nothing to say it in: the peer spoke no protocol yet.
    expect(said).toEqual([]);
    const report = await nextReport();
    expect(report.status).toBe("failed");
    expect(report.reason).toBe("refused: no TLS handshake within 150 ms");
  });
});

describe("a session's report times the session", DEADLINE, () => {
  it("its duration lies within the time the test saw it run", async () => {
    const { port, nextReport } = await rig.destination();
    const started = performance.now();
    const p = await RawSource.connect(port);
    peers.push(p);
    p.hello();
    await p.frame(0);
    await new Promise((resolve) => setTimeout(resolve, 30));
    p.error("stopped by the test");
    const report = await nextReport();
    const elapsed = performance.now() - started;
    expect(report.reason).toContain("stopped by the test");
    expect(report.durationMs).toBeGreaterThanOrEqual(25);
    expect(report.durationMs).toBeLessThanOrEqual(elapsed);
  });
});

describe("DestinationServer.listen, beside its bounds", DEADLINE, () => {
  it("takes port 65535, the top of the range", async (ctx) => {
    // Only where nothing else holds it on this machine.
    const probe = createServer();
    const free = await new Promise<boolean>((resolve) => {
      probe.once("error", () => resolve(false));
      probe.listen(65_535, "127.0.0.1", () => resolve(true));
    });
    if (free) await new Promise((resolve) => probe.close(resolve));
    else ctx.skip();
    const server = await DestinationServer.listen({ port: 65_535, sessions: 0 });
    try {
      expect(server.address.port).toBe(65_535);
    } finally {
      await server.close();
    }
  });

  it("refuses to listen off loopback without TLS unless told the risk is accepted", async () => {
    // A listener opened by mistake is closed again, so a wrong answer fails at once.
    const outcome = await DestinationServer.listen({ port: 0, host: "0.0.0.0" }).then(
      async (server) => {
        await server.close();
        return "it listened";
      },
      (error: Error) => error.message,
    );
    expect(outcome).toMatch(
      /^refusing to listen on 0\.0\.0\.0 without TLS: anyone who reaches it could push or read a guest/,
    );
  });
});
