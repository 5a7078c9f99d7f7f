import { renameSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { DirectLun, threadPoolSize } from "../src/csv/direct-lun.js";
import { VolumeRangeError } from "../src/csv/errors.js";
import { computeLayout } from "../src/csv/layout.js";
import { FileLun, type Lun } from "../src/csv/lun.js";
import { encodeSuperblock, parseSuperblock } from "../src/csv/superblock.js";
import { ReservationConflictError } from "../src/csv/target-client.js";
import { Volume } from "../src/csv/volume.js";
import { FdFile, openFlags } from "../src/storage/block-file.js";
import { DirectFile, directFlag, pageAlignedBytes } from "../src/storage/direct-file.js";
import { ReservedLun, sectorWrites } from "./support/csv-reserved-lun.js";
import { descriptorsOn } from "./support/descriptors.js";
import { directIoTestDir, refusedBuffer } from "./support/direct-io.js";
import { xorshiftBytes } from "./support/xorshift.js";

// The rules of a node's own path to the shared LUN (DirectLun) that run on
// the node's thread: which LUN it agrees to open (the size the target and
// its board state, the volume by its UUID, a torn first sector read again),
// what it closes when it refuses one, the bounds of its reads and writes,
// the fence's key asked at every write, which path a write takes (the
// thread pool, or DirectFile's bounce on this thread for a request that is
// not aligned: open(2), "O_DIRECT", wants offset, length and memory on the
// device's logical block), how its batches reach its I/O threads, and how
// many threads libuv's pool has (UV_THREADPOOL_SIZE, read as libuv's
// threadpool.c reads it). Where the file system under the temporary folder
// refuses O_DIRECT, the unbuffered cases skip.

const KEY = 0x21n;
const LUN_BYTES = 4 << 20;
const TARGET = "target:lun0";
const { dir, directIo } = directIoTestDir("csv-direct-lun-rules");
/** Buffered always; unbuffered where the file system takes O_DIRECT. */
const modes = directIo ? [false, true] : [false];

/** The key the node holds now: its path asks for it at every write. */
const node = { key: KEY };

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  node.key = KEY;
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
  for (const c of cleanups.splice(0).reverse()) await c();
});

let luns = 0;
/** A LUN file of zeros with KEY registered on its board, closed after the test. */
function reservedLun(options: { bytes?: number; boardBytes?: number } = {}): ReservedLun {
  const bytes = options.bytes ?? LUN_BYTES;
  const lun = new ReservedLun(join(dir, `lun-${++luns}`), bytes, KEY, options.boardBytes ?? bytes);
  cleanups.push(() => lun.close());
  return lun;
}

/** A LUN holding a volume of 4 KiB clusters, written through the page cache. */
async function volumeLun(): Promise<ReservedLun> {
  const lun = reservedLun();
  const file = new FileLun(new FdFile(lun.path, "r+"), false);
  try {
    await Volume.format(file, { clusterBytes: 4096, uuid: "0123456789abcdef0123456789abcdef" });
  } finally {
    file.close();
  }
  return lun;
}

/** The first sector of the LUN file now. */
const firstSector = (lun: ReservedLun) => new Uint8Array(lun.contents().subarray(0, 512));

/** The target as a node's path sees it: its size, the first sector it returns, and FLUSH, counted. */
function targetServing(sector: Uint8Array, bytes = LUN_BYTES): Lun & { flushes: number } {
  return {
    name: TARGET,
    bytes,
    flushes: 0,
    read: async (offset, length) => sector.slice(offset, offset + length),
    write: async () => {
      throw new Error("a node's own path writes no byte through the target");
    },
    async flush() {
      this.flushes++;
    },
  };
}

/** Opens the node's own path to `lun`, closed after the test. */
async function openPath(
  lun: ReservedLun,
  options: { direct?: boolean; target?: Lun; board?: string } = {},
): Promise<DirectLun> {
  const path = await DirectLun.open(
    lun.path,
    options.board ?? lun.board,
    options.target ?? targetServing(firstSector(lun)),
    () => node.key,
    { direct: options.direct === true },
  );
  cleanups.push(() => path.close());
  return path;
}

/**
 * Waits until the write fence checks a write against a board read of its
 * own: a write asked for while the fence's last read still settles the
 * writes it checked is issued or refused on that read (write-fence.ts), as
 * a node's writers handing in their next chunk are.
 */
const fenceReadsAgain = () => new Promise((resolve) => setImmediate(resolve));

/** What `promise` rejects with. */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error("the promise was fulfilled");
}

/** The LUN file's bytes at `offset`, `length` of them. */
const bytesAt = (lun: ReservedLun, offset: number, length: number) =>
  new Uint8Array(lun.contents().subarray(offset, offset + length));

/** The logical block size of the device under `path`, as DirectFile finds it. */
function blockOf(path: string): number {
  const file = DirectFile.open(path, "r");
  try {
    return file.align;
  } finally {
    file.close();
  }
}

/**
 * Which way `path` sent the write `run` makes: the requests it gave the
 * thread pool (an FdFile's asynchronous gathered write: the buffered file's,
 * or the unbuffered path's pooled descriptor's) and those it ran on this
 * thread (the file's synchronous write: DirectFile's, which bounces what is
 * not aligned). Counted by call rather than by system call: while a request
 * is on the pool, the test runner's own messages are written from this
 * thread too.
 */
async function routeOf(
  direct: boolean,
  run: () => Promise<unknown>,
): Promise<{ pool: number; here: number }> {
  const pool = vi.spyOn(FdFile.prototype, "writevAsync");
  const here = direct
    ? vi.spyOn(DirectFile.prototype, "write")
    : vi.spyOn(FdFile.prototype, "write");
  try {
    await run();
    return { pool: pool.mock.calls.length, here: here.mock.calls.length };
  } finally {
    pool.mockRestore();
    here.mockRestore();
  }
}

describe("opening a node's own path to the LUN", () => {
  it("opens the LUN the target serves by its path, through the page cache unless asked otherwise", async () => {
    const lun = await volumeLun();
    const path = await openPath(lun);
    expect([path.name, path.bytes, path.unbuffered]).toEqual([lun.path, LUN_BYTES, false]);
    // One descriptor of the LUN; of the board, the target's and this path's.
    expect(descriptorsOn(lun.path)).toBe(1);
    expect(descriptorsOn(lun.board)).toBe(2);
    path.close();
    expect(descriptorsOn(lun.path)).toBe(0);
    expect(descriptorsOn(lun.board)).toBe(1);
  });

  it.skipIf(!directIo)(
    "unbuffered: two O_DIRECT descriptors, one for requests on this thread and one for the thread pool",
    async () => {
      const lun = await volumeLun();
      const path = await openPath(lun, { direct: true });
      expect(path.unbuffered).toBe(true);
      expect(descriptorsOn(lun.path, { direct: true })).toBe(2);
      expect(descriptorsOn(lun.path)).toBe(2);
      path.close();
      expect(descriptorsOn(lun.path)).toBe(0);
    },
  );

  it("refuses a LUN it cannot open with the system's error, and opens no board", async () => {
    const lun = await volumeLun();
    const missing = join(dir, "no-such-lun");
    for (const direct of modes) {
      const error = await rejection(
        DirectLun.open(missing, lun.board, targetServing(firstSector(lun)), () => KEY, { direct }),
      );
      expect(error.message).toBe(`ENOENT: no such file or directory, open '${missing}'`);
      expect(descriptorsOn(lun.board)).toBe(1);
    }
  });

  it.skipIf(!directIo)(
    "unbuffered, refuses with the system's error a LUN gone before its thread pool's descriptor opened, and closes the one it had",
    async () => {
      const lun = await volumeLun();
      const moved = `${lun.path}.moved`;
      // The LUN moves away once DirectFile has opened it: the pool's
      // descriptor, opened next by name, finds nothing there.
      const open = DirectFile.open.bind(DirectFile);
      vi.spyOn(DirectFile, "open").mockImplementation((name, mode) => {
        const file = open(name, mode);
        renameSync(name, moved);
        return file;
      });
      const error = await rejection(openPath(lun, { direct: true }));
      renameSync(moved, lun.path);
      expect((error as NodeJS.ErrnoException).code).toBe("ENOENT");
      expect(error.message).toBe(`ENOENT: no such file or directory, open '${lun.path}'`);
      expect(descriptorsOn(lun.path)).toBe(0);
      expect(descriptorsOn(lun.board)).toBe(1);
    },
  );

  it("refuses a board it cannot open, naming the option and who publishes it, and closes the LUN", async () => {
    const lun = await volumeLun();
    const missing = join(dir, "no-such-board");
    for (const direct of modes) {
      const error = await rejection(openPath(lun, { direct, board: missing }));
      expect(error.message).toBe(
        `--registrations ${missing}: ENOENT: no such file or directory, open '${missing}' (the target publishes it: hvlab csv target --registrations)`,
      );
      expect(descriptorsOn(lun.path)).toBe(0);
    }
  });

  it("refuses a LUN whose size is not the one the target and its board state, giving all three, and closes all it opened", async () => {
    const sizes = (here: number, target: number, board: number, path: string) =>
      `--lun ${path}: ${here} bytes here, ${target} at the target, ${board} on its board: not the LUN the target serves`;
    for (const direct of modes) {
      // A larger file here than the target serves and its board states.
      const larger = reservedLun({ bytes: LUN_BYTES + 4096, boardBytes: LUN_BYTES });
      const sector = new Uint8Array(512);
      let error = await rejection(openPath(larger, { direct, target: targetServing(sector) }));
      expect(error.message).toBe(sizes(LUN_BYTES + 4096, LUN_BYTES, LUN_BYTES, larger.path));
      // The board states another size than the target's.
      const board = reservedLun({ boardBytes: 2 * LUN_BYTES });
      error = await rejection(openPath(board, { direct, target: targetServing(sector) }));
      expect(error.message).toBe(sizes(LUN_BYTES, LUN_BYTES, 2 * LUN_BYTES, board.path));
      // The target serves another size than this file and its board.
      const target = reservedLun();
      error = await rejection(
        openPath(target, { direct, target: targetServing(sector, LUN_BYTES / 2) }),
      );
      expect(error.message).toBe(sizes(LUN_BYTES, LUN_BYTES / 2, LUN_BYTES, target.path));
      for (const lun of [larger, board, target]) {
        expect(descriptorsOn(lun.path)).toBe(0);
        expect(descriptorsOn(lun.board)).toBe(1);
      }
    }
  });

  it("knows the volume by its UUID: a superblock of another generation, epoch and coordinator is the same volume", async () => {
    const lun = await volumeLun();
    const here = parseSuperblock(firstSector(lun), LUN_BYTES);
    const later = encodeSuperblock({ ...here, generation: 9, epoch: 2, coordinator: 1 });
    const reads = vi.spyOn(DirectLun.prototype, "read");
    const path = await openPath(lun, { target: targetServing(later) });
    expect(path.bytes).toBe(LUN_BYTES);
    expect(reads.mock.calls).toEqual([[0, 512]]);
  });

  it("refuses another volume, known by its UUID, after one read", async () => {
    const lun = await volumeLun();
    const other = parseSuperblock(firstSector(lun), LUN_BYTES);
    const sector = encodeSuperblock({ ...other, uuid: "ff".repeat(16) });
    const reads = vi.spyOn(DirectLun.prototype, "read");
    for (const direct of modes) {
      const error = await rejection(openPath(lun, { direct, target: targetServing(sector) }));
      expect(error.message).toBe(
        `--lun ${lun.path}: its first sector differs from the target's ${TARGET}: not the LUN the target serves`,
      );
      expect(descriptorsOn(lun.path)).toBe(0);
      expect(descriptorsOn(lun.board)).toBe(1);
    }
    expect(reads).toHaveBeenCalledTimes(modes.length);
  });

  it("reads a first sector that does not check (torn by the target's write) again, five reads in all", async () => {
    const lun = await volumeLun();
    const whole = firstSector(lun);
    const torn = whole.slice();
    torn[200] = (torn[200] as number) ^ 0xff;
    // Torn four times, whole the fifth: the same volume.
    const reads = vi.spyOn(DirectLun.prototype, "read");
    for (let i = 0; i < 4; i++) reads.mockImplementationOnce(async () => torn.slice());
    await openPath(lun, { target: targetServing(whole) });
    expect(reads).toHaveBeenCalledTimes(5);
    // Torn five times: not the volume the target serves.
    reads.mockClear();
    for (let i = 0; i < 5; i++) reads.mockImplementationOnce(async () => torn.slice());
    const error = await rejection(openPath(lun, { target: targetServing(whole) }));
    expect(error.message).toBe(
      `--lun ${lun.path}: its first sector differs from the target's ${TARGET}: not the LUN the target serves`,
    );
    expect(reads).toHaveBeenCalledTimes(5);
  });

  it("where the target's first sector holds no volume, asks for the same 512 bytes, read once; where it holds one, a blank sector here never checks and is read five times", async () => {
    const blank = new Uint8Array(512);
    const reads = vi.spyOn(DirectLun.prototype, "read");
    // No volume on either side yet.
    const empty = reservedLun();
    await openPath(empty, { target: targetServing(blank) });
    expect(reads).toHaveBeenCalledTimes(1);
    // One byte differs, the last.
    const differs = reservedLun();
    const fd = new FdFile(differs.path, "r+");
    fd.write(Uint8Array.of(1), 511);
    fd.close();
    const refusal = (path: string) =>
      `--lun ${path}: its first sector differs from the target's ${TARGET}: not the LUN the target serves`;
    expect((await rejection(openPath(differs, { target: targetServing(blank) }))).message).toBe(
      refusal(differs.path),
    );
    // A volume here, none at the target.
    const volume = await volumeLun();
    expect((await rejection(openPath(volume, { target: targetServing(blank) }))).message).toBe(
      refusal(volume.path),
    );
    expect(reads).toHaveBeenCalledTimes(3);
    // A volume at the target, none here: a blank sector never checks, so it is read five times.
    reads.mockClear();
    const unformatted = reservedLun();
    const sector = firstSector(volume);
    expect(
      (await rejection(openPath(unformatted, { target: targetServing(sector) }))).message,
    ).toBe(refusal(unformatted.path));
    expect(reads).toHaveBeenCalledTimes(5);
  });

  it.skipIf(!directIo)(
    "unbuffered, refuses a volume whose clusters do not sit on the device's logical blocks",
    async () => {
      const lun = await volumeLun();
      const { dataOffset } = computeLayout({
        volumeBytes: LUN_BYTES,
        clusterBytes: 4096,
        fileSlots: 256,
        journalSectors: 64,
      });
      // A device of larger blocks than this one's: DirectFile reports what the device says.
      let blocks = 4096;
      const open = DirectFile.open.bind(DirectFile);
      vi.spyOn(DirectFile, "open").mockImplementation((name, mode) => {
        const file = open(name, mode);
        Object.defineProperty(file, "align", { value: blocks });
        return file;
      });
      // Blocks of the clusters' size: they sit on them.
      (await openPath(lun, { direct: true })).close();
      blocks = 8192;
      const error = await rejection(openPath(lun, { direct: true }));
      expect(error.message).toBe(
        `--lun ${lun.path} --lun-direct: the volume's clusters (4096 bytes) and data area (at ${dataOffset}) must sit on the device's 8192-byte blocks for unbuffered I/O; format it with a cluster size that is a multiple of 8192`,
      );
      // The data area sits on 8 KiB blocks itself: the clusters alone refuse the volume.
      expect(dataOffset % 8192).toBe(0);
      expect(descriptorsOn(lun.path)).toBe(0);
      expect(descriptorsOn(lun.board)).toBe(1);
    },
  );
});

describe("reads and writes on a node's own path", () => {
  it("reads the LUN's bytes, up to its last, and refuses a read past it", async () => {
    for (const direct of modes) {
      const lun = await volumeLun();
      const data = xorshiftBytes(direct ? 2 : 1, 3000);
      const fd = new FdFile(lun.path, "r+");
      fd.write(data, 70_001);
      fd.write(data.subarray(0, 512), LUN_BYTES - 512);
      fd.close();
      const path = await openPath(lun, { direct });
      expect(await path.read(70_001, 3000)).toEqual(data);
      expect(await path.read(LUN_BYTES - 512, 512)).toEqual(data.subarray(0, 512));
      const error = await rejection(path.read(LUN_BYTES - 511, 512));
      expect(error).toBeInstanceOf(VolumeRangeError);
      expect(error.message).toBe(
        `${lun.path}: bytes 4193793..4194305 are outside the LUN's 4194304 bytes`,
      );
    }
  });

  it("writes where asked, up to the LUN's last byte, and refuses a write past it", async () => {
    for (const direct of modes) {
      const lun = await volumeLun();
      const path = await openPath(lun, { direct });
      const data = pageAlignedBytes(4096);
      data.set(xorshiftBytes(3, 4096));
      await path.write(LUN_BYTES - 4096, data);
      await path.write(70_001, data.subarray(0, 1000));
      expect(bytesAt(lun, LUN_BYTES - 4096, 4096)).toEqual(data);
      expect(bytesAt(lun, 70_001, 1000)).toEqual(data.subarray(0, 1000));
      const error = await rejection(path.write(LUN_BYTES - 4095, data));
      expect(error).toBeInstanceOf(VolumeRangeError);
      expect(error.message).toBe(
        `${lun.path}: bytes 4190209..4194305 are outside the LUN's 4194304 bytes`,
      );
    }
  });

  it("fences each write by the key the node holds at that write: a key the board no longer lists is refused, and no byte lands", async () => {
    for (const direct of modes) {
      node.key = KEY;
      const lun = await volumeLun();
      const path = await openPath(lun, { direct });
      const first = pageAlignedBytes(4096).fill(1);
      await path.write(8192, first);
      await fenceReadsAgain();
      // The holder registered (1), KEY registered (2), KEY preempted (3).
      lun.preempt(KEY);
      const error = await rejection(path.write(8192, pageAlignedBytes(4096).fill(2)));
      expect(error).toBeInstanceOf(ReservationConflictError);
      expect(error.message).toBe(
        `WRITE of 4096 bytes at 8192 on ${lun.path}: key 0x21 is not registered (PRgeneration 3): the LUN is reserved`,
      );
      expect(bytesAt(lun, 8192, 4096)).toEqual(first);
      // Registered again under a new key, the node writes with it.
      await fenceReadsAgain();
      lun.register(0x22n);
      node.key = 0x22n;
      const again = pageAlignedBytes(4096).fill(3);
      await path.write(8192, again);
      expect(bytesAt(lun, 8192, 4096)).toEqual(again);
      node.key = KEY;
    }
  });

  it("buffered, a write goes to the thread pool whatever its alignment, none on this thread", async () => {
    const lun = await volumeLun();
    const path = await openPath(lun);
    const data = xorshiftBytes(4, 10_000);
    expect(await routeOf(false, () => path.write(70_001, data))).toEqual({ pool: 1, here: 0 });
    expect(bytesAt(lun, 70_001, 10_000)).toEqual(data);
  });

  it("FLUSH goes to the target, whose SYNCHRONIZE CACHE destages what this path wrote", async () => {
    const lun = await volumeLun();
    const target = targetServing(firstSector(lun));
    const path = await openPath(lun, { target });
    await path.flush();
    expect(target.flushes).toBe(1);
  });

  it("a write the thread pool fails is refused with the system's error", async () => {
    for (const direct of modes) {
      const lun = await volumeLun();
      const path = await openPath(lun, { direct });
      const eio = Object.assign(new Error("EIO: i/o error, writev"), { code: "EIO" });
      vi.spyOn(FdFile.prototype, "writevAsync").mockRejectedValueOnce(eio);
      // Aligned, so that an unbuffered path sends it to the pool too; not tried again through the bounce.
      expect(await rejection(path.write(8192, pageAlignedBytes(4096).fill(5)))).toBe(eio);
      expect(bytesAt(lun, 8192, 4096)).toEqual(new Uint8Array(4096));
      vi.restoreAllMocks();
    }
  });

  it.skipIf(!directIo)(
    "unbuffered, an aligned write goes to the thread pool from its memory; one unaligned in offset, length or memory is bounced on this thread",
    async () => {
      const lun = await volumeLun();
      const path = await openPath(lun, { direct: true });
      const a = blockOf(lun.path);
      const base = 64 * a;
      const memory = pageAlignedBytes(4 * a);
      memory.set(xorshiftBytes(6, 4 * a));
      /** Which way the path sends `data` at `offset`; its bytes land either way. */
      const route = async (offset: number, data: Uint8Array) => {
        const way = await routeOf(true, () => path.write(offset, data));
        expect(bytesAt(lun, offset, data.length)).toEqual(data);
        return way;
      };
      const straight = { pool: 1, here: 0 };
      const bounced = { pool: 0, here: 1 };
      expect(await route(base, memory.subarray(0, 2 * a))).toEqual(straight);
      expect(await route(base + a / 2, memory.subarray(0, 2 * a))).toEqual(bounced);
      expect(await route(base, memory.subarray(0, a / 2))).toEqual(bounced);
      expect(await route(base, memory.subarray(1, 1 + a))).toEqual(bounced);
      // None of these was refused by the kernel: the same memory aligned still goes straight.
      expect(await route(base + 2 * a, memory.subarray(a, 3 * a))).toEqual(straight);
    },
  );

  it.skipIf(!directIo)(
    "unbuffered, memory the kernel refuses for the thread pool is bounced on this thread, and not offered to the pool again",
    async (context) => {
      const lun = await volumeLun();
      const path = await openPath(lun, { direct: true });
      const a = blockOf(lun.path);
      // Ordinary memory the kernel refuses for O_DIRECT, found on a scratch file of the same device.
      const scratch = reservedLun({ bytes: a });
      const probe = new FdFile(scratch.path, "r+", openFlags("r+") | (directFlag() ?? 0));
      let data: Uint8Array | undefined;
      try {
        data = refusedBuffer(
          (i) => {
            const candidate = new Uint8Array(a).fill(i & 0xff);
            try {
              probe.write(candidate, 0);
              return undefined;
            } catch (error) {
              if ((error as NodeJS.ErrnoException).code !== "EINVAL") throw error;
              return candidate;
            }
          },
          (note) => context.skip(note),
        );
      } finally {
        probe.close();
      }
      if (data === undefined) return;
      // Offered to the pool, refused there (EINVAL, before a byte is written), bounced here.
      data.set(xorshiftBytes(7, a));
      expect(await routeOf(true, () => path.write(8 * a, data as Uint8Array))).toEqual({
        pool: 1,
        here: 1,
      });
      expect(bytesAt(lun, 8 * a, a)).toEqual(data);
      // Known now: straight to the bounce.
      data.set(xorshiftBytes(8, a));
      expect(await routeOf(true, () => path.write(8 * a, data as Uint8Array))).toEqual({
        pool: 0,
        here: 1,
      });
      expect(bytesAt(lun, 8 * a, a)).toEqual(data);
    },
  );
});

describe("batches on a node's own path", () => {
  const DATA = 1 << 20;

  it("starts with its first batch as many I/O threads as libuv's pool has, and fences each batch by the key the node holds then", async () => {
    vi.stubEnv("UV_THREADPOOL_SIZE", "3");
    const lun = await volumeLun();
    const path = await openPath(lun);
    expect(descriptorsOn(lun.path)).toBe(1);
    const writes = sectorWrites(7, 1, DATA);
    // Parts of 2, 2 and 3 writes: one board read more than writes, each.
    expect(await path.writeBatch(writes)).toEqual({
      acknowledged: Array.from({ length: 7 }, () => true),
      stops: [],
      boardReads: 10,
    });
    expect(lun.holds(writes)).toEqual(Array.from({ length: 7 }, () => true));
    expect(descriptorsOn(lun.path)).toBe(1 + 3);
    lun.preempt(KEY);
    const refused = await path.writeBatch(sectorWrites(7, 20, DATA));
    expect(refused.acknowledged).toEqual(Array.from({ length: 7 }, () => false));
    expect(refused.stops.map((s) => [s.at, s.status])).toEqual([
      [0, "refused"],
      [2, "refused"],
      [4, "refused"],
    ]);
    expect(lun.holds(writes)).toEqual(Array.from({ length: 7 }, () => true));
    // Registered again under a new key: the next batch goes out under it.
    lun.register(0x22n);
    node.key = 0x22n;
    const again = sectorWrites(7, 40, DATA);
    expect((await path.writeBatch(again)).acknowledged).toEqual(
      Array.from({ length: 7 }, () => true),
    );
    expect(lun.holds(again)).toEqual(Array.from({ length: 7 }, () => true));
    // The same three threads ran all three batches: no more descriptors.
    expect(descriptorsOn(lun.path)).toBe(1 + 3);
  });

  it("halted before its first batch, the threads it starts are halted; resumed, they write", async () => {
    vi.stubEnv("UV_THREADPOOL_SIZE", "2");
    const lun = await volumeLun();
    const path = await openPath(lun);
    path.halt();
    const stop = (at: number) => ({
      at,
      status: "refused",
      cause: "halted",
      reason: "the node halted its direct writes",
    });
    expect(await path.writeBatch(sectorWrites(4, 1, DATA))).toEqual({
      acknowledged: [false, false, false, false],
      stops: [stop(0), stop(2)],
      boardReads: 2,
    });
    expect(bytesAt(lun, DATA, 4 * 512)).toEqual(new Uint8Array(4 * 512));
    path.resume();
    const writes = sectorWrites(4, 5, DATA);
    expect((await path.writeBatch(writes)).acknowledged).toEqual([true, true, true, true]);
    expect(lun.holds(writes)).toEqual([true, true, true, true]);
    // Halted and resumed again while its threads run.
    path.halt();
    expect((await path.writeBatch(sectorWrites(4, 9, DATA))).stops).toEqual([stop(0), stop(2)]);
    path.resume();
    expect((await path.writeBatch(sectorWrites(4, 9, DATA))).acknowledged).toEqual([
      true,
      true,
      true,
      true,
    ]);
  });

  it("halted and resumed before its first batch, the batch runs", async () => {
    vi.stubEnv("UV_THREADPOOL_SIZE", "2");
    const lun = await volumeLun();
    const path = await openPath(lun);
    path.halt();
    path.resume();
    const writes = sectorWrites(2, 1, DATA);
    expect(await path.writeBatch(writes)).toEqual({
      acknowledged: [true, true],
      stops: [],
      boardReads: 4,
    });
    expect(lun.holds(writes)).toEqual([true, true]);
  });

  it.skipIf(!directIo)(
    "unbuffered, its threads open the LUN with O_DIRECT and write requests aligned or not",
    async () => {
      vi.stubEnv("UV_THREADPOOL_SIZE", "2");
      const lun = await volumeLun();
      const path = await openPath(lun, { direct: true });
      const a = blockOf(lun.path);
      const aligned = pageAlignedBytes(2 * a, true);
      aligned.set(xorshiftBytes(11, 2 * a));
      const writes = [
        { lunOffset: DATA, data: aligned },
        { lunOffset: DATA + 3 * a + 7, data: xorshiftBytes(12, 1000) },
      ];
      expect((await path.writeBatch(writes)).acknowledged).toEqual([true, true]);
      expect(lun.holds(writes)).toEqual([true, true]);
      expect(descriptorsOn(lun.path, { direct: true })).toBe(2 + 2);
    },
  );

  it("closed, its descriptors and its threads' are closed", async () => {
    vi.stubEnv("UV_THREADPOOL_SIZE", "2");
    const lun = await volumeLun();
    const path = await openPath(lun);
    await path.writeBatch(sectorWrites(2, 1, DATA));
    // The LUN: this path's and each thread's; the board: the target's, this path's and each thread's.
    expect(descriptorsOn(lun.path)).toBe(1 + 2);
    expect(descriptorsOn(lun.board)).toBe(1 + 1 + 2);
    path.close();
    // The threads close theirs once their parts have ended: a deadline only against a hang.
    const closed = () => descriptorsOn(lun.path) === 0 && descriptorsOn(lun.board) === 1;
    const until = performance.now() + 10_000;
    while (!closed() && performance.now() < until)
      await new Promise((resolve) => setTimeout(resolve, 10));
    expect(descriptorsOn(lun.path)).toBe(0);
    expect(descriptorsOn(lun.board)).toBe(1);
  });

  // A closed path refuses every request by its name: a batch after close
  // would otherwise start threads, and open descriptors, that no one closes.
  it("closed, refuses a read, a write and a batch, and starts no threads", async () => {
    vi.stubEnv("UV_THREADPOOL_SIZE", "2");
    const lun = await volumeLun();
    const path = await openPath(lun);
    path.close();
    const closed = `${lun.path} is closed`;
    await expect(path.read(DATA, 512)).rejects.toThrow(closed);
    await expect(path.write(DATA, new Uint8Array(512))).rejects.toThrow(closed);
    const writes = sectorWrites(2, 1, DATA);
    await expect(path.writeBatch(writes)).rejects.toThrow(closed);
    expect(lun.holds(writes)).toEqual([false, false]);
    expect(descriptorsOn(lun.path)).toBe(0);
    path.close();
  });
});

describe("threads in libuv's pool (threadPoolSize)", () => {
  it("reads UV_THREADPOOL_SIZE as libuv does (atoi into an unsigned int, from 1 to 1024), and is 4 when it is unset", () => {
    const size = (value?: string) =>
      threadPoolSize(value === undefined ? {} : { UV_THREADPOOL_SIZE: value });
    expect(size()).toBe(4);
    expect(size("1")).toBe(1);
    expect(size("0")).toBe(1);
    expect(size("7")).toBe(7);
    expect(size("1024")).toBe(1024);
    expect(size("1025")).toBe(1024);
    // atoi(3) takes leading white space and the digits before anything else.
    expect(size(" 8")).toBe(8);
    expect(size("16 threads")).toBe(16);
    // Text without leading digits is atoi's 0, made 1; a negative number,
    // stored in libuv's unsigned int, wraps past 1024.
    expect(size("abc")).toBe(1);
    // Digits after other text are not leading ones: atoi stops at the "x".
    expect(size("x8")).toBe(1);
    // Every white space isspace(3) knows, the vertical tab and form feed too.
    expect(size("\t\n\v\f\r 9")).toBe(9);
    expect(size("")).toBe(1);
    expect(size("-0")).toBe(1);
    expect(size("-3")).toBe(1024);
    expect(size("+6")).toBe(6);
  });

  it("reads this process's environment when given none", () => {
    vi.stubEnv("UV_THREADPOOL_SIZE", "5");
    expect(threadPoolSize()).toBe(5);
  });
});
