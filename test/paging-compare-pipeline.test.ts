import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import {
  type CompareSpec,
  comparePaging,
  defaultWorkers,
  expectedRecords,
  WORKER_THRESHOLD_RECORDS,
} from "../src/paging/compare.js";
import { standardConfigs } from "../src/paging/machine.js";
import { cpuPreset } from "../src/paging/presets.js";
import { QUIET } from "../src/paging/workload.js";
import { fileTempDir } from "./support/temp.js";

const dir = fileTempDir("paging-pipeline");
const preset = cpuPreset("skylake-sp");
/** The ring's slot: 65,536 records. */
const SLOT = 1 << 16;

/**
 * A lackey trace of `accesses` accesses over a few MiB of heap and code, with
 * modifies (two accesses each) and Valgrind's own lines between them.
 */
function lackeyTrace(accesses: number, seed: number): string {
  const lines = ["==4242== Lackey, an example Valgrind tool"];
  let x = seed;
  let n = 0;
  while (n < accesses) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const heap = (0x4a0_0000 + (x % 1024) * 4096 + (x & 0xff8)).toString(16);
    const code = (0x10_8000 + ((x >>> 10) % 64) * 64).toString(16);
    const pick = x % 10;
    if (pick < 4) {
      lines.push(`I  ${code},4`);
      n++;
    } else if (pick < 7) {
      lines.push(` L ${heap},8`);
      n++;
    } else if (pick < 9 || n + 2 > accesses) {
      lines.push(` S ${heap},8`);
      n++;
    } else {
      lines.push(` M ${heap},4`);
      n += 2;
    }
  }
  lines.push("==4242== ");
  return `${lines.join("\n")}\n`;
}

function spec(file: string, threads: number, configs = standardConfigs("1G")): CompareSpec {
  return {
    source: { kind: "trace", file, format: "auto", lenient: false },
    cpu: preset.name,
    caches: preset.caches,
    cost: preset.cost,
    configs,
    guestLevels: 4,
    hostLevels: 4,
    guestBytes: 16 * 2 ** 30,
    activity: QUIET,
    seed: 1,
    threads,
  };
}

describe("paging compare reads a trace once for every configuration", () => {
  // Two whole slots and a part: the last chunk is a partial slot.
  const accesses = 2 * SLOT + 4_321;
  const file = join(dir, "odd.lackey.gz");
  writeFileSync(file, gzipSync(lackeyTrace(accesses, 7)));

  it("gives each configuration's own run, on this thread, beside workers and in workers alone", {
    timeout: 120_000,
  }, async () => {
    // Each configuration alone on this thread: the reference.
    const alone = await Promise.all(
      standardConfigs("1G").map(async (config) => {
        const r = await comparePaging(spec(file, 0, [config]));
        expect(r.trace?.records).toBe(accesses);
        return r.rows[0];
      }),
    );
    for (const row of alone) expect(row?.accesses).toBe(accesses);
    // The comparison's ratios are to native, which a lone run lacks.
    const strip = (rows: readonly object[]) => rows.map((r) => ({ ...r, ratioToNative: null }));
    // 0: all here; 1: this thread + one worker (groups of 3 and 2); 2: three groups; 5: a worker each.
    for (const threads of [0, 1, 2, 5]) {
      const result = await comparePaging(spec(file, threads));
      expect(result.trace?.records, `threads ${threads}`).toBe(accesses);
      expect(strip(result.rows), `threads ${threads}`).toEqual(strip(alone as object[]));
    }
  });

  it("refuses an empty trace, with workers or without, and stops the workers", async () => {
    const empty = join(dir, "empty.lackey.gz");
    writeFileSync(empty, gzipSync(""));
    for (const threads of [0, 1, 5]) {
      await expect(comparePaging(spec(empty, threads))).rejects.toThrow(
        /no memory accesses: the trace is empty/,
      );
    }
  });

  it("skips bad lines (lenient) wherever the chunks cut them, counting each, with the same rows as each configuration alone", {
    timeout: 120_000,
  }, async () => {
    // Bad lines every 10,007 lines: some land across the 1 MiB chunks gunzip hands over.
    const good = lackeyTrace(SLOT + 777, 11).split("\n");
    const bad = ["X 400,8", " L 400", " S zz,8", " M 400,0", "I  400,8 trailing"];
    let skipped = 0;
    for (let at = 5_000; at < good.length; at += 10_007) {
      good.splice(at, 0, bad[skipped % bad.length] as string);
      skipped++;
    }
    const file = join(dir, "bad-lines.lackey.gz");
    writeFileSync(file, gzipSync(good.join("\n")));
    const lenient = (threads: number, configs = standardConfigs("1G")): CompareSpec => ({
      ...spec(file, threads, configs),
      source: { kind: "trace", file, format: "auto", lenient: true },
    });
    const strip = (rows: readonly object[]) => rows.map((r) => ({ ...r, ratioToNative: null }));
    const alone = [];
    for (const config of standardConfigs("1G")) {
      alone.push((await comparePaging(lenient(0, [config]))).rows[0] as object);
    }
    for (const threads of [0, 1]) {
      const result = await comparePaging(lenient(threads));
      expect(result.trace?.skipped, `threads ${threads}`).toBe(skipped);
      expect(result.trace?.records, `threads ${threads}`).toBe(SLOT + 777);
      expect(strip(result.rows), `threads ${threads}`).toEqual(strip(alone));
    }
    // Strict, the first bad line stops the run and is named by its line number.
    await expect(comparePaging(spec(file, 1))).rejects.toThrow(/bad-lines\.lackey\.gz:5001: /);
  });

  it("stops every worker when the trace turns out malformed past the ring's size", async () => {
    const bad = join(dir, "bad.lackey.gz");
    writeFileSync(bad, gzipSync(`${lackeyTrace(3 * SLOT, 3)} X nonsense\n`));
    await expect(comparePaging(spec(bad, 1))).rejects.toThrow(/not a lackey access/);
  });
});

describe("the default number of workers", () => {
  it("runs a small trace on this thread alone and a large one beside processors - 1 workers", () => {
    expect(defaultWorkers(5, 2, 4_000_000)).toBe(0);
    expect(defaultWorkers(5, 2, WORKER_THRESHOLD_RECORDS)).toBe(1);
    expect(defaultWorkers(5, 64, 1e9)).toBe(4);
    expect(defaultWorkers(5, 8, null)).toBe(4);
    expect(defaultWorkers(5, 1, 1e9)).toBe(0);
  });

  it("bounds a file's records by its size: a byte a record gzip'ed, 7 in text", () => {
    const gz = join(dir, "count.lackey.gz");
    const gzBytes = gzipSync(lackeyTrace(1000, 5));
    writeFileSync(gz, gzBytes);
    expect(expectedRecords({ kind: "trace", file: gz, format: "auto", lenient: false })).toBe(
      gzBytes.length,
    );
    const text = join(dir, "count.lackey");
    const body = lackeyTrace(1000, 5);
    writeFileSync(text, body);
    const bound = expectedRecords({ kind: "trace", file: text, format: "auto", lenient: false });
    expect(bound).toBe(Math.ceil(body.length / 7));
    expect(bound).toBeGreaterThanOrEqual(1000);
    expect(
      expectedRecords({
        kind: "trace",
        file: "https://example.org/t.gz",
        format: "auto",
        lenient: false,
      }),
    ).toBeNull();
    expect(
      expectedRecords({
        kind: "trace",
        file: join(dir, "missing"),
        format: "auto",
        lenient: false,
      }),
    ).toBeNull();
  });
});
