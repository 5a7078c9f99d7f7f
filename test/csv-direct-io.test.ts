import { copyFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { threadPoolSize } from "../src/csv/direct-lun.js";
import {
  FileWriteArgumentError,
  MAX_FILE_WRITE_BS,
  MAX_FILE_WRITE_DEPTH,
  parseFileWrite,
} from "../src/csv/file-write.js";
import { SECTOR } from "../src/csv/layout.js";
import { leaseOffset } from "../src/csv/lease.js";
import { FileLun } from "../src/csv/lun.js";
import { ClusterNode, type NodeEvent } from "../src/csv/node.js";
import {
  BOARD_BYTES,
  type Board,
  BoardFormatError,
  BoardReader,
  BoardState,
  encodeBoard,
  MAX_BOARD_KEYS,
  parseBoard,
  writeRefusal,
} from "../src/csv/registration-board.js";
import { ReservationType, ServiceAction } from "../src/csv/reservations.js";
import { LunTarget } from "../src/csv/target.js";
import { TargetClient } from "../src/csv/target-client.js";
import { type FileMap, Volume } from "../src/csv/volume.js";
import { FdFile } from "../src/storage/block-file.js";
import { directIoRefusal } from "../src/storage/direct-file.js";
import { freePort } from "./support/csv-cluster.js";
import { descriptorsOn } from "./support/descriptors.js";

// A node's direct I/O over its own path to the LUN: pread/pwrite on the LUN
// file, never through the target, and fenced by the registration board the
// target publishes before it answers a PERSISTENT RESERVE OUT.

let dir: string;
let lunPath: string;
let file: FdFile;
let target: LunTarget;
/** Where the lease sector is: the coordinator rewrites it through the target every heartbeat. */
let leaseAt: number;
/** Every write the target made to the LUN, in order. */
const targetWrites: { offset: number; bytes: number }[] = [];

/**
 * The target's writes since `mark` (an index into {@link targetWrites})
 * other than the coordinator's lease renewals: file data sent through the
 * target would show here.
 */
function dataThroughTarget(mark: number): { offset: number; bytes: number }[] {
  return targetWrites.slice(mark).filter((w) => !(w.offset === leaseAt && w.bytes === SECTOR));
}
let targetPort: number;
const started: ClusterNode[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-csv-direct-"));
  lunPath = join(dir, "lun.img");
  file = new FdFile(lunPath, "wx+");
  file.truncate(16 << 20);
  await Volume.format(new FileLun(file, false), { clusterBytes: 4096 });
  leaseAt = leaseOffset((await Volume.open(new FileLun(file, false), { replay: false })).layout);
  // The target's file, its writes recorded.
  const recorded = Object.create(file) as FdFile;
  recorded.writev = (parts, position) => {
    targetWrites.push({ offset: position, bytes: parts.reduce((n, p) => n + p.length, 0) });
    file.writev(parts, position);
  };
  target = new LunTarget(recorded, {
    durable: false,
    registrations: `${lunPath}.registrations`,
  });
  targetPort = await target.listen();
});

afterAll(async () => {
  for (const n of started) n.stop();
  await target?.close();
  file?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A one-node cluster (a new id each time: the last one's key is preempted) on its own path to the LUN; resolves once it coordinates. */
async function soloNode(id: number, lun = lunPath, lunDirect = false): Promise<ClusterNode> {
  let coordinating: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    coordinating = resolve;
  });
  const node = new ClusterNode({
    id,
    port: await freePort(),
    targetPort,
    peers: new Map(),
    heartbeatMs: 50,
    misses: 4,
    lun,
    lunDirect,
    registrations: `${lunPath}.registrations`,
    onEvent: (e: NodeEvent) => {
      if (e.event === "coordinator") coordinating();
    },
  });
  await node.start();
  started.push(node);
  await ready;
  return node;
}

const pattern = (bytes: number, seed: number) =>
  Uint8Array.from({ length: bytes }, (_, i) => (i * 7 + seed * 31 + (i >>> 9)) & 0xff);

/** The file's bytes as the LUN file holds them, read through a volume on the file itself. */
async function onLun(f: FileMap, offset: number, length: number): Promise<Uint8Array> {
  const lun = new FileLun(new FdFile(lunPath, "r"), false);
  try {
    const volume = await Volume.open(lun, { replay: false });
    return await volume.read(volume.lookup(f.name), offset, length);
  } finally {
    lun.close();
  }
}

describe("csv direct I/O on the node's own path", () => {
  it("writes file data to the LUN file without a byte through the target, and reads it back", async () => {
    const node = await soloNode(1);
    const f = (await node.metadata({ op: "create", name: "vm.vhd", size: 1 << 20 })) as FileMap;
    const before = { ...target.counters };
    const mark = targetWrites.length;
    // An odd length at an unaligned offset: the extents are cut where the clusters end.
    const data = pattern(100_001, 1);
    await node.writeFile(f, 4093, data);
    expect(dataThroughTarget(mark)).toEqual([]);
    expect(Buffer.from(await onLun(f, 4093, data.length)).equals(data)).toBe(true);
    expect(Buffer.from(await node.readFile(f, 4093, data.length)).equals(data)).toBe(true);
    expect(target.counters.bytesRead - before.bytesRead).toBe(0);
    expect(node.io.directWrites).toBeGreaterThanOrEqual(1);
    node.stop();
  }, 30_000);

  it("a node whose key was preempted gets RESERVATION CONFLICT and its bytes never reach the LUN", async () => {
    const node = await soloNode(2);
    const f = (await node.metadata({
      op: "create",
      name: "fenced.vhd",
      size: 64 << 10,
    })) as FileMap;
    const first = pattern(8192, 2);
    await node.writeFile(f, 0, first);
    // A survivor registers and preempts the node's key, as a new coordinator does.
    const survivor = await TargetClient.connect(targetPort, "survivor");
    try {
      await survivor.register(0x99n);
      const key = BigInt(node.status().key);
      await survivor.reserveOut(
        ServiceAction.preempt,
        ReservationType.writeExclusiveRegistrantsOnly,
        0x99n,
        key,
      );
      // GOOD came back only after the board was rewritten.
      const board = new BoardReader(`${lunPath}.registrations`);
      expect(board.read().keys).not.toContain(key);
      board.close();
      await expect(node.writeFile(f, 0, pattern(8192, 3))).rejects.toThrow(/not registered/);
      expect(await onLun(f, 0, 8192)).toEqual(first);
      // Reads stay allowed under Write Exclusive - Registrants Only.
      expect(await node.readFile(f, 0, 8192)).toEqual(first);
    } finally {
      // Give the reservation back so later cases start clean.
      await survivor.reserveOut(
        ServiceAction.release,
        ReservationType.writeExclusiveRegistrantsOnly,
        0x99n,
      );
      survivor.close();
      node.stop();
    }
  }, 30_000);

  it("writes a batch of chunks on the node's I/O threads, counted once each, none through the target", async () => {
    const node = await soloNode(4);
    const f = (await node.metadata({ op: "create", name: "batch.vhd", size: 1 << 20 })) as FileMap;
    const mark = targetWrites.length;
    // More chunks than threads, one of them cut where a cluster ends.
    const chunks = Array.from({ length: 9 }, (_, k) => ({
      offset: k * 12_289,
      data: pattern(12_289, 40 + k),
    }));
    await node.writeFileBatch(f, chunks);
    expect(dataThroughTarget(mark)).toEqual([]);
    for (const c of chunks)
      expect(Buffer.from(await onLun(f, c.offset, c.data.length)).equals(c.data)).toBe(true);
    expect(node.io).toMatchObject({ directWrites: 9, writes: 9, bytesWritten: 9 * 12_289 });
    node.stop();
  }, 30_000);

  it("a preempted node's batch is refused whole with RESERVATION CONFLICT, none acknowledged, no byte on the LUN", async () => {
    const node = await soloNode(5);
    const f = (await node.metadata({
      op: "create",
      name: "batch-fenced.vhd",
      size: 64 << 10,
    })) as FileMap;
    const first = pattern(16_384, 5);
    await node.writeFileBatch(f, [{ offset: 0, data: first }]);
    const survivor = await TargetClient.connect(targetPort, "survivor-batch");
    try {
      await survivor.register(0x97n);
      await survivor.reserveOut(
        ServiceAction.preempt,
        ReservationType.writeExclusiveRegistrantsOnly,
        0x97n,
        BigInt(node.status().key),
      );
      const written = node.io.directWrites;
      await expect(
        node.writeFileBatch(f, [
          { offset: 0, data: pattern(8192, 6) },
          { offset: 8192, data: pattern(8192, 7) },
        ]),
      ).rejects.toThrow(
        /^WRITE of 8192 bytes at \d+ on .*: key 0x[0-9a-f]+ is not registered \(PRgeneration \d+\): the LUN is reserved; 0 of 2 chunks acknowledged; the batch stopped/,
      );
      expect(node.io.directWrites).toBe(written);
      expect(await onLun(f, 0, 16_384)).toEqual(first);
    } finally {
      await survivor.reserveOut(
        ServiceAction.release,
        ReservationType.writeExclusiveRegistrantsOnly,
        0x97n,
      );
      survivor.close();
      node.stop();
    }
  }, 30_000);

  it("refuses to start on a path that is not the LUN the target serves", async () => {
    const other = join(dir, "other.img");
    copyFileSync(lunPath, other);
    const f = new FdFile(other, "r+");
    f.write(Uint8Array.of(1, 2, 3), 200);
    f.close();
    await expect(soloNode(3, other)).rejects.toThrow(/not the LUN the target serves/);
    await expect(soloNode(4, join(dir, "missing.img"))).rejects.toThrow(/ENOENT/);
  }, 30_000);

  it("the target marks its board offline and removes it when it stops", async () => {
    const path = join(dir, "second.lun");
    const lun = new FdFile(path, "wx+");
    lun.truncate(1 << 20);
    const second = new LunTarget(lun, { registrations: `${path}.registrations` });
    const reader = new BoardReader(`${path}.registrations`);
    expect(reader.read().state).toBe(BoardState.online);
    await second.close();
    expect(reader.read().state).toBe(BoardState.offline);
    expect(writeRefusal(reader.read(), 1n)).toMatch(/stopped/);
    expect(existsSync(`${path}.registrations`)).toBe(false);
    reader.close();
    lun.close();
  });
});

// The node's own path unbuffered (--lun-direct): the LUN opened with O_DIRECT.
// The LUN sits in the temporary directory: a file system that refuses
// O_DIRECT (tmpfs before Linux 6.6) skips these, saying why, and fails in CI.
const unbufferedRefusal = directIoRefusal(tmpdir());
if (unbufferedRefusal !== undefined) {
  if (process.env.CI === "true") throw new Error(`csv unbuffered direct I/O: ${unbufferedRefusal}`);
  console.warn(`csv unbuffered direct I/O tests skipped: ${unbufferedRefusal}`);
}

describe.skipIf(unbufferedRefusal !== undefined)(
  "csv direct I/O on the node's own path, unbuffered (O_DIRECT)",
  () => {
    it("opens the LUN with O_DIRECT, writes file data the LUN file reads back", async () => {
      const before = descriptorsOn(lunPath, { direct: true });
      const node = await soloNode(11, lunPath, true);
      // Two: one for requests on the node's thread (the bounce), one for its writes on the thread pool.
      expect(descriptorsOn(lunPath, { direct: true })).toBe(before + 2);
      const f = (await node.metadata({
        op: "create",
        name: "unbuf.vhd",
        size: 1 << 20,
      })) as FileMap;
      const mark = targetWrites.length;
      // Aligned whole clusters go straight through; an odd length at an odd offset is bounced.
      const aligned = pattern(64 << 10, 11);
      await node.writeFile(f, 0, aligned);
      const odd = pattern(100_001, 12);
      await node.writeFile(f, 70_003, odd);
      expect(dataThroughTarget(mark)).toEqual([]);
      expect(Buffer.from(await onLun(f, 0, aligned.length)).equals(aligned)).toBe(true);
      expect(Buffer.from(await onLun(f, 70_003, odd.length)).equals(odd)).toBe(true);
      expect(Buffer.from(await node.readFile(f, 70_003, odd.length)).equals(odd)).toBe(true);
      node.stop();
      expect(descriptorsOn(lunPath, { direct: true })).toBe(before);
    }, 30_000);

    it("a batch of chunks on the I/O threads, aligned and not, lands unbuffered; the threads' descriptors close with the node", async () => {
      const before = descriptorsOn(lunPath, { direct: true });
      const node = await soloNode(14, lunPath, true);
      const f = (await node.metadata({
        op: "create",
        name: "unbuf-batch.vhd",
        size: 1 << 20,
      })) as FileMap;
      const mark = targetWrites.length;
      // Whole clusters go straight from memory; an odd chunk at an odd offset is bounced on its thread.
      const chunks = [
        { offset: 0, data: pattern(64 << 10, 21) },
        { offset: 64 << 10, data: pattern(64 << 10, 22) },
        { offset: 200_003, data: pattern(70_001, 23) },
      ];
      await node.writeFileBatch(f, chunks);
      // Each I/O thread holds its own O_DIRECT descriptor of the LUN.
      expect(descriptorsOn(lunPath, { direct: true })).toBe(before + 2 + threadPoolSize());
      expect(dataThroughTarget(mark)).toEqual([]);
      for (const c of chunks)
        expect(Buffer.from(await onLun(f, c.offset, c.data.length)).equals(c.data)).toBe(true);
      expect(node.io.directWrites).toBe(3);
      node.stop();
      const until = performance.now() + 10_000;
      while (descriptorsOn(lunPath, { direct: true }) !== before && performance.now() < until)
        await new Promise((r) => setTimeout(r, 20));
      expect(descriptorsOn(lunPath, { direct: true })).toBe(before);
    }, 30_000);

    it("a buffered node's path has no O_DIRECT descriptor", async () => {
      const before = descriptorsOn(lunPath, { direct: true });
      const node = await soloNode(12);
      expect(descriptorsOn(lunPath, { direct: true })).toBe(before);
      node.stop();
    }, 30_000);

    it("a preempted node gets RESERVATION CONFLICT and its unbuffered bytes never reach the LUN", async () => {
      const node = await soloNode(13, lunPath, true);
      const f = (await node.metadata({
        op: "create",
        name: "unbuf-fenced.vhd",
        size: 64 << 10,
      })) as FileMap;
      const first = pattern(8192, 13);
      await node.writeFile(f, 0, first);
      const survivor = await TargetClient.connect(targetPort, "survivor-unbuffered");
      try {
        await survivor.register(0x98n);
        await survivor.reserveOut(
          ServiceAction.preempt,
          ReservationType.writeExclusiveRegistrantsOnly,
          0x98n,
          BigInt(node.status().key),
        );
        await expect(node.writeFile(f, 0, pattern(8192, 14))).rejects.toThrow(/not registered/);
        expect(await onLun(f, 0, 8192)).toEqual(first);
        expect(await node.readFile(f, 0, 8192)).toEqual(first);
      } finally {
        await survivor.reserveOut(
          ServiceAction.release,
          ReservationType.writeExclusiveRegistrantsOnly,
          0x98n,
        );
        survivor.close();
        node.stop();
      }
    }, 30_000);
  },
);

const boards = fc.record({
  state: fc.constantFrom(BoardState.online, BoardState.offline),
  prGeneration: fc.nat({ max: 0xffff_ffff }),
  sequence: fc.nat({ max: 0xffff_ffff }),
  lunBytes: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
  type: fc.constantFrom(0, 1, 3, 5, 6),
  holderKey: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  keys: fc.array(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { maxLength: 40 }),
});

describe("the registration board's format", () => {
  it("round-trips every board", () => {
    fc.assert(
      fc.property(boards, (b: Board) => {
        expect(parseBoard(encodeBoard(b), "board")).toEqual(b);
      }),
      { numRuns: 2000 },
    );
  });

  it("lists at most MAX_BOARD_KEYS keys: one past them cannot write direct", () => {
    const keys = Array.from({ length: MAX_BOARD_KEYS + 1 }, (_, i) => BigInt(i + 1));
    const board = parseBoard(
      encodeBoard({
        state: BoardState.online,
        prGeneration: 1,
        sequence: 1,
        lunBytes: 1,
        type: ReservationType.writeExclusiveRegistrantsOnly,
        holderKey: 1n,
        keys,
      }),
      "board",
    );
    expect(board.keys).toHaveLength(MAX_BOARD_KEYS);
    expect(writeRefusal(board, BigInt(MAX_BOARD_KEYS))).toBeUndefined();
    expect(writeRefusal(board, BigInt(MAX_BOARD_KEYS + 1))).toMatch(/not registered/);
  });

  it("who may write: SPC-3's rules by key", () => {
    fc.assert(
      fc.property(boards, fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (b: Board, key) => {
        const refusal = writeRefusal(b, key);
        const allowed =
          b.state === BoardState.online &&
          (b.type === 0 ||
            ((b.type === 5 || b.type === 6) && b.keys.includes(key)) ||
            ((b.type === 1 || b.type === 3) && b.holderKey === key));
        expect(refusal === undefined).toBe(allowed);
      }),
      { numRuns: 5000 },
    );
  });

  it("fuzz: 100,000 corrupted boards are refused with a BoardFormatError, never read", () => {
    const valid = encodeBoard({
      state: BoardState.online,
      prGeneration: 7,
      sequence: 9,
      lunBytes: 1 << 24,
      type: 5,
      holderKey: 0x1_0000_0001n,
      keys: [0x1_0000_0001n, 0x2_0000_0001n],
    });
    fc.assert(
      fc.property(
        fc.nat({ max: BOARD_BYTES - 1 }),
        fc.integer({ min: 1, max: 255 }),
        (at, flip) => {
          const page = valid.slice();
          page[at] = (page[at] ?? 0) ^ flip;
          expect(() => parseBoard(page, "board")).toThrow(BoardFormatError);
        },
      ),
      { numRuns: 100_000 },
    );
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: BOARD_BYTES + 1 }), (page) => {
        expect(() => parseBoard(page, "board")).toThrow(BoardFormatError);
      }),
      { numRuns: 300 },
    );
  });
});

describe("file-write's arguments", () => {
  it("fuzz: 100,000 argument objects are either a checked FileWrite or a FileWriteArgumentError naming the field", () => {
    const anything = fc.oneof(
      fc.integer({ min: -5, max: 2 ** 41 }),
      fc.double(),
      fc.string({ maxLength: 140 }),
      fc.constant(null),
      fc.constant(undefined),
      fc.boolean(),
    );
    const args = fc.oneof(
      fc.record(
        { name: anything, bytes: anything, bs: anything, iodepth: anything, seed: anything },
        { requiredKeys: [] },
      ),
      fc.record({
        name: fc.string({ minLength: 1, maxLength: 20 }),
        bytes: fc.integer({ min: 1, max: 64 }).map((n) => n * 4096),
        bs: fc.constant(4096),
        iodepth: fc.integer({ min: 1, max: 64 }),
        seed: fc.nat(),
      }),
      anything,
      fc.array(anything),
    );
    fc.assert(
      fc.property(args, (a) => {
        let parsed: ReturnType<typeof parseFileWrite>;
        try {
          parsed = parseFileWrite(a);
        } catch (error) {
          expect(error).toBeInstanceOf(FileWriteArgumentError);
          expect((error as Error).message).toMatch(/^file-write/);
          return;
        }
        expect(parsed.bytes % parsed.bs).toBe(0);
        expect(parsed.bs).toBeGreaterThanOrEqual(512);
        expect(parsed.bs).toBeLessThanOrEqual(MAX_FILE_WRITE_BS);
        expect(parsed.iodepth).toBeGreaterThanOrEqual(1);
        expect(parsed.iodepth).toBeLessThanOrEqual(MAX_FILE_WRITE_DEPTH);
        expect(Buffer.byteLength(parsed.name)).toBeLessThanOrEqual(128);
      }),
      { numRuns: 100_000 },
    );
  });
});
