import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkVolume } from "../src/csv/check.js";
import { encodeFrame, FrameReader, Op } from "../src/csv/protocol.js";
import { ReservationType, ServiceAction } from "../src/csv/reservations.js";
import {
  ReservationConflictError,
  TargetClient,
  TargetCommandError,
} from "../src/csv/target-client.js";
import { Volume } from "../src/csv/volume.js";
import { hvlab } from "./support/cli.js";
import { startTarget, type TargetProcess } from "./support/csv-target.js";

const WERO = ReservationType.writeExclusiveRegistrantsOnly;
let dir: string;
let lun: string;
let target: TargetProcess;
const clients: TargetClient[] = [];

async function client(name: string): Promise<TargetClient> {
  const c = await TargetClient.connect(target.port, name);
  clients.push(c);
  return c;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-csv-target-"));
  lun = join(dir, "lun.img");
  expect(hvlab(["csv", "create", lun, "16MiB", "--cluster-size", "4KiB"]).status).toBe(0);
  target = await startTarget(lun, ["--no-sync", "--handshake-timeout", "500"]);
});

afterAll(async () => {
  for (const c of clients) c.close();
  await target?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("hvlab csv target", () => {
  it("also serves nodes on this host over a Unix socket (mode 0600): same bytes, same reservations", async () => {
    const local = join(dir, "local.lun");
    expect(hvlab(["csv", "create", local, "8MiB", "--cluster-size", "4KiB"]).status).toBe(0);
    const socketPath = join(dir, "target.sock");
    const served = await startTarget(local, ["--no-sync", "--socket", socketPath]);
    try {
      expect(served.record.socket).toBe(socketPath);
      expect(statSync(socketPath).mode & 0o777).toBe(0o600);
      const viaSocket = await TargetClient.connect(0, "node-local", 5000, { socketPath });
      const viaTcp = await TargetClient.connect(served.port, "node-tcp");
      clients.push(viaSocket, viaTcp);
      expect(viaSocket.bytes).toBe(8 << 20);
      // Registrants Only holds on the socket as on TCP: unregistered, a write is refused.
      await viaTcp.register(7n);
      await viaTcp.reserveOut(ServiceAction.reserve, WERO, 7n);
      const data = new Uint8Array(1536 * 1024 + 5).map((_, i) => (i * 7 + 3) & 0xff);
      await expect(viaSocket.write(4 << 20, data)).rejects.toBeInstanceOf(ReservationConflictError);
      await viaSocket.register(8n);
      await viaSocket.write(4 << 20, data); // two frames, the first of 1 MiB
      expect(Buffer.from(await viaTcp.read(4 << 20, data.length)).equals(data)).toBe(true);
    } finally {
      await served.stop();
    }
    expect(existsSync(socketPath)).toBe(false);
    // A path already there is refused, not taken over.
    writeFileSync(socketPath, "");
    const taken = hvlab(["csv", "target", local, "--socket", socketPath]);
    expect(taken.status).toBe(2);
    expect(taken.stderr).toMatch(/--socket .*target\.sock: the path exists already/);
  });

  it("serves a volume to a node: format-free open, metadata, data, and check over the wire", async () => {
    const node = await client("node-a");
    expect(node.bytes).toBe(16 << 20);
    const volume = await Volume.open(node);
    await volume.takeOver(1);
    const file = await volume.create("vm1.vhd", 3 * 1024 * 1024 + 17);
    const data = new Uint8Array(file.size).map((_, i) => (i * 13) & 0xff);
    await volume.write(file, 0, data); // spans several 1 MiB requests and two extents' worth of clusters
    // Buffer.equals: a deep toEqual over 3 MiB takes the test's whole time budget.
    expect(Buffer.from(await volume.read(file, 0, file.size)).equals(data)).toBe(true);
    const report = await checkVolume(node);
    expect(report.problems).toEqual([]);
    expect(report.files).toBe(1);
  });

  it("fences a preempted node: its writes end in RESERVATION CONFLICT, its reads still work", async () => {
    const a = await client("node-1");
    const b = await client("node-2");
    const outsider = await client("backup");
    await a.register(0xa1n);
    await b.register(0xb2n);
    await a.reserveOut(ServiceAction.reserve, WERO, 0xa1n);
    const sector = new Uint8Array(512).fill(7);
    await a.write(1 << 20, sector);
    await b.write(1 << 20, sector); // registrants only: every registered node writes
    await expect(outsider.write(1 << 20, sector)).rejects.toThrow(ReservationConflictError);
    expect((await outsider.read(1 << 20, 512))[0]).toBe(7);
    // b takes over: preempts a's key (the holder's), and now holds the reservation.
    await b.reserveOut(ServiceAction.preempt, WERO, 0xb2n, 0xa1n);
    await expect(a.write(1 << 20, sector)).rejects.toThrow(
      /RESERVATION CONFLICT: node-1 is not registered/,
    );
    expect((await a.read(1 << 20, 512)).length).toBe(512);
    const keys = await b.readKeys();
    expect(keys.keys).toEqual([0xb2n]);
    const held = await b.readReservation();
    expect(held.reservation).toEqual({ key: 0xb2n, type: WERO });
    // The registration belongs to the initiator name: a reconnect keeps it.
    const b2 = await client("node-2");
    await b2.write(1 << 20, sector);
    // Release and clear so the other tests see an open LUN.
    await b.reserveOut(ServiceAction.clear, 0, 0xb2n);
    expect((await b.readReservation()).reservation).toBeUndefined();
  });

  it("answers a READ past the LUN with CHECK CONDITION and keeps the connection", async () => {
    const c = await client("node-x");
    await expect(
      c.request(
        Op.read,
        (() => {
          const p = new Uint8Array(12);
          const v = new DataView(p.buffer);
          v.setBigUint64(0, BigInt(16 << 20), true);
          v.setUint32(8, 512, true);
          return p;
        })(),
      ),
    ).rejects.toThrow(TargetCommandError);
    expect((await c.read(0, 8)).length).toBe(8);
  });

  it("closes a connection that breaks the protocol, with an error frame, and keeps serving the others", async () => {
    const good = await client("node-good");
    const cases: [Uint8Array, RegExp][] = [
      [new TextEncoder().encode("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"), /magic: not HVCS/],
      [encodeFrame(Op.read, 1, new Uint8Array(12)), /first frame must be LOGIN/],
      [
        (() => {
          const f = encodeFrame(Op.login, 1, new TextEncoder().encode("n"));
          f[24] = (f[24] ?? 0) ^ 1; // the payload's first byte
          return f;
        })(),
        /payload CRC/,
      ],
      [encodeFrame(Op.login, 1, new Uint8Array(65).fill(97)), /1 to 64 bytes/],
    ];
    for (const [bytes, message] of cases) {
      const socket = connect({ host: "127.0.0.1", port: target.port });
      const reader = new FrameReader();
      const reply = await new Promise<string>((resolve, reject) => {
        socket.on("data", (d: Buffer) => {
          for (const f of reader.push(d))
            if (f.type === Op.error) resolve(new TextDecoder().decode(f.payload));
        });
        socket.on("error", reject);
        socket.write(bytes);
      });
      socket.destroy();
      expect(reply).toMatch(message);
      expect((await good.read(0, 512)).length).toBe(512);
    }
    // Silence: no LOGIN within the handshake timeout (500 ms here).
    const silent = connect({ host: "127.0.0.1", port: target.port });
    const why = await new Promise<string>((resolve) => {
      const reader = new FrameReader();
      silent.on("data", (d: Buffer) => {
        for (const f of reader.push(d)) resolve(new TextDecoder().decode(f.payload));
      });
    });
    silent.destroy();
    expect(why).toMatch(/no LOGIN within the handshake timeout/);
  });

  it("adds the configured latency to every I/O", async () => {
    const slowLun = join(dir, "slow.img");
    writeFileSync(slowLun, new Uint8Array(4 << 20)); // a target serves any LUN, formatted or not
    const slow = await startTarget(slowLun, ["--latency", "40", "--throttle", "1MiB"]);
    try {
      const c = await TargetClient.connect(slow.port, "node-s");
      const started = performance.now();
      await c.read(0, 512);
      const oneRead = performance.now() - started;
      expect(oneRead).toBeGreaterThanOrEqual(39);
      // 1 MiB/s: 1 MiB more than the 1 MiB burst takes about 1 s.
      const t0 = performance.now();
      await c.write(0, new Uint8Array(2 << 20));
      expect(performance.now() - t0).toBeGreaterThan(900);
      c.close();
    } finally {
      await slow.stop();
    }
  });
});
