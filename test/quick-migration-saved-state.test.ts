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
    const back = await restore(original);
    expect(back.header).toMatchObject({
      guestBytes: MiB,
      pageShift: 12,
      chunkBytes: 65536,
      chunkCount: 16,
      deviceBytes: 1000,
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
