/*
 * How a comparison spreads its configurations over pool workers and this
 * thread, and a few edges of a comparison and of a machine. With as many
 * workers as configurations every configuration runs in a worker of its
 * own and this thread only reads the trace, with the same rows as on this
 * thread alone. A worker whose configuration fails ends the comparison at
 * once, with that configuration's error. The guest's default page-table
 * zone follows its formula for many processes too; the host's zone is
 * twice the guest's, so a guest zone of an odd number of frames runs. A
 * PS bit in a PML4 entry (reserved there) is a segmentation fault of the
 * guest. A page-table update of a 5-level trace acts on the record's page
 * past 2^53 too, without the record's access bits.
 */
import { describe, expect, it, vi } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { type CompareSpec, comparePaging, defaultTableBytes } from "../src/paging/compare.js";
import { X86 } from "../src/paging/entry.js";
import { PagingError } from "../src/paging/errors.js";
import { X86_SOFTWARE_TRACKED } from "../src/paging/guest-os.js";
import {
  type MachineOptions,
  type PagingConfig,
  PagingMachine,
  type PagingStats,
} from "../src/paging/machine.js";
import { ACCESS, MmuContext } from "../src/paging/mmu.js";
import { HOST_BASE } from "../src/paging/physical.js";
import { cpuPreset } from "../src/paging/presets.js";
import { AccessGenerator, type AccessPattern, HEAP_BASE, QUIET } from "../src/paging/workload.js";
import { WalkKernel } from "../src/wasm/walk.js";
import { guestLeaf, testMachine, writeTrace } from "./support/paging.js";

/** Every kernel pool a comparison starts: its workers, and whether it was closed. */
const pools = vi.hoisted(() => [] as { threads: number; domains: string[]; closed: boolean }[]);

// The real pool, each one recorded, to see how many workers a comparison starts.
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
/** 2 MiB guest pages: a 32 MiB guest runs out of memory over a 64 MiB working set. */
const BIG: PagingConfig = {
  label: "big",
  mode: "native",
  guestPageSize: "2M",
  hostBacking: "4K",
  unsync: false,
};

function pattern(kind: AccessPattern["kind"], workingSetBytes: number): AccessPattern {
  return { kind, workingSetBytes, strideBytes: 4096, writeFraction: 0.25 };
}

/** A small synthetic comparison on this thread alone unless told otherwise. */
function synthetic(overrides: Partial<CompareSpec> = {}): CompareSpec {
  return {
    source: { kind: "synthetic", pattern: pattern("random", 256 * KiB), accesses: 3000 },
    cpu: preset.name,
    caches: preset.caches,
    cost: preset.cost,
    configs: [SLAT_4K, NATIVE, SHADOW],
    guestLevels: 4,
    hostLevels: 4,
    guestBytes: 4 * GiB,
    activity: QUIET,
    seed: 3,
    threads: 0,
    ...overrides,
  };
}

/**
 * One configuration's machine run alone over generated accesses, built as a
 * comparison is documented to build it: the guest zone `tableBytes`, the
 * host zone twice that.
 */
function runAlone(config: PagingConfig, spec: CompareSpec, tableBytes: number): PagingStats {
  if (spec.source.kind !== "synthetic") throw new Error("a synthetic source only");
  const { pattern: p, accesses } = spec.source;
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
    workingSetBytes: p.workingSetBytes,
    activity: spec.activity,
    seed: spec.seed,
    prefault: false,
    dirtyLogHarvestsPerSecond: 0,
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
  const region = layout.allocate("alone trace", accesses * 8, 64);
  const words = new Uint32Array(layout.memory.buffer, region.offset, accesses * 2);
  new AccessGenerator(p, spec.seed).fill(words, 0, accesses);
  machine.runRecords(region, accesses);
  return machine.stats();
}

describe("the guest's default page-table zone", () => {
  // The documented formula: a 512th of the working set and 64 KiB for each
  // process and the fork's copy, half again, and 2 MiB, rounded up to whole MiB.
  const formula = (ws: number, processes: number) =>
    Math.ceil(((ws / 512 + 64 * KiB) * (processes + 1) * 1.5 + 2 * MiB) / MiB) * MiB;

  it("for many processes, counts 64 KiB for each, which rounds up past a MiB", () => {
    // 16 MiB over 10 processes: (32 KiB + 64 KiB) x 11 x 1.5 = 1,584 KiB, + 2 MiB = 3.55 MiB -> 4 MiB.
    expect(formula(16 * MiB, 10)).toBe(4 * MiB);
    expect(defaultTableBytes(16 * MiB, 10)).toBe(4 * MiB);
    // 4 KiB over 15 processes: (8 B + 64 KiB) x 16 x 1.5 = 1,536.2 KiB, + 2 MiB -> 4 MiB.
    expect(formula(4 * KiB, 15)).toBe(4 * MiB);
    expect(defaultTableBytes(4 * KiB, 15)).toBe(4 * MiB);
  });
});

describe("a comparison with as many pool workers as configurations", () => {
  it("runs each configuration in a worker of its own, with the rows of a run on this thread", async () => {
    pools.length = 0;
    const here = await comparePaging(synthetic({ threads: 0 }));
    // All on this thread: no pool at all.
    expect(pools).toEqual([]);
    const pooled = await comparePaging(synthetic({ threads: 3 }));
    // Three workers, one a configuration, this thread only reading the trace; closed at the end.
    expect(pools).toEqual([{ threads: 3, domains: ["paging"], closed: true }]);
    expect(pooled.rows.map((r) => [r.label, r.accesses])).toEqual([
      ["slat-4k", 3000],
      ["native", 3000],
      ["shadow", 3000],
    ]);
    expect(pooled.rows).toEqual(here.rows);
  });
});

describe("a comparison whose worker fails", () => {
  it("rejects with the worker's error at once, though the ring is full and waits for that worker", async () => {
    pools.length = 0;
    // 33 slots of records, one more than the ring holds: the reading thread
    // must wait for the failed worker's slot, so only the failure ends it
    // (it takes well under a second; the time limit fails a comparison that waits on).
    const spec = synthetic({
      source: { kind: "synthetic", pattern: pattern("random", 64 * MiB), accesses: 33 * SLOT },
      configs: [BIG],
      guestBytes: 32 * MiB,
      threads: 1,
    });
    const error: unknown = await comparePaging(spec).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe(
      "guest memory (33554432 bytes) is exhausted allocating a 2M page",
    );
    // The one worker was started and closed.
    expect(pools).toEqual([{ threads: 1, domains: ["paging"], closed: true }]);
  }, 20_000);
});

describe("a comparison's host page-table zone", () => {
  it("is twice the guest's, so that a guest zone of an odd number of frames runs", async () => {
    // 513 frames: half of them would not be whole frames.
    const tableBytes = 2 * MiB + 4096;
    const spec = synthetic({ tableBytes, configs: [SLAT_4K, NATIVE] });
    const result = await comparePaging(spec);
    const strip = (rows: readonly object[]) => rows.map((r) => ({ ...r, ratioToNative: null }));
    expect(strip(result.rows)).toEqual(
      strip([runAlone(SLAT_4K, spec, tableBytes), runAlone(NATIVE, spec, tableBytes)]),
    );
    expect(result.rows.map((r) => r.accesses)).toEqual([3000, 3000]);
  });
});

describe("a PS bit in a PML4 entry (reserved there: Intel SDM vol. 3A 4.5)", () => {
  for (const mode of ["native", "slat"] as const) {
    it(`is a segmentation fault of the guest (${mode}), counted as its page fault`, () => {
      const { machine } = testMachine({ mode });
      machine.touch(HEAP_BASE, ACCESS.user);
      expect(machine.stats().guestPageFaults).toBe(1);
      const at = HOST_BASE + machine.os.current.cr3 + (Math.floor(HEAP_BASE / 2 ** 39) % 512) * 8;
      machine.window.write(at, machine.window.read(at) | X86.pageSize);
      // The cached translation would hide the corrupted entry.
      machine.mmu.flushAll();
      let error: unknown = null;
      try {
        machine.touch(HEAP_BASE, ACCESS.user);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(PagingError);
      expect((error as Error).message).toBe(
        "segmentation fault: pid 1 guest-reserved at 0x1000000000 (level 4)",
      );
      // The guest OS took the fault, and found nothing to map.
      expect(machine.stats().guestPageFaults).toBe(2);
    });
  }
});

describe("a page-table update of a 5-level trace past 2^53", () => {
  it("write-protects the record's page, whatever the record's access bits", () => {
    const page = 2 ** 53 + 4096;
    // An update every record: the first after record 0, at record 1.
    const { machine, layout } = testMachine({
      mode: "native",
      guestLevels: 5,
      workingSetBytes: null,
      activity: { ...QUIET, pageTableUpdatesPerSecond: QUIET.accessesPerSecond },
    });
    // A write maps the page writable; the second record (a read) is where the update acts.
    const trace = writeTrace(layout, [
      { va: page, kind: ACCESS.write | ACCESS.user },
      { va: page, kind: ACCESS.user },
    ]);
    // The record's low word holds its access bits beside the page address.
    expect((trace.words[2] ?? 0) % 4096).toBe(ACCESS.user);
    machine.runRecords(trace.region, 2);
    expect(machine.accesses).toBe(2);
    const entry = guestLeaf(machine, page)?.entry ?? 0n;
    // Present, read-only, and marked to track its next write.
    const bits = X86.present | X86.writable | X86_SOFTWARE_TRACKED;
    expect(entry & bits).toBe(X86.present | X86_SOFTWARE_TRACKED);
    expect(machine.os.counters.invlpgs).toBe(1);
  });
});
