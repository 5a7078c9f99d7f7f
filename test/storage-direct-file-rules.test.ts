import {
  closeSync,
  constants,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  realpathSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { FdFile } from "../src/storage/block-file.js";
import {
  DirectFile,
  directFlag,
  directIoDir,
  directIoRefusal,
  logicalBlockSize,
  openFile,
  pageAlignedBytes,
} from "../src/storage/direct-file.js";
import { DirectIoUnavailableError } from "../src/storage/errors.js";
import { directIoTestDir, firstDifference, refusedBuffer } from "./support/direct-io.js";
import { callsOf, ioCalls, writesBetween } from "./support/io-calls.js";

// The rules of DirectFile on the test's thread, each seen in what reaches
// the kernel: open(2)'s O_DIRECT takes only requests whose offset, length
// and memory address are multiples of the device's logical block size
// (open(2), "O_DIRECT"); an aligned request goes to the device as one
// pread(2) or pwrite(2), any other through an aligned bounce buffer. The
// system calls a request makes are counted from the thread's own I/O
// accounting (proc(5), /proc/thread-self/io: syscr and syscw count read and
// write calls, refused ones included), which says which path it took.
// The bytes are checked against what a plain read of the file gives.

const { dir, directIo } = directIoTestDir("direct-file-rules");

/** `n` bytes of a pattern that differs from block to block and byte to byte. */
function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return out;
}

let files = 0;
/** A new file of `contents` (written through the page cache) and the direct file on it. */
function directOn(contents: Uint8Array): { path: string; file: DirectFile } {
  const path = join(dir, `file-${files++}.bin`);
  writeFileSync(path, contents);
  return { path, file: DirectFile.open(path, "r+") };
}

describe.skipIf(!directIo)("DirectFile's requests", () => {
  it("sends an aligned request straight to the device: one pwrite, one pread, nothing read first", () => {
    const { path, file } = directOn(new Uint8Array(0));
    try {
      const a = file.align;
      const data = pageAlignedBytes(4 * a);
      data.set(pattern(4 * a, 1));
      expect(callsOf(() => file.write(data, a))).toEqual({ reads: 0, writes: 1 });
      const back = pageAlignedBytes(4 * a);
      let n = 0;
      expect(callsOf(() => (n = file.read(back, a)))).toEqual({ reads: 1, writes: 0 });
      expect(n).toBe(4 * a);
      expect(back).toEqual(data);
      expect(new Uint8Array(readFileSync(path)).subarray(a)).toEqual(data);
      expect(statSync(path).size).toBe(5 * a);
    } finally {
      file.close();
    }
  });

  it("bounces a request at an unaligned offset: the partial blocks read first, one write of whole blocks", () => {
    const old = pattern(8 * 512, 2);
    const { path, file } = directOn(old);
    try {
      const a = file.align;
      const data = pageAlignedBytes(2 * a);
      data.set(pattern(2 * a, 3));
      // One block past a block boundary by half a block: the window is three blocks.
      expect(callsOf(() => file.write(data, a / 2))).toEqual({ reads: 1, writes: 1 });
      const want = old.slice();
      want.set(data, a / 2);
      expect(new Uint8Array(readFileSync(path))).toEqual(want);
      const back = pageAlignedBytes(2 * a);
      expect(callsOf(() => file.read(back, a / 2))).toEqual({ reads: 1, writes: 0 });
      expect(back).toEqual(data);
    } finally {
      file.close();
    }
  });

  it("bounces a request of an unaligned length, reading the block it ends in", () => {
    const old = pattern(8 * 512, 4);
    const { path, file } = directOn(old);
    try {
      const a = file.align;
      const data = pageAlignedBytes(a + 1);
      data.set(pattern(a + 1, 5));
      expect(callsOf(() => file.write(data, 0))).toEqual({ reads: 1, writes: 1 });
      const want = old.slice();
      want.set(data, 0);
      expect(new Uint8Array(readFileSync(path))).toEqual(want);
      const back = pageAlignedBytes(a + 1);
      expect(callsOf(() => file.read(back, 0))).toEqual({ reads: 1, writes: 0 });
      expect(back).toEqual(data);
    } finally {
      file.close();
    }
  });

  it("bounces a request from an unaligned address, with no read when it covers whole blocks", () => {
    const old = pattern(8 * 512, 6);
    const { path, file } = directOn(old);
    try {
      const a = file.align;
      const memory = pageAlignedBytes(4 * a);
      // Whole blocks at an aligned offset, from one byte into page-aligned memory.
      const data = memory.subarray(1, 1 + 2 * a);
      data.set(pattern(2 * a, 7));
      expect(callsOf(() => file.write(data, a))).toEqual({ reads: 0, writes: 1 });
      const want = old.slice();
      want.set(data, a);
      expect(new Uint8Array(readFileSync(path))).toEqual(want);
      const back = memory.subarray(a + 1, 3 * a + 1);
      back.fill(0);
      expect(callsOf(() => file.read(back, a))).toEqual({ reads: 1, writes: 0 });
      expect([...back]).toEqual([...want.subarray(a, 3 * a)]);
    } finally {
      file.close();
    }
  });

  it("asks the kernel once about a buffer whose address it refuses, and bounces that buffer from then on", (context) => {
    const { path, file } = directOn(new Uint8Array(0));
    try {
      const a = file.align;
      const refused = refusedBuffer(
        (i) => {
          const data = new Uint8Array(a).fill(i & 0xff);
          const first = callsOf(() => file.write(data, 0));
          return first.writes !== 1 ? { data, first } : undefined;
        },
        (note) => context.skip(note),
      );
      if (refused === undefined) return;
      // Tried straight, refused, then bounced: two writes.
      expect(refused.first).toEqual({ reads: 0, writes: 2 });
      refused.data.fill(0xa5);
      expect(callsOf(() => file.write(refused.data, 0))).toEqual({ reads: 0, writes: 1 });
      expect(new Uint8Array(readFileSync(path))).toEqual(new Uint8Array(a).fill(0xa5));
      expect(callsOf(() => file.read(refused.data, 0))).toEqual({ reads: 1, writes: 0 });
      expect(refused.data).toEqual(new Uint8Array(a).fill(0xa5));
    } finally {
      file.close();
    }
  });

  it("writes aligned parts as one gathered pwritev, and parts with one unaligned one by one", async () => {
    const { path, file } = directOn(new Uint8Array(0));
    try {
      const a = file.align;
      const first = pageAlignedBytes(2 * a);
      first.set(pattern(2 * a, 8));
      const second = pageAlignedBytes(a);
      second.set(pattern(a, 9));
      expect(callsOf(() => file.writev([first, second], a))).toEqual({ reads: 0, writes: 1 });
      const want = new Uint8Array(4 * a);
      want.set(first, a);
      want.set(second, 3 * a);
      expect(new Uint8Array(readFileSync(path))).toEqual(want);
      // An unaligned position: every part alone, the first bounced with a read.
      const odd = pageAlignedBytes(a);
      odd.set(pattern(a, 10));
      expect(callsOf(() => file.writev([odd, second], a / 2))).toEqual({ reads: 2, writes: 2 });
      want.set(odd, a / 2);
      want.set(second, a / 2 + a);
      expect(new Uint8Array(readFileSync(path))).toEqual(want);
      // One unaligned part: the aligned one goes straight, the other bounces.
      const short = pageAlignedBytes(a / 2);
      short.set(pattern(a / 2, 11));
      expect(callsOf(() => file.writev([first, short], 0))).toEqual({ reads: 1, writes: 2 });
      want.set(first, 0);
      want.set(short, 2 * a);
      expect(new Uint8Array(readFileSync(path))).toEqual(want);
      // The asynchronous call runs the same calls on this thread.
      const before = ioCalls();
      await file.writevAsync([first, second], 0);
      const after = ioCalls();
      expect(writesBetween(before, after)).toBe(1);
      want.set(first, 0);
      want.set(second, 2 * a);
      expect(new Uint8Array(readFileSync(path))).toEqual(want);
      const back = pageAlignedBytes(3 * a);
      expect(await file.readAsync(back, 0)).toBe(3 * a);
      expect(back).toEqual(want.subarray(0, 3 * a));
    } finally {
      file.close();
    }
  });

  it("writes past the end as the file would take it: a gap of zeros, the file cut back to the last byte written", () => {
    const old = pattern(3 * 512, 12);
    const { path, file } = directOn(old);
    try {
      const data = pattern(10, 13);
      file.write(data, old.length + 5);
      const got = new Uint8Array(readFileSync(path));
      expect(got.length).toBe(old.length + 15);
      expect(got.subarray(0, old.length)).toEqual(old);
      expect(got.subarray(old.length, old.length + 5)).toEqual(new Uint8Array(5));
      expect(got.subarray(old.length + 5)).toEqual(data);
      // Inside the last, partial block: the file keeps its length where it is longer.
      file.write(pattern(3, 14), old.length + 1);
      const again = new Uint8Array(readFileSync(path));
      expect(again.length).toBe(old.length + 15);
      expect(again.subarray(old.length + 1, old.length + 4)).toEqual(pattern(3, 14));
      expect(again.subarray(old.length + 4)).toEqual(got.subarray(old.length + 4));
      // Ending exactly on a block boundary past the end: no cut at all.
      const a = file.align;
      const end = Math.ceil((old.length + 15) / a) * a + a;
      file.write(pattern(7, 15), end - 7);
      expect(statSync(path).size).toBe(end);
    } finally {
      file.close();
    }
  });

  it("reads to the end of the file and no further, saying how many bytes it read", () => {
    const size = 3 * 512 + 100;
    const old = pattern(size, 16);
    const { file } = directOn(old);
    try {
      const into = new Uint8Array(size + 300).fill(0xee);
      let n = 0;
      // The window's read comes back short at the end, which is not block-aligned: no second read.
      expect(callsOf(() => (n = file.read(into, 1)))).toEqual({ reads: 1, writes: 0 });
      expect(n).toBe(size - 1);
      expect(into.subarray(0, size - 1)).toEqual(old.subarray(1));
      expect(into.subarray(size - 1)).toEqual(new Uint8Array(301).fill(0xee));
      // Starting past the end: nothing.
      expect(file.read(new Uint8Array(10), size + 1)).toBe(0);
      expect(file.read(new Uint8Array(10), size)).toBe(0);
      expect(file.read(new Uint8Array(10), size - 3)).toBe(3);
    } finally {
      file.close();
    }
  });

  it("reads and writes a request larger than the 1 MiB bounce buffer, window by window", () => {
    const size = (1 << 20) * 2 + 5000;
    const old = pattern(size, 17);
    const { path, file } = directOn(old);
    try {
      const at = 333;
      const length = (1 << 20) + 3 * 512 + 7;
      const data = pattern(length, 18);
      file.write(data, at);
      const want = old.slice();
      want.set(data, at);
      expect(firstDifference(new Uint8Array(readFileSync(path)), want)).toBe(-1);
      const back = new Uint8Array(size - 3);
      expect(file.read(back, 3)).toBe(size - 3);
      expect(firstDifference(back, want.subarray(3))).toBe(-1);
    } finally {
      file.close();
    }
  });

  it("refuses a device that wants more than the alignment it reported, naming the file and the alignment", () => {
    const { path, file } = directOn(pattern(4 * 512, 19));
    try {
      // As if the device's logical block size read 256 where it takes 512:
      // the bounce buffer's windows are then 256-aligned, and the kernel refuses them.
      (file as unknown as { align: number }).align = 256;
      expect(() => file.read(new Uint8Array(256), 256)).toThrow(
        new DirectIoUnavailableError(
          `${path}: the device refused a direct I/O request aligned to 256 bytes (EINVAL)`,
        ),
      );
      expect(() => file.write(new Uint8Array(256), 256)).toThrow(DirectIoUnavailableError);
    } finally {
      file.close();
    }
  });
});

describe.skipIf(!directIo)("opening for direct I/O", () => {
  it("uses open(2)'s O_DIRECT", () => {
    expect(directFlag()).toBe((constants as Record<string, number | undefined>).O_DIRECT);
    expect(directFlag()).toBeGreaterThan(0);
  });

  it("opens a direct file only when asked, in the mode asked", () => {
    const path = join(dir, "open-file.bin");
    writeFileSync(path, pattern(1024, 20));
    const direct = openFile(path, "r", { direct: true });
    const buffered = openFile(path, "r");
    const plain = openFile(path, "r", {});
    try {
      expect(direct).toBeInstanceOf(DirectFile);
      expect(buffered).not.toBeInstanceOf(DirectFile);
      expect(buffered).toBeInstanceOf(FdFile);
      expect(plain).not.toBeInstanceOf(DirectFile);
      // Read-only by default: a write is refused by the file descriptor.
      expect(() => direct.write(pageAlignedBytes(512), 0)).toThrow(/EBADF/);
    } finally {
      direct.close();
      buffered.close();
      plain.close();
    }
    const made = join(dir, "open-file-new.bin");
    const created = DirectFile.open(made, "wx+");
    created.close();
    expect(existsSync(made)).toBe(true);
    expect(() => DirectFile.open(made, "wx+")).toThrow(/EEXIST/);
  });

  it("refuses a file system without O_DIRECT in one line, and passes on any other error", () => {
    // procfs takes no O_DIRECT: open(2) gives EINVAL (fs/open.c, do_dentry_open).
    expect(() => DirectFile.open("/proc/self/stat")).toThrow(
      new DirectIoUnavailableError(
        "/proc/self/stat: the file system refuses direct I/O (O_DIRECT gives EINVAL, as tmpfs before Linux 6.6 does); use a directory on another file system, or leave out --direct",
      ),
    );
    expect(existsSync("/proc/self/stat")).toBe(true);
    const missing = join(dir, "no-such-folder", "disk.vhd");
    expect(() => DirectFile.open(missing, "w+")).toThrow(/ENOENT/);
    expect(() => DirectFile.open(missing, "w+")).not.toThrow(DirectIoUnavailableError);
  });

  it("reads the logical block size of the device under the file, and 4,096 where there is none", () => {
    const path = join(dir, "block-size.bin");
    writeFileSync(path, new Uint8Array(512));
    // The file's device from the mount table (proc(5), /proc/self/mountinfo: major:minor).
    const real = realpathSync(path);
    const mounts = readFileSync("/proc/self/mountinfo", "utf8")
      .trim()
      .split("\n")
      .map((line) => line.split(" "))
      .filter(([, , , , point]) => point && (real.startsWith(`${point}/`) || point === "/"))
      .sort((x, y) => (y[4]?.length ?? 0) - (x[4]?.length ?? 0));
    const device = mounts[0]?.[2];
    const fd = openSync(path, "r");
    try {
      const queue = [`/sys/dev/block/${device}/queue`, `/sys/dev/block/${device}/../queue`].find(
        (q) => existsSync(`${q}/logical_block_size`),
      );
      const want =
        queue === undefined
          ? 4096
          : Number(readFileSync(`${queue}/logical_block_size`, "utf8").trim());
      expect(logicalBlockSize(fd)).toBe(want);
    } finally {
      closeSync(fd);
    }
    const proc = openSync("/proc/self/stat", "r");
    try {
      expect(logicalBlockSize(proc)).toBe(4096);
    } finally {
      closeSync(proc);
    }
  });

  it("gives page-aligned memory of exactly the bytes asked, in whole 64 KiB pages", () => {
    for (const [bytes, pages] of [
      [0, 1],
      [1, 1],
      [65536, 1],
      [65537, 2],
      [3 * 65536, 3],
    ] as const) {
      const memory = pageAlignedBytes(bytes);
      expect(memory.length).toBe(bytes);
      expect(memory.byteOffset).toBe(0);
      expect(memory.buffer.byteLength).toBe(pages * 65536);
    }
  });
});

describe.skipIf(!directIo)("where direct I/O can be had", () => {
  it("probes a directory with a direct write read back, and leaves nothing behind", () => {
    const probeDir = mkdtempSync(join(dir, "probe-"));
    expect(directIoRefusal(probeDir)).toBeUndefined();
    expect(readdirSync(probeDir)).toEqual([]);
  });

  it("names the first directory that takes it, or every refusal in one line", () => {
    const missing = join(dir, "missing-a");
    const also = join(dir, "missing-b");
    const refusal = directIoRefusal(missing);
    expect(refusal).toMatch(/ENOENT/);
    expect(refusal).toContain(join(missing, `.hvlab-direct-probe-${process.pid}`));
    expect(directIoDir([missing, dir, also])).toBe(dir);
    expect(directIoDir([dir])).toBe(dir);
    expect(() => directIoDir([missing, also])).toThrow(
      new DirectIoUnavailableError(
        `no directory takes direct I/O: ${directIoRefusal(missing)}; ${directIoRefusal(also)}`,
      ),
    );
    expect(() => directIoDir([])).toThrow(
      new DirectIoUnavailableError("no directory takes direct I/O: "),
    );
    // procfs refuses O_DIRECT (and files): its refusal is a sentence, not an exception.
    expect(directIoRefusal("/proc")).toEqual(expect.any(String));
  });
});

describe("pageAlignedBytes", () => {
  // A node's I/O thread writes from a shared buffer without a copy; any
  // other buffer stays the thread's own, which a shared one would not be.
  it("gives the thread's own memory unless a shared one is asked for", () => {
    const own = pageAlignedBytes(70_000);
    expect(own.length).toBe(70_000);
    expect(own.buffer).toBeInstanceOf(ArrayBuffer);
    expect(own.buffer).not.toBeInstanceOf(SharedArrayBuffer);
    expect(pageAlignedBytes(10, true).buffer).toBeInstanceOf(SharedArrayBuffer);
  });
});
