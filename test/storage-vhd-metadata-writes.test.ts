import { describe, expect, it } from "vitest";
import { MemoryFile } from "../src/storage/block-file.js";
import { BAT_UNALLOCATED, FOOTER_BYTES, HEADER_BYTES } from "../src/storage/format.js";
import { StorageKernels } from "../src/storage/kernels.js";
import { VhdImage } from "../src/storage/vhd.js";

// How a VHD writes its metadata (Virtual Hard Disk Image Format
// Specification 1.0): a BAT entry as the whole 512-byte sector of the table
// that holds it, or alone where the table only partly fills its last sector
// (the rest of that sector is not the table's); the footer after the last
// block once allocations moved the end, written on flush and close, fdatasync
// only on flush; and the regions an image borrowed given back on close.

const KiB = 1024;
const BLOCK = 4096;

/** A memory file that records each write's position and length, and counts fdatasyncs. */
class RecordingFile extends MemoryFile {
  writes: [number, number][] = [];
  syncs = 0;
  override write(from: Uint8Array, position: number): void {
    this.writes.push([position, from.length]);
    super.write(from, position);
  }
  override sync(): void {
    this.syncs++;
  }
}

const TABLE = FOOTER_BYTES + HEADER_BYTES;

function created(blocks: number, kernels = StorageKernels.standalone(256 * KiB)) {
  const file = new RecordingFile("/meta/d.vhd");
  const image = VhdImage.create(file, {
    type: "dynamic",
    size: blocks * BLOCK,
    blockSize: BLOCK,
    kernels,
    now: 0,
  });
  file.writes = [];
  return { file, image, kernels };
}

function batEntry(file: MemoryFile, i: number): number {
  const bytes = file.contents();
  return new DataView(bytes.buffer, bytes.byteOffset).getUint32(TABLE + 4 * i);
}

describe("BAT entries", () => {
  it("are written as the whole sector of the table that holds them", () => {
    const { file, image } = created(300);
    image.write(130 * BLOCK, new Uint8Array(512).fill(1));
    // Entry 130 lies in the table's second sector, entries 128 to 255.
    const batWrites = file.writes.filter(([at]) => at >= TABLE && at < TABLE + 300 * 4);
    expect(batWrites).toEqual([[TABLE + 128 * 4, 512]]);
    expect(batEntry(file, 130)).toBe(image.blockTable[130]);
    expect(batEntry(file, 130)).not.toBe(BAT_UNALLOCATED);
    for (const i of [128, 129, 131, 255]) expect(batEntry(file, i)).toBe(BAT_UNALLOCATED);
    image.close();
  });

  it("are written as a whole last sector when the table fills it exactly", () => {
    const { file, image } = created(256);
    image.write(200 * BLOCK, new Uint8Array(512).fill(1));
    const batWrites = file.writes.filter(([at]) => at >= TABLE && at < TABLE + 256 * 4);
    expect(batWrites).toEqual([[TABLE + 128 * 4, 512]]);
    image.close();
  });

  it("are written alone in a last sector the table only partly fills, leaving the rest", () => {
    const { file, image } = created(130);
    // Entries 128 and 129 are the table's; bytes past them in that sector are not.
    const past = TABLE + 130 * 4;
    file.write(new Uint8Array(8).fill(0x11), past);
    file.writes = [];
    image.write(129 * BLOCK, new Uint8Array(512).fill(2));
    const batWrites = file.writes.filter(([at]) => at >= TABLE && at < TABLE + 1024);
    expect(batWrites).toEqual([[TABLE + 129 * 4, 4]]);
    expect(batEntry(file, 129)).toBe(image.blockTable[129]);
    expect(batEntry(file, 128)).toBe(BAT_UNALLOCATED);
    expect([...file.contents().subarray(past, past + 8)]).toEqual(new Array(8).fill(0x11));
    // The first, whole sector is still written whole.
    file.writes = [];
    image.write(127 * BLOCK, new Uint8Array(512).fill(3));
    expect(file.writes.filter(([at]) => at >= TABLE && at < TABLE + 1024)).toEqual([[TABLE, 512]]);
    image.close();
  });
});

describe("the footer after allocations", () => {
  it("goes after the last block on flush, with one fdatasync, and not before", () => {
    const { file, image } = created(16);
    const before = file.size();
    image.write(0, new Uint8Array(BLOCK).fill(4));
    expect(file.syncs).toBe(0);
    const end = image.endOfData;
    expect(end).toBeGreaterThanOrEqual(before);
    image.flush();
    expect(file.syncs).toBe(1);
    expect(file.size()).toBe(end + FOOTER_BYTES);
    expect(Buffer.from(file.contents().subarray(end, end + 8)).toString("latin1")).toBe("conectix");
    // Nothing allocated since: a second flush writes nothing, and syncs again.
    file.writes = [];
    image.flush();
    expect(file.writes).toEqual([]);
    expect(file.syncs).toBe(2);
    image.close();
    expect(file.writes).toEqual([]);
  });

  it("goes after the last block on close, without an fdatasync", () => {
    const { file, image } = created(16);
    image.write(3 * BLOCK, new Uint8Array(BLOCK).fill(5));
    const end = image.endOfData;
    image.close();
    expect(file.syncs).toBe(0);
    expect(file.size()).toBe(end + FOOTER_BYTES);
    expect(file.writes.at(-1)).toEqual([end, FOOTER_BYTES]);
    const reopened = VhdImage.open(new MemoryFile("/meta/again.vhd", file.contents().slice()));
    expect(reopened.notes).toEqual([]);
    const into = new Uint8Array(BLOCK);
    reopened.read(3 * BLOCK, into);
    expect(into.every((b) => b === 5)).toBe(true);
    reopened.close();
  });

  it("is neither written nor synced by a read-only image's flush and close", () => {
    const { file: made, image: maker } = created(16);
    maker.write(0, new Uint8Array(512).fill(6));
    maker.close();
    const file = new RecordingFile("/meta/ro.vhd", made.contents().slice());
    const image = VhdImage.open(file);
    image.read(0, new Uint8Array(512));
    image.flush();
    image.close();
    expect(file.writes).toEqual([]);
    expect(file.syncs).toBe(0);
  });
});

describe("an image's borrowed regions", () => {
  it("go back to its kernels on close, so images one after another fit a small arena", async () => {
    // 4 KiB of scratch, then one image's regions: its bitmap cache (16 slots
    // of 512 bytes), its page of metadata scratch, and the zeros and ones a
    // whole new block written off the thread is padded with (a page and a
    // bitmap: 8 KiB). Nothing more fits.
    const kernels = StorageKernels.standalone(24 * KiB);
    for (let round = 0; round < 3; round++) {
      const { image } = created(16, kernels);
      image.write(round * BLOCK, new Uint8Array(512).fill(7));
      await image.writeAsync((round + 4) * BLOCK, new Uint8Array(BLOCK).fill(8));
      image.read(0, new Uint8Array(512));
      image.close();
    }
    const held = created(16, kernels);
    held.image.write(0, new Uint8Array(512).fill(8));
    await held.image.writeAsync(4 * BLOCK, new Uint8Array(BLOCK).fill(8));
    expect(() => kernels.borrow(1)).toThrow(RangeError);
    held.image.close();
    expect(kernels.borrow(8 * KiB).byteLength).toBe(8 * KiB);
    expect(kernels.borrow(8 * KiB).byteLength).toBe(8 * KiB);
    expect(kernels.borrow(4 * KiB).byteLength).toBe(4 * KiB);
  });
});
