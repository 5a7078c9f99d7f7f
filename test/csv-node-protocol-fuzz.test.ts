import { connect, type Socket } from "node:net";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkVolume } from "../src/csv/check.js";
import { parseFailoverReply, parseNodeStatus } from "../src/csv/control.js";
import { FileLun } from "../src/csv/lun.js";
import { ClusterNode } from "../src/csv/node.js";
import {
  encodeFrame,
  type Frame,
  FrameReader,
  Op,
  ProtocolError,
  REPLY,
  Status,
} from "../src/csv/protocol.js";
import {
  encodeRedirected,
  MAX_REDIRECTED_BYTES,
  parseRedirected,
} from "../src/csv/redirected-io.js";
import { LunTarget } from "../src/csv/target.js";
import { Volume } from "../src/csv/volume.js";
import { MemoryFile } from "../src/storage/block-file.js";
import { freePort } from "./support/csv-cluster.js";

// The node protocol on hostile input. A node (coordinator of a volume on an
// in-memory LUN) is handed 100,000 requests of every type with payloads that
// are right, nearly right and wrong: each gets one reply of its type and tag
// with a SAM status, or a ProtocolError that closes that connection only,
// never another exception; afterwards the volume checks clean (no hostile
// metadata or redirected write corrupted it) and the node still answers a
// well-behaved peer on its socket, while hostile byte streams on other
// connections are cut off one by one.

const RUNS = 100_000;
const LUN_BYTES = 16 << 20;

let memory: MemoryFile;
let target: LunTarget;
let node: ClusterNode;
let nodePort: number;

beforeAll(async () => {
  memory = new MemoryFile("/fuzz/node-lun", new Uint8Array(LUN_BYTES), LUN_BYTES);
  await Volume.format(new FileLun(memory, false), { clusterBytes: 4096, fileSlots: 64 });
  target = new LunTarget(memory, { durable: false });
  const targetPort = await target.listen();
  nodePort = await freePort();
  let becameCoordinator: () => void = () => {};
  const coordinating = new Promise<void>((resolve) => {
    becameCoordinator = resolve;
  });
  node = new ClusterNode({
    id: 1,
    port: nodePort,
    targetPort,
    // Node 2 is declared but never runs: hostile heartbeats may claim to be it.
    peers: new Map([[2, await freePort()]]),
    heartbeatMs: 100,
    misses: 3,
    onEvent: (e) => {
      if (e.event === "coordinator") becameCoordinator();
    },
  });
  await node.start();
  await coordinating;
  // Files the hostile requests may hit by name.
  for (const name of ["a", "b"]) await node.metadata({ op: "create", name, size: 64 * 1024 });
});

afterAll(async () => {
  node?.stop();
  await target?.close();
});

const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

const heartbeatArb = fc.oneof(
  fc
    .record(
      {
        id: fc.oneof(
          fc.integer({ min: -1, max: 20 }),
          fc.string({ maxLength: 3 }),
          fc.constant(null),
        ),
        epoch: fc.oneof(fc.nat(8), fc.integer(), fc.constant(2 ** 60), fc.double()),
        coordinator: fc.oneof(fc.integer({ min: -1, max: 20 }), fc.string({ maxLength: 3 })),
        key: fc.oneof(fc.constantFrom("100000001", "200000001", "zz", ""), fc.nat().map(String)),
        cut: fc.oneof(fc.boolean(), fc.nat(2)),
        backup: fc.oneof(fc.boolean(), fc.string({ maxLength: 2 })),
      },
      { requiredKeys: [] },
    )
    .map(json),
  fc.jsonValue({ maxDepth: 2 }).map(json),
  fc.uint8Array({ maxLength: 48 }),
);

const metadataArb = fc.oneof(
  fc
    .record(
      {
        op: fc.constantFrom("create", "open", "resize", "delete", "format", 3, null),
        name: fc.oneof(fc.constantFrom("a", "b", "c", "d", ""), fc.string({ maxLength: 140 })),
        size: fc.oneof(
          fc.nat(256 * 1024),
          fc.constantFrom(-1, 2 ** 53, 2 ** 60, 0.5, Number.NaN),
          fc.string({ maxLength: 3 }),
        ),
      },
      { requiredKeys: [] },
    )
    .map(json),
  fc.jsonValue({ maxDepth: 2 }).map(json),
  fc.uint8Array({ maxLength: 48 }),
);

const redirectedArb = fc.oneof(
  fc
    .record({
      name: fc.constantFrom("a", "b", "c", "é", "x".repeat(128)),
      offset: fc.oneof(fc.nat(80 * 1024), fc.constantFrom(2 ** 53 - 1, 2 ** 32)),
      length: fc.oneof(fc.nat(8192), fc.constant(MAX_REDIRECTED_BYTES)),
      write: fc.boolean(),
      flip: fc.option(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { freq: 3 }),
      cut: fc.option(fc.nat(), { freq: 4 }),
    })
    .map((r) => {
      const data = r.write ? new Uint8Array(Math.min(r.length, 8192)).fill(0x5a) : undefined;
      const out = encodeRedirected(r.name, r.offset, data ? data.length : r.length, data);
      if (r.flip) {
        const at = r.flip[0] % out.length;
        out[at] = (out[at] ?? 0) ^ r.flip[1];
      }
      return r.cut === null ? out : out.subarray(0, r.cut % (out.length + 1));
    }),
  fc.uint8Array({ maxLength: 48 }),
);

/** FAILOVER requests: a plain move, a handover from a coordinator, and broken ones. */
const failoverArb = fc.oneof(
  fc
    .record(
      {
        to: fc.oneof(fc.integer({ min: -1, max: 18 }), fc.string({ maxLength: 2 })),
        from: fc.integer({ min: 0, max: 17 }),
      },
      { requiredKeys: ["to"] },
    )
    .map(json),
  fc.jsonValue({ maxDepth: 2 }).map(json),
  fc.uint8Array({ maxLength: 32 }),
);

const requestArb = fc.oneof(
  { weight: 3, arbitrary: heartbeatArb.map((payload) => ({ type: Op.heartbeat, payload })) },
  {
    weight: 1,
    arbitrary: fc.uint8Array({ maxLength: 8 }).map((payload) => ({ type: Op.status, payload })),
  },
  { weight: 1, arbitrary: failoverArb.map((payload) => ({ type: Op.failover, payload })) },
  { weight: 3, arbitrary: metadataArb.map((payload) => ({ type: Op.metadata, payload })) },
  { weight: 3, arbitrary: redirectedArb.map((payload) => ({ type: Op.redirected, payload })) },
  {
    weight: 1,
    arbitrary: fc.record({
      type: fc.oneof(
        fc.constantFrom(Op.login, Op.read, Op.write, Op.error),
        fc.integer({ min: 0, max: 255 }),
      ),
      payload: fc.uint8Array({ maxLength: 32 }),
    }),
  },
);

describe("csv node protocol on hostile input", () => {
  it(`${RUNS} requests of every type: one well-formed reply or a ProtocolError each; the volume checks clean after`, async () => {
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(requestArb, fc.nat(), async (r, tag) => {
        const frame: Frame = { type: r.type, status: 0, tag, payload: r.payload };
        let bytes: Uint8Array;
        try {
          bytes = await node.handle(frame);
        } catch (error) {
          if (!(error instanceof ProtocolError)) throw error;
          expect(error.message.length).toBeGreaterThan(0);
          expect(error.message).not.toMatch(/\n/);
          return;
        }
        const reply = new FrameReader().push(bytes);
        expect(reply).toHaveLength(1);
        expect(reply[0]?.type).toBe(r.type | REPLY);
        expect(reply[0]?.tag).toBe(tag);
        const status = reply[0]?.status ?? -1;
        expect([Status.good, Status.checkCondition, Status.busy]).toContain(status);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        // STATUS and FAILOVER answers are what their own parsers accept.
        if (r.type === Op.status)
          expect(parseNodeStatus(reply[0]?.payload ?? new Uint8Array(0)).node).toBe(1);
        if (r.type === Op.failover) parseFailoverReply(reply[0]?.payload ?? new Uint8Array(0));
        // A redirected READ that succeeded returns exactly the bytes asked for.
        if (r.type === Op.redirected && status === Status.good) {
          const asked = parseRedirected(r.payload);
          expect(reply[0]?.payload.length).toBe(asked.data ? 0 : asked.length);
        }
      }),
      { numRuns: RUNS, seed: 23 },
    );
    // The cases reached the coordinator's work, not only its parsers.
    expect(statuses.get(Status.good) ?? 0).toBeGreaterThan(1000);
    expect(statuses.get(Status.checkCondition) ?? 0).toBeGreaterThan(100);
    expect(memory.size()).toBe(LUN_BYTES);
    const report = await checkVolume(new FileLun(memory, false));
    expect(report.problems).toEqual([]);
  }, 600_000);

  it("hostile byte streams close their own connections; a well-behaved peer is answered throughout", async () => {
    const open = (): Promise<Socket> =>
      new Promise((resolve, reject) => {
        const s = connect({ host: "127.0.0.1", port: nodePort }, () => resolve(s));
        s.once("error", reject);
      });
    const good = await open();
    const reader = new FrameReader();
    const replies: Frame[] = [];
    let wake: () => void = () => {};
    good.on("data", (chunk: Buffer) => {
      replies.push(...reader.push(chunk));
      wake();
    });
    const ask = async (type: number, payload: Uint8Array, tag: number): Promise<Frame> => {
      good.write(encodeFrame(type, tag, payload));
      for (;;) {
        const found = replies.find((f) => f.tag === tag);
        if (found) return found;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    };
    expect((await ask(Op.login, json("peer-3"), 1)).type).toBe(Op.login | REPLY);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ minLength: 1, maxLength: 200 }),
          fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })).map(([at, x]) => {
            const f = encodeFrame(Op.login, 1, json("x"));
            f[at % f.length] = (f[at % f.length] ?? 0) ^ x;
            return f;
          }),
          fc.constant(encodeFrame(Op.heartbeat, 1, json({ id: 3 }))),
        ),
        fc.nat(),
        async (stream, tag) => {
          const bad = await open();
          const closed = new Promise<void>((resolve) => bad.once("close", () => resolve()));
          bad.on("error", () => {});
          bad.on("data", () => {});
          bad.write(stream);
          bad.end();
          await closed;
          const reply = await ask(Op.heartbeat, json({ id: 3, epoch: 0, coordinator: 0 }), tag + 2);
          expect(reply.type).toBe(Op.heartbeat | REPLY);
          expect(reply.status).toBe(Status.good);
        },
      ),
      { numRuns: 300, seed: 24 },
    );
    const meta = await ask(Op.metadata, json({ op: "open", name: "a" }), 0xfffffff0);
    expect(meta.status).toBe(Status.good);
    good.destroy();
  }, 120_000);
});
