/*
 * The saved-state file's format field by field (src/migration/quick/saved-state.ts
 * draws it): the header's fields at their offsets under their check (the low
 * 32 bits of XXH64 of bytes 0 to 59), each chunk's header and its digest
 * bound to the file's id, its index and its length, the device state's bound
 * to index 2^32 - 1, and each refusal naming the field, its offset and the
 * value read, on both sides of its bound. Each test writes its own file.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { Region } from "../src/memory/region.js";
import { fillDeviceState, prefillGuest } from "../src/migration/live/guest-image.js";
import {
  boundDigest,
  CHUNK_HEADER_BYTES,
  CHUNK_MAGIC,
  chunkCount,
  DEFAULT_CHUNK_BYTES,
  DEVICE_STATE_INDEX,
  MAX_CHUNK_BYTES,
  MAX_SAVED_DEVICE_BYTES,
  MIN_CHUNK_BYTES,
  readSavedState,
  SAVED_STATE_HEADER_BYTES,
  SAVED_STATE_MAGIC,
  SAVED_STATE_VERSION,
  type SavedStateContext,
  SavedStateError,
  SavedStateHeaderField,
  savedStateBytes,
  writeSavedState,
} from "../src/migration/quick/saved-state.js";
import { xxh64Oracle } from "../src/oracle/stream.js";
import { StreamKernel } from "../src/wasm/stream.js";
import { testTempDir } from "./support/temp.js";

const KiB = 1024;
const MiB = 1024 ** 2;
const CHUNK = 64 * KiB;

function context(layout: MemoryLayout): SavedStateContext {
  return {
    memory: layout.memory,
    kernel: StreamKernel.on(layout.memory, layout.allocate("scratch", 64)),
    scratch: layout.allocate("header", 64),
  };
}

/** A guest of `guestBytes` and a device blob, written to a file of its own. */
async function saved(guestBytes: number, deviceBytes = 100, chunkBytes = CHUNK) {
  const layout = new MemoryLayout();
  const ctx = context(layout);
  const ram = layout.allocate("ram", guestBytes, 4096);
  prefillGuest(ram.bytes(layout.memory), 4096, 7);
  const dev =
    deviceBytes > 0
      ? layout.allocate("device", deviceBytes)
      : new Region({ name: "device", offset: 0, byteLength: 0 });
  fillDeviceState(dev.bytes(layout.memory), 7);
  const path = join(testTempDir("hvlab-saved-state-format-"), "guest.hvls");
  const size = await writeSavedState(path, ctx, {
    ram,
    pageShift: 12,
    device: dev,
    chunkBytes,
    sync: false,
  });
  return { path, size, layout, ctx, ram, device: dev, bytes: await readFile(path) };
}

/** Rewrites the header check of `bytes` after an edit of the header. */
function reseal(bytes: Buffer): Buffer {
  const check = xxh64Oracle(bytes.subarray(0, 60)) & 0xffff_ffffn;
  bytes.writeUInt32LE(Number(check), 60);
  return bytes;
}

/** What restoring `bytes` refuses with. */
async function refusal(bytes: Uint8Array, maxGuestBytes = 16 * MiB): Promise<string> {
  const path = join(testTempDir("hvlab-saved-state-refused-"), "bad.hvls");
  await writeFile(path, bytes);
  const layout = new MemoryLayout();
  try {
    await readSavedState(path, context(layout), { maxGuestBytes }, (g, d) => ({
      ram: layout.allocate("ram", g, 4096),
      device: layout.allocate("device", Math.max(d, 1)),
    }));
  } catch (error) {
    expect(error).toBeInstanceOf(SavedStateError);
    expect((error as Error).name).toBe("SavedStateError");
    return (error as Error).message;
  }
  throw new Error("restored");
}

describe("the format's constants", () => {
  it("are as drawn", () => {
    expect(Buffer.from(SAVED_STATE_MAGIC).toString("latin1")).toBe("HVLSAVE\0");
    expect(Buffer.from(CHUNK_MAGIC).toString("latin1")).toBe("CHNK");
    expect(SAVED_STATE_VERSION).toBe(2);
    expect(SAVED_STATE_HEADER_BYTES).toBe(64);
    expect(CHUNK_HEADER_BYTES).toBe(24);
    expect(MIN_CHUNK_BYTES).toBe(64 * KiB);
    expect(MAX_CHUNK_BYTES).toBe(64 * MiB);
    expect(DEFAULT_CHUNK_BYTES).toBe(4 * MiB);
    expect(MAX_SAVED_DEVICE_BYTES).toBe(4 * MiB);
    expect(DEVICE_STATE_INDEX).toBe(0xffff_ffff);
    expect(SavedStateHeaderField).toEqual({
      magic: 0,
      version: 8,
      headerBytes: 12,
      guestBytes: 16,
      pageShift: 24,
      chunkBytes: 28,
      chunkCount: 32,
      deviceBytes: 36,
      deviceDigest: 40,
      fileId: 48,
      reserved: 56,
      check: 60,
    });
  });

  it("sizes: the chunks a guest needs, the last one partial, and the file's exact bytes", () => {
    expect(chunkCount(CHUNK, CHUNK)).toBe(1);
    expect(chunkCount(CHUNK + 4096, CHUNK)).toBe(2);
    expect(chunkCount(4096, CHUNK)).toBe(1);
    expect(savedStateBytes(CHUNK + 4096, CHUNK, 100)).toBe(64 + 2 * 24 + CHUNK + 4096 + 100);
  });
});

describe("what a file holds", () => {
  it("the header's fields at their offsets, under the low 32 bits of XXH64 of bytes 0 to 59", async () => {
    const { bytes, size } = await saved(CHUNK + 8192, 100);
    expect(size).toBe(bytes.length);
    expect(size).toBe(64 + 2 * 24 + CHUNK + 8192 + 100);
    expect(bytes.subarray(0, 8).toString("latin1")).toBe("HVLSAVE\0");
    expect(bytes.readUInt32LE(8)).toBe(2);
    expect(bytes.readUInt32LE(12)).toBe(64);
    expect(bytes.readBigUInt64LE(16)).toBe(BigInt(CHUNK + 8192));
    expect(bytes.readUInt32LE(24)).toBe(12);
    expect(bytes.readUInt32LE(28)).toBe(CHUNK);
    expect(bytes.readUInt32LE(32)).toBe(2);
    expect(bytes.readUInt32LE(36)).toBe(100);
    expect(bytes.readUInt32LE(56)).toBe(0);
    expect(bytes.readUInt32LE(60)).toBe(Number(xxh64Oracle(bytes.subarray(0, 60)) & 0xffff_ffffn));
  });

  it("each chunk's header: CHNK, its index, its length (the last one partial), zero, its bound digest", async () => {
    const { bytes, ram, layout } = await saved(CHUNK + 8192, 100);
    const fileId = bytes.readBigUInt64LE(48);
    const guest = ram.bytes(layout.memory);
    const bound = (index: number, data: Uint8Array) => {
      const record = Buffer.alloc(24);
      record.writeBigUInt64LE(fileId, 0);
      record.writeUInt32LE(index, 8);
      record.writeUInt32LE(data.length, 12);
      record.writeBigUInt64LE(xxh64Oracle(data), 16);
      return xxh64Oracle(record);
    };
    const second = 64 + 24 + CHUNK;
    for (const [at, index, length] of [
      [64, 0, CHUNK],
      [second, 1, 8192],
    ] as const) {
      expect(bytes.subarray(at, at + 4).toString("latin1")).toBe("CHNK");
      expect(bytes.readUInt32LE(at + 4)).toBe(index);
      expect(bytes.readUInt32LE(at + 8)).toBe(length);
      expect(bytes.readUInt32LE(at + 12)).toBe(0);
      const data = guest.subarray(index * CHUNK, index * CHUNK + length);
      expect(bytes.subarray(at + 24, at + 24 + length).equals(Buffer.from(data))).toBe(true);
      expect(bytes.readBigUInt64LE(at + 16)).toBe(bound(index, data));
    }
    // The device state last, its digest in the header, bound to index 2^32 - 1.
    const device = bytes.subarray(bytes.length - 100);
    expect(bytes.readBigUInt64LE(40)).toBe(bound(0xffff_ffff, device));
  });

  it("boundDigest is XXH64 of the file id, the index, the length and the bytes' XXH64", () => {
    const layout = new MemoryLayout();
    const ctx = context(layout);
    const data = layout.allocate("data", 300);
    const bytes = data.bytes(layout.memory);
    for (let i = 0; i < bytes.length; i++) bytes[i] = i * 13;
    const record = Buffer.alloc(24);
    record.writeBigUInt64LE(0x0102030405060708n, 0);
    record.writeUInt32LE(9, 8);
    record.writeUInt32LE(200, 12);
    record.writeBigUInt64LE(xxh64Oracle(bytes.subarray(50, 250)), 16);
    expect(boundDigest(ctx, 0x0102030405060708n, 9, data, 50, 200)).toBe(xxh64Oracle(record));
  });

  it("round-trips a guest whose last chunk is partial, and no device state", async () => {
    const { path, ram, layout } = await saved(CHUNK + 4096, 0);
    const back = new MemoryLayout();
    const state = await readSavedState(
      path,
      context(back),
      { maxGuestBytes: CHUNK + 4096 },
      (g, d) => ({
        ram: back.allocate("ram", g, 4096),
        device: new Region({ name: "device", offset: 0, byteLength: d }),
      }),
    );
    expect(state.header).toMatchObject({
      guestBytes: CHUNK + 4096,
      pageShift: 12,
      chunkBytes: CHUNK,
      chunkCount: 2,
      deviceBytes: 0,
    });
    expect(
      Buffer.from(state.ram.bytes(back.memory)).equals(Buffer.from(ram.bytes(layout.memory))),
    ).toBe(true);
  });
});

describe("what a writer refuses", () => {
  it("chunks that are not a power of two from 64 KiB to 64 MiB", async () => {
    const layout = new MemoryLayout();
    const ctx = context(layout);
    const ram = layout.allocate("ram", CHUNK, 4096);
    const device = layout.allocate("device", 8);
    const path = join(testTempDir("hvlab-saved-state-chunks-"), "x.hvls");
    for (const chunkBytes of [32 * KiB, 96 * KiB, 128 * MiB, 64 * KiB + 0.5]) {
      await expect(
        writeSavedState(path, ctx, { ram, pageShift: 12, device, chunkBytes, sync: false }),
      ).rejects.toThrowError(
        new SavedStateError(
          `chunk size must be a power of two from 64.0 KiB to 64.0 MiB and a whole number of pages, not ${chunkBytes}`,
        ),
      );
    }
    // A chunk of 64 KiB is not a whole number of 128 KiB pages.
    await expect(
      writeSavedState(path, ctx, { ram, pageShift: 17, device, chunkBytes: CHUNK, sync: false }),
    ).rejects.toThrowError(/whole number of pages, not 65536/);
    for (const chunkBytes of [64 * KiB, 64 * MiB]) {
      await expect(
        writeSavedState(path, ctx, { ram, pageShift: 12, device, chunkBytes, sync: false }),
      ).resolves.toBe(64 + 24 + CHUNK + 8);
    }
  });

  it("device state past 4 MiB", async () => {
    const layout = new MemoryLayout();
    const ctx = context(layout);
    const ram = layout.allocate("ram", CHUNK, 4096);
    const path = join(testTempDir("hvlab-saved-state-device-"), "x.hvls");
    const over = layout.allocate("over", MAX_SAVED_DEVICE_BYTES + 1);
    await expect(
      writeSavedState(path, ctx, { ram, pageShift: 12, device: over, sync: false }),
    ).rejects.toThrowError(new SavedStateError("device state of 4194305 bytes is over 4194304"));
    const most = layout.allocate("most", MAX_SAVED_DEVICE_BYTES);
    await expect(
      writeSavedState(path, ctx, {
        ram,
        pageShift: 12,
        device: most,
        chunkBytes: CHUNK,
        sync: false,
      }),
    ).resolves.toBe(64 + 24 + CHUNK + MAX_SAVED_DEVICE_BYTES);
  });
});

describe("what a reader refuses, naming the field and its offset", () => {
  it("a file shorter than the header", async () => {
    const { bytes } = await saved(CHUNK);
    expect(await refusal(bytes.subarray(0, 63))).toBe(
      "file of 63 bytes is shorter than the 64-byte header",
    );
  });

  it("any byte of the magic", async () => {
    const { bytes } = await saved(CHUNK);
    for (const at of [0, 7]) {
      const bad = Buffer.from(bytes);
      bad[at] = (bad[at] ?? 0) ^ 1;
      expect(await refusal(bad)).toBe("not an hvlab saved-state file (bad magic at offset 0)");
    }
  });

  it("versions other than 2, version 1 with its own words", async () => {
    const { bytes } = await saved(CHUNK);
    const v3 = reseal(Buffer.from(bytes));
    v3.writeUInt32LE(3, 8);
    expect(await refusal(reseal(v3))).toBe(
      "saved-state version 3 (offset 8); this hvlab reads version 2",
    );
    const v1 = Buffer.from(bytes);
    v1.writeUInt32LE(1, 8);
    expect(await refusal(reseal(v1))).toBe(
      "saved-state version 1 (offset 8) was written by an older hvlab whose chunk digests are not bound to their place; this hvlab reads version 2 only: save the guest again",
    );
  });

  it("a header whose check fails", async () => {
    const { bytes } = await saved(CHUNK);
    for (const at of [16, 59, 60, 63]) {
      const bad = Buffer.from(bytes);
      bad[at] = (bad[at] ?? 0) ^ 0x10;
      expect(await refusal(bad)).toBe(
        "header check failed: the header (bytes 0 to 59) is corrupted",
      );
    }
  });

  it("a header size other than 64, and each reserved byte", async () => {
    const { bytes } = await saved(CHUNK);
    const size = Buffer.from(bytes);
    size.writeUInt32LE(65, 12);
    expect(await refusal(reseal(size))).toBe("header size field is not 64 (offset 12)");
    for (const at of [56, 57, 58, 59]) {
      const bad = Buffer.from(bytes);
      bad[at] = 1;
      expect(await refusal(reseal(bad))).toBe(`reserved byte at offset ${at} is not zero`);
    }
  });

  it("a page shift other than 12", async () => {
    const { bytes } = await saved(CHUNK);
    const bad = Buffer.from(bytes);
    bad.writeUInt32LE(13, 24);
    expect(await refusal(reseal(bad))).toBe("page shift 13 at offset 24 (only 12: 4 KiB pages)");
  });

  it("a guest of 0 bytes or over the reader's limit, taken at exactly the limit", async () => {
    const { bytes, path } = await saved(CHUNK);
    expect(await refusal(bytes, CHUNK - 1)).toBe(
      "guest of 65536 bytes (offset 16) is not from 1 byte to this reader's limit of 64.0 KiB",
    );
    const zero = Buffer.from(bytes);
    zero.writeBigUInt64LE(0n, 16);
    expect(await refusal(reseal(zero))).toBe(
      "guest of 0 bytes (offset 16) is not from 1 byte to this reader's limit of 16.0 MiB",
    );
    const layout = new MemoryLayout();
    const state = await readSavedState(path, context(layout), { maxGuestBytes: CHUNK }, (g, d) => ({
      ram: layout.allocate("ram", g, 4096),
      device: layout.allocate("device", d),
    }));
    expect(state.header.guestBytes).toBe(CHUNK);
  });

  it("a guest that is not a whole number of pages", async () => {
    const { bytes } = await saved(CHUNK);
    const bad = Buffer.from(bytes);
    bad.writeBigUInt64LE(BigInt(CHUNK - 1), 16);
    expect(await refusal(reseal(bad))).toBe("guest of 65535 bytes is not a whole number of pages");
  });

  it("a chunk size out of its bounds, and a chunk count that does not fit the guest", async () => {
    const { bytes } = await saved(CHUNK);
    const chunk = Buffer.from(bytes);
    chunk.writeUInt32LE(32 * KiB, 28);
    expect(await refusal(reseal(chunk))).toMatch(
      /^chunk size must be a power of two .* not 32768$/,
    );
    for (const count of [0, 2]) {
      const bad = Buffer.from(bytes);
      bad.writeUInt32LE(count, 32);
      expect(await refusal(reseal(bad))).toBe(
        `chunk count ${count} (offset 32) does not fit a guest of 65536 bytes`,
      );
    }
  });

  it("device state past 4 MiB", async () => {
    const { bytes } = await saved(CHUNK);
    const bad = Buffer.from(bytes);
    bad.writeUInt32LE(MAX_SAVED_DEVICE_BYTES + 1, 36);
    expect(await refusal(reseal(bad))).toBe(
      "device state of 4194305 bytes (offset 36) is over 4194304",
    );
  });

  it("a file a byte shorter or longer than its header describes", async () => {
    const { bytes } = await saved(CHUNK);
    const expected = 64 + 24 + CHUNK + 100;
    expect(await refusal(bytes.subarray(0, expected - 1))).toBe(
      `file is ${expected - 1} bytes; its header describes ${expected}`,
    );
    expect(await refusal(Buffer.concat([bytes, Buffer.alloc(1)]))).toBe(
      `file is ${expected + 1} bytes; its header describes ${expected}`,
    );
  });

  it("a chunk's magic, index, length and reserved word, with the chunk's offset", async () => {
    const { bytes } = await saved(2 * CHUNK);
    const second = 64 + 24 + CHUNK;
    const magic = Buffer.from(bytes);
    magic[second + 3] = 0;
    expect(await refusal(magic)).toBe(`chunk 1: bad magic at offset ${second}`);
    const index = Buffer.from(bytes);
    index.writeUInt32LE(0, second + 4);
    expect(await refusal(index)).toBe(
      `chunk 1 at offset ${second}: header says chunk 0 of 65536 bytes, expected chunk 1 of 65536`,
    );
    const length = Buffer.from(bytes);
    length.writeUInt32LE(4096, second + 8);
    expect(await refusal(length)).toBe(
      `chunk 1 at offset ${second}: header says chunk 1 of 4096 bytes, expected chunk 1 of 65536`,
    );
    const reserved = Buffer.from(bytes);
    reserved[second + 15] = 1;
    expect(await refusal(reserved)).toBe("chunk 1: reserved field is not zero");
  });

  it("a chunk's bytes or digest changed, at the offset of its bytes; the device state's", async () => {
    const { bytes } = await saved(2 * CHUNK);
    const second = 64 + 24 + CHUNK;
    const data = Buffer.from(bytes);
    data[second + 24 + CHUNK - 1] = (data[second + 24 + CHUNK - 1] ?? 0) ^ 1;
    expect(await refusal(data)).toBe(
      `chunk 1 at offset ${second + 24}: digest mismatch: its 65536 bytes are corrupted, or belong to another chunk or another saved-state file`,
    );
    const digest = Buffer.from(bytes);
    digest[second + 16] = (digest[second + 16] ?? 0) ^ 1;
    expect(await refusal(digest)).toMatch(/^chunk 1 at offset \d+: digest mismatch/);
    const device = Buffer.from(bytes);
    device[device.length - 1] = (device[device.length - 1] ?? 0) ^ 1;
    expect(await refusal(device)).toBe(
      `device state at offset ${64 + 2 * (24 + CHUNK)}: digest mismatch: corrupted, or from another saved-state file`,
    );
  });

  it("restored regions too small for what the header describes, before reading a chunk", async () => {
    const { path } = await saved(CHUNK, 100);
    const layout = new MemoryLayout();
    await expect(
      readSavedState(path, context(layout), { maxGuestBytes: MiB }, () => ({
        ram: layout.allocate("ram", CHUNK - 4096, 4096),
        device: layout.allocate("device", 100),
      })),
    ).rejects.toThrowError(/region 'ram': restored RAM/);
    const again = new MemoryLayout();
    await expect(
      readSavedState(path, context(again), { maxGuestBytes: MiB }, () => ({
        ram: again.allocate("ram2", CHUNK, 4096),
        device: again.allocate("device2", 99),
      })),
    ).rejects.toThrowError(/region 'device2': restored device state/);
  });
});
