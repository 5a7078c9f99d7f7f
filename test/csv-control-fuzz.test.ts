import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parseFailoverReply, parseFailoverRequest, parseNodeStatus } from "../src/csv/control.js";
import { ProtocolError } from "../src/csv/protocol.js";

// 100,000 cases per parser, as for the node and target protocols.
const RUNS = 100_000;

const parsers = { parseNodeStatus, parseFailoverRequest, parseFailoverReply };

const good = {
  node: 2,
  pid: 4242,
  port: 7002,
  role: "coordinator",
  epoch: 3,
  coordinator: 2,
  mode: "direct",
  redirected: null,
  path: "up",
  backup: false,
  clusterBandwidth: 125_000_000,
  key: "0x200000001",
  members: [1, 2, 3],
  heartbeatMs: 1000,
  misses: 5,
  uptimeMs: 12,
  atMs: 1_700_000_000_000,
  io: {
    writes: 3,
    bytesWritten: 12288,
    metadataOps: 2,
    metadataRetries: 0,
    directReads: 1,
    directWrites: 2,
    directBytes: 12288,
    redirectedReads: 0,
    redirectedWrites: 1,
    redirectedBytes: 4096,
    servedRedirected: 0,
  },
  peers: [
    { id: 1, alive: true, pathCut: false },
    { id: 3, alive: false, pathCut: true },
  ],
};

/** The same node while its storage path is cut: its I/O goes through the coordinator. */
const redirected = {
  ...good,
  role: "node",
  coordinator: 1,
  mode: "redirected",
  redirected: "storage path cut (HBA pulled)",
  path: "cut",
};

/** A JSON value of any shape, or one of the good record's fields given a wrong value. */
const mutated = fc.oneof(
  fc.jsonValue(),
  fc
    .record({
      field: fc.constantFrom(...Object.keys(good), "to", "from", "ok", "pauseMs", "error"),
      value: fc.jsonValue(),
    })
    .map(({ field, value }) => ({ ...good, to: 2, from: 1, ok: true, pauseMs: 1, [field]: value })),
  // One counter, or one field of one peer, given a wrong value.
  fc
    .record({ counter: fc.constantFrom(...Object.keys(good.io)), value: fc.jsonValue() })
    .map(({ counter, value }) => ({ ...redirected, io: { ...good.io, [counter]: value } })),
  fc
    .record({ field: fc.constantFrom("id", "alive", "pathCut"), value: fc.jsonValue() })
    .map(({ field, value }) => ({
      ...good,
      peers: [good.peers[0], { ...good.peers[1], [field]: value }],
    })),
);

describe("csv control messages", () => {
  it("accept the records nodes send", () => {
    const bytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
    expect(parseNodeStatus(bytes(good))).toEqual(good);
    expect(parseNodeStatus(bytes(redirected))).toEqual(redirected);
    expect(parseFailoverRequest(bytes({ to: 3 }))).toEqual({ to: 3 });
    expect(parseFailoverRequest(bytes({ to: 3, from: 1 }))).toEqual({ to: 3, from: 1 });
    const reply = { ok: true, from: 1, to: 3, epoch: 4, pauseMs: 2.5 };
    expect(parseFailoverReply(bytes(reply))).toEqual(reply);
    expect(parseFailoverReply(bytes({ ok: false, error: "no" }))).toEqual({
      ok: false,
      error: "no",
    });
  });

  it("refuse a bad field by name", () => {
    const bytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
    expect(() => parseNodeStatus(bytes({ ...good, members: [1, 17] }))).toThrow(
      "node status: members[1] must be a node number from 1 to 16",
    );
    expect(() => parseNodeStatus(bytes({ ...good, io: { ...good.io, writes: -1 } }))).toThrow(
      "node status: io.writes must be a whole number of at least 0",
    );
    expect(() =>
      parseNodeStatus(bytes({ ...good, io: { ...good.io, redirectedBytes: 1.5 } })),
    ).toThrow("node status: io.redirectedBytes must be a whole number of at least 0");
    expect(() => parseNodeStatus(bytes({ ...good, redirected: "backup window" }))).toThrow(
      "node status: redirected must be null in direct mode",
    );
    expect(() => parseNodeStatus(bytes({ ...redirected, redirected: null }))).toThrow(
      "node status: redirected must be the reason, at most 1000 characters, in redirected mode",
    );
    expect(() => parseNodeStatus(bytes({ ...good, path: "down" }))).toThrow(
      "node status: path must be up or cut",
    );
    expect(() => parseNodeStatus(bytes({ ...good, clusterBandwidth: 0 }))).toThrow(
      "node status: clusterBandwidth must be a number of bytes per second above 0",
    );
    expect(() =>
      parseNodeStatus(bytes({ ...good, peers: [{ id: 1, alive: "yes", pathCut: false }] })),
    ).toThrow("node status: peers[0].alive must be true or false");
    expect(() => parseFailoverRequest(bytes({ to: 0 }))).toThrow(
      "failover request: to must be a node number from 1 to 16",
    );
    expect(() => parseFailoverReply(Uint8Array.of(0xff))).toThrow(
      "failover reply: payload is not JSON",
    );
  });

  for (const [name, parse] of Object.entries(parsers)) {
    it(`${name}: random bytes and mutated records give a ProtocolError or a checked record`, () => {
      fc.assert(
        fc.property(
          fc.oneof(
            fc.uint8Array({ maxLength: 64 }),
            mutated.map((v) => new TextEncoder().encode(JSON.stringify(v))),
          ),
          (payload) => {
            try {
              const record = parse(payload) as unknown as Record<string, unknown>;
              // Whatever passes holds only node numbers a cluster can have.
              for (const field of ["node", "to", "from"])
                if (field in record)
                  expect(record[field]).toSatisfy((v: number) => v >= 1 && v <= 16);
            } catch (error) {
              expect(error).toBeInstanceOf(ProtocolError);
            }
          },
        ),
        { numRuns: RUNS, seed: 12 },
      );
    });
  }
});
