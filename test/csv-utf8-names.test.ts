/*
 * Names are their bytes. The WHATWG UTF-8 decoder drops a leading
 * byte-order mark (EF BB BF) unless told not to, so "\uFEFFa" written would
 * read back as "a": two files of one name on the volume, a redirected write
 * landing in another file, a volume label changed by a reopen. Every name
 * the engine reads from bytes (a file-table entry, the superblock's label,
 * a redirected request's file name, a target LOGIN's initiator name) keeps
 * the mark; invalid bytes are still refused.
 */
import { describe, expect, it } from "vitest";
import { encodeFileEntry, type FileEntry, parseFileEntry } from "../src/csv/file-entry.js";
import { computeLayout } from "../src/csv/layout.js";
import { encodeRedirected, parseRedirected } from "../src/csv/redirected-io.js";
import { encodeSuperblock, parseSuperblock } from "../src/csv/superblock.js";
import { decodeExactUtf8 } from "../src/csv/utf8.js";
import { Volume } from "../src/csv/volume.js";
import { memoryLun } from "./support/csv.js";
import { thrown } from "./support/refusal.js";

const MiB = 2 ** 20;
const BOM = "\uFEFF";
const small = { clusterBytes: 4096, fileSlots: 8, journalSectors: 64 };

describe("decodeExactUtf8", () => {
  it("keeps a leading byte-order mark as U+FEFF, alone or before text", () => {
    expect(decodeExactUtf8(new Uint8Array([0xef, 0xbb, 0xbf]))).toBe(BOM);
    expect(decodeExactUtf8(new Uint8Array([0xef, 0xbb, 0xbf, 0x61]))).toBe(`${BOM}a`);
    expect(decodeExactUtf8(new Uint8Array([0x61, 0xef, 0xbb, 0xbf]))).toBe(`a${BOM}`);
  });

  it("refuses bytes that are not UTF-8", () => {
    expect(thrown(() => decodeExactUtf8(new Uint8Array([0x61, 0xff])))).toBeInstanceOf(TypeError);
    expect(thrown(() => decodeExactUtf8(new Uint8Array([0xef, 0xbb])))).toBeInstanceOf(TypeError);
  });
});

describe("a name that begins with a byte-order mark", () => {
  it("a file-table entry reads back with its mark", () => {
    const entry: FileEntry = {
      name: `${BOM}vm.vhd`,
      size: 1,
      extents: [{ first: 0, count: 1 }],
      createdGeneration: 1,
      writtenEpoch: 0,
    };
    expect(parseFileEntry(encodeFileEntry(entry), 0, 10, 4096)).toStrictEqual(entry);
  });

  it("a file created with the mark is another file than the one without, and stays so on reopen", async () => {
    const { lun } = memoryLun(4 * MiB);
    const v = await Volume.format(lun, small);
    await v.create("a", 4096);
    await v.create(`${BOM}a`, 8192);
    const again = await Volume.open(lun);
    expect(
      again
        .list()
        .map((f) => [f.name, f.size])
        .sort(),
    ).toStrictEqual([
      ["a", 4096],
      [`${BOM}a`, 8192],
    ]);
    expect(again.lookup(`${BOM}a`).size).toBe(8192);
  });

  it("the superblock's label reads back with its mark", () => {
    const layout = computeLayout({ volumeBytes: 16 * MiB, ...small });
    const sb = {
      layout,
      generation: 1,
      epoch: 0,
      coordinator: 0,
      uuid: "00112233445566778899aabbccddeeff",
      label: `${BOM}vms`,
    };
    expect(parseSuperblock(encodeSuperblock(sb), 16 * MiB).label).toBe(`${BOM}vms`);
  });

  it("a redirected request's file name reads back with its mark", () => {
    const data = new Uint8Array([1, 2, 3]);
    const request = parseRedirected(encodeRedirected(`${BOM}f`, 512, 3, data));
    expect(request.name).toBe(`${BOM}f`);
    expect(request.data).toStrictEqual(data);
    expect(parseRedirected(encodeRedirected(`${BOM}`, 0, 8)).name).toBe(BOM);
  });
});
