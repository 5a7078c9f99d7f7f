import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { FdFile, MemoryFile } from "../src/storage/block-file.js";
import { checkVhdFile } from "../src/storage/check.js";
import {
  DirectFile,
  directFlag,
  directIoDir,
  directIoRefusal,
} from "../src/storage/direct-file.js";
import { DirectIoUnavailableError } from "../src/storage/errors.js";
import { openImage } from "../src/storage/open.js";
import { VhdImage } from "../src/storage/vhd.js";
import { hvlab } from "./support/cli.js";

// Direct I/O needs a file system that takes O_DIRECT. The temporary
// directory may be one that refuses it (tmpfs before Linux 6.6), so a
// directory under the project, on the disk the checkout is on, is tried too
// before the tests are skipped; the reasons are said when they are.
const projectDir = join(import.meta.dirname, "..", ".direct-io-test");
mkdirSync(projectDir, { recursive: true });
const candidates = [tmpdir(), projectDir];
const refusals = candidates.map((d) => directIoRefusal(d));
const base = candidates.find((_, i) => refusals[i] === undefined);
if (base === undefined) {
  console.warn(
    `storage direct I/O tests skipped: no directory takes O_DIRECT (${refusals.join("; ")})`,
  );
}
const dir = mkdtempSync(join(base ?? tmpdir(), "hvlab-direct-"));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  rmSync(projectDir, { recursive: true, force: true });
});

/** open(2) flags of an open descriptor, from /proc/self/fdinfo (Linux). */
function openFlagsOf(file: FdFile): number {
  const fd = (file as unknown as { handle: number }).handle;
  const text = readFileSync(`/proc/self/fdinfo/${fd}`, "utf8");
  const flags = /flags:\s*([0-7]+)/.exec(text)?.[1];
  if (flags === undefined) throw new Error(`no flags in /proc/self/fdinfo/${fd}`);
  return Number.parseInt(flags, 8);
}

describe.skipIf(base === undefined)("direct I/O (O_DIRECT)", () => {
  it("opens the file with O_DIRECT, and a buffered file without it", () => {
    const path = join(dir, "flags.bin");
    const direct = DirectFile.open(path, "w+");
    const buffered = new FdFile(path, "r");
    try {
      const flag = directFlag() ?? 0;
      expect(flag).toBeGreaterThan(0);
      expect(openFlagsOf(direct) & flag).toBe(flag);
      expect(openFlagsOf(buffered) & flag).toBe(0);
      expect([512, 1024, 2048, 4096, 8192, 16384, 32768, 65536]).toContain(direct.align);
    } finally {
      direct.close();
      buffered.close();
    }
  });

  it("round-trips any bytes at any offset, aligned or not, as a plain file holds them", () => {
    const layout = new MemoryLayout();
    // Aligned buffers in the wasm memory go straight through; others bounce.
    const aligned = layout.allocate("direct test buffer", 1 << 20, 4096).bytes(layout.memory);
    const write = fc.record({
      at: fc.integer({ min: 0, max: 300_000 }),
      length: fc.integer({ min: 1, max: 200_000 }),
      seed: fc.integer({ min: 1, max: 255 }),
      inWasm: fc.boolean(),
      offsetInBuffer: fc.integer({ min: 0, max: 4096 }),
    });
    let run = 0;
    fc.assert(
      fc.property(fc.array(write, { minLength: 1, maxLength: 6 }), (writes) => {
        const path = join(dir, `prop-${run++}.bin`);
        const file = DirectFile.open(path, "w+");
        const model = new MemoryFile("model");
        try {
          for (const w of writes) {
            const bytes = w.inWasm
              ? aligned.subarray(w.offsetInBuffer, w.offsetInBuffer + w.length)
              : new Uint8Array(w.length + w.offsetInBuffer).subarray(w.offsetInBuffer);
            for (let i = 0; i < bytes.length; i++) bytes[i] = (w.seed * (i + 1)) & 0xff;
            file.write(bytes, w.at);
            model.write(bytes, w.at);
          }
          const size = model.size();
          expect(file.size()).toBe(size);
          // Read back through direct I/O at an odd window, and through the page cache whole.
          const back = new Uint8Array(size);
          expect(file.read(back.subarray(1), 1)).toBe(size - 1);
          expect(file.read(back.subarray(0, 1), 0)).toBe(size > 0 ? 1 : 0);
          expect(Buffer.from(back).equals(Buffer.from(model.contents()))).toBe(true);
          expect(readFileSync(path).equals(Buffer.from(model.contents()))).toBe(true);
          // A read past the end gives only what is there.
          expect(file.read(new Uint8Array(8192), size - 3)).toBe(3);
        } finally {
          file.close();
          rmSync(path, { force: true });
        }
      }),
      { numRuns: 40, seed: 11 },
    );
  });

  it("reads and writes a dynamic VHD and a differencing chain that check clean and read the same buffered", () => {
    const size = 24 * 1024 * 1024;
    const parentPath = join(dir, "parent.vhd");
    const childPath = join(dir, "child.vhd");
    VhdImage.create(new FdFile(parentPath, "w+"), { type: "dynamic", size }).close();
    const model = new Uint8Array(size);
    const scribble = (path: string, seed: number) => {
      const image = openImage(path, { writable: true, direct: true });
      let x = seed;
      const next = (n: number) => {
        x = (Math.imul(x, 1103515245) + 12345) >>> 0;
        return x % n;
      };
      for (let w = 0; w < 40; w++) {
        const sectors = 1 + next(700);
        const first = next(size / 512 - sectors);
        const data = new Uint8Array(sectors * 512).map((_, i) => (i * seed + w) & 0xff);
        image.write(first * 512, data);
        model.set(data, first * 512);
      }
      image.flush();
      image.close();
    };
    scribble(parentPath, 3);
    const parent = openImage(parentPath) as VhdImage;
    VhdImage.create(new FdFile(childPath, "w+"), {
      type: "differencing",
      parent: { image: parent, path: parentPath, mtimeMs: statSync(parentPath).mtimeMs },
      path: childPath,
    }).close();
    parent.close();
    scribble(childPath, 7);
    for (const path of [parentPath, childPath]) {
      const report = checkVhdFile(path);
      expect(report.ok, JSON.stringify(report.problems)).toBe(true);
      expect(report.problems).toEqual([]);
    }
    for (const direct of [true, false]) {
      const image = openImage(childPath, { direct });
      const got = new Uint8Array(size);
      image.read(0, got);
      image.close();
      expect(Buffer.from(got).equals(Buffer.from(model)), `direct ${direct}`).toBe(true);
    }
  });

  it("hvlab storage io --direct runs a verified workload and says the page cache is not in play", () => {
    const run = hvlab([
      "storage",
      "io",
      "--direct",
      "--dir",
      dir,
      "--types",
      "dynamic,differencing,raw",
      "--size",
      "8MiB",
      "--bs",
      "4KiB",
      "--runtime",
      "300",
      "--verify",
      "--json",
    ]);
    expect(run.status, run.stderr).toBe(0);
    const report = JSON.parse(run.stdout) as {
      pageCache: boolean;
      spec: { direct: boolean };
      disks: { disk: string; reads: number; writes: number; verifyErrors: number }[];
    };
    expect(report.pageCache).toBe(false);
    expect(report.spec.direct).toBe(true);
    expect(report.disks.map((d) => d.disk)).toEqual(["dynamic", "differencing", "raw"]);
    for (const d of report.disks) {
      expect(d.reads + d.writes, d.disk).toBeGreaterThan(0);
      expect(d.verifyErrors, d.disk).toBe(0);
    }
    const buffered = hvlab([
      "storage",
      "io",
      "--dir",
      dir,
      "--types",
      "raw",
      "--size",
      "1MiB",
      "--runtime",
      "50",
      "--json",
    ]);
    expect(buffered.status, buffered.stderr).toBe(0);
    expect(JSON.parse(buffered.stdout).pageCache).toBe(true);
  });
});

describe("where direct I/O cannot be had", () => {
  it("says so in one line naming every directory tried", () => {
    const missing = join(dir, "no-such-dir");
    let caught: unknown;
    try {
      directIoDir([missing, join(missing, "deeper")]);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(DirectIoUnavailableError);
    const message = (caught as Error).message;
    expect(message).not.toContain("\n");
    expect(message).toContain(missing);
    expect(message).toContain(join(missing, "deeper"));
  });

  it.skipIf(base === undefined)("finds the first directory that takes it", () => {
    expect(directIoDir([join(dir, "no-such-dir"), dir])).toBe(dir);
  });
});
