import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DirectFile, directIoRefusal, pageAlignedBytes } from "../src/storage/direct-file.js";
import { DirectIoUnavailableError } from "../src/storage/errors.js";
import { directIoTestDir, firstDifference, refusedBuffer } from "./support/direct-io.js";
import { callsOf } from "./support/io-calls.js";

// DirectFile's 1 MiB bounce buffer seen from the system calls a request
// makes (proc(5), /proc/thread-self/io): a request that is aligned goes to
// the device whole, in one call however large; one that is not goes window
// by window, each window one call; a read through the windows stops at the
// end of the file, and a window's read comes back short only there
// (pread(2) on a regular file). Also: an error other than O_DIRECT's EINVAL
// comes out as the file system gave it, and a probe file left behind by an
// earlier probe is written over.

const MiB = 1 << 20;
const { dir, directIo } = directIoTestDir("direct-file-windows");

function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 7 + seed * 13 + (i >> 12)) & 0xff;
  return out;
}

let files = 0;
function directOn(
  contents: Uint8Array,
  mode: "r" | "r+" = "r+",
): { path: string; file: DirectFile } {
  const path = join(dir, `file-${files++}.bin`);
  writeFileSync(path, contents);
  return { path, file: DirectFile.open(path, mode) };
}

describe.skipIf(!directIo)("DirectFile's windows", () => {
  it("sends an aligned request of 2 MiB at a block past 0 in one call, not through the 1 MiB windows", () => {
    const old = pattern(3 * MiB, 1);
    const { path, file } = directOn(old);
    try {
      const a = file.align;
      const data = pageAlignedBytes(2 * MiB);
      data.set(pattern(2 * MiB, 2));
      expect(callsOf(() => file.write(data, a))).toEqual({ reads: 0, writes: 1 });
      const want = old.slice();
      want.set(data, a);
      expect(firstDifference(new Uint8Array(readFileSync(path)), want)).toBe(-1);
      const back = pageAlignedBytes(2 * MiB);
      let n = 0;
      expect(callsOf(() => (n = file.read(back, a)))).toEqual({ reads: 1, writes: 0 });
      expect(n).toBe(2 * MiB);
      expect(firstDifference(back, data)).toBe(-1);
    } finally {
      file.close();
    }
  });

  it("sends 2 MiB from an unaligned address window by window, one call each", () => {
    const old = pattern(3 * MiB, 3);
    const { path, file } = directOn(old);
    try {
      const memory = pageAlignedBytes(2 * MiB + 1);
      const data = memory.subarray(1);
      data.set(pattern(2 * MiB, 4));
      expect(callsOf(() => file.write(data, 0))).toEqual({ reads: 0, writes: 2 });
      const want = old.slice();
      want.set(data, 0);
      expect(firstDifference(new Uint8Array(readFileSync(path)), want)).toBe(-1);
      data.fill(0);
      expect(callsOf(() => file.read(data, 0))).toEqual({ reads: 2, writes: 0 });
      expect(firstDifference(data, want.subarray(0, 2 * MiB))).toBe(-1);
    } finally {
      file.close();
    }
  });

  it("stops reading at the window where the file ends, unaligned or on a block", () => {
    // The end inside the second window, not on a block: that window's read is short, and the last.
    const size = MiB + MiB / 2 + 100;
    const stored = pattern(size, 5);
    const { file } = directOn(stored);
    try {
      const into = new Uint8Array(3 * MiB);
      let n = 0;
      expect(callsOf(() => (n = file.read(into, 1)))).toEqual({ reads: 2, writes: 0 });
      expect(n).toBe(size - 1);
      expect(firstDifference(into.subarray(0, n), stored.subarray(1))).toBe(-1);
    } finally {
      file.close();
    }
    // The end on a block boundary inside the window: the short read is followed by one that finds the end.
    const aligned = pattern(4 * 512, 6);
    const { file: onBlock } = directOn(aligned);
    try {
      const into = new Uint8Array(8 * 512).fill(0xee);
      let n = 0;
      expect(callsOf(() => (n = onBlock.read(into, 1)))).toEqual({ reads: 2, writes: 0 });
      expect(n).toBe(4 * 512 - 1);
      expect(into.subarray(0, n)).toEqual(aligned.subarray(1));
      expect(into.subarray(n)).toEqual(new Uint8Array(8 * 512 - n).fill(0xee));
    } finally {
      onBlock.close();
    }
  });

  it("gives a read-only file's refusal of a write as the file system's error, not as direct I/O's", () => {
    const { file } = directOn(pattern(4 * 512, 7), "r");
    try {
      // Unaligned: read through the window, then refused at its write.
      let error: unknown;
      try {
        file.write(Uint8Array.of(1, 2, 3), 1);
      } catch (e) {
        error = e;
      }
      expect(error).not.toBeInstanceOf(DirectIoUnavailableError);
      expect((error as NodeJS.ErrnoException).code).toBe("EBADF");
    } finally {
      file.close();
    }
  });

  it("marks the first part of a gathered write the kernel refused, so it is not tried straight again", (context) => {
    const { path, file } = directOn(new Uint8Array(0));
    try {
      const a = file.align;
      const second = pageAlignedBytes(a).fill(0x22);
      const refused = refusedBuffer(
        () => {
          const data = new Uint8Array(a).fill(0x11);
          // Gathered: one refused pwritev, the first part bounced, the second straight.
          const calls = callsOf(() => file.writev([data, second], 0));
          if (calls.writes === 1) return undefined;
          expect(calls).toEqual({ reads: 0, writes: 3 });
          return data;
        },
        (note) => context.skip(note),
      );
      if (refused === undefined) return;
      // Known refused now: part by part at once, the first bounced.
      expect(callsOf(() => file.writev([refused, second], a))).toEqual({ reads: 0, writes: 2 });
      const want = new Uint8Array(3 * a).fill(0x11);
      want.fill(0x22, 2 * a);
      expect(new Uint8Array(readFileSync(path))).toEqual(want);
    } finally {
      file.close();
    }
  });
});

describe.skipIf(!directIo)("the probe for direct I/O", () => {
  it("writes over a probe file an earlier probe of this process left behind, and removes it", () => {
    const probeDir = mkdtempSync(join(dir, "probe-"));
    writeFileSync(join(probeDir, `.hvlab-direct-probe-${process.pid}`), "left behind");
    expect(directIoRefusal(probeDir)).toBeUndefined();
    expect(readdirSync(probeDir)).toEqual([]);
  });
});
