import { describe, expect, it } from "vitest";
import { VolumeRangeError } from "../src/csv/errors.js";
import { checkLunRange, FileLun, readLunRange } from "../src/csv/lun.js";
import { MemoryFile } from "../src/storage/block-file.js";
import { WatchedFile } from "./support/watched-file.js";

/*
 * The LUN a volume sits on (src/csv/lun.ts): byte-addressed, reads and
 * writes whole. A request outside [0, bytes) is refused before it reaches
 * the file, as a SCSI target answers a READ or WRITE past the last block
 * with CHECK CONDITION (LBA OUT OF RANGE) and transfers nothing
 * (docs/csv.md, the target's READ).
 */

const LUN = { name: "/san/lun0", bytes: 8192 };

function refusal(offset: number, length: number): string {
  return `${LUN.name}: bytes ${offset}..${offset + length} are outside the LUN's ${LUN.bytes} bytes`;
}

describe("csv LUN: the range a request may name", () => {
  // Every byte from 0 to the end, and the empty request at either end, is inside.
  it("takes every request within [0, bytes), empty ones at the ends included", () => {
    for (const [offset, length] of [
      [0, LUN.bytes],
      [0, 0],
      [LUN.bytes, 0],
      [LUN.bytes - 1, 1],
      [512, 512],
    ] as const)
      expect(() => checkLunRange(LUN, offset, length)).not.toThrow();
  });

  // A request is refused when it starts before 0, has a negative length,
  // ends past the last byte, or is not a whole number of bytes; the message
  // names the LUN, the range asked for and the LUN's size.
  it("refuses a range that starts before 0, runs backwards or ends past the last byte", () => {
    for (const [offset, length] of [
      [-1, 1],
      [-512, 0],
      [4, -1],
      [LUN.bytes, -1],
      [LUN.bytes - 1, 2],
      [LUN.bytes, 1],
      [1, LUN.bytes],
    ] as const) {
      expect(() => checkLunRange(LUN, offset, length)).toThrow(VolumeRangeError);
      expect(() => checkLunRange(LUN, offset, length)).toThrow(refusal(offset, length));
    }
  });

  it("refuses an offset or a length that is not a safe integer", () => {
    for (const [offset, length] of [
      [1.5, 0],
      [Number.NaN, 0],
      [2 ** 53, 0],
      [0, 0.5],
      [0, Number.NaN],
      [0, Number.POSITIVE_INFINITY],
    ] as const)
      expect(() => checkLunRange(LUN, offset, length), `${offset}, ${length}`).toThrow(
        VolumeRangeError,
      );
  });
});

describe("csv LUN: reads are whole", () => {
  // A read that comes back short (the file shrank behind the LUN's back, as
  // a device that went away) is an error naming the LUN, never fewer bytes.
  it("refuses a short read of a range inside the LUN, with what came back", () => {
    const file = new MemoryFile("shrunk", new Uint8Array(1000));
    expect(() => readLunRange(LUN, file, 512, 1024)).toThrow(VolumeRangeError);
    expect(() => readLunRange(LUN, file, 512, 1024)).toThrow(
      `${LUN.name}: read ${1000 - 512} of 1024 bytes at 512`,
    );
  });

  it("reads a range inside a file that holds it", () => {
    const bytes = new Uint8Array(LUN.bytes).map((_, i) => i & 0xff);
    const read = readLunRange(LUN, new MemoryFile("whole", bytes), 300, 20);
    expect([...read]).toEqual([...bytes.subarray(300, 320)]);
  });

  it("a LUN whose file was truncated after it opened refuses the read at the old size", async () => {
    const file = new MemoryFile("/san/lun1", new Uint8Array(4096));
    const lun = new FileLun(file, false);
    file.truncate(1024);
    expect(lun.bytes).toBe(4096);
    await expect(lun.read(0, 2048)).rejects.toThrow("/san/lun1: read 1024 of 2048 bytes at 0");
  });
});

describe("csv LUN on a file", () => {
  // The LUN's name, for messages, is its file's.
  it("is named after its file and sized by it", () => {
    const lun = new FileLun(new MemoryFile("/san/lun2", new Uint8Array(4096)), false);
    expect(lun.name).toBe("/san/lun2");
    expect(lun.bytes).toBe(4096);
  });

  // A write past the end is refused and the file does not grow: the LUN's
  // size is fixed, as a disk's is.
  it("refuses a write past the end without growing the file", async () => {
    const file = new MemoryFile("/san/lun3", new Uint8Array(4096));
    const lun = new FileLun(file, false);
    await expect(lun.write(4095, new Uint8Array(2))).rejects.toThrow(
      "/san/lun3: bytes 4095..4097 are outside the LUN's 4096 bytes",
    );
    expect(file.size()).toBe(4096);
    await lun.write(4094, Uint8Array.of(7, 9));
    expect([...(await lun.read(4094, 2))]).toEqual([7, 9]);
  });

  // Flush orders writes by making them durable: fdatasync, unless the LUN
  // was opened non-durable (scratch volumes); durable is the default.
  it("flushes with fdatasync by default, and not when opened non-durable", async () => {
    const durable = new WatchedFile("/san/lun4", new Uint8Array(4096));
    await new FileLun(durable).flush();
    expect(durable.syncs).toBe(1);
    const scratch = new WatchedFile("/san/lun5", new Uint8Array(4096));
    await new FileLun(scratch, false).flush();
    expect(scratch.syncs).toBe(0);
  });

  it("closes its file", () => {
    const file = new WatchedFile("/san/lun6", new Uint8Array(4096));
    new FileLun(file, false).close();
    expect(file.closes).toBe(1);
  });
});
