import { mkdtempSync, rmSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CODE_START,
  GuestSpecError,
  guestImage,
  HPET_HZ,
  hpetCostPerWrite,
  LOAD_ADDRESS,
  MULTIBOOT_HEADER,
  MULTIBOOT_MAGIC,
  PARAM_BLOCK,
  PARAM_MAGIC,
  resolveGuestSpec,
  STATUS_PAGE,
  WORKING_SET_BASE,
} from "../src/qemu/guest-image.js";
import { measureWriteRate, waitUntilWriting } from "../src/qemu/guest-rate.js";
import { readGuestStatus } from "../src/qemu/guest-status.js";
import { QemuProcess } from "../src/qemu/qemu-process.js";
import { hvlab, requireTool } from "./support/cli.js";

const MiB = 2 ** 20;
const spec = { ramBytes: 128 * MiB, pattern: "uniform", writesPerSecond: 5000, seed: 7 } as const;

describe("the write guest's image", () => {
  const image = guestImage(spec);
  const view = new DataView(image.buffer);

  it("is an ELF32 i386 executable whose one PT_LOAD puts the file at 1 MiB", () => {
    expect([...image.subarray(0, 4)]).toEqual([0x7f, 0x45, 0x4c, 0x46]);
    expect(image[4]).toBe(1); // ELFCLASS32: QEMU's multiboot loader refuses ELF64
    expect(view.getUint16(18, true)).toBe(3); // EM_386
    expect(view.getUint32(24, true)).toBe(CODE_START);
    expect(view.getUint16(44, true)).toBe(1);
    expect(view.getUint32(52, true)).toBe(1); // PT_LOAD
    expect(view.getUint32(64, true)).toBe(LOAD_ADDRESS);
    expect(view.getUint32(68, true)).toBe(image.length);
    // The status page and the stack are bss: memsz covers them.
    expect(view.getUint32(72, true)).toBeGreaterThan(STATUS_PAGE - LOAD_ADDRESS);
  });

  it("holds a multiboot header in its first 8 KiB whose three words sum to zero", () => {
    const at = MULTIBOOT_HEADER - LOAD_ADDRESS;
    expect(at % 4).toBe(0);
    expect(at + 12).toBeLessThanOrEqual(8192);
    const sum =
      view.getUint32(at, true) + view.getUint32(at + 4, true) + view.getUint32(at + 8, true);
    expect(view.getUint32(at, true)).toBe(MULTIBOOT_MAGIC);
    expect(sum % 2 ** 32).toBe(0);
    // Bit 16 clear: the loader reads the ELF headers, not the a.out fields.
    expect(view.getUint32(at + 4, true) & 0x1_0000).toBe(0);
  });

  it("carries the parameters the guest paces and picks pages with", () => {
    const p = PARAM_BLOCK - LOAD_ADDRESS;
    expect(view.getUint32(p, true)).toBe(PARAM_MAGIC);
    expect(view.getUint32(p + 12, true)).toBe(WORKING_SET_BASE);
    // 128 MiB - 16 MiB below - 1 MiB at the top = 111 MiB of 4 KiB pages.
    expect(view.getUint32(p + 16, true)).toBe((111 * MiB) / 4096);
    expect(view.getUint32(p + 32, true)).toBe(HPET_HZ / 5000);
    expect(hpetCostPerWrite(0)).toBe(0);
    expect(hpetCostPerWrite(1_000_000)).toBe(100);
  });

  it("refuses specs that do not fit, naming the field", () => {
    expect(() => resolveGuestSpec({ ...spec, ramBytes: 16 * MiB })).toThrow(/guest RAM/);
    expect(() => resolveGuestSpec({ ...spec, ramBytes: 129 * MiB })).toThrow(/multiple of 2 MiB/);
    expect(() => resolveGuestSpec({ ...spec, workingSetPages: 111 * 256 + 1 })).toThrow(
      /working set/,
    );
    expect(() => resolveGuestSpec({ ...spec, pattern: "hotset", hotPages: 0 })).toThrow(/hot set/);
    expect(() => resolveGuestSpec({ ...spec, writesPerSecond: 0.5 })).toThrow(GuestSpecError);
    expect(() => resolveGuestSpec({ ...spec, seed: -1 })).toThrow(/seed/);
  });
});

const hasQemu = requireTool("qemu-system-x86_64");

describe.skipIf(!hasQemu)("the write guest under qemu-system-x86_64 -accel tcg", () => {
  let dir = "";
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "hvlab-qemu-guest-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function boot(image: Uint8Array, name: string): Promise<QemuProcess> {
    const kernel = join(dir, `${name}.elf`);
    await writeFile(kernel, image);
    return QemuProcess.start({ kernel, ramBytes: 128 * MiB, accel: "tcg", dir, name });
  }

  it("fills its working set, then its write counter advances at the configured rate (within 10 %)", async () => {
    const q = await boot(guestImage(spec), "paced");
    try {
      const status = await waitUntilWriting(q.qmp, 60_000);
      expect(status.filled).toBe((111 * MiB) / 4096);
      const rate = await measureWriteRate(q.qmp, 1500);
      expect(rate.writesPerSecond).toBeGreaterThan(spec.writesPerSecond * 0.9);
      expect(rate.writesPerSecond).toBeLessThan(spec.writesPerSecond * 1.1);
      // The guest's own clock agrees with the host's.
      expect(rate.writesPerGuestSecond).toBeGreaterThan(spec.writesPerSecond * 0.95);
      expect(rate.writesPerGuestSecond).toBeLessThan(spec.writesPerSecond * 1.05);
    } finally {
      await q.stop();
    }
  }, 90_000);

  it("a sequential guest writes its pages in order: the word it last wrote sits in the page after the one before", async () => {
    const pages = 64;
    const q = await boot(
      guestImage({ ...spec, pattern: "sequential", workingSetPages: pages, writesPerSecond: 2000 }),
      "sequential",
    );
    try {
      await waitUntilWriting(q.qmp, 60_000);
      await q.qmp.execute("stop");
      const { writes } = await readGuestStatus(q.qmp);
      // Write n (1-based) goes to page n mod pages, word (n-1) mod 1024, value n.
      const page = writes % pages;
      const word = (writes - 1) % 1024;
      const address = WORKING_SET_BASE + page * 4096 + word * 4;
      const text = await q.qmp.hmp(`xp /1wx 0x${address.toString(16)}`);
      expect(Number.parseInt(text.split(":")[1]?.trim() ?? "", 16)).toBe(writes % 2 ** 32);
      const next = WORKING_SET_BASE + ((page + 1) % pages) * 4096 + ((word + 1) % 1024) * 4;
      const after = await q.qmp.hmp(`xp /1wx 0x${next.toString(16)}`);
      expect(Number.parseInt(after.split(":")[1]?.trim() ?? "", 16)).not.toBe(writes + 1);
    } finally {
      await q.stop();
    }
  }, 90_000);

  it("hvlab qemu guest --boot measures the rate; a bad spec is a usage error (exit 2)", () => {
    const run = hvlab([
      "qemu",
      "guest",
      "--guest",
      "64MiB",
      "--rate",
      "3000",
      "--boot",
      "1",
      "--json",
    ]);
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    const record = JSON.parse(run.stdout) as { measured: { writesPerSecond: number } };
    expect(record.measured.writesPerSecond).toBeGreaterThan(2700);
    expect(record.measured.writesPerSecond).toBeLessThan(3300);
    const bad = hvlab(["qemu", "guest", "--guest", "64MiB", "--pattern", "zipf", "--boot", "1"]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--pattern 'zipf'/);
  }, 90_000);
});
