import { constants, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FdFile, MemoryFile, openFlags, SynchronousFile } from "../src/storage/block-file.js";
import { testTempDir } from "./support/temp.js";

// The block file's contract, the bytes under every disk image: positional
// reads that stop at the end and say how many bytes they read, writes that
// land whole at their offset, gathered writes that are their parts one after
// the other, a length that grows zero-filled, and a memory file bounded so
// a hostile image cannot make it huge.

const bytes = (...values: number[]) => Uint8Array.from(values);

describe("MemoryFile", () => {
  it("reads what was written, and past the end only what is there", () => {
    const file = new MemoryFile("m", bytes(1, 2, 3, 4));
    expect(file.size()).toBe(4);
    const into = new Uint8Array(4).fill(9);
    expect(file.read(into, 1)).toBe(3);
    expect([...into]).toEqual([2, 3, 4, 9]);
    expect(file.read(into, 4)).toBe(0);
    expect(file.read(into, 10)).toBe(0);
    expect([...into]).toEqual([2, 3, 4, 9]);
  });

  it("zero-fills the gap when a write starts past the end", () => {
    const initial = new Uint8Array(8).fill(0xee);
    // Only its first 2 bytes belong to the file: the rest must not leak.
    const file = new MemoryFile("m", initial);
    file.truncate(2);
    file.write(bytes(7, 7), 5);
    expect(file.size()).toBe(7);
    expect([...file.contents()]).toEqual([0xee, 0xee, 0, 0, 0, 7, 7]);
  });

  it("overwrites in place without changing the length", () => {
    const file = new MemoryFile("m", bytes(1, 2, 3, 4));
    file.write(bytes(8, 9), 1);
    expect([...file.contents()]).toEqual([1, 8, 9, 4]);
    expect(file.size()).toBe(4);
  });

  it("grows by doubling and keeps what it held", () => {
    const file = new MemoryFile("m");
    for (let i = 0; i < 100; i++) file.write(bytes(i), i);
    expect(file.size()).toBe(100);
    expect([...file.contents()]).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  it("truncates down and grows back zero-filled", () => {
    const file = new MemoryFile("m", bytes(1, 2, 3, 4));
    file.truncate(2);
    expect(file.size()).toBe(2);
    const into = new Uint8Array(4);
    expect(file.read(into, 0)).toBe(2);
    file.truncate(4);
    expect([...file.contents()]).toEqual([1, 2, 0, 0]);
  });

  it("grows to exactly its bound and refuses one byte more, naming itself", () => {
    const file = new MemoryFile("bounded.vhd", new Uint8Array(0), 16);
    file.write(new Uint8Array(16).fill(1), 0);
    expect(file.size()).toBe(16);
    expect(() => file.write(bytes(1), 16)).toThrow(
      new RangeError("bounded.vhd: grows past 16 bytes"),
    );
    expect(() => file.truncate(17)).toThrow(RangeError);
    file.truncate(16);
    expect(file.size()).toBe(16);
  });

  it("writes gathered parts one after the other", async () => {
    const file = new MemoryFile("m");
    file.writev([bytes(1, 2), bytes(), bytes(3)], 2);
    expect([...file.contents()]).toEqual([0, 0, 1, 2, 3]);
    await file.writevAsync([bytes(4), bytes(5, 6)], 4);
    expect([...file.contents()]).toEqual([0, 0, 1, 2, 4, 5, 6]);
    const into = new Uint8Array(3);
    await expect(file.readAsync(into, 5)).resolves.toBe(2);
    expect([...into]).toEqual([5, 6, 0]);
  });
});

describe("SynchronousFile", () => {
  it("makes its gathered and asynchronous calls from its own read and write", async () => {
    const calls: string[] = [];
    class Logged extends SynchronousFile {
      readonly name = "logged";
      size = () => 0;
      read(into: Uint8Array, position: number): number {
        calls.push(`read ${into.length}@${position}`);
        return 1;
      }
      write(from: Uint8Array, position: number): void {
        calls.push(`write ${from.length}@${position}`);
      }
      truncate(): void {}
      sync(): void {}
      close(): void {}
    }
    const file = new Logged();
    file.writev([new Uint8Array(3), new Uint8Array(5)], 10);
    await file.writevAsync([new Uint8Array(2)], 1);
    await expect(file.readAsync(new Uint8Array(4), 7)).resolves.toBe(1);
    expect(calls).toEqual(["write 3@10", "write 5@13", "write 2@1", "read 4@7"]);
  });
});

describe("FdFile", () => {
  it("reads, writes and gathers at positions in a file by path", async () => {
    const path = join(testTempDir("block-file"), "f.img");
    const file = new FdFile(path, "w+");
    try {
      expect(file.name).toBe(path);
      expect(file.size()).toBe(0);
      file.write(bytes(1, 2, 3), 2);
      file.writev([bytes(4, 5), bytes(6)], 5);
      await file.writevAsync([bytes(7), bytes(), bytes(8, 9)], 8);
      expect(file.size()).toBe(11);
      expect([...readFileSync(path)]).toEqual([0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      const into = new Uint8Array(4).fill(0xff);
      expect(file.read(into, 8)).toBe(3);
      expect([...into]).toEqual([7, 8, 9, 0xff]);
      const later = new Uint8Array(4).fill(0xff);
      await expect(file.readAsync(later, 9)).resolves.toBe(2);
      expect([...later]).toEqual([8, 9, 0xff, 0xff]);
      await expect(file.readAsync(later, 20)).resolves.toBe(0);
      file.truncate(3);
      expect(file.size()).toBe(3);
      file.truncate(6);
      expect([...readFileSync(path)]).toEqual([0, 0, 1, 0, 0, 0]);
      file.sync();
      expect(file.mtimeMs()).toBe(statSync(path).mtimeMs);
    } finally {
      file.close();
    }
  });

  it("refuses every call once closed, naming the file, and closes once", () => {
    const path = join(testTempDir("block-file"), "c.img");
    writeFileSync(path, bytes(1));
    const file = new FdFile(path, "r+");
    file.close();
    expect(() => file.size()).toThrow(`${path} is closed`);
    expect(() => file.read(new Uint8Array(1), 0)).toThrow(`${path} is closed`);
    expect(() => file.close()).not.toThrow();
  });

  it("opens read-only when no mode is given", () => {
    const path = join(testTempDir("block-file"), "ro.img");
    writeFileSync(path, bytes(1, 2));
    const file = new FdFile(path);
    try {
      const into = new Uint8Array(2);
      expect(file.read(into, 0)).toBe(2);
      expect([...into]).toEqual([1, 2]);
      expect(() => file.write(bytes(9), 0)).toThrow(/EBADF/);
    } finally {
      file.close();
    }
    expect([...readFileSync(path)]).toEqual([1, 2]);
  });

  it("opens with the flags given in place of the mode", () => {
    const path = join(testTempDir("block-file"), "new.img");
    const file = new FdFile(path, "r", openFlags("wx+"));
    file.write(bytes(5), 0);
    file.close();
    expect([...readFileSync(path)]).toEqual([5]);
    expect(() => new FdFile(path, "wx+")).toThrow(/EEXIST/);
  });
});

describe("openFlags", () => {
  it("gives open(2)'s flags for each mode", () => {
    const { O_RDONLY, O_RDWR, O_CREAT, O_TRUNC, O_EXCL } = constants;
    expect(openFlags("r")).toBe(O_RDONLY);
    expect(openFlags("r+")).toBe(O_RDWR);
    expect(openFlags("w+")).toBe(O_RDWR | O_CREAT | O_TRUNC);
    expect(openFlags("wx+")).toBe(O_RDWR | O_CREAT | O_EXCL);
  });
});
