import { describe, expect, it } from "vitest";
import type { FileChunk } from "../src/csv/file-batch.js";
import {
  FILE_WRITE_BATCH_BYTES,
  FileWriteArgumentError,
  type FileWriter,
  fillPattern,
  MAX_FILE_WRITE_BS,
  machineClockMs,
  parseFileWrite,
  runFileWrite,
} from "../src/csv/file-write.js";
import type { FileMap } from "../src/csv/volume.js";

// The rules of the control socket's `file-write {name, bytes, bs, iodepth,
// seed, batch}` (docs/csv.md, "Control socket"): its arguments checked field
// by field, the pattern every chunk holds, and what the node is asked and
// answers.

const MiB = 1 << 20;
const valid = { name: "vm.vhd", bytes: 8192, bs: 4096, iodepth: 4, seed: 1 };

/** `parseFileWrite(args)` throws FileWriteArgumentError with exactly `message`. */
function refuses(args: unknown, message: string): void {
  let thrown: unknown;
  try {
    parseFileWrite(args);
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(FileWriteArgumentError);
  expect((thrown as Error).message).toBe(message);
}

const range = (what: string, min: number, max: number, value: string) =>
  `file-write: ${what} must be a whole number from ${min} to ${max}, not ${value}`;

describe("file-write's arguments", () => {
  // A request that is not an object of fields is refused as such, before any field is read.
  it("must be an object of fields", () => {
    const needs = "file-write needs arguments {name, bytes, bs, iodepth, seed, batch?}";
    for (const args of [null, undefined, "vm.vhd", 4096, [], [valid]]) refuses(args, needs);
  });

  // docs/csv.md: a name on the volume is 1 to 128 bytes of UTF-8 (bytes, not characters).
  it("take a name of 1 to 128 bytes of UTF-8", () => {
    const bad = "file-write: name must be a string of 1 to 128 bytes";
    const { name: _, ...unnamed } = valid;
    refuses(unnamed, bad);
    refuses({ ...valid, name: "" }, bad);
    refuses({ ...valid, name: 5 }, bad);
    refuses({ ...valid, name: "a".repeat(129) }, bad);
    // 65 characters of two bytes each: 130 bytes.
    refuses({ ...valid, name: "é".repeat(65) }, bad);
    expect(parseFileWrite({ ...valid, name: "a".repeat(128) }).name).toBe("a".repeat(128));
    expect(parseFileWrite({ ...valid, name: "é".repeat(64) }).name).toBe("é".repeat(64));
  });

  // docs/csv.md: chunks of 512 B to 1 MiB (the target protocol's largest I/O).
  it("take a chunk size of 512 bytes to 1 MiB, a whole number", () => {
    refuses({ ...valid, bs: 256 }, range("bs", 512, MAX_FILE_WRITE_BS, "256"));
    refuses({ ...valid, bs: 511 }, range("bs", 512, MAX_FILE_WRITE_BS, "511"));
    refuses({ ...valid, bs: 2 * MiB, bytes: 2 * MiB }, range("bs", 512, MiB, "2097152"));
    refuses({ ...valid, bs: MiB + 1 }, range("bs", 512, MiB, "1048577"));
    // In range but not whole, or not a number at all.
    refuses({ ...valid, bs: 4096.5 }, range("bs", 512, MiB, "4096.5"));
    refuses({ ...valid, bs: Number.NaN }, range("bs", 512, MiB, "null"));
    refuses({ ...valid, bs: "4096" }, range("bs", 512, MiB, '"4096"'));
    expect(parseFileWrite({ ...valid, bs: 512, bytes: 512 }).bs).toBe(512);
    expect(parseFileWrite({ ...valid, bs: MiB, bytes: MiB }).bs).toBe(MiB);
  });

  // From offset 0, at least one chunk and a whole number of them, up to 1 TiB.
  it("take bytes as a whole number of chunks, at least one", () => {
    refuses({ ...valid, bytes: 2048 }, range("bytes", 4096, 2 ** 40, "2048"));
    refuses({ ...valid, bytes: 2 ** 40 + 4096 }, range("bytes", 4096, 2 ** 40, "1099511631872"));
    refuses(
      { ...valid, bytes: 6144 },
      "file-write: bytes 6144 is not a whole number of 4096-byte chunks",
    );
    expect(parseFileWrite({ ...valid, bs: MiB, bytes: 2 ** 40 }).bytes).toBe(2 ** 40);
  });

  // docs/csv.md: 1 to 64 writes in flight; the seed is a u32.
  it("take an iodepth of 1 to 64 and a seed of 32 bits", () => {
    refuses({ ...valid, iodepth: 0 }, range("iodepth", 1, 64, "0"));
    refuses({ ...valid, iodepth: 65 }, range("iodepth", 1, 64, "65"));
    refuses({ ...valid, seed: -1 }, range("seed", 0, 0xffff_ffff, "-1"));
    refuses({ ...valid, seed: 2 ** 32 }, range("seed", 0, 0xffff_ffff, "4294967296"));
    expect(parseFileWrite({ ...valid, iodepth: 1, seed: 0 })).toEqual({
      ...valid,
      iodepth: 1,
      seed: 0,
      batch: true,
    });
    expect(parseFileWrite({ ...valid, iodepth: 64, seed: 0xffff_ffff, batch: false })).toEqual({
      ...valid,
      iodepth: 64,
      seed: 0xffff_ffff,
      batch: false,
    });
  });

  // The error names its kind when printed, as the node's other argument errors do.
  it("are refused with an error that names itself", () => {
    expect(String(new FileWriteArgumentError("x"))).toBe("FileWriteArgumentError: x");
  });
});

describe("the pattern of a seed", () => {
  // A node process fills its chunk and the benchmark fills its own to check
  // every byte read back from the LUN, so the pattern is a fixed function of
  // a byte's position i and the seed: (131 i + 17 seed + floor(i / 4096)) mod 256.
  // Known values, worked by hand (131 * 4096 is a multiple of 256).
  it("gives each byte by its position and the seed", () => {
    const chunk = new Uint8Array(3 * 4096);
    fillPattern(chunk, 0);
    expect([chunk[0], chunk[1], chunk[2], chunk[3]]).toEqual([0, 131, 6, 137]);
    expect([chunk[4095], chunk[4096], chunk[4097], chunk[8192]]).toEqual([125, 1, 132, 2]);
    fillPattern(chunk, 1);
    expect([chunk[0], chunk[1], chunk[4096]]).toEqual([17, 148, 18]);
    fillPattern(chunk, 16);
    expect(chunk[0]).toBe(16);
    // 0xffffffff = 255 mod 256, and 17 * 255 = 4335 = 239 mod 256.
    fillPattern(chunk, 0xffff_ffff);
    expect([chunk[0], chunk[1]]).toEqual([239, 114]);
  });

  // Every 4 KiB page of the largest chunk differs from the others, so a page
  // landed at the wrong place in a chunk does not read back as the right one;
  // and neighbouring bytes always differ.
  it("tells every page of a chunk from the others", () => {
    const chunk = new Uint8Array(MAX_FILE_WRITE_BS);
    fillPattern(chunk, 7);
    const pages = new Set<string>();
    for (let at = 0; at < chunk.length; at += 4096)
      pages.add(Buffer.from(chunk.subarray(at, at + 4096)).toString("hex"));
    expect(pages.size).toBe(MAX_FILE_WRITE_BS / 4096);
    let repeats = 0;
    for (let i = 1; i < chunk.length; i++) if (chunk[i] === chunk[i - 1]) repeats++;
    expect(repeats).toBe(0);
  });
});

describe("the machine's clock", () => {
  // docs/csv.md: milliseconds of CLOCK_MONOTONIC (process.hrtime), which every process reads alike.
  it("reads process.hrtime in milliseconds", () => {
    const before = process.hrtime.bigint();
    const ms = machineClockMs();
    const after = process.hrtime.bigint();
    expect(ms).toBeGreaterThanOrEqual(Number(before) / 1e6);
    expect(ms).toBeLessThanOrEqual(Number(after) / 1e6);
  });
});

/**
 * A node whose file holds `size` bytes (no such file when undefined), whose
 * counters start at `direct` and `redirected`: it counts each batched chunk
 * as a direct write and each single write as a redirected one, and keeps
 * what it was asked.
 */
function countingNode(size: number | undefined, direct = 0, redirected = 0) {
  const opens: unknown[] = [];
  const batches: FileChunk[][] = [];
  const singles: FileChunk[] = [];
  const io = { directWrites: direct, redirectedWrites: redirected };
  const node: FileWriter = {
    io,
    async metadata(request) {
      opens.push(request);
      return size === undefined
        ? undefined
        : ({ name: request.name, size, extents: [] } as FileMap);
    },
    async writeFile(_file, offset, data) {
      singles.push({ offset, data });
      io.redirectedWrites++;
    },
    async writeFileBatch(_file, chunks) {
      batches.push([...chunks]);
      io.directWrites += chunks.length;
    },
  };
  return { node, opens, batches, singles };
}

const request = (bytes: number, bs: number, seed: number, batch = true) =>
  ({ name: "vm.vhd", bytes, bs, iodepth: 2, seed, batch }) as const;

describe("a file-write on a node", () => {
  // It opens the file by name on the volume (the node's metadata request).
  it("opens the file by name before writing", async () => {
    const { node, opens } = countingNode(8192);
    await runFileWrite(node, request(8192, 4096, 3));
    expect(opens).toEqual([{ op: "open", name: "vm.vhd" }]);
  });

  // A file that is not there holds no bytes: refused as too small, nothing written.
  it("refuses a file that is not on the volume", async () => {
    const { node, batches } = countingNode(undefined);
    const error = await runFileWrite(node, request(8192, 4096, 3)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FileWriteArgumentError);
    expect((error as Error).message).toBe(
      "file-write: vm.vhd holds 0 bytes, fewer than the 8192 to write",
    );
    expect(batches).toEqual([]);
  });

  // docs/csv.md: batches of up to 256 chunks or 64 MiB; 1 MiB chunks make 64 a batch.
  it("cuts batches at 64 MiB when the chunks are large", async () => {
    const chunks = FILE_WRITE_BATCH_BYTES / MiB + 1;
    const { node, batches } = countingNode(chunks * MiB);
    await runFileWrite(node, request(chunks * MiB, MiB, 4));
    expect(batches.map((b) => b.length)).toEqual([64, 1]);
    expect(batches.flat().map((c) => c.offset)).toEqual(
      Array.from({ length: chunks }, (_, k) => k * MiB),
    );
  });

  // The answer counts this request's writes alone, not what the node wrote before it.
  it("answers the writes it made, not the node's totals", async () => {
    const batched = countingNode(4 * 4096, 7, 3);
    const done = await runFileWrite(batched.node, request(4 * 4096, 4096, 5));
    expect(done).toMatchObject({ directWrites: 4, redirectedWrites: 0 });
    const single = countingNode(3 * 4096, 7, 3);
    const one = await runFileWrite(single.node, request(3 * 4096, 4096, 5, false));
    expect(one).toMatchObject({ directWrites: 0, redirectedWrites: 3 });
  });

  // docs/csv.md: a node keeps the chunk it filled for its next file-write of
  // the same size and seed; another seed gets its own pattern.
  it("keeps its chunk for the same size and seed, and fills another for a new seed", async () => {
    const chunkOf = async (seed: number) => {
      const { node, batches } = countingNode(2 * 8192);
      await runFileWrite(node, request(2 * 8192, 8192, seed));
      const data = batches[0]?.[0]?.data;
      expect(data).toBeDefined();
      return data as Uint8Array;
    };
    const pattern = (seed: number) => {
      const p = new Uint8Array(8192);
      fillPattern(p, seed);
      return p;
    };
    const first = await chunkOf(21);
    expect(await chunkOf(21)).toBe(first);
    const other = await chunkOf(22);
    expect(other).toEqual(pattern(22));
    expect(await chunkOf(21)).toEqual(pattern(21));
  });
});
