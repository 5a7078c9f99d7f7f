import { describe, expect, it } from "vitest";
import {
  FILE_WRITE_BATCH_CHUNKS,
  FileWriteArgumentError,
  type FileWriter,
  fillPattern,
  machineClockMs,
  parseFileWrite,
  runFileWrite,
} from "../src/csv/file-write.js";
import type { FileMap } from "../src/csv/volume.js";

/** A node that opens after `openMs` and lands each write after `writeMs`, recording what it wrote. */
function recordingNode(size: number, openMs: number, writeMs: number) {
  const writes: { offset: number; bytes: Uint8Array; at: number }[] = [];
  let openedAt = 0;
  let inFlight = 0;
  let deepest = 0;
  const batches: { offsets: number[]; shared: boolean[] }[] = [];
  const node: FileWriter = {
    io: { directWrites: 0, redirectedWrites: 0 },
    async metadata({ name }) {
      await new Promise((r) => setTimeout(r, openMs));
      openedAt = machineClockMs();
      return { name, size, extents: [] } as unknown as FileMap;
    },
    async writeFile(_file, offset, data) {
      inFlight++;
      deepest = Math.max(deepest, inFlight);
      await new Promise((r) => setTimeout(r, writeMs));
      writes.push({
        offset,
        bytes: Uint8Array.from(data),
        at: machineClockMs(),
      });
      (node.io as { directWrites: number }).directWrites++;
      inFlight--;
    },
    async writeFileBatch(_file, chunks) {
      batches.push({
        offsets: chunks.map((c) => c.offset),
        shared: chunks.map((c) => c.data.buffer instanceof SharedArrayBuffer),
      });
      await new Promise((r) => setTimeout(r, writeMs));
      for (const c of chunks) {
        writes.push({ offset: c.offset, bytes: Uint8Array.from(c.data), at: machineClockMs() });
        (node.io as { directWrites: number }).directWrites++;
      }
    },
  };
  return { node, writes, batches, openedAt: () => openedAt, deepest: () => deepest };
}

describe("file-write", () => {
  it("writes every chunk once with the seed's pattern, iodepth at a time, and reports the span of its writes alone", async () => {
    const bs = 4096;
    const { node, writes, openedAt, deepest } = recordingNode(10 * bs, 30, 5);
    const done = await runFileWrite(node, {
      name: "vm.vhd",
      bytes: 10 * bs,
      bs,
      iodepth: 3,
      seed: 7,
      batch: false,
    });
    expect(writes.map((w) => w.offset).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 10 }, (_, k) => k * bs),
    );
    const pattern = new Uint8Array(bs);
    fillPattern(pattern, 7);
    for (const w of writes) expect(w.bytes).toEqual(pattern);
    expect(deepest()).toBe(3);
    expect(done).toMatchObject({ name: "vm.vhd", bytes: 10 * bs, directWrites: 10 });
    // The span starts after the open (30 ms) and ends with the last write.
    expect(done.startedAt).toBeGreaterThanOrEqual(openedAt());
    const last = Math.max(...writes.map((w) => w.at));
    expect(done.endedAt).toBeGreaterThanOrEqual(last);
    expect(done.endedAt - done.startedAt).toBe(done.ms);
    // Four rounds of up to three writes, each 5 ms at least.
    expect(done.ms).toBeGreaterThanOrEqual(4 * 5 - 1);
  });

  it("refuses a file smaller than the bytes to write, naming both", async () => {
    const { node, writes } = recordingNode(4096, 0, 0);
    await expect(
      runFileWrite(node, {
        name: "small",
        bytes: 8192,
        bs: 4096,
        iodepth: 1,
        seed: 0,
        batch: true,
      }),
    ).rejects.toThrow(
      new FileWriteArgumentError(
        "file-write: small holds 4096 bytes, fewer than the 8192 to write",
      ),
    );
    expect(writes).toEqual([]);
  });

  it("hands the chunks to the node in order, in batches of at most FILE_WRITE_BATCH_CHUNKS, from shared memory", async () => {
    const bs = 512;
    const chunks = FILE_WRITE_BATCH_CHUNKS + 3;
    const { node, writes, batches } = recordingNode(chunks * bs, 0, 1);
    const done = await runFileWrite(node, {
      name: "vm.vhd",
      bytes: chunks * bs,
      bs,
      iodepth: 1,
      seed: 9,
      batch: true,
    });
    expect(batches.map((b) => b.offsets.length)).toEqual([FILE_WRITE_BATCH_CHUNKS, 3]);
    expect(batches.flatMap((b) => b.offsets)).toEqual(
      Array.from({ length: chunks }, (_, k) => k * bs),
    );
    // Shared, so the node's I/O thread writes it without a copy.
    expect(batches.every((b) => b.shared.every(Boolean))).toBe(true);
    const pattern = new Uint8Array(bs);
    fillPattern(pattern, 9);
    for (const w of writes) expect(w.bytes).toEqual(pattern);
    expect(done.directWrites).toBe(chunks);
  });

  it("batches by default and takes batch only as true or false", () => {
    const args = { name: "f", bytes: 4096, bs: 4096, iodepth: 1, seed: 0 };
    expect(parseFileWrite(args).batch).toBe(true);
    expect(parseFileWrite({ ...args, batch: false }).batch).toBe(false);
    expect(() => parseFileWrite({ ...args, batch: "yes" })).toThrow(
      new FileWriteArgumentError('file-write: batch must be true or false, not "yes"'),
    );
  });
});
