import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import * as hdr from "hdr-histogram-js";
import { describe, expect, it } from "vitest";
import { ioFigures, prepareDisk } from "../src/storage/io-run.js";
import { openImage } from "../src/storage/open.js";
import type { VhdImage } from "../src/storage/vhd.js";
import { testTempDir } from "./support/temp.js";

// The guest I/O run's two pieces that run on the caller's thread without a
// pool: the disks it makes before a run (a raw file or a VHD of the type and
// size asked, a differencing disk on a new dynamic parent beside it), and
// the figures fio prints for a disk from its counts, its seconds and its
// latency histogram (recorded in ns, printed in µs).

const KiB = 1024;

describe("prepareDisk", () => {
  it("makes a raw disk of zeros of the size asked", () => {
    const path = join(testTempDir("io-disks"), "r.img");
    prepareDisk({ name: "r", path, create: { type: "raw", size: 64 * KiB } });
    expect(statSync(path).size).toBe(64 * KiB);
    expect(readFileSync(path).every((b) => b === 0)).toBe(true);
  });

  it("makes a fixed and a dynamic VHD of the size asked", () => {
    const dir = testTempDir("io-disks");
    for (const type of ["fixed", "dynamic"] as const) {
      const path = join(dir, `${type}.vhd`);
      prepareDisk({ name: type, path, create: { type, size: 2 * 1024 * KiB } });
      const image = openImage(path) as VhdImage;
      expect([image.format, image.type, image.size]).toEqual(["vpc", type, 2 * 1024 * KiB]);
      image.close();
    }
  });

  it("makes a differencing VHD on a new dynamic parent beside it", () => {
    const path = join(testTempDir("io-disks"), "child.vhd");
    prepareDisk({ name: "child", path, create: { type: "differencing", size: 1024 * KiB } });
    const image = openImage(path) as VhdImage;
    expect([image.type, image.size]).toEqual(["differencing", 1024 * KiB]);
    expect(image.parentPath).toBe(`${path}.parent.vhd`);
    expect([image.parent?.type, image.parent?.size]).toEqual(["dynamic", 1024 * KiB]);
    image.close();
  });

  it("leaves an existing disk alone when nothing is to be made", () => {
    const path = join(testTempDir("io-disks"), "absent.img");
    prepareDisk({ name: "absent", path });
    expect(() => statSync(path)).toThrow(/ENOENT/);
  });
});

describe("ioFigures", () => {
  it("gives operations a second, 10^6 bytes a second and latency percentiles in µs", () => {
    const latency = hdr.build({ numberOfSignificantValueDigits: 3 });
    // 1,000 latencies of 1 to 1,000 µs, in ns.
    for (let us = 1; us <= 1000; us++) latency.recordValue(us * 1000);
    const figures = ioFigures({ reads: 300, writes: 100, bytes: 8_000_000 }, 4, latency);
    expect(figures.reads).toBe(300);
    expect(figures.writes).toBe(100);
    expect(figures.iops).toBe(100);
    expect(figures.mbps).toBe(2);
    // HdrHistogram's values are exact to 3 significant digits.
    expect(figures.p50Us).toBeCloseTo(500, -1);
    expect(figures.p99Us).toBeCloseTo(990, -1);
    expect(figures.p999Us).toBeCloseTo(999, -1);
    expect(figures.p50Us).toBeLessThan(figures.p99Us);
    expect(figures.p99Us).toBeLessThan(figures.p999Us);
    latency.destroy();
  });
});
