/**
 * Paging benchmarks: TLB-hit translations, cold two-dimensional walks (24
 * references each) and lackey trace parsing, each beside its plain
 * TypeScript peer in the same run, and `paging compare` on a gzip trace
 * beside `zcat`, both as whole commands. Every case is verified before it is
 * timed.
 */
import { execFileSync } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip, gunzipSync } from "node:zlib";
import type { BenchCase, BenchSuite } from "../src/bench/harness.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { scanLackeyOracle } from "../src/oracle/lackey.js";
import { MmuOracle } from "../src/oracle/paging.js";
import { type CompareResult, type CompareRow, comparePaging } from "../src/paging/compare.js";
import { PagingMachine, standardConfigs } from "../src/paging/machine.js";
import { ACCESS, MmuContext } from "../src/paging/mmu.js";
import { cpuPreset, type TranslationCaches, withoutCaches } from "../src/paging/presets.js";
import { RecordBuffer, traceParser } from "../src/paging/trace.js";
import { HEAP_BASE, QUIET } from "../src/paging/workload.js";
import { packageRoot } from "../src/util/package-root.js";
import { makeTemporaryDir, removeTemporary, trackTemporary } from "../src/util/temporary.js";
import { WalkKernel } from "../src/wasm/walk.js";

function assert(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

const preset = cpuPreset("skylake-sp");

/** A prefaulted SLAT machine with a working set of `pages` 4 KiB pages. */
function machine(layout: MemoryLayout, name: string, caches: TranslationCaches, pages: number) {
  const tables = 16 * 2 ** 20;
  return new PagingMachine(
    layout.memory,
    WalkKernel.on(layout.memory),
    {
      arena: layout.allocate(`${name} tables`, tables * 3, 4096).toDescriptor(),
      mmu: MmuContext.regions(layout, name, caches),
    },
    {
      config: { label: name, mode: "slat", guestPageSize: "4K", hostBacking: "4K", unsync: false },
      caches,
      cost: preset.cost,
      guestLevels: 4,
      hostLevels: 4,
      guestBytes: 8 * 2 ** 30,
      guestTableBytes: tables,
      hostTableBytes: tables * 2,
      workingSetBytes: pages * 4096,
      activity: QUIET,
      seed: 1,
      prefault: true,
    },
  );
}

/** Trace records over `pages` pages: `count` records, page i * step mod pages. */
function records(
  layout: MemoryLayout,
  name: string,
  count: number,
  pages: number,
  scatter: boolean,
) {
  const region = layout.allocate(name, count * 8);
  const words = new Uint32Array(layout.memory.buffer, region.offset, count * 2);
  let x = 12345;
  for (let i = 0; i < count; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const page = scatter ? x % pages : i % pages;
    const va = HEAP_BASE + page * 4096;
    words[2 * i] = ((va % 2 ** 32) | ACCESS.user | (i % 5 === 0 ? ACCESS.write : 0)) >>> 0;
    words[2 * i + 1] = Math.floor(va / 2 ** 32);
  }
  return { region, words };
}

/** The naive lackey parser a user would write: split lines, a regular expression, parseInt. */
function naiveLackey(text: string): { count: number; sum: number } {
  let count = 0;
  let sum = 0;
  for (const line of text.split("\n")) {
    const m = /^(I | L| S| M) ([0-9a-fA-F]+),(\d+)$/.exec(line);
    if (!m) continue;
    const page = Math.floor(Number.parseInt(m[2] as string, 16) / 4096);
    const n = m[1] === " M" ? 2 : 1;
    count += n;
    sum = (sum + page * n) % 2 ** 32;
  }
  return { count, sum };
}

/** The scanner's oracle over the whole text, passing over lines of other shapes (Valgrind's messages). */
function oracleLackey(bytes: Uint8Array): { count: number; sum: number } {
  let count = 0;
  let sum = 0;
  for (let at = 0; at < bytes.length; ) {
    const r = scanLackeyOracle(bytes, at, bytes.length, 1 << 20, 56);
    for (let i = 0; i < r.words.length; i += 2) {
      sum =
        (sum + (r.words[i + 1] as number) * 2 ** 20 + ((r.words[i] as number) >>> 12)) % 2 ** 32;
    }
    count += r.words.length / 2;
    at = r.position;
    if (r.stop === 1) {
      const lf = bytes.indexOf(10, at);
      at = lf < 0 ? bytes.length : lf + 1;
    } else if (r.stop === 0) break;
  }
  return { count, sum };
}

function hvlabLackey(bytes: Uint8Array, out: RecordBuffer): { count: number; sum: number } {
  const parser = traceParser("bench.lackey", "lackey");
  out.clear();
  // Stream in 1 MiB chunks, as a file would arrive.
  for (let at = 0; at < bytes.length; at += 1 << 20)
    parser.push(bytes.subarray(at, at + (1 << 20)), out);
  parser.end(out);
  let sum = 0;
  for (let i = 0; i < out.count; i++) {
    const page = (out.words[2 * i + 1] as number) * 2 ** 20 + ((out.words[2 * i] as number) >>> 12);
    sum = (sum + page) % 2 ** 32;
  }
  return { count: out.count, sum };
}

/**
 * Writes `runs` copies of `text` gzip'ed (level 6, gzip's default) to
 * `file`, unless a file of the same name is there already: through a
 * temporary name, so that an interrupted run leaves no half file behind.
 */
async function repeatedGzip(text: Uint8Array, runs: number, file: string): Promise<void> {
  if (existsSync(file)) return;
  mkdirSync(dirname(file), { recursive: true });
  const partial = trackTemporary(`${file}.${process.pid}.partial`);
  await pipeline(
    Readable.from(
      (function* () {
        for (let i = 0; i < runs; i++) yield text;
      })(),
    ),
    createGzip({ level: 6 }),
    createWriteStream(partial),
  );
  renameSync(partial, file);
  removeTemporary(partial);
}

export const suite: BenchSuite = {
  name: "paging",
  description: "TLB-hit translations, cold 2D walks, lackey parsing",
  async setup({ quick }) {
    const cases: BenchCase[] = [];

    // --- TLB hits -------------------------------------------------------------
    const hitCount = quick ? 20_000 : 500_000;
    const hitPages = 32; // inside the 64-entry L1 DTLB: every access hits
    const hitLayout = new MemoryLayout();
    const hitMachine = machine(hitLayout, "hits", preset.caches, hitPages);
    const hitTrace = records(hitLayout, "hit trace", hitCount, hitPages, false);
    const oracleHitCount = Math.min(hitCount, 100_000);
    const oracleMachine = machine(hitLayout, "hits oracle", preset.caches, hitPages);
    const hitOracle = new MmuOracle(oracleMachine.mmu);
    hitMachine.mmu.run(hitTrace.region, 0, hitPages); // warm
    hitOracle.run(hitTrace.words, hitPages);
    cases.push({
      case: "translations with TLB hits (SLAT 4x4, 4 KiB, L1 DTLB)",
      opsPerCall: hitCount,
      verify: () => {
        hitMachine.mmu.resetCounters();
        const stop = hitMachine.mmu.run(hitTrace.region, 0, oracleHitCount);
        const c = hitMachine.mmu.counters();
        assert(stop === oracleHitCount, "kernel faulted");
        assert(
          c.l1Hits === oracleHitCount && c.walks === 0,
          `expected ${oracleHitCount} L1 hits, got ${c.l1Hits} and ${c.walks} walks`,
        );
        const before = hitOracle.checksum;
        const o = hitOracle.run(hitTrace.words, oracleHitCount);
        assert(o.done === oracleHitCount, "oracle faulted");
        const oracleSum = (hitOracle.checksum - before) & 0xffff_ffff_ffff_ffffn;
        assert(hitMachine.mmu.checksum === oracleSum, "kernel and oracle translate differently");
      },
      impls: [
        { impl: "hvlab", fn: () => hitMachine.mmu.run(hitTrace.region, 0, hitCount) },
        {
          impl: "oracle (TypeScript, one access at a time)",
          fn: () => {
            // The oracle does a fraction of the work per call; scaled to the same op count below.
            for (let done = 0; done < hitCount; done += oracleHitCount) {
              hitOracle.run(hitTrace.words, Math.min(oracleHitCount, hitCount - done));
            }
          },
        },
      ],
    });

    // --- cold 2D walks ------------------------------------------------------
    const walkCount = quick ? 2_000 : 100_000;
    const walkPages = 16_384; // 64 MiB working set
    const walkLayout = new MemoryLayout();
    const cold = withoutCaches(preset.caches);
    const walkMachine = machine(walkLayout, "walks", cold, walkPages);
    const walkTrace = records(walkLayout, "walk trace", walkCount, walkPages, true);
    const oracleWalkMachine = machine(walkLayout, "walks oracle", cold, walkPages);
    const walkOracle = new MmuOracle(oracleWalkMachine.mmu);
    cases.push({
      case: "full 2D walks, cold caches (SLAT 4x4: 24 references each)",
      opsPerCall: walkCount,
      verify: () => {
        walkMachine.mmu.resetCounters();
        const stop = walkMachine.mmu.run(walkTrace.region, 0, walkCount);
        const c = walkMachine.mmu.counters();
        assert(stop === walkCount, "kernel faulted");
        assert(
          c.walks === walkCount && c.references === 24 * walkCount,
          `expected ${24 * walkCount} references, got ${c.references}`,
        );
        const n = Math.min(walkCount, 20_000);
        walkMachine.mmu.resetCounters();
        walkMachine.mmu.run(walkTrace.region, 0, n);
        const o = walkOracle.run(walkTrace.words, n);
        assert(
          o.done === n && walkOracle.counters.references === 24 * n,
          "oracle disagrees on references",
        );
        assert(
          walkOracle.checksum === walkMachine.mmu.checksum,
          "kernel and oracle translate differently",
        );
      },
      impls: [
        { impl: "hvlab", fn: () => walkMachine.mmu.run(walkTrace.region, 0, walkCount) },
        {
          impl: "oracle (TypeScript, one access at a time)",
          fn: () => walkOracle.run(walkTrace.words, walkCount),
        },
      ],
    });

    // --- lackey parsing -----------------------------------------------------
    const fixture = gunzipSync(
      readFileSync(join(packageRoot(), "test", "fixtures", "touch.lackey.gz")),
    );
    // Quick runs parse the first 256 KiB (cut at a line end); full runs 4 copies of the whole trace.
    const copies = quick ? 1 : 4;
    const one = quick ? fixture.subarray(0, fixture.indexOf(10, 256 * 1024) + 1) : fixture;
    const bytes = new Uint8Array(one.length * copies);
    for (let i = 0; i < copies; i++) bytes.set(one, i * one.length);
    const text = Buffer.from(bytes).toString("latin1");
    const out = new RecordBuffer(1 << 20);
    const copy = new Uint8Array(bytes.length);
    cases.push({
      case: `lackey parsing (${(bytes.length / 2 ** 20).toFixed(1)} MiB of a real program's trace)`,
      bytesPerOp: bytes.length,
      verify: () => {
        const ours = hvlabLackey(bytes, out);
        const theirs = naiveLackey(text);
        assert(
          ours.count > 0 && ours.count === theirs.count,
          `hvlab ${ours.count} records, naive ${theirs.count}`,
        );
        assert(ours.sum === theirs.sum, "hvlab and the naive parser read different pages");
        const oracle = oracleLackey(bytes);
        assert(
          oracle.count === ours.count && oracle.sum === ours.sum,
          `oracle ${oracle.count} records, hvlab ${ours.count}`,
        );
      },
      impls: [
        { impl: "hvlab (wasm line scanner)", fn: () => hvlabLackey(bytes, out) },
        { impl: "oracle (TypeScript, RegExp + BigInt)", fn: () => oracleLackey(bytes) },
        { impl: "naive (split + RegExp + parseInt)", fn: () => naiveLackey(text) },
        { impl: "memory copy of the text (bandwidth bound)", fn: () => copy.set(bytes) },
      ],
    });

    // --- a gzip trace end to end: read once, five configurations -------------
    // The recorded trace of a real program (test/fixtures/touch.lackey.gz), run
    // `runs` times back to back in one file and gzip'ed as valgrind users keep
    // traces: 125 runs (25 M accesses, 340 MiB of text) so that start-up is a
    // small part, as on the traces users run (the case that prompted this one
    // has 115 M records). Made once and kept between runs (it takes a while to
    // compress); a quick run makes a one-run file of its own.
    const runs = quick ? 1 : 125;
    const dir = makeTemporaryDir("bench-paging");
    const traceFile = quick
      ? join(dir, "touch-x1.lackey.gz")
      : join(tmpdir(), "hvlab-bench-cache", `touch-x${runs}.lackey.gz`);
    await repeatedGzip(fixture, runs, traceFile);
    const traceBytes = fixture.length * runs;
    // 199,437 accesses per run of the program (the fixture's known count).
    const traceRecords = 199_437 * runs;
    // Both sides are whole commands, as a user runs them: hvlab's includes
    // Node.js and the CLI starting (a third peer times that alone).
    const hvlab = join(packageRoot(), "bin", "hvlab.js");
    const compareArgs = [hvlab, "paging", "compare", "--trace", traceFile];
    const compare = () => execFileSync(process.execPath, compareArgs, { stdio: "ignore" });
    const zcat = () =>
      execFileSync("sh", ["-c", `zcat '${traceFile}' > /dev/null`], { stdio: "ignore" });
    const startUp = () => execFileSync(process.execPath, [hvlab, "--version"], { stdio: "ignore" });
    cases.push({
      case: `whole commands: hvlab paging compare --trace FILE vs zcat FILE > /dev/null (gzip lackey trace, ${(traceBytes / 2 ** 20).toFixed(0)} MiB of text, ${traceRecords.toLocaleString("en-US")} accesses, 5 configurations)`,
      bytesPerOp: traceBytes,
      iterations: quick ? 1 : 3,
      verify: async () => {
        const out = execFileSync(process.execPath, [...compareArgs, "--json"], {
          maxBuffer: 64 * 2 ** 20,
        });
        const result = JSON.parse(out.toString("utf8")) as CompareResult;
        assert(result.trace?.records === traceRecords, `read ${result.trace?.records} records`);
        assert(result.rows.length === 5, `${result.rows.length} configurations`);
        for (const row of result.rows) {
          assert(row.accesses === traceRecords, `${row.label} translated ${row.accesses}`);
        }
        // Each configuration alone, on this thread, with the command's defaults
        // (its JSON says the CPU, the guest and the activity; seed 1): the
        // command's rows must be these, every counter and the checksum.
        const cpu = cpuPreset(result.cpu);
        const configs = standardConfigs(result.guestBytes % 2 ** 30 === 0 ? "1G" : "2M");
        assert(configs.length === result.rows.length, "the command ran other configurations");
        for (const [i, config] of configs.entries()) {
          const alone = await comparePaging({
            source: { kind: "trace", file: traceFile, format: "auto", lenient: false },
            cpu: result.cpu,
            caches: cpu.caches,
            cost: cpu.cost,
            configs: [config],
            guestLevels: result.guestLevels as 4 | 5,
            hostLevels: result.hostLevels as 4 | 5,
            guestBytes: result.guestBytes,
            activity: result.activity,
            seed: 1,
            threads: 0,
          });
          const { ratioToNative: _a, ...mine } = alone.rows[0] as CompareRow;
          const { ratioToNative: _b, ...theirs } = result.rows[i] as CompareRow;
          assert(
            JSON.stringify(mine) === JSON.stringify(theirs),
            `${config.label} alone differs from its row in paging compare`,
          );
        }
        const counted = execFileSync("sh", ["-c", `zcat '${traceFile}' | wc -c`]);
        assert(
          Number(counted.toString().trim()) === traceBytes,
          `zcat decompressed ${counted.toString().trim()} bytes, not ${traceBytes}`,
        );
      },
      impls: [
        { impl: "hvlab paging compare (node bin/hvlab.js)", fn: compare },
        { impl: "zcat FILE > /dev/null (decompression bound)", fn: zcat },
        { impl: "node bin/hvlab.js --version (start-up alone)", fn: startUp },
      ],
    });

    return { cases, teardown: async () => removeTemporary(dir) };
  },
};
