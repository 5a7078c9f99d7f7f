import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { Region } from "../src/memory/region.js";
import { fillDeviceState, prefillGuest } from "../src/migration/live/guest-image.js";
import { runQuickMigration } from "../src/migration/quick/quick-migration.js";
import {
  CHUNK_HEADER_BYTES,
  readSavedState,
  SAVED_STATE_HEADER_BYTES,
  type SavedStateContext,
  SavedStateError,
  savedStateBytes,
  writeSavedState,
} from "../src/migration/quick/saved-state.js";
import { StreamKernel } from "../src/wasm/stream.js";

const MiB = 1024 ** 2;
const BIN = new URL("../bin/hvlab.js", import.meta.url).pathname;
const dir = await mkdtemp(join(tmpdir(), "hvlab-quick-test-"));
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function context(layout: MemoryLayout): SavedStateContext {
  return {
    memory: layout.memory,
    kernel: StreamKernel.on(layout.memory, layout.allocate("scratch", 64)),
    scratch: layout.allocate("header", 64),
  };
}

// A 1 MiB guest in 64 KiB chunks and a 1,000-byte device blob: small enough to fuzz.
const source = new MemoryLayout();
const sourceContext = context(source);
const ram = source.allocate("ram", MiB, 4096);
prefillGuest(ram.bytes(source.memory), 4096, 3);
const device = source.allocate("device", 1000);
fillDeviceState(device.bytes(source.memory), 3);
const original = join(dir, "original.hvls");
const size = await writeSavedState(original, sourceContext, {
  ram,
  pageShift: 12,
  device,
  chunkBytes: 64 * 1024,
});
const pristine = await readFile(original);

/** Reads a file into a fresh destination; returns the RAM and device bytes. */
async function restore(path: string, maxGuestBytes = 4 * MiB) {
  const destination = new MemoryLayout();
  const state = await readSavedState(path, context(destination), { maxGuestBytes }, (g, d) => ({
    ram: destination.allocate("ram", g, 4096),
    device:
      d > 0
        ? destination.allocate("device", d)
        : new Region({ name: "device", offset: 0, byteLength: 0 }),
  }));
  return {
    header: state.header,
    ram: state.ram.bytes(destination.memory).slice(),
    device: state.device.bytes(destination.memory).slice(),
  };
}

describe("saved-state file", () => {
  it("round-trips RAM and device state byte for byte", async () => {
    expect(size).toBe(savedStateBytes(MiB, 64 * 1024, 1000));
    expect(size).toBe(SAVED_STATE_HEADER_BYTES + 16 * CHUNK_HEADER_BYTES + MiB + 1000);
    expect((await stat(original)).size).toBe(size);
    expect([...pristine.subarray(0, 8)]).toEqual([...Buffer.from("HVLSAVE\0")]);
    expect(pristine.readUInt32LE(8)).toBe(2);
    const back = await restore(original);
    expect(back.header).toMatchObject({
      guestBytes: MiB,
      pageShift: 12,
      chunkBytes: 65536,
      chunkCount: 16,
      deviceBytes: 1000,
      fileId: pristine.readBigUInt64LE(48),
    });
    expect(Buffer.from(back.ram).equals(Buffer.from(ram.bytes(source.memory)))).toBe(true);
    expect(Buffer.from(back.device).equals(Buffer.from(device.bytes(source.memory)))).toBe(true);
  });

  it("refuses a guest over the reader's limit before allocating", async () => {
    let allocated = false;
    const destination = new MemoryLayout();
    await expect(
      readSavedState(original, context(destination), { maxGuestBytes: MiB / 2 }, () => {
        allocated = true;
        throw new Error("must not allocate");
      }),
    ).rejects.toThrowError(/is not from 1 byte to this reader's limit of 512\.0 KiB/);
    expect(allocated).toBe(false);
  });

  it("refuses what is not a saved-state file", async () => {
    const path = join(dir, "text.hvls");
    await writeFile(path, "x".repeat(100));
    await expect(restore(path)).rejects.toThrowError(
      "not an hvlab saved-state file (bad magic at offset 0)",
    );
    await writeFile(path, "short");
    await expect(restore(path)).rejects.toThrowError(/shorter than the 64-byte header/);
  });

  it("refuses two chunks swapped with their digests: a digest is bound to its index", async () => {
    // Chunk i's header starts at 64 + i * (24 + 64 KiB); its digest at +16, its bytes at +24.
    const chunk = (i: number) => SAVED_STATE_HEADER_BYTES + i * (CHUNK_HEADER_BYTES + 64 * 1024);
    const bytes = Buffer.from(pristine);
    const a = Buffer.from(bytes.subarray(chunk(2) + 16, chunk(3)));
    const b = Buffer.from(bytes.subarray(chunk(5) + 16, chunk(6)));
    expect(a.equals(b)).toBe(false);
    a.copy(bytes, chunk(5) + 16);
    b.copy(bytes, chunk(2) + 16);
    const path = join(dir, "swapped.hvls");
    await writeFile(path, bytes);
    await expect(restore(path)).rejects.toThrowError(
      /^chunk 2 at offset \d+: digest mismatch: .* belong to another chunk or another saved-state file$/,
    );
  });

  it("refuses a chunk spliced in from another file of the same guest: a digest is bound to its file", async () => {
    // The same guest saved twice: identical bytes, each file with its own random id.
    const second = join(dir, "second.hvls");
    await writeSavedState(second, sourceContext, {
      ram,
      pageShift: 12,
      device,
      chunkBytes: 64 * 1024,
    });
    const other = await readFile(second);
    expect(other.subarray(48, 56).equals(pristine.subarray(48, 56))).toBe(false);
    const chunk = (i: number) => SAVED_STATE_HEADER_BYTES + i * (CHUNK_HEADER_BYTES + 64 * 1024);
    const spliced = Buffer.from(pristine);
    other.copy(spliced, chunk(7), chunk(7), chunk(8));
    const path = join(dir, "spliced.hvls");
    await writeFile(path, spliced);
    await expect(restore(path)).rejects.toThrowError(/^chunk 7 at offset \d+: digest mismatch/);
    // The other file's header over this file's chunks: every chunk and the device state disagree.
    const mixed = Buffer.from(pristine);
    other.copy(mixed, 0, 0, SAVED_STATE_HEADER_BYTES);
    await writeFile(path, mixed);
    await expect(restore(path)).rejects.toThrowError(/^chunk 0 at offset 88: digest mismatch/);
    // The device state of another guest's file.
    const third = new MemoryLayout();
    const thirdDevice = third.allocate("device", 1000);
    fillDeviceState(thirdDevice.bytes(third.memory), 4);
    const thirdRam = third.allocate("ram", MiB, 4096);
    const thirdPath = join(dir, "third.hvls");
    await writeSavedState(thirdPath, context(third), {
      ram: thirdRam,
      pageShift: 12,
      device: thirdDevice,
      chunkBytes: 64 * 1024,
    });
    const foreignDevice = Buffer.from(pristine);
    (await readFile(thirdPath)).copy(foreignDevice, size - 1000, size - 1000);
    await writeFile(path, foreignDevice);
    await expect(restore(path)).rejects.toThrowError(
      /^device state at offset \d+: digest mismatch: corrupted, or from another saved-state file$/,
    );
    // Each file on its own restores.
    expect((await restore(second)).header.guestBytes).toBe(MiB);
  });

  it("refuses a version 1 file, saying it must be saved again", async () => {
    const old = Buffer.from(pristine);
    old.writeUInt32LE(1, 8);
    const path = join(dir, "version1.hvls");
    await writeFile(path, old);
    await expect(restore(path)).rejects.toThrowError(
      /^saved-state version 1 \(offset 8\) was written by an older hvlab .* this hvlab reads version 2 only: save the guest again$/,
    );
  });

  it("fuzz: any corrupted byte, truncation or extension is refused with a SavedStateError", async () => {
    const path = join(dir, "fuzzed.hvls");
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.oneof(fc.constant(0), fc.integer({ min: -100, max: 100 })),
        async (edits, resize) => {
          const bytes = Buffer.from(pristine);
          for (const [where, mask] of edits) {
            const at = where % bytes.length;
            bytes[at] = (bytes[at] ?? 0) ^ mask;
          }
          const sized =
            resize < 0
              ? bytes.subarray(0, bytes.length + resize)
              : Buffer.concat([bytes, Buffer.alloc(resize)]);
          await writeFile(path, sized);
          const error = await restore(path).then(
            () => undefined,
            (caught: unknown) => caught,
          );
          // Every byte is covered by a check: a damaged file never restores.
          expect(error).toBeInstanceOf(SavedStateError);
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe("quick migration", () => {
  it("saves, fails the storage over, restores and verifies; its downtime is the whole", async () => {
    const file = join(dir, "quick.hvls");
    const result = await runQuickMigration({
      guestBytes: 8 * MiB,
      vcpus: 2,
      workload: { kind: "uniform" },
      seed: 5,
      failoverMs: 150,
      file,
      chunkBytes: 1024 * 1024,
    });
    expect(result.summary).toMatchObject({
      status: "completed",
      mode: "quick",
      verified: true,
      normal: 2048,
    });
    expect(result.summary.downtime).toBe(result.summary["total-time"]);
    expect(result.summary.downtime).toBeGreaterThanOrEqual(150);
    expect(result.failoverMs).toBe(150);
    expect(result.rounds.map((r) => r.phase)).toEqual(["stop-and-copy", "resume"]);
    // The file was kept, because it was named.
    expect((await stat(file)).size).toBe(result.fileBytes);
    expect(result.fileBytes).toBe(savedStateBytes(8 * MiB, 1024 * 1024, 64 * 1024));
  });

  it("runs through the pre-copy driver: no pre-copy round, the file in the stop-and-copy, the failover in its own round", async () => {
    const result = await runQuickMigration({
      guestBytes: 2 * MiB,
      vcpus: 1,
      workload: { kind: "uniform" },
      seed: 9,
      failoverMs: 40,
      chunkBytes: 256 * 1024,
    });
    const [copy, resume] = result.rounds;
    expect(result.rounds).toHaveLength(2);
    expect(copy).toMatchObject({ phase: "stop-and-copy", "pages-sent": 512 });
    expect(copy?.["bytes-sent"]).toBe(result.fileBytes);
    expect(resume?.phase).toBe("resume");
    // The rounds tile the downtime: the resume round starts where the copy ended.
    expect(resume?.["start-ms"]).toBeCloseTo(
      (copy?.["start-ms"] ?? 0) + (copy?.["duration-ms"] ?? 0),
      6,
    );
    expect((resume?.["duration-ms"] ?? 0) + (copy?.["duration-ms"] ?? 0)).toBeCloseTo(
      result.summary.downtime,
      6,
    );
    expect(resume?.["duration-ms"]).toBeGreaterThanOrEqual(40);
    expect(result.summary).toMatchObject({
      "dirty-sync-count": 0,
      "precopy-bytes": 0,
      "downtime-bytes": result.fileBytes,
      transferred: result.fileBytes,
      "downtime-over-limit": false,
    });
  });

  it("hvlab quick-migrate --json prints exactly the migration records", async () => {
    const child = spawn(
      process.execPath,
      [BIN, "quick-migrate", "--guest", "4MiB", "--failover", "0", "--json"],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stdout = "";
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString();
    });
    const [code] = (await once(child, "exit")) as [number];
    expect(code).toBe(0);
    const result = JSON.parse(stdout) as {
      rounds: unknown[];
      summary: { status: string; hvlab: { mode: string } };
    };
    expect(Object.keys(result).sort()).toEqual(["rounds", "summary"]);
    expect(result.summary).toMatchObject({ status: "completed", hvlab: { mode: "quick" } });
  });
});
