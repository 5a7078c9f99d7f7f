import { closeSync, ftruncateSync, openSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { LunIoThread } from "../src/csv/io-thread.js";
import { LunIoThreads } from "../src/csv/io-threads.js";
import { BoardPublisher } from "../src/csv/registration-board.js";
import { PersistentReservations, ReservationType, ServiceAction } from "../src/csv/reservations.js";
import { pageAlignedBytes } from "../src/storage/direct-file.js";
import { descriptorsOn } from "./support/descriptors.js";
import { fileTempDir } from "./support/temp.js";

// A node's I/O threads open their own descriptors of the LUN and the board
// when they start. A batch waits until every thread of the group has them
// open, not only the threads its parts go to: so a node whose first batch
// has run holds all its descriptors (which its tests count), and a thread
// that cannot open the LUN fails the batch before anything is issued.

const KEY = 0x21n;
const LUN_BYTES = 1 << 20;
const dir = fileTempDir("hvlab-csv-iothread-ready-");

/** A zeroed LUN file with KEY registered and published on its board. */
function lunWithBoard(name: string): { lun: string; board: string; close: () => void } {
  const lun = join(dir, name);
  const fd = openSync(lun, "w");
  ftruncateSync(fd, LUN_BYTES);
  closeSync(fd);
  const board = `${lun}.registrations`;
  const reservations = new PersistentReservations();
  const out = reservations.out("node-1", {
    action: ServiceAction.register,
    type: ReservationType.writeExclusiveRegistrantsOnly,
    key: 0n,
    serviceKey: KEY,
  });
  expect(out).toEqual({ status: "good" });
  const publisher = new BoardPublisher(board, LUN_BYTES);
  publisher.publish(reservations);
  return { lun, board, close: () => publisher.close(reservations) };
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("a node's I/O threads are ready before a batch runs", () => {
  it.skipIf(process.platform !== "linux")(
    "a batch of one write on a group of four leaves all four threads with the LUN open",
    async () => {
      const { lun, board, close } = lunWithBoard("lun-four");
      cleanups.push(close);
      const threads = new LunIoThreads(lun, board, false, LUN_BYTES, 4);
      cleanups.push(() => threads.close());
      const data = pageAlignedBytes(4096, true).fill(7);
      const result = await threads.write(KEY, [{ lunOffset: 0, data }]);
      expect(result.acknowledged).toEqual([true]);
      // One part ran; the three threads without one have their descriptors open too.
      expect(descriptorsOn(lun)).toBe(4);
      await threads.close();
      expect(descriptorsOn(lun)).toBe(0);
    },
  );

  it("a thread whose LUN cannot be opened says why in `ready`, and its batch is refused with that error", async () => {
    const { board, close } = lunWithBoard("lun-board-only");
    cleanups.push(close);
    const missing = join(dir, "no-such-lun");
    const thread = new LunIoThread(missing, board, false, LUN_BYTES);
    cleanups.push(() => thread.close());
    await expect(thread.ready).rejects.toThrow(/ENOENT.*no-such-lun|no-such-lun.*ENOENT/);
    await expect(
      thread.write(KEY, [{ lunOffset: 0, data: pageAlignedBytes(512, true) }]),
    ).rejects.toThrow(/ENOENT/);
  });

  it("a group with such a thread refuses the batch with its error, and issues no write", async () => {
    const { board, close } = lunWithBoard("lun-board-only-group");
    cleanups.push(close);
    const missing = join(dir, "no-such-lun-group");
    const threads = new LunIoThreads(missing, board, false, LUN_BYTES, 2);
    cleanups.push(() => threads.close());
    await expect(
      threads.write(KEY, [{ lunOffset: 0, data: pageAlignedBytes(512, true) }]),
    ).rejects.toThrow(/ENOENT/);
    expect(threads.acknowledgedSoFar).toBe(0);
  });
});
