import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { callsOf, ioCalls, writesBetween } from "./support/io-calls.js";

// The direct I/O tests count a request's system calls from the thread's
// own counters; an 8-byte write is what the event loop's wake looks like
// (uv_async_send on an eventfd), and it must not be counted as one of the
// request's, nor may bytes that are neither blocks nor wakes go unnoticed.

const dir = mkdtempSync(join(tmpdir(), "hvlab-io-calls-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("counting a request's system calls", () => {
  it("counts whole-block writes and leaves out 8-byte writes, as the event loop's wakes", () => {
    const fd = openSync(join(dir, "blocks.bin"), "w");
    try {
      const wake = new Uint8Array(8);
      const calls = callsOf(() => {
        writeSync(fd, new Uint8Array(1024), 0, 1024, 0);
        writeSync(fd, wake);
        writeSync(fd, new Uint8Array(512), 0, 512, 4096);
        writeSync(fd, wake);
      });
      expect(calls).toEqual({ reads: 0, writes: 2 });
    } finally {
      closeSync(fd);
    }
  });

  it("refuses to count when bytes were written that are neither blocks nor wakes", () => {
    const fd = openSync(join(dir, "odd.bin"), "w");
    try {
      const before = ioCalls();
      writeSync(fd, new Uint8Array(512 + 3));
      const after = ioCalls();
      expect(() => writesBetween(before, after)).toThrow(
        "3 bytes written that are neither whole 512-byte blocks nor 8-byte wakes of the event loop",
      );
    } finally {
      closeSync(fd);
    }
  });
});
