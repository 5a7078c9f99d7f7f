import { once } from "node:events";
import { existsSync, readFileSync, statSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it, onTestFinished, vi } from "vitest";
import {
  encodeFrame,
  type Frame,
  FrameReader,
  MAX_IO_BYTES,
  Op,
  ProtocolError,
  REPLY,
  Status,
} from "../src/csv/protocol.js";
import { BoardState, parseBoard } from "../src/csv/registration-board.js";
import { InAction, ReservationType, ServiceAction } from "../src/csv/reservations.js";
import { LunTarget, type TargetOptions } from "../src/csv/target.js";
import { TargetClient } from "../src/csv/target-client.js";
import { type BlockFile, MemoryFile, SynchronousFile } from "../src/storage/block-file.js";
import { TLS_PEER_OF_PLAIN } from "../src/transport/secure.js";
import { expectSameBytes } from "./support/bytes.js";
import {
  decoded,
  type Reply,
  realSetTimeout,
  TargetPeer,
  until,
  within,
} from "./support/csv-target-peer.js";
import { rejection, thrown } from "./support/refusal.js";
import { testTempDir } from "./support/temp.js";
import { xorshiftBytes } from "./support/xorshift.js";

// The CSV engine's block target (src/csv/target.ts; docs/csv.md, "The
// target and its protocol" and "Persistent reservations"): what each
// request's payload must be, the CHECK CONDITION and RESERVATION CONFLICT
// answers with their exact reasons, the reservation checked again after the
// path's latency or throttle, WRITE's pieces reaching the LUN unjoined, the
// counters, and a connection's rules (LOGIN first, its name, the handshake
// and idle timeouts, a TLS hello to a plain listener, order within one
// connection, close). test/csv-target.test.ts runs the target as a child
// process, which a mutant in this thread never reaches; here the target
// runs in the test's thread: execute() called directly, and listen() or
// listenLocal() on loopback for what only a socket shows.

afterEach(() => {
  vi.useRealTimers();
});

const WERO = ReservationType.writeExclusiveRegistrantsOnly;
const EARO = ReservationType.exclusiveAccessRegistrantsOnly;
const utf8 = new TextEncoder();

/** A LUN of `bytes` patterned bytes in memory that counts its syncs and keeps each gathered write's parts. */
class SpyFile extends MemoryFile {
  syncs = 0;
  readonly gathered: Uint8Array[][] = [];
  /** Bytes each read returns fewer than it was asked for (a LUN that comes up short). */
  shortBy = 0;
  /** What sync() throws, if anything. */
  syncError: Error | undefined;

  constructor(bytes: number, seed = 7) {
    super("/rules/lun", xorshiftBytes(seed, bytes), bytes);
  }

  override sync(): void {
    this.syncs++;
    if (this.syncError) throw this.syncError;
  }

  override writev(parts: readonly Uint8Array[], position: number): void {
    this.gathered.push([...parts]);
    super.writev(parts, position);
  }

  override read(into: Uint8Array, position: number): number {
    return Math.max(0, super.read(into, position) - this.shortBy);
  }
}

/** A LUN that says it is `bytes` long (past 2^53 if asked) and records where it is read and written. */
class ClaimedFile extends SynchronousFile {
  readonly name = "/rules/claimed";
  readonly reads: number[] = [];
  readonly writes: number[] = [];

  constructor(private readonly bytes: number) {
    super();
  }

  size(): number {
    return this.bytes;
  }

  read(into: Uint8Array, position: number): number {
    this.reads.push(position);
    into.fill(0xee);
    return into.length;
  }

  write(_from: Uint8Array, position: number): void {
    this.writes.push(position);
  }

  truncate(): void {}
  sync(): void {}
  close(): void {}
}

/** READ's and WRITE's 12-byte address: offset u64 and length u32, little-endian. */
function address(offset: number | bigint, length: number): Uint8Array {
  const out = new Uint8Array(12);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(offset), true);
  view.setUint32(8, length, true);
  return out;
}

function request(type: number, payload: Uint8Array = new Uint8Array(0), tag = 7): Frame {
  return { type, status: 0, tag, payload };
}

function readRequest(offset: number | bigint, length: number): Frame {
  return request(Op.read, address(offset, length));
}

/** A WRITE of `data` at `offset`, its length field `data.length` unless told otherwise. */
function writeRequest(offset: number | bigint, data: Uint8Array, lengthField = data.length): Frame {
  return request(Op.write, Buffer.concat([address(offset, lengthField), data]));
}

/**
 * A request as the frame reader keeps one that arrived in several reads:
 * its pieces only, and a payload that fails the test if anything joins them.
 */
function inPieces(type: number, pieces: readonly Uint8Array[]): Frame {
  return {
    type,
    status: 0,
    tag: 9,
    pieces,
    get payload(): Uint8Array {
      throw new Error("the pieces were joined into one payload");
    },
  };
}

/** PERSISTENT RESERVE OUT's 20 bytes: action, type, 2 reserved, key u64, service action key u64. */
function reserveOut(action: number, type: number, key: bigint, serviceKey = 0n): Frame {
  const payload = new Uint8Array(20);
  const view = new DataView(payload.buffer);
  payload[0] = action;
  payload[1] = type;
  view.setBigUint64(4, key, true);
  view.setBigUint64(12, serviceKey, true);
  return request(Op.reserveOut, payload);
}

/** execute()'s reply, read back through the frame reader: exactly one frame. */
async function ask(target: LunTarget, initiator: string, frame: Frame): Promise<Reply> {
  const frames = new FrameReader().push(Buffer.concat(await target.execute(initiator, frame)));
  expect(frames).toHaveLength(1);
  return decoded(frames[0] as Frame);
}

/** A PERSISTENT RESERVE OUT that must be answered GOOD. */
async function prGood(
  target: LunTarget,
  initiator: string,
  action: number,
  type: number,
  key: bigint,
  serviceKey = 0n,
): Promise<void> {
  const reply = await ask(target, initiator, reserveOut(action, type, key, serviceKey));
  expect(reply.text).toBe("");
  expect(reply.status).toBe(Status.good);
}

/** The counters of a target that has done nothing but what `changed` says. */
function counters(changed: Partial<LunTarget["counters"]>): LunTarget["counters"] {
  return {
    connections: 0,
    reads: 0,
    writes: 0,
    bytesRead: 0,
    bytesWritten: 0,
    conflicts: 0,
    protocolErrors: 0,
    refused: 0,
    ...changed,
  };
}

/** A target over `file` listening on loopback, closed when the test ends. */
async function served(
  file: BlockFile,
  options: TargetOptions = {},
): Promise<{ target: LunTarget; port: number }> {
  const target = new LunTarget(file, { durable: false, ...options });
  const port = await target.listen();
  onTestFinished(() => target.close());
  return { target, port };
}

describe("execute: READ and WRITE addresses", () => {
  // A READ's payload is its 12-byte address and nothing else; a WRITE's is
  // its address and then the bytes. Anything shorter is not an address.
  it("refuses a READ payload of other than 12 bytes, and a WRITE payload under 12, as protocol errors", async () => {
    const target = new LunTarget(new SpyFile(4096), { durable: false });
    const cases: [Frame, string][] = [
      [request(Op.read, new Uint8Array(11)), "READ: payload of 11 bytes is not an address"],
      [request(Op.read, new Uint8Array(13)), "READ: payload of 13 bytes is not an address"],
      [request(Op.read), "READ: payload of 0 bytes is not an address"],
      [request(Op.write, new Uint8Array(11)), "WRITE: payload of 11 bytes is not an address"],
      [
        inPieces(Op.read, [new Uint8Array(5), new Uint8Array(8)]),
        "READ: payload of 13 bytes is not an address",
      ],
    ];
    for (const [frame, message] of cases) {
      const error = await rejection(target.execute("node-1", frame));
      expect(error).toBeInstanceOf(ProtocolError);
      expect(error.message).toBe(message);
    }
    expect(target.counters).toEqual(counters({}));
  });

  it("takes a READ of exactly 12 bytes, and a WRITE of 12 bytes as a write of none", async () => {
    const file = new SpyFile(4096);
    const before = Uint8Array.from(file.contents());
    const target = new LunTarget(file, { durable: false });
    const read = await ask(target, "node-1", readRequest(8, 4));
    expect(read.status).toBe(Status.good);
    expectSameBytes(read.payload, before.subarray(8, 12));
    const write = await ask(target, "node-1", writeRequest(4096, new Uint8Array(0)));
    expect(write).toEqual({
      type: Op.write | REPLY,
      tag: 7,
      status: Status.good,
      payload: new Uint8Array(0),
      text: "",
    });
    expectSameBytes(file.contents(), before);
    expect(target.counters).toEqual(counters({ reads: 1, bytesRead: 4, writes: 1 }));
  });

  // The length field says what the bytes that follow are; a field that
  // disagrees means the frame is not what its sender meant.
  it("refuses a WRITE whose length field is not the bytes sent, either way", async () => {
    const file = new SpyFile(4096);
    const before = Uint8Array.from(file.contents());
    const target = new LunTarget(file, { durable: false });
    const four = Uint8Array.of(1, 2, 3, 4);
    for (const [field, message] of [
      [5, "WRITE: length field 5 is not the 4 bytes sent"],
      [3, "WRITE: length field 3 is not the 4 bytes sent"],
    ] as const) {
      const error = await rejection(target.execute("node-1", writeRequest(0, four, field)));
      expect(error).toBeInstanceOf(ProtocolError);
      expect(error.message).toBe(message);
    }
    expectSameBytes(file.contents(), before);
    expect(target.counters.writes).toBe(0);
  });

  // A range that ends exactly at the LUN's end is inside it; one byte more is not.
  it("answers a READ or WRITE one byte past the LUN with CHECK CONDITION, and serves one ending at it", async () => {
    const file = new SpyFile(4096);
    const before = Uint8Array.from(file.contents());
    const target = new LunTarget(file, { durable: false });
    const atEnd = await ask(target, "node-1", readRequest(4096 - 512, 512));
    expect(atEnd.status).toBe(Status.good);
    expectSameBytes(atEnd.payload, before.subarray(3584, 4096));
    const past = await ask(target, "node-1", readRequest(4096 - 511, 512));
    expect(past).toEqual({
      type: Op.read | REPLY,
      tag: 7,
      status: Status.checkCondition,
      payload: utf8.encode("READ of 512 bytes at 3585 is outside the LUN's 4096 bytes"),
      text: "READ of 512 bytes at 3585 is outside the LUN's 4096 bytes",
    });
    const data = new Uint8Array(16).fill(0xab);
    const writePast = await ask(target, "node-1", writeRequest(4096 - 15, data));
    expect(writePast.status).toBe(Status.checkCondition);
    expect(writePast.text).toBe("WRITE of 16 bytes at 4081 is outside the LUN's 4096 bytes");
    expectSameBytes(file.contents(), before);
    const writeAtEnd = await ask(target, "node-1", writeRequest(4096 - 16, data));
    expect(writeAtEnd.status).toBe(Status.good);
    expectSameBytes(file.contents().subarray(4080), data);
    expectSameBytes(file.contents().subarray(0, 4080), before.subarray(0, 4080));
    // The offset is all 64 bits: 2^32 is not 0.
    const far = await ask(target, "node-1", readRequest(1n << 32n, 1));
    expect(far.text).toBe("READ of 1 bytes at 4294967296 is outside the LUN's 4096 bytes");
    expect(target.counters).toEqual(
      counters({ reads: 1, bytesRead: 512, writes: 1, bytesWritten: 16 }),
    );
  });

  it("answers a READ or WRITE of more than 1 MiB with CHECK CONDITION, and serves exactly 1 MiB", async () => {
    const bytes = 2 * MAX_IO_BYTES + 4096;
    const file = new SpyFile(bytes);
    const before = Uint8Array.from(file.contents());
    const target = new LunTarget(file, { durable: false });
    const mib = await ask(target, "node-1", readRequest(4096, MAX_IO_BYTES));
    expect(mib.status).toBe(Status.good);
    expectSameBytes(mib.payload, before.subarray(4096, 4096 + MAX_IO_BYTES));
    const more = await ask(target, "node-1", readRequest(0, MAX_IO_BYTES + 1));
    expect(more.status).toBe(Status.checkCondition);
    expect(more.text).toBe(`READ of 1048577 bytes at 0 is outside the LUN's ${bytes} bytes`);
    const big = new Uint8Array(MAX_IO_BYTES + 1).fill(0x5a);
    const writeMore = await ask(target, "node-1", writeRequest(0, big));
    expect(writeMore.status).toBe(Status.checkCondition);
    expect(writeMore.text).toBe(`WRITE of 1048577 bytes at 0 is outside the LUN's ${bytes} bytes`);
    expectSameBytes(file.contents(), before);
    const writeMib = await ask(target, "node-1", writeRequest(0, big.subarray(1)));
    expect(writeMib.status).toBe(Status.good);
    expectSameBytes(file.contents().subarray(0, MAX_IO_BYTES), big.subarray(1));
    expect(target.counters).toEqual(
      counters({
        reads: 1,
        bytesRead: MAX_IO_BYTES,
        writes: 1,
        bytesWritten: MAX_IO_BYTES,
      }),
    );
  });

  // On a LUN that claims more than 2^53 bytes, offset + length may round
  // to a number inside it: the sum must also be a safe integer.
  it("answers a range whose end is not a safe integer with CHECK CONDITION, and serves one ending at 2^53 - 1", async () => {
    const file = new ClaimedFile(2 ** 60);
    const target = new LunTarget(file, { durable: false });
    const last = await ask(target, "node-1", readRequest(2 ** 53 - 2, 1));
    expect(last.status).toBe(Status.good);
    expect([...last.payload]).toEqual([0xee]);
    expect(file.reads).toEqual([2 ** 53 - 2]);
    const read = await ask(target, "node-1", readRequest(2 ** 53 - 1, 1));
    expect(read.status).toBe(Status.checkCondition);
    expect(read.text).toBe(
      "READ of 1 bytes at 9007199254740991 is outside the LUN's 1152921504606847000 bytes",
    );
    const write = await ask(target, "node-1", writeRequest(2 ** 53 - 1, Uint8Array.of(1)));
    expect(write.status).toBe(Status.checkCondition);
    expect(write.text).toBe(
      "WRITE of 1 bytes at 9007199254740991 is outside the LUN's 1152921504606847000 bytes",
    );
    expect(file.reads).toEqual([2 ** 53 - 2]);
    expect(file.writes).toEqual([]);
  });
});

describe("execute: READ and WRITE data", () => {
  it("returns a READ's bytes from the LUN, sent from the buffer they were read into", async () => {
    const file = new SpyFile(65536);
    const target = new LunTarget(file, { durable: false });
    const parts = await target.execute("node-1", request(Op.read, address(258, 300), 0x01020304));
    // The header, then the data itself: the bytes are not copied into a frame.
    expect(parts).toHaveLength(2);
    expectSameBytes(parts[1] as Uint8Array, file.contents().subarray(258, 558));
    const frames = new FrameReader().push(Buffer.concat(parts));
    expect(frames).toHaveLength(1);
    const reply = decoded(frames[0] as Frame);
    expect(reply.type).toBe(Op.read | REPLY);
    expect(reply.tag).toBe(0x01020304);
    expect(reply.status).toBe(Status.good);
    expectSameBytes(reply.payload, file.contents().subarray(258, 558));
  });

  // The frame reader keeps a payload in the pieces the socket delivered; the
  // target hands them to one gathered write as they are (docs/csv.md, "What a
  // write costs on the wire"), even with the address split between two.
  it("writes a WRITE's bytes at its offset from the pieces it arrived in, without joining them", async () => {
    const file = new SpyFile(4096);
    const before = Uint8Array.from(file.contents());
    const target = new LunTarget(file, { durable: false });
    const addr = address(1000, 8);
    const pieces = [
      addr.subarray(0, 5),
      Buffer.concat([addr.subarray(5), Uint8Array.of(1, 2, 3)]),
      Uint8Array.of(4, 5, 6, 7, 8),
    ];
    const reply = await ask(target, "node-1", inPieces(Op.write, pieces));
    expect(reply).toEqual({
      type: Op.write | REPLY,
      tag: 9,
      status: Status.good,
      payload: new Uint8Array(0),
      text: "",
    });
    expect(file.gathered).toHaveLength(1);
    const [first, second] = file.gathered[0] ?? [];
    expect(file.gathered[0]).toHaveLength(2);
    // The second piece's tail, as a view on the same memory, then the third piece itself.
    expect(first?.buffer).toBe(pieces[1]?.buffer);
    expect(first?.byteOffset).toBe((pieces[1]?.byteOffset ?? 0) + 7);
    expect([...(first ?? [])]).toEqual([1, 2, 3]);
    expect(second).toBe(pieces[2]);
    expectSameBytes(file.contents().subarray(1000, 1008), Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
    expectSameBytes(file.contents().subarray(0, 1000), before.subarray(0, 1000));
    expectSameBytes(file.contents().subarray(1008), before.subarray(1008));
    // A READ's address in two pieces is read as one.
    const read = await ask(
      target,
      "node-1",
      inPieces(Op.read, [address(999, 10).subarray(0, 3), address(999, 10).subarray(3)]),
    );
    expectSameBytes(
      read.payload,
      Uint8Array.of(before[999] ?? -1, 1, 2, 3, 4, 5, 6, 7, 8, before[1008] ?? -1),
    );
    expect(target.counters).toEqual(
      counters({ reads: 1, bytesRead: 10, writes: 1, bytesWritten: 8 }),
    );
  });

  // A LUN that returns fewer bytes than asked (a file cut short under the
  // target) must not be answered with the buffer's stale memory.
  it("answers a short read from the LUN with CHECK CONDITION and counts no read", async () => {
    const file = new SpyFile(4096);
    file.shortBy = 1;
    const target = new LunTarget(file, { durable: false });
    const reply = await ask(target, "node-1", readRequest(0, 512));
    expect(reply).toEqual({
      type: Op.read | REPLY,
      tag: 7,
      status: Status.checkCondition,
      payload: utf8.encode("READ: the LUN returned 511 of 512 bytes"),
      text: "READ: the LUN returned 511 of 512 bytes",
    });
    expect(target.counters).toEqual(counters({}));
  });

  it("counts each READ and WRITE served and its bytes, and nothing for one refused", async () => {
    const file = new SpyFile(65536);
    const target = new LunTarget(file, { durable: false });
    const served = [
      writeRequest(10, new Uint8Array(100)),
      writeRequest(8192, new Uint8Array(4096)),
      readRequest(0, 10),
      readRequest(60000, 512),
      readRequest(0, 0),
    ];
    for (const frame of served)
      expect((await ask(target, "node-1", frame)).status).toBe(Status.good);
    const refused = [readRequest(65536, 1), writeRequest(65535, new Uint8Array(2))];
    for (const frame of refused)
      expect((await ask(target, "node-1", frame)).status).toBe(Status.checkCondition);
    expect(target.counters).toEqual(
      counters({ reads: 3, bytesRead: 522, writes: 2, bytesWritten: 4196 }),
    );
  });

  it("makes earlier writes durable on FLUSH (sync on the LUN) unless durable is false", async () => {
    for (const [options, syncs] of [
      [{}, 1],
      [{ durable: true }, 1],
      [{ durable: false }, 0],
    ] as const) {
      const file = new SpyFile(4096);
      const target = new LunTarget(file, options);
      const parts = await target.execute("node-1", request(Op.flush, new Uint8Array(0), 3));
      expect(parts).toHaveLength(1);
      expect(decoded(new FrameReader().push(parts[0] as Uint8Array)[0] as Frame)).toEqual({
        type: Op.flush | REPLY,
        tag: 3,
        status: Status.good,
        payload: new Uint8Array(0),
        text: "",
      });
      expect(file.syncs).toBe(syncs);
    }
  });
});

describe("execute: reservations on READ and WRITE", () => {
  // Write Exclusive - Registrants Only (type 5): an unregistered initiator
  // may read but not write (docs/csv.md, "Persistent reservations").
  it("answers a WRITE from an unregistered initiator under type 5 with RESERVATION CONFLICT, and writes nothing", async () => {
    const file = new SpyFile(4096);
    const before = Uint8Array.from(file.contents());
    const target = new LunTarget(file, { durable: false });
    await prGood(target, "node-1", ServiceAction.register, 0, 0n, 0xa1n);
    await prGood(target, "node-1", ServiceAction.reserve, WERO, 0xa1n);
    const refused = await ask(target, "outsider", writeRequest(0, Uint8Array.of(9, 9, 9, 9)));
    expect(refused).toEqual({
      type: Op.write | REPLY,
      tag: 7,
      status: Status.reservationConflict,
      payload: utf8.encode("outsider is not registered: the LUN is reserved"),
      text: "outsider is not registered: the LUN is reserved",
    });
    expectSameBytes(file.contents(), before);
    expect(target.counters).toEqual(counters({ conflicts: 1 }));
    const read = await ask(target, "outsider", readRequest(0, 4));
    expect(read.status).toBe(Status.good);
    const registered = await ask(target, "node-1", writeRequest(0, Uint8Array.of(9, 9, 9, 9)));
    expect(registered.status).toBe(Status.good);
    expect(target.counters).toEqual(
      counters({ conflicts: 1, reads: 1, bytesRead: 4, writes: 1, bytesWritten: 4 }),
    );
  });

  // Exclusive Access - Registrants Only (type 6) refuses reads too.
  it("answers a READ from an unregistered initiator under type 6 with RESERVATION CONFLICT", async () => {
    const target = new LunTarget(new SpyFile(4096), { durable: false });
    await prGood(target, "node-1", ServiceAction.register, 0, 0n, 0xa1n);
    await prGood(target, "node-1", ServiceAction.reserve, EARO, 0xa1n);
    const refused = await ask(target, "backup", readRequest(0, 4));
    expect(refused.status).toBe(Status.reservationConflict);
    expect(refused.text).toBe("backup is not registered: the LUN is reserved");
    expect(refused.payload).toEqual(utf8.encode(refused.text));
    expect(target.counters).toEqual(counters({ conflicts: 1 }));
    expect((await ask(target, "node-1", readRequest(0, 4))).status).toBe(Status.good);
    expect(target.counters).toEqual(counters({ conflicts: 1, reads: 1, bytesRead: 4 }));
  });

  // Write Exclusive (1) and Exclusive Access (3): only the holder may write
  // (and, under 3, read); a registered initiator is refused for not holding it.
  it("under the holder-only types says a registered initiator does not hold the reservation, and an unregistered one is not registered", async () => {
    for (const [type, refusedRead] of [
      [1, false],
      [3, true],
    ] as const) {
      const target = new LunTarget(new SpyFile(4096), { durable: false });
      await prGood(target, "node-1", ServiceAction.register, 0, 0n, 0xa1n);
      await prGood(target, "node-2", ServiceAction.register, 0, 0n, 0xa2n);
      await prGood(target, "node-1", ServiceAction.reserve, type, 0xa1n);
      const write = await ask(target, "node-2", writeRequest(0, Uint8Array.of(1)));
      expect(write.status).toBe(Status.reservationConflict);
      expect(write.text).toBe(`node-2 does not hold the LUN's reservation (type ${type})`);
      const outsider = await ask(target, "outsider", writeRequest(0, Uint8Array.of(1)));
      expect(outsider.text).toBe("outsider is not registered: the LUN is reserved");
      const read = await ask(target, "node-2", readRequest(0, 1));
      expect(read.status).toBe(refusedRead ? Status.reservationConflict : Status.good);
      if (refusedRead)
        expect(read.text).toBe("node-2 does not hold the LUN's reservation (type 3)");
      expect((await ask(target, "node-1", writeRequest(0, Uint8Array.of(1)))).status).toBe(
        Status.good,
      );
    }
  });

  // docs/csv.md: the reservation is checked again where the bytes meet the
  // LUN, so a node fenced while its write waited on the path is refused.
  it("refuses a WRITE whose initiator was preempted while it waited on the path's latency; under type 5 its READ is still served", async () => {
    const file = new SpyFile(4096);
    const before = Uint8Array.from(file.contents());
    const target = new LunTarget(file, { durable: false, latencyMs: 20 });
    await prGood(target, "node-1", ServiceAction.register, 0, 0n, 0xa1n);
    await prGood(target, "node-2", ServiceAction.register, 0, 0n, 0xb2n);
    await prGood(target, "node-1", ServiceAction.reserve, WERO, 0xa1n);
    const write = ask(target, "node-2", writeRequest(0, Uint8Array.of(1, 2, 3, 4)));
    const read = ask(target, "node-2", readRequest(0, 4));
    await prGood(target, "node-1", ServiceAction.preempt, WERO, 0xa1n, 0xb2n);
    expect(await write).toEqual({
      type: Op.write | REPLY,
      tag: 7,
      status: Status.reservationConflict,
      payload: utf8.encode("node-2 is not registered: the LUN is reserved"),
      text: "node-2 is not registered: the LUN is reserved",
    });
    // A fenced node may still read (docs/csv.md): the second check is the READ's own.
    const served = await read;
    expect(served.status).toBe(Status.good);
    expectSameBytes(served.payload, before.subarray(0, 4));
    expectSameBytes(file.contents(), before);
    expect(target.counters).toEqual(counters({ conflicts: 1, reads: 1, bytesRead: 4 }));
  });

  it("refuses a READ whose initiator was preempted while it waited on the path's latency under type 6", async () => {
    const target = new LunTarget(new SpyFile(4096), { durable: false, latencyMs: 20 });
    await prGood(target, "node-1", ServiceAction.register, 0, 0n, 0xa1n);
    await prGood(target, "node-2", ServiceAction.register, 0, 0n, 0xb2n);
    await prGood(target, "node-1", ServiceAction.reserve, EARO, 0xa1n);
    const read = ask(target, "node-2", readRequest(0, 4));
    await prGood(target, "node-1", ServiceAction.preempt, EARO, 0xa1n, 0xb2n);
    const reply = await read;
    expect(reply.type).toBe(Op.read | REPLY);
    expect(reply.status).toBe(Status.reservationConflict);
    expect(reply.text).toBe("node-2 is not registered: the LUN is reserved");
    expect(target.counters).toEqual(counters({ conflicts: 1 }));
  });

  // With no latency and no throttle nothing waits: the request is checked and
  // served before execute() first yields, so a PREEMPT issued after it is too late.
  it("serves a WRITE before execute() yields when the path has no latency and no throttle", async () => {
    const file = new SpyFile(4096);
    const target = new LunTarget(file, { durable: false, latencyMs: 0 });
    await prGood(target, "node-1", ServiceAction.register, 0, 0n, 0xa1n);
    await prGood(target, "node-2", ServiceAction.register, 0, 0n, 0xb2n);
    await prGood(target, "node-1", ServiceAction.reserve, WERO, 0xa1n);
    const write = ask(target, "node-2", writeRequest(0, Uint8Array.of(1, 2, 3, 4)));
    await prGood(target, "node-1", ServiceAction.preempt, WERO, 0xa1n, 0xb2n);
    expect((await write).status).toBe(Status.good);
    expectSameBytes(file.contents().subarray(0, 4), Uint8Array.of(1, 2, 3, 4));
    expect(target.counters).toEqual(counters({ writes: 1, bytesWritten: 4 }));
  });

  it("refuses a WRITE whose initiator was preempted while it waited on the throttle", async () => {
    const file = new SpyFile(2 * MAX_IO_BYTES);
    const before = Uint8Array.from(file.contents());
    const target = new LunTarget(file, { durable: false, throttleBytesPerSecond: MAX_IO_BYTES });
    await prGood(target, "node-1", ServiceAction.register, 0, 0n, 0xa1n);
    await prGood(target, "node-2", ServiceAction.register, 0, 0n, 0xb2n);
    await prGood(target, "node-1", ServiceAction.reserve, WERO, 0xa1n);
    const write = ask(target, "node-2", writeRequest(4096, new Uint8Array(4096).fill(1)));
    await prGood(target, "node-1", ServiceAction.preempt, WERO, 0xa1n, 0xb2n);
    const reply = await write;
    expect(reply.status).toBe(Status.reservationConflict);
    expect(reply.text).toBe("node-2 is not registered: the LUN is reserved");
    expectSameBytes(file.contents(), before);
    expect(target.counters).toEqual(counters({ conflicts: 1 }));
  });

  it("adds the latency to every READ and WRITE", async () => {
    const target = new LunTarget(new SpyFile(4096), { durable: false, latencyMs: 40 });
    const started = performance.now();
    expect((await ask(target, "node-1", readRequest(0, 512))).status).toBe(Status.good);
    const read = performance.now() - started;
    const t0 = performance.now();
    expect((await ask(target, "node-1", writeRequest(0, new Uint8Array(8)))).status).toBe(
      Status.good,
    );
    const write = performance.now() - t0;
    expect(read).toBeGreaterThanOrEqual(38);
    expect(write).toBeGreaterThanOrEqual(38);
  });

  // The bucket holds max(1 MiB, a hundredth of a second's bytes): a 1 MiB
  // request passes at once on any path, the next waits out its bytes.
  it("lets 1 MiB through a throttled path at once, then meters the next request at the rate", async () => {
    const target = new LunTarget(new SpyFile(2 * MAX_IO_BYTES), {
      durable: false,
      throttleBytesPerSecond: MAX_IO_BYTES,
    });
    // Both take their tokens now, as execute() runs up to its first wait at once.
    // A request that waits on the bucket sleeps on a timer, so one answered
    // before a 0 ms timer has run did not wait at all (on any machine's clock).
    let timerRan = false;
    setTimeout(() => {
      timerRan = true;
    }, 0);
    const t0 = performance.now();
    const first = target.execute("node-1", readRequest(0, MAX_IO_BYTES)).then(() => timerRan);
    const second = target
      .execute("node-1", readRequest(0, 65536))
      .then(() => performance.now() - t0);
    expect(await first).toBe(false);
    // 64 KiB at 1 MiB/s: 62.5 ms.
    expect(await second).toBeGreaterThanOrEqual(55);
    expect(target.counters).toEqual(counters({ reads: 2, bytesRead: MAX_IO_BYTES + 65536 }));
  });
});

describe("execute: PERSISTENT RESERVE OUT and IN", () => {
  it("refuses a PERSISTENT RESERVE OUT payload of other than 20 bytes", async () => {
    const target = new LunTarget(new SpyFile(4096), { durable: false });
    for (const n of [19, 21, 0]) {
      const error = await rejection(
        target.execute("node-1", request(Op.reserveOut, new Uint8Array(n))),
      );
      expect(error).toBeInstanceOf(ProtocolError);
      expect(error.message).toBe(`PERSISTENT RESERVE OUT: payload of ${n} bytes, not 20`);
    }
    expect(target.reservations.registeredKeys()).toEqual([]);
  });

  // Service action at byte 0, type at 1, 2 reserved bytes, the key at 4 and
  // the service action key at 12, little-endian (docs/csv.md's table).
  it("reads the service action at byte 0, the type at 1, the key at 4 and the service action key at 12", async () => {
    const target = new LunTarget(new SpyFile(4096), { durable: false });
    const register = Uint8Array.of(
      ...[ServiceAction.register, 6, 0xff, 0xff],
      ...[0, 0, 0, 0, 0, 0, 0, 0],
      ...[8, 7, 6, 5, 4, 3, 2, 1],
    );
    expect((await ask(target, "node-1", request(Op.reserveOut, register))).status).toBe(
      Status.good,
    );
    expect(target.reservations.keyOf("node-1")).toBe(0x0102030405060708n);
    const reserve = Uint8Array.of(
      ...[ServiceAction.reserve, EARO, 0xff, 0xff],
      ...[8, 7, 6, 5, 4, 3, 2, 1],
      ...[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    );
    expect((await ask(target, "node-1", request(Op.reserveOut, reserve))).status).toBe(Status.good);
    expect(target.reservations.held()).toEqual({
      holder: "node-1",
      key: 0x0102030405060708n,
      type: EARO,
    });
  });

  it("maps the outcome: GOOD with no payload, a conflict to RESERVATION CONFLICT (counted), a refusal to CHECK CONDITION", async () => {
    const target = new LunTarget(new SpyFile(4096), { durable: false });
    const conflict = await ask(target, "node-1", reserveOut(ServiceAction.register, 0, 5n, 6n));
    expect(conflict).toEqual({
      type: Op.reserveOut | REPLY,
      tag: 7,
      status: Status.reservationConflict,
      payload: utf8.encode("REGISTER from an unregistered initiator must give reservation key 0"),
      text: "REGISTER from an unregistered initiator must give reservation key 0",
    });
    expect(target.counters).toEqual(counters({ conflicts: 1 }));
    const check = await ask(target, "node-1", reserveOut(9, 0, 0n));
    expect(check.status).toBe(Status.checkCondition);
    expect(check.text).toBe("service action 9 is not supported");
    await prGood(target, "node-1", ServiceAction.register, 0, 0n, 0xa1n);
    const badType = await ask(target, "node-1", reserveOut(ServiceAction.reserve, 2, 0xa1n));
    expect(badType.status).toBe(Status.checkCondition);
    expect(badType.text).toBe("reservation type 2 is not supported (1, 3, 5 or 6)");
    const good = await target.execute("node-1", reserveOut(ServiceAction.reserve, WERO, 0xa1n));
    expect(good).toHaveLength(1);
    expect(decoded(new FrameReader().push(good[0] as Uint8Array)[0] as Frame)).toEqual({
      type: Op.reserveOut | REPLY,
      tag: 7,
      status: Status.good,
      payload: new Uint8Array(0),
      text: "",
    });
    expect(target.counters).toEqual(counters({ conflicts: 1 }));
  });

  // The board (registration-board.ts) is published at start and after every
  // GOOD: a refused command changes nothing, so it is not rewritten.
  it("publishes the registration board at start and after each GOOD, not after a refusal; close marks it offline and removes it", async () => {
    const path = join(testTempDir("csv-target-rules"), "lun.registrations");
    const target = new LunTarget(new SpyFile(4096), { durable: false, registrations: path });
    onTestFinished(() => target.close());
    const board = () => parseBoard(readFileSync(path), path);
    const start = {
      state: BoardState.online,
      prGeneration: 0,
      sequence: 1,
      lunBytes: 4096,
      type: 0,
      holderKey: 0n,
      keys: [],
    };
    expect(board()).toEqual(start);
    expect(
      (await ask(target, "node-1", reserveOut(ServiceAction.register, 0, 5n, 6n))).status,
    ).toBe(Status.reservationConflict);
    expect((await ask(target, "node-1", reserveOut(9, 0, 0n))).status).toBe(Status.checkCondition);
    expect(board()).toEqual(start);
    await prGood(target, "node-1", ServiceAction.register, 0, 0n, 0xa1n);
    expect(board()).toEqual({ ...start, prGeneration: 1, sequence: 2, keys: [0xa1n] });
    await prGood(target, "node-1", ServiceAction.reserve, WERO, 0xa1n);
    expect(board()).toEqual({
      ...start,
      prGeneration: 1,
      sequence: 3,
      type: WERO,
      holderKey: 0xa1n,
      keys: [0xa1n],
    });
    await target.close();
    expect(existsSync(path)).toBe(false);
  });

  it("refuses a PERSISTENT RESERVE IN payload of other than 1 byte", async () => {
    const target = new LunTarget(new SpyFile(4096), { durable: false });
    for (const n of [0, 2]) {
      const error = await rejection(
        target.execute("node-1", request(Op.reserveIn, new Uint8Array(n))),
      );
      expect(error).toBeInstanceOf(ProtocolError);
      expect(error.message).toBe(`PERSISTENT RESERVE IN: payload of ${n} bytes, not 1`);
    }
  });

  it("READ KEYS: PRgeneration u32, then each registered key u64, little-endian, in registration order", async () => {
    const target = new LunTarget(new SpyFile(4096), { durable: false });
    const none = await ask(
      target,
      "node-1",
      request(Op.reserveIn, Uint8Array.of(InAction.readKeys)),
    );
    expect(none.type).toBe(Op.reserveIn | REPLY);
    expect(none.status).toBe(Status.good);
    expect([...none.payload]).toEqual([0, 0, 0, 0]);
    await prGood(target, "node-1", ServiceAction.register, 0, 0n, 0x1122334455667788n);
    await prGood(target, "node-2", ServiceAction.register, 0, 0n, 0xa1n);
    const two = await ask(
      target,
      "node-1",
      request(Op.reserveIn, Uint8Array.of(InAction.readKeys)),
    );
    expect(two.status).toBe(Status.good);
    expect([...two.payload]).toEqual([
      ...[2, 0, 0, 0],
      ...[0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11],
      ...[0xa1, 0, 0, 0, 0, 0, 0, 0],
    ]);
  });

  it("READ RESERVATION: PRgeneration alone (4 bytes) when none is held, then the holder's key at 4 and type at 12", async () => {
    const target = new LunTarget(new SpyFile(4096), { durable: false });
    const readReservation = request(Op.reserveIn, Uint8Array.of(InAction.readReservation));
    await prGood(target, "node-1", ServiceAction.register, 0, 0n, 0x0a0b0c0d0e0f1011n);
    const none = await ask(target, "node-2", readReservation);
    expect(none.status).toBe(Status.good);
    expect([...none.payload]).toEqual([1, 0, 0, 0]);
    await prGood(target, "node-1", ServiceAction.reserve, WERO, 0x0a0b0c0d0e0f1011n);
    const held = await ask(target, "node-2", readReservation);
    expect(held.type).toBe(Op.reserveIn | REPLY);
    expect(held.status).toBe(Status.good);
    expect([...held.payload]).toEqual([
      ...[1, 0, 0, 0],
      ...[0x11, 0x10, 0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a],
      WERO,
    ]);
  });

  it("answers a PERSISTENT RESERVE IN service action other than 0 and 1 with CHECK CONDITION", async () => {
    const target = new LunTarget(new SpyFile(4096), { durable: false });
    for (const action of [2, 255]) {
      const reply = await ask(target, "node-1", request(Op.reserveIn, Uint8Array.of(action)));
      expect(reply.type).toBe(Op.reserveIn | REPLY);
      expect(reply.status).toBe(Status.checkCondition);
      expect(reply.text).toBe(`PERSISTENT RESERVE IN service action ${action} is not supported`);
    }
  });

  // LOGIN is a connection's first frame, not a request: a second one is as
  // foreign to execute() as a node-protocol type.
  it("refuses a request type it does not serve as a protocol error", async () => {
    const target = new LunTarget(new SpyFile(4096), { durable: false });
    for (const type of [200, Op.login, Op.metadata, 0]) {
      const error = await rejection(target.execute("node-1", request(type, new Uint8Array(4))));
      expect(error).toBeInstanceOf(ProtocolError);
      expect(error.message).toBe(`request type ${type} is not one the target serves`);
    }
  });
});

describe("constructor", () => {
  it("refuses a latency outside 0 to 10000 ms, and NaN; takes 0 and 10000", () => {
    for (const latencyMs of [-1, 10_001, Number.NaN, -0.5]) {
      const error = thrown(() => new LunTarget(new SpyFile(4096), { latencyMs }));
      expect(error).toBeInstanceOf(RangeError);
      expect(error.message).toBe(`target latency must be 0 to 10000 ms, not ${latencyMs}`);
    }
    expect(new LunTarget(new SpyFile(4096), { latencyMs: 0 }).bytes).toBe(4096);
    expect(new LunTarget(new SpyFile(512), { latencyMs: 10_000 }).bytes).toBe(512);
  });
});

describe("serve: a connection's rules", () => {
  it("answers LOGIN with its tag and the LUN's size as a u64, little-endian", async () => {
    const { target, port } = await served(new ClaimedFile(0x0102030405));
    const peer = await TargetPeer.open(port);
    const reply = await peer.login("node-1", 0xdeadbeef);
    expect(reply).toEqual({
      type: Op.login | REPLY,
      tag: 0xdeadbeef,
      status: Status.good,
      payload: Uint8Array.of(5, 4, 3, 2, 1, 0, 0, 0),
      text: "\u0005\u0004\u0003\u0002\u0001\u0000\u0000\u0000",
    });
    expect(target.counters).toEqual(counters({ connections: 1 }));
  });

  it("refuses a first frame that is not LOGIN with an error frame, and closes the connection", async () => {
    const { target, port } = await served(new SpyFile(4096));
    const peer = await TargetPeer.open(port);
    peer.send(encodeFrame(Op.read, 1, address(0, 512)), encodeFrame(Op.login, 2, utf8.encode("n")));
    expect(await peer.refusal()).toBe("the first frame must be LOGIN, not type 2");
    expect(peer.frames).toHaveLength(1);
    expect(target.counters).toEqual(counters({ connections: 1, protocolErrors: 1 }));
  });

  // 1 to 64 bytes of UTF-8 (docs/csv.md): bytes, not characters.
  it("takes an initiator name of 64 UTF-8 bytes as the initiator, and refuses 65 bytes, none, and bytes that are not UTF-8", async () => {
    const { target, port } = await served(new SpyFile(4096));
    for (const name of ["n".repeat(64), "é".repeat(32)]) {
      const peer = await TargetPeer.open(port);
      expect((await peer.login(name)).status).toBe(Status.good);
      peer.send(
        encodeFrame(Op.reserveOut, 2, reserveOut(ServiceAction.register, 0, 0n, 0x42n).payload),
      );
      expect((await peer.next("the REGISTER reply")).status).toBe(Status.good);
      expect(target.reservations.keyOf(name)).toBe(0x42n);
    }
    const refused: [Uint8Array, string][] = [
      [utf8.encode("n".repeat(65)), "LOGIN: the initiator name must be 1 to 64 bytes"],
      [utf8.encode("é".repeat(33)), "LOGIN: the initiator name must be 1 to 64 bytes"],
      [new Uint8Array(0), "LOGIN: the initiator name must be 1 to 64 bytes"],
      [Uint8Array.of(0x6e, 0xc3), "LOGIN: the initiator name is not UTF-8"],
    ];
    for (const [name, why] of refused) {
      const peer = await TargetPeer.open(port);
      peer.send(encodeFrame(Op.login, 1, name));
      expect(await peer.refusal()).toBe(why);
    }
    expect(target.counters).toEqual(counters({ connections: 6, protocolErrors: 4 }));
  });

  // A name is its bytes: a leading byte-order mark is not dropped, so it cannot pass for another node.
  it("an initiator name that begins with a byte-order mark is another initiator than the name without it", async () => {
    const { target, port } = await served(new SpyFile(4096));
    const names: [string, bigint][] = [
      ["node-2", 0x1n],
      ["\uFEFFnode-2", 0x2n],
      ["\uFEFF", 0x3n],
    ];
    for (const [name, key] of names) {
      const peer = await TargetPeer.open(port);
      expect((await peer.login(name)).status).toBe(Status.good);
      peer.send(
        encodeFrame(Op.reserveOut, 2, reserveOut(ServiceAction.register, 0, 0n, key).payload),
      );
      expect((await peer.next("the REGISTER reply")).status).toBe(Status.good);
    }
    expect(names.map(([name]) => target.reservations.keyOf(name))).toStrictEqual([
      0x1n,
      0x2n,
      0x3n,
    ]);
    expect(target.reservations.keyOf("")).toBe(undefined);
  });

  // The timeouts are short but not tight: a connection that logs in at once
  // must not meet them on a loaded machine.
  it("closes a connection with no LOGIN within the handshake timeout, and keeps one that logged in", async () => {
    const { target, port } = await served(new SpyFile(4096), { handshakeTimeoutMs: 400 });
    const silent = await TargetPeer.open(port);
    const prompt = await TargetPeer.open(port);
    expect((await prompt.login()).status).toBe(Status.good);
    expect(await silent.refusal()).toBe("no LOGIN within the handshake timeout");
    // Well past the timeout, the connection that logged in is still served.
    await new Promise((resolve) => realSetTimeout(resolve, 100));
    prompt.send(encodeFrame(Op.flush, 5));
    expect(await prompt.next("the FLUSH reply")).toEqual({
      type: Op.flush | REPLY,
      tag: 5,
      status: Status.good,
      payload: new Uint8Array(0),
      text: "",
    });
    expect(target.counters).toEqual(counters({ connections: 2, protocolErrors: 1 }));
  });

  it("waits 5000 ms for LOGIN by default, and not a millisecond less", async () => {
    const { target, port } = await served(new SpyFile(4096));
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const silent = await TargetPeer.open(port);
    await until(() => target.counters.connections === 1, "the connection accepted");
    await vi.advanceTimersByTimeAsync(4999);
    await new Promise((resolve) => realSetTimeout(resolve, 20));
    expect(silent.frames).toEqual([]);
    expect(target.counters.protocolErrors).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(await silent.refusal()).toBe("no LOGIN within the handshake timeout");
    expect(target.counters).toEqual(counters({ connections: 1, protocolErrors: 1 }));
  });

  it("closes a logged-in connection silent for the idle timeout", async () => {
    const { target, port } = await served(new SpyFile(4096), { idleTimeoutMs: 250 });
    const peer = await TargetPeer.open(port);
    expect((await peer.login()).status).toBe(Status.good);
    expect(await peer.refusal()).toBe("idle timeout");
    expect(target.counters).toEqual(counters({ connections: 1, protocolErrors: 1 }));
  });

  // A refused peer that keeps its end open (half-open) does not keep the
  // connection: the target destroys it a second after its error frame.
  it("destroys a refused connection 1000 ms after its error frame even if the peer keeps its end open", async () => {
    const { target, port } = await served(new SpyFile(4096));
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const peer = await TargetPeer.open(port, true);
    const ended = once(peer.socket, "end");
    peer.send(encodeFrame(Op.flush, 1));
    const frame = await peer.next("the error frame");
    expect(frame.text).toBe("the first frame must be LOGIN, not type 4");
    await within(ended, "the target's end of the connection");
    // Bytes sent to a connection the target still holds are read and ignored;
    // once it has destroyed the connection, they are answered with a reset.
    let gone = false;
    void peer.closed.then(() => {
      gone = true;
    });
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
    expect(target.counters).toEqual(counters({ connections: 1, protocolErrors: 1 }));
  });

  it("tells a peer that opens with a TLS ClientHello that the listener is plain", async () => {
    const { target, port } = await served(new SpyFile(4096));
    const peer = await TargetPeer.open(port);
    peer.send(Uint8Array.of(0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03));
    expect(await peer.refusal()).toBe(TLS_PEER_OF_PLAIN);
    expect(TLS_PEER_OF_PLAIN).toBe(
      "the peer began a TLS handshake with a listener without TLS (give both ends --tls-creds or --tls-psk, or neither)",
    );
    expect(target.counters).toEqual(counters({ connections: 1, protocolErrors: 1 }));
  });

  // Only the connection's first bytes are looked at for a TLS hello: later,
  // the same bytes are a frame that is not one.
  it("takes bytes like a TLS record after the first read as a bad frame, naming its stream offset", async () => {
    const { port } = await served(new SpyFile(4096));
    const peer = await TargetPeer.open(port);
    expect((await peer.login("node-1")).status).toBe(Status.good);
    const record = new Uint8Array(24);
    record.set([0x16, 0x03, 0x01, 0x00, 0x2f]);
    peer.send(record);
    expect(await peer.refusal()).toBe("frame at stream byte 30: magic: not HVCS");
  });

  it("closes the connection that breaks the protocol, with the request's reason or the target's error, and serves the others", async () => {
    const file = new SpyFile(4096);
    const { target, port } = await served(file, { durable: true });
    const good = await TargetPeer.open(port);
    expect((await good.login("node-good")).status).toBe(Status.good);
    const cases: [Uint8Array, string][] = [
      [
        utf8.encode("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        "frame at stream byte 32: magic: not HVCS",
      ],
      [encodeFrame(Op.read, 2, new Uint8Array(11)), "READ: payload of 11 bytes is not an address"],
      [
        encodeFrame(Op.metadata, 2, new Uint8Array(1)),
        "request type 16 is not one the target serves",
      ],
    ];
    for (const [bytes, why] of cases) {
      const bad = await TargetPeer.open(port);
      expect((await bad.login("node-bad")).status).toBe(Status.good);
      bad.send(bytes);
      expect(await bad.refusal()).toBe(why);
      good.send(encodeFrame(Op.read, 3, address(100, 4)));
      const read = await good.next("the good connection's READ");
      expect(read.status).toBe(Status.good);
      expectSameBytes(read.payload, file.contents().subarray(100, 104));
    }
    // An error that is not the protocol's is the target's own, and closes the connection too.
    file.syncError = new Error("EIO: the disk is gone");
    const failing = await TargetPeer.open(port);
    expect((await failing.login("node-f")).status).toBe(Status.good);
    failing.send(encodeFrame(Op.flush, 2));
    expect(await failing.refusal()).toBe("target error: EIO: the disk is gone");
    expect(target.counters).toEqual(
      counters({ connections: 5, protocolErrors: 4, reads: 3, bytesRead: 12 }),
    );
  });

  // Requests of one connection run in order, connections side by side
  // (docs/csv.md): a FLUSH behind a READ that waits on the path's latency is
  // answered after it, while another connection's FLUSH is not held up.
  it("answers the requests of one connection in order, and another connection's alongside", async () => {
    const file = new SpyFile(4096);
    const { port } = await served(file, { latencyMs: 100 });
    const a = await TargetPeer.open(port);
    const b = await TargetPeer.open(port);
    expect((await a.login("node-a")).status).toBe(Status.good);
    expect((await b.login("node-b")).status).toBe(Status.good);
    const order: string[] = [];
    a.socket.on("data", () => order.push("a"));
    b.socket.on("data", () => order.push("b"));
    a.send(
      encodeFrame(Op.write, 2, Buffer.concat([address(0, 4), Uint8Array.of(1, 2, 3, 4)])),
      encodeFrame(Op.read, 3, address(0, 4)),
      encodeFrame(Op.flush, 4),
    );
    await new Promise((resolve) => realSetTimeout(resolve, 10));
    b.send(encodeFrame(Op.flush, 2));
    expect((await b.next("b's FLUSH reply")).tag).toBe(2);
    const replies = [await a.next(), await a.next(), await a.next()];
    expect(replies.map((r) => [r.type, r.tag, r.status])).toEqual([
      [Op.write | REPLY, 2, Status.good],
      [Op.read | REPLY, 3, Status.good],
      [Op.flush | REPLY, 4, Status.good],
    ]);
    expect([...(replies[1]?.payload ?? [])]).toEqual([1, 2, 3, 4]);
    expect(order[0]).toBe("b");
  });

  it("close() ends every connection, one that never logged in included, and stops listening", async () => {
    const { target, port } = await served(new SpyFile(4096));
    const path = join(testTempDir("csv-target-rules"), "t.sock");
    await target.listenLocal(path);
    const never = await TargetPeer.open(port);
    const tcp = await TargetPeer.open(port);
    expect((await tcp.login("node-1")).status).toBe(Status.good);
    const local = await TargetPeer.open(path);
    expect((await local.login("node-2")).status).toBe(Status.good);
    await until(() => target.counters.connections === 3, "three connections accepted");
    await within(target.close(), "close()");
    await within(never.closed, "the connection that never logged in");
    await within(tcp.closed, "the logged-in connection");
    await within(local.closed, "the local connection");
    expect(never.frames).toEqual([]);
    expect(tcp.frames).toHaveLength(1);
    expect(target.counters.protocolErrors).toBe(0);
    expect(existsSync(path)).toBe(false);
    const refused = connect({ host: "127.0.0.1", port });
    const [error] = (await within(once(refused, "error"), "the refused connection")) as [Error];
    expect((error as NodeJS.ErrnoException).code).toBe("ECONNREFUSED");
  });

  // docs/csv.md, "The local path: a Unix socket": mode 0600, same frames,
  // same reservations as TCP.
  it("listens on a Unix socket of mode 0600 that serves the same protocol and reservations", async () => {
    const file = new SpyFile(4096);
    const before = Uint8Array.from(file.contents());
    const { target, port } = await served(file);
    const path = join(testTempDir("csv-target-rules"), "t.sock");
    await target.listenLocal(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(path).isSocket()).toBe(true);
    const holder = await TargetClient.connect(port, "node-1");
    onTestFinished(() => holder.close());
    await holder.register(0xa1n);
    await holder.reserveOut(ServiceAction.reserve, WERO, 0xa1n);
    const local = await TargetPeer.open(path);
    expect(await local.login("node-2", 4)).toEqual({
      type: Op.login | REPLY,
      tag: 4,
      status: Status.good,
      payload: Uint8Array.of(0, 16, 0, 0, 0, 0, 0, 0),
      text: "\u0000\u0010\u0000\u0000\u0000\u0000\u0000\u0000",
    });
    local.send(encodeFrame(Op.write, 2, Buffer.concat([address(0, 2), Uint8Array.of(7, 7)])));
    const write = await local.next("the WRITE reply");
    expect(write.status).toBe(Status.reservationConflict);
    expect(write.text).toBe("node-2 is not registered: the LUN is reserved");
    expectSameBytes(file.contents(), before);
    local.send(encodeFrame(Op.read, 3, address(10, 2)));
    const read = await local.next("the READ reply");
    expect(read.status).toBe(Status.good);
    expectSameBytes(read.payload, before.subarray(10, 12));
    expect(target.counters).toEqual(
      counters({ connections: 2, conflicts: 1, reads: 1, bytesRead: 2 }),
    );
  });
});
