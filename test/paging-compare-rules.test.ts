/*
 * The rules of `hvlab paging compare` beyond its pipeline: how big the
 * guest's page-table zone is by default (room for fork's copies of every
 * process's tables), when a comparison is worth pool workers (only from
 * millions of records, never more than the processors), how many records a
 * source is expected to hold before it is read, which configurations run
 * when none are named (1 GiB host pages only when the guest is a whole
 * number of GiB), what is refused before any work, and what a result says:
 * rows in the order the configurations were given, each the same as that
 * configuration's machine run alone, priced against native.
 */
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { gzipSync } from "node:zlib";
import { describe, expect, it, vi } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import {
  type CompareSource,
  type CompareSpec,
  comparePaging,
  defaultTableBytes,
  defaultWorkers,
  expectedRecords,
  WORKER_THRESHOLD_RECORDS,
} from "../src/paging/compare.js";
import { PagingError, TraceFormatError } from "../src/paging/errors.js";
import {
  type MachineOptions,
  type PagingConfig,
  PagingMachine,
  type PagingStats,
} from "../src/paging/machine.js";
import { ACCESS, MmuContext } from "../src/paging/mmu.js";
import { CACHE_LEVEL_REFERENCE_CYCLES, cpuPreset } from "../src/paging/presets.js";
import { AccessGenerator, type AccessPattern, QUIET } from "../src/paging/workload.js";
import { WalkKernel } from "../src/wasm/walk.js";
import { testTempDir } from "./support/temp.js";

/** Every kernel pool a comparison starts: its workers, and whether it was closed. */
const pools = vi.hoisted(() => [] as { threads: number; domains: string[]; closed: boolean }[]);

// The real pool, each one recorded: a comparison on this thread alone starts none.
vi.mock("../src/pool/pool.js", async (importOriginal) => {
  const real = await importOriginal<typeof import("../src/pool/pool.js")>();
  class RecordedPool extends real.KernelPool {
    private readonly record: { threads: number; domains: string[]; closed: boolean };
    constructor(...args: ConstructorParameters<typeof real.KernelPool>) {
      super(...args);
      this.record = { threads: this.threads, domains: [...args[1].domains], closed: false };
      pools.push(this.record);
    }
    override async close(): Promise<void> {
      await super.close();
      this.record.closed = true;
    }
  }
  return { ...real, KernelPool: RecordedPool };
});

const KiB = 1024;
const MiB = 2 ** 20;
const GiB = 2 ** 30;
/** The ring's slot: 65,536 records. */
const SLOT = 1 << 16;
const preset = cpuPreset("skylake-sp");

const NATIVE: PagingConfig = {
  label: "native",
  mode: "native",
  guestPageSize: "4K",
  hostBacking: "4K",
  unsync: false,
};
const SHADOW: PagingConfig = {
  label: "shadow",
  mode: "shadow",
  guestPageSize: "4K",
  hostBacking: "4K",
  unsync: true,
};
const SLAT_4K: PagingConfig = {
  label: "slat-4k",
  mode: "slat",
  guestPageSize: "4K",
  hostBacking: "4K",
  unsync: false,
};
const SLAT_2M: PagingConfig = {
  label: "slat-2m",
  mode: "slat",
  guestPageSize: "4K",
  hostBacking: "2M",
  unsync: false,
};

function pattern(kind: AccessPattern["kind"], workingSetBytes: number): AccessPattern {
  return { kind, workingSetBytes, strideBytes: 4096, writeFraction: 0.25 };
}

/** A synthetic comparison on this thread alone, small unless told otherwise. */
function synthetic(overrides: Partial<CompareSpec> = {}): CompareSpec {
  return {
    source: { kind: "synthetic", pattern: pattern("random", 256 * KiB), accesses: 3000 },
    cpu: preset.name,
    caches: preset.caches,
    cost: preset.cost,
    configs: [NATIVE, SHADOW, SLAT_4K],
    guestLevels: 4,
    hostLevels: 4,
    guestBytes: 4 * GiB,
    activity: QUIET,
    seed: 3,
    threads: 0,
    ...overrides,
  };
}

/** What a comparison was refused with (it must be refused). */
async function refusal(spec: CompareSpec): Promise<Error> {
  const error: unknown = await comparePaging(spec).then(
    () => null,
    (e: unknown) => e,
  );
  if (!(error instanceof Error)) throw new Error("the comparison was not refused");
  return error;
}

function traceSource(file: string): CompareSource {
  return { kind: "trace", file, format: "auto", lenient: false };
}

/**
 * One configuration's machine run alone over the given records, as a
 * comparison is meant to build it: the guest zone `tableBytes`, the host
 * zone twice that.
 */
function runAlone(
  config: PagingConfig,
  spec: CompareSpec,
  tableBytes: number,
  workingSetBytes: number | null,
  fill: (words: Uint32Array, count: number) => void,
  count: number,
): PagingStats {
  const layout = new MemoryLayout();
  const options: MachineOptions = {
    config,
    caches: spec.caches,
    cost: spec.cost,
    guestLevels: spec.guestLevels,
    hostLevels: spec.hostLevels,
    guestBytes: spec.guestBytes,
    guestTableBytes: tableBytes,
    hostTableBytes: 2 * tableBytes,
    workingSetBytes,
    activity: spec.activity,
    seed: spec.seed,
    prefault: spec.prefault === true,
    dirtyLogHarvestsPerSecond: spec.dirtyLogHarvestsPerSecond ?? 0,
  };
  const machine = new PagingMachine(
    layout.memory,
    WalkKernel.on(layout.memory),
    {
      arena: layout.allocate("alone tables", tableBytes * 3, 4096).toDescriptor(),
      mmu: MmuContext.regions(layout, "alone", spec.caches),
    },
    options,
  );
  const region = layout.allocate("alone trace", count * 8, 64);
  fill(new Uint32Array(layout.memory.buffer, region.offset, count * 2), count);
  machine.runRecords(region, count);
  return machine.stats();
}

describe("the guest's default page-table zone", () => {
  it("is 32 MiB for a trace, whose working set is not known", () => {
    expect(defaultTableBytes(null, 1)).toBe(32 * MiB);
    expect(defaultTableBytes(null, 8)).toBe(32 * MiB);
  });

  it("gives each process and its fork's copy a 512th of the working set and 64 KiB, half again, and 2 MiB, in whole MiB", () => {
    // 16 MiB, one process: (32 KiB + 64 KiB) x 2 x 1.5 = 288 KiB, + 2 MiB = 2.28 MiB -> 3 MiB.
    expect(defaultTableBytes(16 * MiB, 1)).toBe(3 * MiB);
    // 4 KiB: (8 B + 64 KiB) x 3 = 196,632 B, + 2 MiB = 2.19 MiB -> 3 MiB.
    expect(defaultTableBytes(4 * KiB, 1)).toBe(3 * MiB);
    // No process at all still counts the fork's copy: 96 KiB x 1 x 1.5 + 2 MiB = 2.14 MiB -> 3 MiB.
    expect(defaultTableBytes(16 * MiB, 0)).toBe(3 * MiB);
    // 256 MiB: (512 KiB + 64 KiB) x 2 x 1.5 = 1,728 KiB, + 2 MiB = 3.69 MiB -> 4 MiB.
    expect(defaultTableBytes(256 * MiB, 1)).toBe(4 * MiB);
    // Three processes: 576 KiB x 4 x 1.5 = 3,456 KiB, + 2 MiB = 5.38 MiB -> 6 MiB.
    expect(defaultTableBytes(256 * MiB, 3)).toBe(6 * MiB);
    // 1 GiB, one process: (2 MiB + 64 KiB) x 3 = 6,336 KiB, + 2 MiB = 8.19 MiB -> 9 MiB.
    expect(defaultTableBytes(GiB, 1)).toBe(9 * MiB);
    // 1 GiB, four processes: 2,112 KiB x 7.5 = 15.47 MiB, + 2 MiB = 17.47 MiB -> 18 MiB.
    expect(defaultTableBytes(GiB, 4)).toBe(18 * MiB);
    // 2 MiB: (4 KiB + 64 KiB) x 3 = 204 KiB, + 2 MiB = 2.2 MiB -> 3 MiB.
    expect(defaultTableBytes(2 * MiB, 1)).toBe(3 * MiB);
    // A whole number of MiB stays as it is: 480 MiB gives (960 KiB + 64 KiB) x 3 = 3 MiB, + 2 MiB.
    expect(defaultTableBytes(480 * MiB, 1)).toBe(5 * MiB);
  });

  it("stops at 1 GiB however large the working set", () => {
    // 128 GiB, one process: (256 MiB + 64 KiB) x 3 = 768.19 MiB, + 2 MiB -> 771 MiB: under the cap.
    expect(defaultTableBytes(128 * GiB, 1)).toBe(771 * MiB);
    // 1 TiB: (2 GiB + 64 KiB) x 3 = 6 GiB and more: capped.
    expect(defaultTableBytes(1024 * GiB, 1)).toBe(1024 * MiB);
    // 128 GiB over 2 processes: 256.06 MiB x 4.5 = 1,152.28 MiB: capped.
    expect(defaultTableBytes(128 * GiB, 2)).toBe(1024 * MiB);
  });
});

describe("the default number of pool workers", () => {
  it("is none below the threshold of records, whatever the processors", () => {
    expect(WORKER_THRESHOLD_RECORDS).toBe(8_000_000);
    expect(defaultWorkers(5, 64, 0)).toBe(0);
    expect(defaultWorkers(5, 64, 7_999_999)).toBe(0);
  });

  it("from the threshold on, is one fewer than the configurations or the processors, whichever is fewer", () => {
    expect(defaultWorkers(5, 64, 8_000_000)).toBe(4);
    expect(defaultWorkers(5, 64, 8_000_001)).toBe(4);
    // Fewer configurations than processors: one each, this thread running the last.
    expect(defaultWorkers(3, 8, 1e9)).toBe(2);
    // More configurations than processors: a processor is left to this thread.
    expect(defaultWorkers(8, 4, 1e9)).toBe(3);
    expect(defaultWorkers(4, 4, 1e9)).toBe(3);
  });

  it("for a source of unknown size (a URL), is as for a large one", () => {
    expect(defaultWorkers(5, 8, null)).toBe(4);
    expect(defaultWorkers(2, 8, null)).toBe(1);
  });

  it("is none on one processor, and never negative", () => {
    expect(defaultWorkers(5, 1, 1e9)).toBe(0);
    expect(defaultWorkers(5, 1, null)).toBe(0);
    expect(defaultWorkers(0, 8, null)).toBe(0);
    expect(defaultWorkers(3, 0, 1e9)).toBe(0);
  });
});

describe("the records a source is expected to hold", () => {
  it("is a synthetic run's accesses", () => {
    const source: CompareSource = {
      kind: "synthetic",
      pattern: pattern("sequential", MiB),
      accesses: 12_345,
    };
    expect(expectedRecords(source)).toBe(12_345);
  });

  it("is a gzip file's size (a byte a record at least)", () => {
    const dir = testTempDir("compare-rules");
    const file = join(dir, "t.lackey.gz");
    const bytes = gzipSync(" L 4a00000,8\n S 4a01000,8\n".repeat(50));
    writeFileSync(file, bytes);
    expect(expectedRecords(traceSource(file))).toBe(bytes.length);
    // Only the two magic bytes together say gzip: either alone is text.
    const halfMagic = join(dir, "half-magic");
    writeFileSync(halfMagic, Buffer.concat([Buffer.from([0x1f, 0x41]), Buffer.alloc(68, 0x20)]));
    expect(expectedRecords(traceSource(halfMagic))).toBe(10);
    const otherHalf = join(dir, "other-half");
    writeFileSync(otherHalf, Buffer.concat([Buffer.from([0x41, 0x8b]), Buffer.alloc(68, 0x20)]));
    expect(expectedRecords(traceSource(otherHalf))).toBe(10);
  });

  it("is a text file's size over 7 bytes, rounded up (`I  0,1` and its newline)", () => {
    const dir = testTempDir("compare-rules");
    const cases: [string, number][] = [
      ["", 0],
      ["I  0,1\n", 1],
      ["I  0,1\nI  1", 2],
      [" L 4a00000,8\n".repeat(7), 13],
      ["x".repeat(50), 8],
      ["x", 1],
    ];
    for (const [i, [text, records]] of cases.entries()) {
      const file = join(dir, `t${i}.lackey`);
      writeFileSync(file, text);
      expect(expectedRecords(traceSource(file)), JSON.stringify(text)).toBe(records);
    }
  });

  it("reads a file: URL as its file, whatever the case of the scheme", () => {
    const dir = testTempDir("compare-rules");
    const file = join(dir, "url.lackey");
    writeFileSync(file, "y".repeat(71));
    const url = pathToFileURL(file).href;
    expect(url.startsWith("file:")).toBe(true);
    expect(expectedRecords(traceSource(url))).toBe(11);
    expect(expectedRecords(traceSource(`FILE:${url.slice(5)}`))).toBe(11);
    // A path that merely holds "file:" further on is a path.
    const odd = join(dir, "a-file:b.lackey");
    writeFileSync(odd, "z".repeat(14));
    expect(expectedRecords(traceSource(odd))).toBe(2);
  });

  it("cannot be told for a URL or a file that is not there", () => {
    const dir = testTempDir("compare-rules");
    expect(expectedRecords(traceSource("https://example.org/t.lackey.gz"))).toBeNull();
    expect(expectedRecords(traceSource("http://example.org/t.lackey"))).toBeNull();
    expect(expectedRecords(traceSource(join(dir, "missing.lackey")))).toBeNull();
    expect(expectedRecords(traceSource(pathToFileURL(join(dir, "missing")).href))).toBeNull();
  });

  it.runIf(process.platform === "linux")("leaves no file open behind it", () => {
    const dir = testTempDir("compare-rules");
    const file = join(dir, "open.lackey");
    writeFileSync(file, "I  0,1\n");
    const open = () => readdirSync("/proc/self/fd").length;
    const before = open();
    for (let i = 0; i < 5; i++) expectedRecords(traceSource(file));
    expect(open()).toBe(before);
  });
});

describe("what a comparison refuses before any work", () => {
  it("refuses an empty list of configurations", async () => {
    const error = await refusal(synthetic({ configs: [] }));
    expect(error).toBeInstanceOf(PagingError);
    expect(error.message).toBe("no configurations to compare");
  });

  it("refuses a guest no larger than twice its page-table zone (the host zone is twice the guest's)", async () => {
    const zone = 4 * MiB;
    const error = await refusal(synthetic({ tableBytes: zone, guestBytes: 2 * zone }));
    expect(error).toBeInstanceOf(PagingError);
    expect(error.message).toBe("the guest is too small for its page-table zone");
    // One page more and it runs.
    const fits = await comparePaging(
      synthetic({ tableBytes: zone, guestBytes: 2 * zone + 4096, configs: [NATIVE] }),
    );
    expect(fits.rows[0]?.accesses).toBe(3000);
  });

  it("sizes the zone from the working set and the processes when not told", async () => {
    // 256 MiB over one process: a 4 MiB zone, so an 8 MiB guest is refused and a 10 MiB one runs.
    const big: CompareSource = {
      kind: "synthetic",
      pattern: pattern("sequential", 256 * MiB),
      accesses: 500,
    };
    const one = (guestBytes: number, processes: number) =>
      synthetic({
        source: big,
        guestBytes,
        configs: [NATIVE],
        activity: { ...QUIET, processes },
      });
    await expect(comparePaging(one(8 * MiB, 1))).rejects.toThrow(/too small/);
    expect((await comparePaging(one(10 * MiB, 1))).rows[0]?.accesses).toBe(500);
    // Three processes: a 6 MiB zone, and 10 MiB is too small.
    await expect(comparePaging(one(10 * MiB, 3))).rejects.toThrow(/too small/);
    // A trace's zone is 32 MiB whatever its processes: a 64 MiB guest is refused.
    await expect(
      comparePaging(synthetic({ source: traceSource("never-read.lackey"), guestBytes: 64 * MiB })),
    ).rejects.toThrow("the guest is too small for its page-table zone");
  });

  it("refuses a number of workers that is not a whole number of at least 0, naming it", async () => {
    for (const [threads, named] of [
      [-1, "-1"],
      [1.5, "1.5"],
      [-0.5, "-0.5"],
      [Number.NaN, "NaN"],
    ] as const) {
      const error = await refusal(synthetic({ threads }));
      expect(error, named).toBeInstanceOf(PagingError);
      expect(error.message).toBe(`threads must be a whole number, not ${named}`);
    }
  });

  it("passes a trace's own error on, on this thread", async () => {
    const dir = testTempDir("compare-rules");
    const file = join(dir, "bad.lackey");
    writeFileSync(file, " L 4a00000,8\n X nonsense\n");
    const error = await refusal(synthetic({ source: traceSource(file), guestBytes: 4 * GiB }));
    expect(error).toBeInstanceOf(TraceFormatError);
    expect(error.message).toMatch(/bad\.lackey:2: not a lackey access/);
  });
});

describe("the configurations a comparison runs when none are named", () => {
  const shape = (rows: readonly PagingStats[]) =>
    rows.map((r) => [r.label, r.mode, r.guestPageSize, r.hostBacking]);

  it("backs the guest's large pages with 1 GiB host pages when the guest is a whole number of GiB", async () => {
    pools.length = 0;
    const { configs: _, threads: __, ...spec } = synthetic();
    const result = await comparePaging({ ...spec, guestBytes: 4 * GiB });
    // 3,000 accesses are far below the workers' threshold: all on this thread.
    expect(pools).toEqual([]);
    expect(shape(result.rows)).toEqual([
      ["native", "native", "4K", null],
      ["shadow", "shadow", "4K", null],
      ["slat-4k", "slat", "4K", "4K"],
      ["slat-2m", "slat", "4K", "2M"],
      ["slat-large", "slat", "2M", "1G"],
    ]);
  });

  it("with 2 MiB host pages otherwise", async () => {
    const { configs: _, threads: __, ...spec } = synthetic();
    const result = await comparePaging({ ...spec, guestBytes: 4 * GiB + 2 * MiB });
    expect(shape(result.rows)).toEqual([
      ["native", "native", "4K", null],
      ["shadow", "shadow", "4K", null],
      ["slat-4k", "slat", "4K", "4K"],
      ["slat-2m", "slat", "4K", "2M"],
      ["slat-large", "slat", "2M", "2M"],
    ]);
  });
});

describe("a comparison's result", () => {
  it("gives the rows in the order the configurations were given, each its own label and mode", async () => {
    const configs = [SLAT_2M, NATIVE, SHADOW, SLAT_4K];
    const result = await comparePaging(synthetic({ configs }));
    expect(result.rows.map((r) => [r.label, r.mode, r.accesses])).toEqual([
      ["slat-2m", "slat", 3000],
      ["native", "native", 3000],
      ["shadow", "shadow", 3000],
      ["slat-4k", "slat", 3000],
    ]);
  });

  it("prices every row against native's translation cycles, native itself at 1", async () => {
    const result = await comparePaging(synthetic({ configs: [SHADOW, NATIVE, SLAT_4K] }));
    const [shadow, native, slat] = result.rows;
    const nativeCycles = native?.cycles.total ?? 0;
    expect(nativeCycles).toBeGreaterThan(0);
    expect(native?.ratioToNative).toBe(1);
    expect(shadow?.ratioToNative).toBe((shadow?.cycles.total ?? 0) / nativeCycles);
    expect(slat?.ratioToNative).toBe((slat?.cycles.total ?? 0) / nativeCycles);
    // Both virtualised modes cost more than the guest walking its own tables.
    expect(shadow?.ratioToNative).toBeGreaterThan(1);
    expect(slat?.ratioToNative).toBeGreaterThan(1);
  });

  it("gives no ratio without a native configuration", async () => {
    const result = await comparePaging(synthetic({ configs: [SHADOW, SLAT_4K] }));
    expect(result.rows.map((r) => r.ratioToNative)).toEqual([null, null]);
    expect(result.rows.every((r) => r.cycles.total > 0)).toBe(true);
  });

  it("gives no ratio when native cost nothing, rather than dividing by zero", async () => {
    // A prefaulted 64 KiB set: 16 pages, every access an L1 DTLB hit natively.
    const result = await comparePaging(
      synthetic({
        source: { kind: "synthetic", pattern: pattern("random", 64 * KiB), accesses: 2000 },
        configs: [NATIVE, SHADOW],
        prefault: true,
      }),
    );
    expect(result.rows[0]?.cycles.total).toBe(0);
    expect(result.rows.map((r) => r.ratioToNative)).toEqual([null, null]);
  });

  it("says what a synthetic run was, with no trace summary, and passes the run's settings through", async () => {
    const activity = { ...QUIET, processes: 2, contextSwitchesPerSecond: 1000 };
    const result = await comparePaging(
      synthetic({
        source: { kind: "synthetic", pattern: pattern("strided", 192 * KiB), accesses: 1234 },
        cpu: "a cpu",
        guestLevels: 5,
        hostLevels: 4,
        guestBytes: 3 * GiB,
        activity,
        configs: [NATIVE],
      }),
    );
    expect(result.source).toBe("strided over 196608 bytes, 1234 accesses");
    expect(result.trace).toBeNull();
    expect(result.cpu).toBe("a cpu");
    expect(result.guestLevels).toBe(5);
    expect(result.hostLevels).toBe(4);
    expect(result.guestBytes).toBe(3 * GiB);
    expect(result.activity).toBe(activity);
  });

  it("lists the cost model as text rows: each parameter, its value, assumed or published, and its source", async () => {
    const result = await comparePaging(synthetic({ configs: [NATIVE] }));
    const c = preset.cost;
    const row = (parameter: string, p: { value: number; assumed: boolean; source: string }) => ({
      parameter,
      value: p.value,
      kind: p.assumed ? "assumed" : "published",
      source: p.source,
    });
    expect(result.costModel).toEqual([
      row("walkReferenceCycles", c.walkReferenceCycles),
      row("l2HitCycles", c.l2HitCycles),
      row("vmExitCycles", c.vmExitCycles),
      row("emulationCycles", c.emulationCycles),
      row("hiddenFaultCycles", c.hiddenFaultCycles),
      row("resyncCycles", c.resyncCycles),
      row("guestFaultCycles", c.guestFaultCycles),
      row("eptViolationCycles", c.eptViolationCycles),
    ]);
    expect(result.costModel[1]).toEqual({
      parameter: "l2HitCycles",
      value: 9,
      kind: "published",
      source: "Intel 248966: STLB hit",
    });
    // Per-level latencies replace the fixed one, their values joined with '/'.
    const byLevel = await comparePaging(
      synthetic({
        configs: [NATIVE],
        cost: { ...preset.cost, referenceCyclesByLevel: CACHE_LEVEL_REFERENCE_CYCLES },
      }),
    );
    expect(byLevel.costModel.map((r) => r.parameter)).not.toContain("walkReferenceCycles");
    expect(byLevel.costModel.at(-1)).toEqual({
      parameter: "referenceCyclesByLevel",
      value: "40/14/5/5/5",
      kind: "assumed",
      source: CACHE_LEVEL_REFERENCE_CYCLES.source,
    });
    for (const r of byLevel.costModel) {
      expect(typeof r.parameter).toBe("string");
      expect(typeof r.kind).toBe("string");
      expect(typeof r.source).toBe("string");
      expect(["number", "string"]).toContain(typeof r.value);
    }
  });

  it("reports a synthetic run's progress a ring slot at a time, ending at every access", async () => {
    const accesses = 2 * SLOT + 5;
    const calls: [number, number][] = [];
    const result = await comparePaging(
      synthetic({
        source: { kind: "synthetic", pattern: pattern("sequential", MiB), accesses },
        configs: [NATIVE],
        onProgress: (done, total) => calls.push([done, total]),
      }),
    );
    expect(calls).toEqual([
      [65_536, 131_077],
      [131_072, 131_077],
      [131_077, 131_077],
    ]);
    expect(result.rows[0]?.accesses).toBe(131_077);
  });

  it("gives each configuration the run its machine gives alone over the same generated accesses", async () => {
    const spec = synthetic({
      source: { kind: "synthetic", pattern: pattern("random", 2 * MiB), accesses: 4000 },
      configs: [SLAT_2M, NATIVE, SHADOW],
      guestLevels: 5,
      hostLevels: 5,
      guestBytes: 2 * GiB,
      activity: {
        ...QUIET,
        processes: 2,
        contextSwitchesPerSecond: 2e6,
        pageTableUpdatesPerSecond: 1e6,
      },
      seed: 11,
      prefault: true,
      dirtyLogHarvestsPerSecond: 2e6,
    });
    const result = await comparePaging(spec);
    // 2 MiB over two processes: (4 KiB + 64 KiB) x 3 x 1.5 = 306 KiB, + 2 MiB -> a 3 MiB zone.
    const alone = [SLAT_2M, NATIVE, SHADOW].map((config) =>
      runAlone(
        config,
        spec,
        3 * MiB,
        2 * MiB,
        (words, count) => new AccessGenerator(pattern("random", 2 * MiB), 11).fill(words, 0, count),
        4000,
      ),
    );
    const strip = (rows: readonly object[]) => rows.map((r) => ({ ...r, ratioToNative: null }));
    expect(strip(result.rows)).toEqual(strip(alone));
    // The run did what it was asked: process switches, and harvests (dirty-log exits under SLAT).
    expect(result.rows[1]?.contextSwitches).toBeGreaterThan(0);
    expect(result.rows[0]?.exits["dirty-log"]).toBeGreaterThan(0);
  });

  it("runs a trace file: its path as the source, its summary, and each configuration's own run", async () => {
    const dir = testTempDir("compare-rules");
    const file = join(dir, "small.lackey");
    const records: { va: number; kind: number }[] = [];
    const lines = ["==7== Lackey, an example Valgrind tool"];
    for (let i = 0; i < 600; i++) {
      const heap = 0x4a0_0000 + ((i * 7919) % 300) * 4096 + 8 * (i % 64);
      const code = 0x10_8000 + (i % 40) * 64;
      lines.push(`I  ${code.toString(16)},4`);
      records.push({ va: code, kind: ACCESS.execute | ACCESS.user });
      if (i % 3 === 0) {
        lines.push(` L ${heap.toString(16)},8`);
        records.push({ va: heap, kind: ACCESS.user });
      } else if (i % 3 === 1) {
        lines.push(` S ${heap.toString(16)},8`);
        records.push({ va: heap, kind: ACCESS.write | ACCESS.user });
      } else {
        lines.push(` M ${heap.toString(16)},4`);
        records.push({ va: heap, kind: ACCESS.user });
        records.push({ va: heap, kind: ACCESS.write | ACCESS.user });
      }
    }
    const text = `${lines.join("\n")}\n`;
    // 600 fetches and 600 data lines, a third of them modifies (a read and a write each).
    expect(records.length).toBe(1400);
    writeFileSync(file, text);
    const progress: [number, number][] = [];
    const spec = synthetic({
      source: traceSource(file),
      configs: [SHADOW, NATIVE, SLAT_4K],
      tableBytes: 2 * MiB,
      guestBytes: GiB,
      onProgress: (done, total) => progress.push([done, total]),
    });
    const result = await comparePaging(spec);
    expect(result.source).toBe(file);
    expect(result.trace).toEqual({
      format: "lackey",
      gzip: false,
      records: records.length,
      skipped: 0,
      kernel: 0,
      bytes: text.length,
    });
    expect(progress.at(-1)).toEqual([text.length, text.length]);
    const alone = [SHADOW, NATIVE, SLAT_4K].map((config) =>
      runAlone(
        config,
        spec,
        2 * MiB,
        null,
        (words) => {
          // A record: the page's address with the access kind in its low bits, then bits 32-63.
          for (const [i, r] of records.entries()) {
            const low = r.va % 2 ** 32;
            words[2 * i] = ((low - (low % 4096)) | r.kind) >>> 0;
            words[2 * i + 1] = Math.floor(r.va / 2 ** 32);
          }
        },
        records.length,
      ),
    );
    const strip = (rows: readonly object[]) => rows.map((r) => ({ ...r, ratioToNative: null }));
    expect(strip(result.rows)).toEqual(strip(alone));
    expect(result.rows.map((r) => r.accesses)).toEqual([1400, 1400, 1400]);
  });

  it("reads a trace as told: in its format, leniently or not, within the guest's address width", async () => {
    const dir = testTempDir("compare-rules");
    type TraceOptions = Partial<Extract<CompareSource, { kind: "trace" }>>;
    const run = (file: string, options: TraceOptions, guestLevels: 4 | 5 = 4) =>
      comparePaging(
        synthetic({
          source: { kind: "trace", file, format: "auto", lenient: false, ...options },
          configs: [NATIVE],
          guestLevels,
          tableBytes: 2 * MiB,
          guestBytes: GiB,
        }),
      );
    const plain = join(dir, "plain.txt");
    writeFileSync(plain, "R 4a00000\nW 4a01000\nR 4a02000\n");
    expect((await run(plain, {})).trace?.format).toBe("plain");
    await expect(run(plain, { format: "lackey" })).rejects.toThrow(
      /plain\.txt:1: not a lackey access/,
    );
    const bad = join(dir, "bad-line.lackey");
    writeFileSync(bad, " L 4a00000,8\n X nonsense\n S 4a01000,8\n");
    await expect(run(bad, {})).rejects.toThrow(/bad-line\.lackey:2: /);
    const lenient = await run(bad, { lenient: true });
    expect([lenient.trace?.records, lenient.trace?.skipped]).toEqual([2, 1]);
    expect(lenient.rows[0]?.accesses).toBe(2);
    // 2^47: past 4-level paging's user space, inside 5-level's.
    const high = join(dir, "high.lackey");
    writeFileSync(high, " L 4a00000,8\n L 800000000000,8\n");
    await expect(run(high, {}, 4)).rejects.toThrow(/beyond the 4-level user address space/);
    expect((await run(high, {}, 5)).rows[0]?.accesses).toBe(2);
  });

  it("with one pool worker beside this thread, still gives the rows in configuration order", async () => {
    pools.length = 0;
    const configs = [SLAT_4K, NATIVE, SHADOW];
    const here = await comparePaging(synthetic({ configs, threads: 0 }));
    expect(pools).toEqual([]);
    const pooled = await comparePaging(synthetic({ configs, threads: 1 }));
    // One worker (the paging kernels), closed once the comparison is done.
    expect(pools).toEqual([{ threads: 1, domains: ["paging"], closed: true }]);
    expect(pooled.rows.map((r) => r.label)).toEqual(["slat-4k", "native", "shadow"]);
    expect(pooled.rows).toEqual(here.rows);
  });
});
