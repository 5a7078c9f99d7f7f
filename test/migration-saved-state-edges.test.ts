/*
 * Edges of the saved-state file the field-by-field tests leave open: a file
 * of exactly its 64-byte header is read as a header (and refused for the
 * chunks it lacks), device state of exactly 4 MiB restores, and a scratch
 * region too small for a header or a digest's binding record is refused
 * naming which.
 */
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import {
  MAX_SAVED_DEVICE_BYTES,
  readSavedState,
  type SavedStateContext,
  writeSavedState,
} from "../src/migration/quick/saved-state.js";
import { StreamKernel } from "../src/wasm/stream.js";
import { testTempDir } from "./support/temp.js";

const CHUNK = 64 * 1024;

function context(layout: MemoryLayout, scratchBytes = 64): SavedStateContext {
  return {
    memory: layout.memory,
    kernel: StreamKernel.on(layout.memory, layout.allocate("scratch", 64)),
    scratch: layout.allocate("header", scratchBytes),
  };
}

describe("saved-state edges", () => {
  it("a file of exactly the header is read as one, and refused for what it lacks", async () => {
    const layout = new MemoryLayout();
    const path = join(testTempDir("hvlab-saved-state-edges-"), "x.hvls");
    await writeSavedState(path, context(layout), {
      ram: layout.allocate("ram", CHUNK, 4096),
      pageShift: 12,
      device: layout.allocate("device", 10),
      sync: false,
    });
    await writeFile(path, (await readFile(path)).subarray(0, 64));
    const back = new MemoryLayout();
    await expect(
      readSavedState(path, context(back), { maxGuestBytes: CHUNK }, (g, d) => ({
        ram: back.allocate("ram", g, 4096),
        device: back.allocate("device", d),
      })),
    ).rejects.toThrowError(`file is 64 bytes; its header describes ${64 + 24 + CHUNK + 10}`);
  });

  it("device state of exactly 4 MiB restores", async () => {
    const layout = new MemoryLayout();
    const device = layout.allocate("device", MAX_SAVED_DEVICE_BYTES);
    device.bytes(layout.memory).fill(0x5a);
    const path = join(testTempDir("hvlab-saved-state-edges-"), "big.hvls");
    await writeSavedState(path, context(layout), {
      ram: layout.allocate("ram", CHUNK, 4096),
      pageShift: 12,
      device,
      chunkBytes: CHUNK,
      sync: false,
    });
    const back = new MemoryLayout();
    const state = await readSavedState(path, context(back), { maxGuestBytes: CHUNK }, (g, d) => ({
      ram: back.allocate("ram", g, 4096),
      device: back.allocate("device", d),
    }));
    expect(state.header.deviceBytes).toBe(MAX_SAVED_DEVICE_BYTES);
    expect(state.device.bytes(back.memory).every((b) => b === 0x5a)).toBe(true);
  });

  it("a scratch region too small is refused, naming the header or the digest's binding", async () => {
    const path = join(testTempDir("hvlab-saved-state-edges-"), "y.hvls");
    for (const [bytes, what] of [
      [16, "digest binding at [0, 24)"],
      [32, "saved-state header at [0, 64)"],
    ] as const) {
      const layout = new MemoryLayout();
      await expect(
        writeSavedState(path, context(layout, bytes), {
          ram: layout.allocate("ram", CHUNK, 4096),
          pageShift: 12,
          device: layout.allocate("device", 10),
          sync: false,
        }),
      ).rejects.toThrowError(`region 'header': ${what} is past the end (${bytes} bytes)`);
    }
  });
});
