import { readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  type Board,
  BoardPublisher,
  BoardReader,
  BoardState,
  encodeBoard,
  MAX_BOARD_KEYS,
  parseBoard,
} from "../src/csv/registration-board.js";
import { PersistentReservations, ReservationType } from "../src/csv/reservations.js";
import { testTempDir } from "./support/temp.js";

// The registration board's file handling: the page lists at most 504 keys
// whatever the target holds, a node's reader parses a page only when its
// bytes changed, and both ends give their descriptors back when closed.

/** Descriptors this process holds open. */
const openFds = () => readdirSync("/proc/self/fd").length;

describe("the registration board's file handling", () => {
  it("lists the first 504 keys of more: the page's count and keys stop there", () => {
    const keys = Array.from({ length: MAX_BOARD_KEYS + 1 }, (_, i) => BigInt(i + 1));
    const board: Board = {
      state: BoardState.online,
      prGeneration: 1,
      sequence: 1,
      lunBytes: 1,
      type: ReservationType.writeExclusiveRegistrantsOnly,
      holderKey: 1n,
      keys,
    };
    const page = encodeBoard(board);
    expect(new DataView(page.buffer).getUint32(48, true)).toBe(504);
    expect(parseBoard(page, "b").keys).toEqual(keys.slice(0, 504));
  });

  it("a reader returns the board it parsed while the page's bytes stay the same", () => {
    const path = join(testTempDir("csv-board"), "lun.registrations");
    const publisher = new BoardPublisher(path, 4096);
    const pr = new PersistentReservations();
    publisher.publish(pr);
    const reader = new BoardReader(path);
    try {
      const first = reader.read();
      expect(reader.read()).toBe(first);
      publisher.publish(pr);
      const second = reader.read();
      expect(second).not.toBe(first);
      expect(second.sequence).toBe(2);
    } finally {
      reader.close();
      publisher.close(pr);
    }
  });

  it("closing a reader and a publisher gives their descriptors back, once; a board already removed is no error", () => {
    const path = join(testTempDir("csv-board"), "lun.registrations");
    const pr = new PersistentReservations();
    const before = openFds();
    const publisher = new BoardPublisher(path, 4096);
    publisher.publish(pr);
    const reader = new BoardReader(path);
    expect(openFds()).toBe(before + 2);
    reader.close();
    expect(openFds()).toBe(before + 1);
    reader.close();
    expect(openFds()).toBe(before + 1);
    rmSync(path);
    expect(() => publisher.close(pr)).not.toThrow();
    expect(openFds()).toBe(before);
  });
});
