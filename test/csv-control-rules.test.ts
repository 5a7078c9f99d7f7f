import { describe, expect, it } from "vitest";
import {
  NODE_COUNTERS,
  parseFailoverReply,
  parseFailoverRequest,
  parseNodeStatus,
  parseObject,
} from "../src/csv/control.js";
import { ProtocolError } from "../src/csv/protocol.js";

/*
 * The rules of the STATUS (19) and FAILOVER (20) control messages
 * (docs/csv.md, "Status and planned failover"): both carry JSON, checked
 * field by field, and a field that breaks its rule is refused with a
 * ProtocolError that names the message and the field.
 */

const json = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));
const text = (raw: string): Uint8Array => new TextEncoder().encode(raw);

/** Expects `run` to throw a ProtocolError with exactly `message`. */
function refused(run: () => unknown, message: string): void {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ProtocolError);
  expect((caught as Error).message).toBe(message);
}

/** Every counter with its own value, so that none can stand in for another. */
const counters = Object.fromEntries(NODE_COUNTERS.map((name, i) => [name, 100 + i * 7]));

/** Node 4 of a four-node cluster, reaching the LUN through coordinator 1. */
const status = {
  node: 4,
  pid: 31337,
  port: 7104,
  role: "node",
  epoch: 9,
  coordinator: 1,
  mode: "redirected",
  redirected: "backup window",
  path: "up",
  backup: false,
  clusterBandwidth: 1_250_000_000,
  key: "0x90000000a",
  members: [1, 2, 4],
  heartbeatMs: 250,
  misses: 4,
  uptimeMs: 9_000,
  atMs: 1_800_000_000_000,
  io: counters,
  peers: [
    { id: 1, alive: true, pathCut: false },
    { id: 2, alive: true, pathCut: true },
    { id: 3, alive: false, pathCut: false },
  ],
};

const withField = (field: string, value: unknown) => json({ ...status, [field]: value });
const nodeMessage = (field: string) => `node status: ${field} must be a node number from 1 to 16`;
const countMessage = (field: string) =>
  `node status: ${field} must be a whole number of at least 0`;

describe("control message payloads", () => {
  // A payload is UTF-8 JSON text; bytes that are not valid UTF-8 are refused
  // even inside a JSON string, where a lenient decoder would let them through.
  it("refuse bytes that are not UTF-8 JSON, naming the message", () => {
    refused(() => parseObject(text("{"), "heartbeat"), "heartbeat: payload is not JSON");
    const badUtf8 = Uint8Array.of(...text('{"to":3,"x":"'), 0xc3, 0x28, ...text('"}'));
    refused(() => parseFailoverRequest(badUtf8), "failover request: payload is not JSON");
    refused(() => parseNodeStatus(new Uint8Array(0)), "node status: payload is not JSON");
  });

  // The JSON must be an object: not null, not a list, not a bare number or string.
  it("refuse JSON that is not an object", () => {
    for (const value of [null, [], [{ to: 3 }], 3, "to", true]) {
      refused(
        () => parseObject(json(value), "metadata reply"),
        "metadata reply: payload is not an object",
      );
    }
    expect(parseObject(json({ a: [1] }), "x")).toEqual({ a: [1] });
  });
});

describe("FAILOVER request", () => {
  // `{"to": N}` to the coordinator; the coordinator adds `from` when it sends
  // the request on. Both are node numbers of a cluster, 1 to 16.
  it("takes `to` alone, with no `from` made up", () => {
    const request = parseFailoverRequest(json({ to: 16 }));
    expect(request).toStrictEqual({ to: 16 });
    expect("from" in request).toBe(false);
    expect(parseFailoverRequest(json({ to: 1, from: 16 }))).toStrictEqual({ to: 1, from: 16 });
  });

  it("refuses `to` outside 1..16, not whole, not a number, or missing", () => {
    for (const to of [0, 17, -1, 2.5, "3", null, true]) {
      refused(
        () => parseFailoverRequest(json({ to })),
        "failover request: to must be a node number from 1 to 16",
      );
    }
    refused(
      () => parseFailoverRequest(json({ from: 1 })),
      "failover request: to must be a node number from 1 to 16",
    );
  });

  // `from` may be absent, but when present it is checked like `to` (null is not absent).
  it("refuses a `from` that is present but not a node number", () => {
    for (const from of [0, 17, 1.5, "1", null, false]) {
      refused(
        () => parseFailoverRequest(json({ to: 2, from })),
        "failover request: from must be a node number from 1 to 16",
      );
    }
  });
});

describe("FAILOVER reply", () => {
  // `{"ok": true, "from", "to", "epoch", "pauseMs"}`: node numbers, a whole
  // epoch of at least 0 and a pause in ms of at least 0 (fractions allowed).
  it("takes a success with a zero pause and epoch, and node numbers at the ends of 1..16", () => {
    const reply = { ok: true, from: 16, to: 1, epoch: 0, pauseMs: 0 };
    expect(parseFailoverReply(json(reply))).toStrictEqual(reply);
    const fractional = { ok: true, from: 1, to: 16, epoch: Number.MAX_SAFE_INTEGER, pauseMs: 0.25 };
    expect(parseFailoverReply(json(fractional))).toStrictEqual(fractional);
  });

  it("refuses each field of a success by name", () => {
    const good = { ok: true, from: 2, to: 3, epoch: 5, pauseMs: 12 };
    const cases: [string, unknown, string][] = [
      ["from", 0, "failover reply: from must be a node number from 1 to 16"],
      ["from", 17, "failover reply: from must be a node number from 1 to 16"],
      ["to", 17, "failover reply: to must be a node number from 1 to 16"],
      ["to", undefined, "failover reply: to must be a node number from 1 to 16"],
      ["epoch", -1, "failover reply: epoch must be a whole number of at least 0"],
      ["epoch", 1.5, "failover reply: epoch must be a whole number of at least 0"],
      ["epoch", 2 ** 53, "failover reply: epoch must be a whole number of at least 0"],
      ["epoch", "5", "failover reply: epoch must be a whole number of at least 0"],
      ["pauseMs", -0.5, "failover reply: pauseMs must be a number of at least 0"],
      ["pauseMs", "12", "failover reply: pauseMs must be a number of at least 0"],
      ["pauseMs", null, "failover reply: pauseMs must be a number of at least 0"],
      ["pauseMs", undefined, "failover reply: pauseMs must be a number of at least 0"],
    ];
    for (const [field, value, message] of cases) {
      refused(() => parseFailoverReply(json({ ...good, [field]: value })), message);
    }
  });

  // `ok` is a boolean: anything else (a string, 1, missing) is neither answer.
  it("refuses an `ok` that is not true or false", () => {
    for (const ok of ["true", 1, 0, null, undefined]) {
      refused(
        () => parseFailoverReply(json({ ok, from: 1, to: 2, epoch: 1, pauseMs: 1, error: "x" })),
        "failover reply: ok must be true or false",
      );
    }
  });

  // `{"ok": false, "error"}`: the error is a string, kept up to 1000 characters;
  // the fields of a success are not looked at.
  it("takes a refusal with its error, cut to 1000 characters", () => {
    expect(
      parseFailoverReply(json({ ok: false, error: "node 5 is not a member", from: 99 })),
    ).toStrictEqual({ ok: false, error: "node 5 is not a member" });
    expect(parseFailoverReply(json({ ok: false, error: "" }))).toStrictEqual({
      ok: false,
      error: "",
    });
    const exact = "e".repeat(1000);
    expect(parseFailoverReply(json({ ok: false, error: exact }))).toStrictEqual({
      ok: false,
      error: exact,
    });
    const long = `${"a".repeat(999)}bc`;
    expect(parseFailoverReply(json({ ok: false, error: long }))).toStrictEqual({
      ok: false,
      error: `${"a".repeat(999)}b`,
    });
  });

  it("refuses a refusal whose error is not a string", () => {
    for (const error of [undefined, null, 42, ["no"], { reason: "no" }]) {
      refused(
        () => parseFailoverReply(json({ ok: false, error })),
        "failover reply: error must be a string",
      );
    }
  });
});

describe("STATUS answer", () => {
  // The answer is returned as checked, field for field, and nothing else is carried.
  it("takes a node's answer as it was sent, dropping unknown fields", () => {
    expect(parseNodeStatus(json(status))).toStrictEqual(status);
    const extra = parseNodeStatus(json({ ...status, secret: "x" })) as unknown as Record<
      string,
      unknown
    >;
    expect("secret" in extra).toBe(false);
  });

  // node is a node number; pid, port, epoch, heartbeatMs, misses, uptimeMs and
  // atMs are whole numbers of at least 0; backup is a boolean.
  it("refuses each scalar field by name", () => {
    const cases: [string, unknown, string][] = [
      ["node", 0, nodeMessage("node")],
      ["node", 17, nodeMessage("node")],
      ["node", "4", nodeMessage("node")],
      ["pid", -1, countMessage("pid")],
      ["pid", 1.5, countMessage("pid")],
      ["port", "7104", countMessage("port")],
      ["port", undefined, countMessage("port")],
      ["epoch", -1, countMessage("epoch")],
      ["epoch", 2 ** 53, countMessage("epoch")],
      ["heartbeatMs", 0.5, countMessage("heartbeatMs")],
      ["misses", -4, countMessage("misses")],
      ["uptimeMs", null, countMessage("uptimeMs")],
      ["atMs", "now", countMessage("atMs")],
      ["backup", "no", "node status: backup must be true or false"],
      ["backup", 0, "node status: backup must be true or false"],
      ["backup", undefined, "node status: backup must be true or false"],
      ["role", "leader", "node status: role must be coordinator or node"],
      ["role", undefined, "node status: role must be coordinator or node"],
      ["mode", "cut", "node status: mode must be direct or redirected"],
      ["mode", null, "node status: mode must be direct or redirected"],
      ["path", "Up", "node status: path must be up or cut"],
    ];
    for (const [field, value, message] of cases) {
      refused(() => parseNodeStatus(withField(field, value)), message);
    }
  });

  // Whole numbers reach up to 2^53 - 1; zero is a count like any other.
  it("takes counts of 0 and of the largest safe integer, and node numbers 1 and 16", () => {
    const edges = {
      ...status,
      node: 16,
      pid: 0,
      port: 0,
      epoch: 0,
      heartbeatMs: 0,
      misses: 0,
      uptimeMs: Number.MAX_SAFE_INTEGER,
      atMs: 0,
      backup: true,
      role: "coordinator",
      coordinator: 16,
    };
    expect(parseNodeStatus(json(edges))).toStrictEqual(edges);
    expect(parseNodeStatus(withField("node", 1)).node).toBe(1);
  });

  // coordinator is that epoch's coordinator, or 0 while the node knows none.
  it("takes coordinator 0 as none known, and refuses anything else outside 1..16", () => {
    expect(parseNodeStatus(withField("coordinator", 0)).coordinator).toBe(0);
    expect(parseNodeStatus(withField("coordinator", 1)).coordinator).toBe(1);
    for (const coordinator of [-1, 17, 0.5, "1", null, undefined]) {
      refused(
        () => parseNodeStatus(withField("coordinator", coordinator)),
        nodeMessage("coordinator"),
      );
    }
  });
});

describe("STATUS mode and its reason", () => {
  // The mode and the reason say one thing twice: direct has null for the
  // reason; redirected has the reason, a string of at most 1000 characters.
  it("refuses a direct status whose reason is anything but null", () => {
    const direct = { ...status, mode: "direct", redirected: null };
    expect(parseNodeStatus(json(direct)).redirected).toBeNull();
    for (const redirected of ["", "storage path cut", false, undefined]) {
      refused(
        () => parseNodeStatus(json({ ...direct, redirected })),
        "node status: redirected must be null in direct mode",
      );
    }
  });

  it("keeps a redirected reason of 1000 characters and refuses one of 1001", () => {
    const reason = "r".repeat(1000);
    expect(parseNodeStatus(withField("redirected", reason)).redirected).toBe(reason);
    for (const redirected of [`${reason}!`, 7, undefined, ["backup window"]]) {
      refused(
        () => parseNodeStatus(withField("redirected", redirected)),
        "node status: redirected must be the reason, at most 1000 characters, in redirected mode",
      );
    }
  });
});

describe("STATUS bandwidth and reservation key", () => {
  // clusterBandwidth is a finite number of bytes per second above 0.
  it("refuses a bandwidth that is not a finite positive number", () => {
    const message = "node status: clusterBandwidth must be a number of bytes per second above 0";
    for (const bandwidth of [0, -1, "125000000", null, undefined]) {
      refused(() => parseNodeStatus(withField("clusterBandwidth", bandwidth)), message);
    }
    // JSON.parse reads 1e999 as Infinity.
    const infinite = JSON.stringify(status).replace("1250000000", "1e999");
    refused(() => parseNodeStatus(text(infinite)), message);
    expect(parseNodeStatus(withField("clusterBandwidth", 0.5)).clusterBandwidth).toBe(0.5);
  });

  // The key is the node's reservation key, "0x" and 1 to 16 lowercase hex digits.
  it("takes a hex key of 1 to 16 digits and refuses any other text", () => {
    for (const key of ["0x0", "0x1", "0xffffffffffffffff", "0x0123456789abcdef"]) {
      expect(parseNodeStatus(withField("key", key)).key).toBe(key);
    }
    for (const key of [
      "0x",
      "0x10000000000000000",
      "0xABC",
      "0x12g",
      "90000000a",
      "x0x1",
      "0x1 ",
      " 0x1",
      "00x1",
      9,
      null,
      // A list whose text would pass for a key is still not a string.
      ["0x1"],
    ]) {
      refused(
        () => parseNodeStatus(withField("key", key)),
        "node status: key must be a hex reservation key",
      );
    }
  });
});

describe("STATUS members, counters and peers", () => {
  const sixteen = Array.from({ length: 16 }, (_, i) => i + 1);

  // members: the nodes it believes alive, at most 16, each a node number.
  it("takes 0 to 16 members and refuses 17 or a member out of range, by index", () => {
    expect(parseNodeStatus(withField("members", sixteen)).members).toEqual(sixteen);
    expect(parseNodeStatus(withField("members", [])).members).toEqual([]);
    const listMessage = "node status: members must be a list of at most 16 nodes";
    for (const members of [[...sixteen, 1], { 0: 1 }, "1,2", null]) {
      refused(() => parseNodeStatus(withField("members", members)), listMessage);
    }
    refused(() => parseNodeStatus(withField("members", [3, 0])), nodeMessage("members[1]"));
    refused(() => parseNodeStatus(withField("members", ["1"])), nodeMessage("members[0]"));
  });

  // io holds every counter, each a whole number of at least 0.
  it("refuses io that is not an object, and each missing or bad counter by name", () => {
    for (const io of [null, [], 5, undefined]) {
      refused(() => parseNodeStatus(withField("io", io)), "node status: io must be an object");
    }
    for (const name of NODE_COUNTERS) {
      const { [name]: _, ...without } = counters;
      refused(() => parseNodeStatus(withField("io", without)), countMessage(`io.${name}`));
      refused(
        () => parseNodeStatus(withField("io", { ...counters, [name]: -1 })),
        countMessage(`io.${name}`),
      );
    }
    const zero = Object.fromEntries(NODE_COUNTERS.map((name) => [name, 0]));
    expect(parseNodeStatus(withField("io", zero)).io).toStrictEqual(zero);
  });

  // peers: at most 16, each an object with a node id and two booleans, named by index.
  it("takes 0 to 16 peers and refuses 17, or a peer that is not a checked object", () => {
    const peers = sixteen.map((id) => ({ id, alive: id % 2 === 0, pathCut: id % 3 === 0 }));
    expect(parseNodeStatus(withField("peers", peers)).peers).toStrictEqual(peers);
    expect(parseNodeStatus(withField("peers", [])).peers).toEqual([]);
    const listMessage = "node status: peers must be a list of at most 16 nodes";
    for (const list of [[...peers, { id: 1, alive: true, pathCut: false }], {}, null, undefined]) {
      refused(() => parseNodeStatus(withField("peers", list)), listMessage);
    }
    const one = { id: 2, alive: true, pathCut: false };
    for (const peer of [null, [], 2, "2"]) {
      refused(
        () => parseNodeStatus(withField("peers", [one, peer])),
        "node status: peers[1] must be an object",
      );
    }
    refused(
      () => parseNodeStatus(withField("peers", [one, { ...one, id: 17 }])),
      nodeMessage("peers[1].id"),
    );
    refused(
      () => parseNodeStatus(withField("peers", [{ ...one, alive: 1 }])),
      "node status: peers[0].alive must be true or false",
    );
    refused(
      () => parseNodeStatus(withField("peers", [one, one, { ...one, pathCut: "yes" }])),
      "node status: peers[2].pathCut must be true or false",
    );
  });
});
