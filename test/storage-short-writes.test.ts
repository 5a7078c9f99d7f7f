import * as fs from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FdFile } from "../src/storage/block-file.js";
import { DirectFile } from "../src/storage/direct-file.js";
import { directIoTestDir, firstDifference } from "./support/direct-io.js";
import { testTempDir } from "./support/temp.js";

// write(2) and writev(2) may take fewer bytes than asked (POSIX: a signal
// arriving mid-write, a disk filling up); the block file's contract is that a
// write is completed before it returns. Such short writes cannot be made to
// happen on demand, so the system calls are wrapped here to take at most a
// few bytes each time, and the file must still end up holding every byte.

const limit = vi.hoisted(() => ({ bytes: Number.POSITIVE_INFINITY }));

/** The request is checked whole, as Node checks it (ERR_OUT_OF_RANGE); only the bytes taken are cut. */
const within = vi.hoisted(() => (buffer: Uint8Array, offset: number, length: number) => {
  if (offset + length > buffer.byteLength) {
    throw new RangeError(
      `${length} bytes from offset ${offset} pass the buffer's ${buffer.byteLength}`,
    );
  }
});

vi.mock("node:fs", async (original) => {
  const real = await original<typeof import("node:fs")>();
  return {
    ...real,
    writeSync: (
      fd: number,
      buffer: Uint8Array,
      offset: number,
      length: number,
      position: number,
    ) => {
      within(buffer, offset, length);
      return real.writeSync(fd, buffer, offset, Math.min(length, limit.bytes), position);
    },
    writevSync: (fd: number, parts: Uint8Array[], position: number) => {
      const all = Buffer.concat(parts);
      return real.writeSync(fd, all, 0, Math.min(all.length, limit.bytes), position);
    },
    write: (
      fd: number,
      buffer: Uint8Array,
      offset: number,
      length: number,
      position: number,
      done: (error: Error | null, bytes: number) => void,
    ) => {
      within(buffer, offset, length);
      real.write(fd, buffer, offset, Math.min(length, limit.bytes), position, done);
    },
    writev: (
      fd: number,
      parts: Uint8Array[],
      position: number,
      done: (error: Error | null, bytes: number) => void,
    ) => {
      const all = Buffer.concat(parts);
      real.write(fd, all, 0, Math.min(all.length, limit.bytes), position, done);
    },
  };
});

afterEach(() => {
  limit.bytes = Number.POSITIVE_INFINITY;
});

/** A new file of `size` bytes of 0xee, opened read-write. */
function blank(size: number): { file: FdFile; path: string } {
  const path = join(testTempDir("short-writes"), "disk.img");
  fs.writeFileSync(path, new Uint8Array(size).fill(0xee));
  return { file: new FdFile(path, "r+"), path };
}

const counting = (from: number, n: number) => Uint8Array.from({ length: n }, (_, i) => from + i);

describe("FdFile after short writes", () => {
  it("write finishes the rest of the buffer at the right place", () => {
    const { file, path } = blank(16);
    limit.bytes = 3;
    file.write(counting(1, 8), 4);
    file.close();
    const expected = new Uint8Array(16).fill(0xee);
    expected.set(counting(1, 8), 4);
    expect([...fs.readFileSync(path)]).toEqual([...expected]);
  });

  it("writev finishes the parts the gathered write left, each at its place", () => {
    const { file, path } = blank(20);
    limit.bytes = 5;
    file.writev([counting(1, 4), counting(11, 6), counting(21, 3)], 2);
    file.close();
    const expected = new Uint8Array(20).fill(0xee);
    expected.set([...counting(1, 4), ...counting(11, 6), ...counting(21, 3)], 2);
    expect([...fs.readFileSync(path)]).toEqual([...expected]);
  });

  // 5 bytes a call: the second part is finished from its second byte by one
  // call that takes all it asks. 7: from its fourth, by a call that could
  // take more than is left, and must not ask for it.
  it.each([5, 7])(
    "writevAsync finishes the parts the gathered write left, each at its place (%i bytes a call)",
    async (bytes) => {
      const { file, path } = blank(20);
      limit.bytes = bytes;
      await file.writevAsync([counting(1, 4), counting(11, 6), counting(21, 3)], 2);
      file.close();
      const expected = new Uint8Array(20).fill(0xee);
      expected.set([...counting(1, 4), ...counting(11, 6), ...counting(21, 3)], 2);
      expect([...fs.readFileSync(path)]).toEqual([...expected]);
    },
  );
});

const direct = directIoTestDir("short-writes");

describe.skipIf(!direct.directIo)("DirectFile after short writes", () => {
  // O_DIRECT takes only whole blocks, so a write cut short stops at a block:
  // the bounce window's rest goes from there, to the file at the same offset.
  it("finishes a bounce window's write from the block where it stopped", () => {
    const path = join(direct.dir, "direct.img");
    fs.writeFileSync(path, new Uint8Array(8192).fill(0xee));
    const file = DirectFile.open(path, "r+");
    try {
      const data = counting(0, 3 * 512 + 100);
      limit.bytes = file.align;
      // Unaligned: one window of whole blocks, read, changed and written back a block a call.
      file.write(data, 300);
      limit.bytes = Number.POSITIVE_INFINITY;
      const expected = new Uint8Array(8192).fill(0xee);
      expected.set(data, 300);
      expect(firstDifference(new Uint8Array(fs.readFileSync(path)), expected)).toBe(-1);
    } finally {
      file.close();
    }
  });
});
