import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { crc32c } from "../src/csv/checksum.js";
import {
  BOARD_BYTES,
  type Board,
  BoardFormatError,
  BoardPublisher,
  BoardReader,
  BoardState,
  encodeBoard,
  MAX_BOARD_KEYS,
  parseBoard,
  writeRefusal,
} from "../src/csv/registration-board.js";
import { PersistentReservations, ReservationType, ServiceAction } from "../src/csv/reservations.js";
import { testTempDir } from "./support/temp.js";

// The registration board (src/csv/registration-board.ts): the page the
// target publishes for nodes on their own path to the LUN. Every field at
// its offset, each refusal naming what was wrong, SPC-3 5.6's write rules
// by key with their words, and the publisher's and reader's file rules.

const BOARD: Board = {
  state: BoardState.online,
  prGeneration: 0x0102_0304,
  sequence: 0x0a0b_0c0d,
  lunBytes: 0x0001_0000_0000_0200,
  type: ReservationType.writeExclusiveRegistrantsOnly,
  holderKey: 0x1111_2222_3333_4444n,
  keys: [0x1111_2222_3333_4444n, 0xffff_ffff_ffff_fffen],
};

function resealed(page: Uint8Array): Uint8Array {
  new DataView(page.buffer, page.byteOffset).setUint32(4092, crc32c(page.subarray(0, 4092)), true);
  return page;
}

function spoiled(spoil: (view: DataView, page: Uint8Array) => void): Uint8Array {
  const page = encodeBoard(BOARD);
  spoil(new DataView(page.buffer), page);
  return resealed(page);
}

/** The message of the BoardFormatError parsing `page` throws. */
function refusal(page: Uint8Array): string {
  try {
    parseBoard(page, "lun.registrations");
  } catch (error) {
    expect(error).toBeInstanceOf(BoardFormatError);
    expect((error as Error).name).toBe("BoardFormatError");
    return (error as Error).message;
  }
  throw new Error("parsed without a refusal");
}

describe("the registration board's page", () => {
  it("writes every field at its offset, little-endian, and the CRC-32C of the first 4,092 bytes", () => {
    const page = encodeBoard(BOARD);
    const v = new DataView(page.buffer);
    expect(page.length).toBe(BOARD_BYTES);
    expect(new TextDecoder().decode(page.subarray(0, 8))).toBe("HVCSVPRB");
    expect(v.getUint32(8, true)).toBe(1);
    expect(v.getUint32(12, true)).toBe(1);
    expect(v.getUint32(16, true)).toBe(0x0102_0304);
    expect(v.getUint32(20, true)).toBe(0x0a0b_0c0d);
    expect(v.getBigUint64(24, true)).toBe(0x0001_0000_0000_0200n);
    expect(page[32]).toBe(5);
    expect(page.subarray(33, 40).every((b) => b === 0)).toBe(true);
    expect(v.getBigUint64(40, true)).toBe(0x1111_2222_3333_4444n);
    expect(v.getUint32(48, true)).toBe(2);
    expect(v.getUint32(52, true)).toBe(0);
    expect(v.getBigUint64(56, true)).toBe(0x1111_2222_3333_4444n);
    expect(v.getBigUint64(64, true)).toBe(0xffff_ffff_ffff_fffen);
    expect(page.subarray(72, 4092).every((b) => b === 0)).toBe(true);
    expect(v.getUint32(4092, true)).toBe(crc32c(page.subarray(0, 4092)));
    expect(parseBoard(page, "b")).toEqual(BOARD);
  });

  it("keeps PRgeneration and the sequence as u32, wrapping past 2^32 - 1", () => {
    const board = parseBoard(
      encodeBoard({ ...BOARD, prGeneration: 2 ** 32 + 5, sequence: -1 }),
      "b",
    );
    expect([board.prGeneration, board.sequence]).toEqual([5, 2 ** 32 - 1]);
  });

  it("reads a page that does not start its ArrayBuffer", () => {
    const file = new Uint8Array(16 + BOARD_BYTES);
    file.set(encodeBoard(BOARD), 16);
    expect(parseBoard(file.subarray(16), "b")).toEqual(BOARD);
  });

  it("takes 504 keys and states offline; refuses each field out of its bounds, naming it and its offset", () => {
    const keys = Array.from({ length: MAX_BOARD_KEYS }, (_, i) => BigInt(i + 1));
    expect(parseBoard(encodeBoard({ ...BOARD, keys }), "b").keys).toEqual(keys);
    expect(parseBoard(encodeBoard({ ...BOARD, state: BoardState.offline }), "b").state).toBe(2);
    expect(
      parseBoard(encodeBoard({ ...BOARD, lunBytes: Number.MAX_SAFE_INTEGER }), "b").lunBytes,
    ).toBe(Number.MAX_SAFE_INTEGER);
    const cases: [string, (v: DataView, p: Uint8Array) => void, string][] = [
      [
        "magic",
        (_v, p) => p.set([0x51], 7),
        "lun.registrations: magic at offset 0 is not HVCSVPRB",
      ],
      [
        "version 2",
        (v) => v.setUint32(8, 2, true),
        "lun.registrations: version 2 at offset 8 is not 1",
      ],
      [
        "version 0",
        (v) => v.setUint32(8, 0, true),
        "lun.registrations: version 0 at offset 8 is not 1",
      ],
      [
        "state 0",
        (v) => v.setUint32(12, 0, true),
        "lun.registrations: state 0 at offset 12 is not 1 or 2",
      ],
      [
        "state 3",
        (v) => v.setUint32(12, 3, true),
        "lun.registrations: state 3 at offset 12 is not 1 or 2",
      ],
      [
        "505 keys",
        (v) => v.setUint32(48, 505, true),
        "lun.registrations: 505 keys at offset 48, more than 504",
      ],
      [
        "LUN bytes 2^53",
        (v) => v.setBigUint64(24, 1n << 53n, true),
        "lun.registrations: LUN bytes 9007199254740992 at offset 24 are out of range",
      ],
    ];
    for (const [what, spoil, message] of cases) expect(refusal(spoiled(spoil)), what).toBe(message);
  });

  it("refuses a page whose CRC does not match, and one of another length", () => {
    const page = encodeBoard(BOARD);
    page[100] = 1;
    expect(refusal(page)).toBe("lun.registrations: CRC-32C at offset 4092 does not match");
    expect(refusal(new Uint8Array(4095))).toBe(
      "lun.registrations: 4095 bytes, not a 4096-byte board",
    );
  });
});

describe("who may write direct, by key (SPC-3 5.6)", () => {
  const under = (type: number, state: number = BoardState.online): Board => ({
    ...BOARD,
    state,
    type,
    prGeneration: 12,
    holderKey: 0xan,
    keys: [0xan, 0xbn],
  });

  it("anyone when nothing is reserved; nobody once the target has stopped", () => {
    expect(writeRefusal(under(0), 0x99n)).toBeUndefined();
    for (const type of [0, 1, 5])
      expect(writeRefusal(under(type, BoardState.offline), 0xan)).toBe(
        "the target has stopped serving the LUN",
      );
  });

  it("registered keys under types 5 and 6; others are told they are not registered", () => {
    for (const type of [5, 6]) {
      expect(writeRefusal(under(type), 0xan)).toBeUndefined();
      expect(writeRefusal(under(type), 0xbn)).toBeUndefined();
      expect(writeRefusal(under(type), 0xcn)).toBe(
        "key 0xc is not registered (PRgeneration 12): the LUN is reserved",
      );
    }
  });

  it("the holder alone under types 1 and 3; a registrant that does not hold it is told so", () => {
    for (const type of [1, 3]) {
      expect(writeRefusal(under(type), 0xan)).toBeUndefined();
      expect(writeRefusal(under(type), 0xbn)).toBe("key 0xb does not hold the reservation");
    }
  });
});

describe("the board's file", () => {
  it("the target publishes each change with the next sequence; a node reads what it says", () => {
    const path = join(testTempDir("csv-board"), "lun.registrations");
    const pr = new PersistentReservations();
    const publisher = new BoardPublisher(path, 1 << 20);
    publisher.publish(pr);
    const reader = new BoardReader(path);
    try {
      expect(reader.read()).toEqual({
        state: BoardState.online,
        prGeneration: 0,
        sequence: 1,
        lunBytes: 1 << 20,
        type: 0,
        holderKey: 0n,
        keys: [],
      });
      pr.out("n1", { action: ServiceAction.register, type: 5, key: 0n, serviceKey: 7n });
      pr.out("n1", { action: ServiceAction.reserve, type: 5, key: 7n, serviceKey: 0n });
      publisher.publish(pr);
      expect(reader.read()).toEqual({
        state: BoardState.online,
        prGeneration: 1,
        sequence: 2,
        lunBytes: 1 << 20,
        type: 5,
        holderKey: 7n,
        keys: [7n],
      });
      // Closing marks the board offline before it goes: a reader still open sees that.
      publisher.close(pr);
      expect(existsSync(path)).toBe(false);
      expect(reader.read()).toMatchObject({ state: BoardState.offline, sequence: 3, keys: [7n] });
      // Once closed, publishing and closing again do nothing.
      publisher.publish(pr);
      publisher.close(pr);
      expect(existsSync(path)).toBe(false);
    } finally {
      reader.close();
      reader.close();
    }
  });

  it("a reader reads the page anew each time, and refuses a short or damaged board with the last error", () => {
    const path = join(testTempDir("csv-board"), "lun.registrations");
    writeFileSync(path, encodeBoard(BOARD));
    const reader = new BoardReader(path);
    try {
      expect(reader.read()).toEqual(BOARD);
      writeFileSync(path, encodeBoard({ ...BOARD, sequence: 9 }));
      expect(reader.read().sequence).toBe(9);
      const damaged = encodeBoard(BOARD);
      damaged[200] = 1;
      writeFileSync(path, damaged);
      expect(() => reader.read()).toThrow(
        new BoardFormatError(`${path}: CRC-32C at offset 4092 does not match`),
      );
      writeFileSync(path, encodeBoard(BOARD).subarray(0, 100));
      expect(() => reader.read()).toThrow(
        new BoardFormatError(`${path}: 100 bytes, not a 4096-byte board`),
      );
      // The page as published, read back byte for byte.
      writeFileSync(path, encodeBoard(BOARD));
      expect(reader.read()).toEqual(BOARD);
      expect(readFileSync(path).equals(Buffer.from(encodeBoard(BOARD)))).toBe(true);
    } finally {
      reader.close();
    }
  });
});
