import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FdFile } from "../src/storage/block-file.js";
import { openImage } from "../src/storage/open.js";
import { VhdImage } from "../src/storage/vhd.js";
import { hvlab, requireTool } from "./support/cli.js";
import { xorshiftBytes } from "./support/xorshift.js";

// The outside tool: QEMU's qemu-img (Debian qemu-utils) reads and writes VHD
// as format "vpc" (block/vpc.c).
const hasQemu = requireTool("qemu-img");

function qemu(args: string[]): string {
  return execFileSync("qemu-img", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Random sector-aligned writes to an image and to a plain model of its bytes. */
function scribble(image: VhdImage, model: Uint8Array, seed: number, writes: number): void {
  const sectors = model.length / 512;
  let x = seed;
  const next = (n: number) => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x % n;
  };
  for (let w = 0; w < writes; w++) {
    const first = next(sectors);
    const count = 1 + next(Math.min(600, sectors - first));
    const data = xorshiftBytes(seed * 1000 + w, count * 512);
    image.write(first * 512, data);
    model.set(data, first * 512);
  }
}

function readAll(path: string): Uint8Array {
  const image = openImage(path);
  try {
    const out = new Uint8Array(image.size);
    for (let at = 0; at < out.length; at += 1 << 20) {
      image.read(at, out.subarray(at, Math.min(out.length, at + (1 << 20))));
    }
    return out;
  } finally {
    image.close();
  }
}

/** The ranges qemu-img map (or hvlab storage map) says hold data, merged. */
function dataRanges(
  records: { start: number; length: number; data: boolean }[],
): [number, number][] {
  const out: [number, number][] = [];
  for (const r of records) {
    if (!r.data) continue;
    const last = out[out.length - 1];
    if (last && last[1] === r.start) last[1] = r.start + r.length;
    else out.push([r.start, r.start + r.length]);
  }
  return out;
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-qemu-img-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(!hasQemu)("qemu-img reads the VHDs hvlab writes", () => {
  const cases = [
    { type: "fixed" as const, size: 3 * 1024 * 1024 + 512 * 7, blockSize: undefined },
    { type: "dynamic" as const, size: 9 * 1024 * 1024 + 512 * 3, blockSize: undefined },
    { type: "dynamic" as const, size: 5 * 1024 * 1024, blockSize: 512 * 1024 },
    { type: "dynamic" as const, size: 1024 * 1024 + 512, blockSize: 4096 },
  ];
  for (const [i, c] of cases.entries()) {
    it(`${c.type} of ${c.size} bytes${c.blockSize ? ` in ${c.blockSize}-byte blocks` : ""}: info, compare and convert agree`, () => {
      const vhd = join(dir, `hv-${i}.vhd`);
      const raw = join(dir, `hv-${i}.model`);
      const model = new Uint8Array(c.size);
      const image = VhdImage.create(new FdFile(vhd, "w+"), {
        type: c.type,
        size: c.size,
        ...(c.blockSize ? { blockSize: c.blockSize } : {}),
      });
      scribble(image, model, 17 + i, 40);
      image.close();
      writeFileSync(raw, model);
      const info = JSON.parse(qemu(["info", "-f", "vpc", "--output=json", vhd])) as Record<
        string,
        unknown
      >;
      expect(info.format).toBe("vpc");
      expect(info["virtual-size"]).toBe(c.size);
      expect(spawnSync("qemu-img", ["compare", "-f", "vpc", "-F", "raw", vhd, raw]).status).toBe(0);
      const out = join(dir, `hv-${i}.raw`);
      qemu(["convert", "-f", "vpc", "-O", "raw", vhd, out]);
      expect(Buffer.compare(readFileSync(out), Buffer.from(model))).toBe(0);
      // And hvlab's own checker has nothing to say.
      const check = JSON.parse(hvlab(["storage", "check", vhd, "--json"]).stdout) as {
        ok: boolean;
        problems: unknown[];
      };
      expect(check).toMatchObject({ ok: true, problems: [] });
    });
  }

  it("hvlab storage convert from raw to fixed and dynamic gives what qemu-img compares equal", () => {
    const raw = join(dir, "holes.raw");
    // Data, a 4 MiB hole, data: the hole must not be allocated.
    const model = new Uint8Array(10 * 1024 * 1024);
    model.set(xorshiftBytes(5, 3 * 1024 * 1024), 0);
    model.set(xorshiftBytes(6, 1024 * 1024 + 512), 7 * 1024 * 1024);
    writeFileSync(raw, model);
    for (const to of ["fixed", "dynamic"]) {
      const vhd = join(dir, `holes-${to}.vhd`);
      const run = hvlab(["storage", "convert", raw, vhd, "--to", to, "--json"]);
      expect(run.status, run.stderr).toBe(0);
      expect(spawnSync("qemu-img", ["compare", "-f", "vpc", "-F", "raw", vhd, raw]).status).toBe(0);
      const info = JSON.parse(qemu(["info", "-f", "vpc", "--output=json", vhd])) as Record<
        string,
        unknown
      >;
      expect(info["virtual-size"]).toBe(model.length);
    }
    const map = JSON.parse(
      qemu(["map", "-f", "vpc", "--output=json", join(dir, "holes-dynamic.vhd")]),
    );
    expect(dataRanges(map)).toEqual([
      [0, 4 * 1024 * 1024],
      [6 * 1024 * 1024, 10 * 1024 * 1024],
    ]);
  });
});

describe.skipIf(!hasQemu)("hvlab reads the VHDs qemu-img writes", () => {
  it("an empty qemu-made disk of each subformat reads as zeros at qemu's size", () => {
    for (const sub of ["fixed", "dynamic"]) {
      const vhd = join(dir, `q-empty-${sub}.vhd`);
      qemu(["create", "-f", "vpc", "-o", `subformat=${sub}`, vhd, "7M"]);
      const size = (
        JSON.parse(qemu(["info", "-f", "vpc", "--output=json", vhd])) as Record<string, number>
      )["virtual-size"];
      const bytes = readAll(vhd);
      expect(bytes.length).toBe(size);
      expect(bytes.every((b) => b === 0)).toBe(true);
    }
  });

  for (const sub of ["fixed", "dynamic"]) {
    it(`qemu-img convert -O vpc (${sub}) of random data with holes reads back byte for byte, and the maps agree`, () => {
      const raw = join(dir, `q-${sub}.raw`);
      const model = new Uint8Array(12 * 1024 * 1024 + 512 * 5);
      for (const [at, n, seed] of [
        [0, 1000 * 512, 1],
        [3 * 1024 * 1024 + 4096, 2 * 1024 * 1024, 2],
        [11 * 1024 * 1024, 512 * 300, 3],
      ] as const) {
        model.set(xorshiftBytes(seed, n), at);
      }
      writeFileSync(raw, model);
      const vhd = join(dir, `q-${sub}.vhd`);
      qemu(["convert", "-f", "raw", "-O", "vpc", "-o", `subformat=${sub}`, raw, vhd]);
      const size = (
        JSON.parse(qemu(["info", "-f", "vpc", "--output=json", vhd])) as Record<string, number>
      )["virtual-size"];
      const bytes = readAll(vhd);
      expect(bytes.length).toBe(size);
      const want = new Uint8Array(size ?? 0);
      want.set(model.subarray(0, Math.min(model.length, want.length)));
      expect(Buffer.compare(Buffer.from(bytes), Buffer.from(want))).toBe(0);
      const ours = JSON.parse(hvlab(["storage", "map", vhd, "--json"]).stdout);
      const theirs = JSON.parse(qemu(["map", "-f", "vpc", "--output=json", vhd]));
      expect(dataRanges(ours)).toEqual(dataRanges(theirs));
      expect(dataRanges(ours).length).toBeGreaterThan(0);
      const check = JSON.parse(hvlab(["storage", "check", vhd, "--json"]).stdout) as {
        ok: boolean;
      };
      expect(check.ok).toBe(true);
    });
  }
});

describe.skipIf(!hasQemu)("differencing chains on a qemu-made parent", () => {
  it("every sector of a two-level chain reads what the chain must hold", () => {
    const size = 6 * 1024 * 1024;
    const raw = join(dir, "base.raw");
    const base = xorshiftBytes(77, size);
    base.fill(0, 2 * 1024 * 1024, 3 * 1024 * 1024);
    writeFileSync(raw, base);
    const parent = join(dir, "base.vhd");
    qemu([
      "convert",
      "-f",
      "raw",
      "-O",
      "vpc",
      "-o",
      "subformat=dynamic,force_size=on",
      raw,
      parent,
    ]);
    // The independent computation: a plain array that takes each write in turn.
    const model = Uint8Array.from(base);
    const child = join(dir, "child.vhd");
    const grandchild = join(dir, "grandchild.vhd");
    expect(hvlab(["storage", "create", child, "--parent", parent]).status).toBe(0);
    const c = openImage(child, { writable: true }) as VhdImage;
    scribble(c, model, 3, 30);
    // Zeros in a child hide the parent's data.
    c.write(4096, new Uint8Array(8192));
    model.fill(0, 4096, 4096 + 8192);
    c.close();
    expect(hvlab(["storage", "create", grandchild, "--parent", child]).status).toBe(0);
    const g = openImage(grandchild, { writable: true }) as VhdImage;
    scribble(g, model, 4, 30);
    g.close();
    const got = readAll(grandchild);
    for (let s = 0; s < size / 512; s++) {
      const a = Buffer.from(got.subarray(s * 512, (s + 1) * 512));
      const b = Buffer.from(model.subarray(s * 512, (s + 1) * 512));
      if (!a.equals(b)) expect.fail(`sector ${s} differs from the chain's expected content`);
    }
    // The chain converts to raw as the model, and merges down intact.
    const flat = join(dir, "flat.raw");
    expect(hvlab(["storage", "convert", grandchild, flat, "--to", "raw"]).status).toBe(0);
    expect(Buffer.compare(readFileSync(flat), Buffer.from(model))).toBe(0);
    const before = statSync(child).mtimeMs;
    const merged = hvlab(["storage", "merge", grandchild, "--json"]);
    expect(merged.status, merged.stderr).toBe(0);
    expect(statSync(child).mtimeMs).toBeGreaterThanOrEqual(before);
    expect(JSON.parse(merged.stdout).childAfter).toBe("emptied");
    // The parent alone, and the emptied grandchild over it, read the merged data.
    const mergedBytes = readAll(child);
    expect(Buffer.compare(Buffer.from(mergedBytes), Buffer.from(model))).toBe(0);
    expect(Buffer.compare(Buffer.from(readAll(grandchild)), Buffer.from(model))).toBe(0);
    for (const file of [grandchild, child, parent]) {
      const checked = hvlab(["storage", "check", file]);
      expect(checked.status, `${file}: ${checked.stdout}${checked.stderr}`).toBe(0);
    }
    const emptied = openImage(grandchild) as VhdImage;
    expect(emptied.map().filter((e) => e.depth === 0 && e.data)).toEqual([]);
    emptied.close();
    // Merging the child in turn (deleting it, as Merge-VHD does) leaves the
    // qemu-made parent with the data, and the grandchild, now pointing at a
    // file that is gone, is refused by name.
    const gone = hvlab(["storage", "merge", child, "--delete", "--json"]);
    expect(gone.status, gone.stderr).toBe(0);
    expect(existsSync(child)).toBe(false);
    expect(Buffer.compare(Buffer.from(readAll(parent)), Buffer.from(model))).toBe(0);
    expect(hvlab(["storage", "check", parent]).status).toBe(0);
    const orphan = hvlab(["storage", "check", grandchild]);
    expect(orphan.status).toBe(1);
    expect(orphan.stdout + orphan.stderr).toContain("not found");
    // qemu-img agrees with what the parent holds after both merges.
    writeFileSync(flat, model);
    const compared = spawnSync("qemu-img", ["compare", "-f", "vpc", "-F", "raw", parent, flat]);
    expect(compared.status, String(compared.stdout)).toBe(0);
  });
});
