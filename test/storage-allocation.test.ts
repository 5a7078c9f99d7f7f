import { describe, expect, it } from "vitest";
import { MemoryFile } from "../src/storage/block-file.js";
import { checkVhd } from "../src/storage/check.js";
import { FOOTER_BYTES } from "../src/storage/format.js";
import { blockStart, VhdImage } from "../src/storage/vhd.js";

const MiB = 1024 * 1024;

/** A memory file that counts the calls that would each be a system call on a real one. */
class CountingFile extends MemoryFile {
  calls = { read: 0, write: 0, writev: 0, truncate: 0, sync: 0 };
  override read(into: Uint8Array, position: number): number {
    this.calls.read++;
    return super.read(into, position);
  }
  override write(from: Uint8Array, position: number): void {
    this.calls.write++;
    super.write(from, position);
  }
  override writev(parts: readonly Uint8Array[], position: number): void {
    this.calls.writev++;
    let at = position;
    for (const part of parts) {
      super.write(part, at);
      at += part.length;
    }
  }
  override truncate(length: number): void {
    this.calls.truncate++;
    super.truncate(length);
  }
  override sync(): void {
    this.calls.sync++;
  }
  reset(): void {
    this.calls = { read: 0, write: 0, writev: 0, truncate: 0, sync: 0 };
  }
}

/** The bytes of a file as a process killed now would leave them. */
function snapshot(file: MemoryFile): MemoryFile {
  return new MemoryFile(`${file.name} (crashed)`, file.contents().slice());
}

function pattern(n: number, seed: number): Uint8Array {
  return new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff);
}

describe("block allocation", () => {
  it("places every block's data on a 4 KiB boundary of the file", () => {
    const file = new MemoryFile("aligned.vhd");
    const image = VhdImage.create(file, { type: "dynamic", size: 64 * MiB });
    for (const at of [0, 7 * MiB, 20 * MiB + 512, 63 * MiB]) image.write(at, pattern(4096, 1));
    const bat = [...image.blockTable].filter((e) => e !== 0xffffffff);
    expect(bat.length).toBe(4);
    for (const e of bat) expect((e * 512 + image.bitmapBytes) % 4096).toBe(0);
    image.close();
    // Blocks smaller than a page are not padded: the next block follows the last.
    expect(blockStart(5120, 512, 2048)).toBe(5120);
    expect(blockStart(5120, 512, 4096)).toBe(7680);
    expect(blockStart(7680, 512, 4096)).toBe(7680);
  });

  it("allocates a 2 MiB block of sequential 1 MiB writes in at most three writes, and writes the footer once", () => {
    const file = new CountingFile("counted.vhd");
    const image = VhdImage.create(file, { type: "dynamic", size: 256 * MiB });
    file.reset();
    const data = pattern(MiB, 3);
    for (let at = 0; at < 256 * MiB; at += MiB) image.write(at, data);
    const blocks = 128;
    // Per block: bitmap + first half gathered, the BAT sector, the second half.
    expect(file.calls.writev).toBe(blocks);
    expect(file.calls.write).toBe(2 * blocks);
    // The file is extended 64 MiB ahead, not once per block.
    expect(file.calls.truncate).toBeLessThanOrEqual(Math.ceil((256 * MiB) / (64 * MiB)) + 1);
    expect(file.calls.sync).toBe(0);
    expect(file.calls.read).toBe(0);
    file.reset();
    image.flush();
    // The footer, the hole past it cut off, then fdatasync.
    expect(file.calls).toEqual({ read: 0, write: 1, writev: 0, truncate: 1, sync: 1 });
    image.close();
    expect(file.calls.write).toBe(1);
    const report = checkVhd(file);
    expect(report.problems).toEqual([]);
  });

  it("between a flush and the next, a crash leaves a disk that checks, reads and repairs", () => {
    const file = new MemoryFile("crash.vhd");
    const image = VhdImage.create(file, { type: "dynamic", size: 32 * MiB });
    image.write(0, pattern(MiB, 5));
    image.flush();
    image.write(9 * MiB, pattern(2 * MiB, 6));
    image.write(20 * MiB + 4096, pattern(8192, 7));
    const crashed = snapshot(file);
    image.close();
    // No footer at the end, a hole past the last block: the copy at offset 0 stands in.
    const report = checkVhd(crashed);
    expect(report.ok, JSON.stringify(report.problems)).toBe(true);
    expect(report.problems.some((p) => p.message.includes("copy at offset 0"))).toBe(true);
    const reader = VhdImage.open(crashed);
    const got = new Uint8Array(2 * MiB);
    reader.read(9 * MiB, got);
    expect(Buffer.from(got).equals(Buffer.from(pattern(2 * MiB, 6)))).toBe(true);
    const small = new Uint8Array(8192);
    reader.read(20 * MiB + 4096, small);
    expect(Buffer.from(small).equals(Buffer.from(pattern(8192, 7)))).toBe(true);
    const lastBlockEnd = reader.endOfData;
    reader.close();
    // A writable open writes the footer after the last block and cuts off the hole.
    VhdImage.open(crashed, { writable: true }).close();
    expect(crashed.size()).toBe(lastBlockEnd + FOOTER_BYTES);
    expect(checkVhd(crashed).problems).toEqual([]);
  });

  it("zeroes a footer that the padding before an aligned block covers", () => {
    // A disk laid out without padding (as qemu-img does): its footer right after the BAT.
    const file = new MemoryFile("unpadded.vhd");
    const image = VhdImage.create(file, { type: "dynamic", size: 8 * MiB, blockSize: 4096 });
    const footerAt = image.endOfData;
    image.close();
    const bytes = file.contents();
    const tail = bytes.slice(footerAt, footerAt + FOOTER_BYTES);
    // Move the footer to an offset whose block would need padding (the BAT ends on a sector).
    const moved = new MemoryFile("moved.vhd", new Uint8Array(footerAt + 1024 + FOOTER_BYTES));
    moved.write(bytes.subarray(0, footerAt), 0);
    moved.write(tail, footerAt + 1024);
    const disk = VhdImage.open(moved, { writable: true });
    const start = disk.endOfData;
    expect(blockStart(start, 512, 4096)).toBeGreaterThan(start);
    disk.write(0, pattern(4096, 9));
    disk.close();
    const out = Buffer.from(moved.contents());
    // "conectix" only at offset 0 and in the footer at the end.
    const found: number[] = [];
    for (let at = out.indexOf("conectix"); at >= 0; at = out.indexOf("conectix", at + 1))
      found.push(at);
    expect(found).toEqual([0, out.length - FOOTER_BYTES]);
    expect(checkVhd(moved).problems).toEqual([]);
  });
});
