import { describe, expect, it } from "vitest";
import { ACCESS } from "../src/paging/mmu.js";
import { cpuPreset, type TranslationCaches, withoutCaches } from "../src/paging/presets.js";
import { AccessGenerator, HEAP_BASE } from "../src/paging/workload.js";
import { testMachine, writeTrace } from "./support/paging.js";

const full = cpuPreset("skylake-sp").caches;
const noTlb = withoutCaches(full);

function run(
  caches: TranslationCaches,
  mode: "slat" | "shadow" | "native",
  kind: "strided" | "sequential" = "strided",
) {
  const ws = 64 * 2 ** 20;
  const { machine, layout } = testMachine({
    mode,
    caches,
    workingSetBytes: ws,
    prefault: true,
    tableBytes: 8 * 2 ** 20,
  });
  // Reuse-heavy: strided over a 64 MiB working set, every page revisited.
  const generator = new AccessGenerator(
    { kind, workingSetBytes: ws, strideBytes: 4096 * 3 + 64, writeFraction: 0.1 },
    3,
  );
  const n = 60_000;
  const records = new Uint32Array(n * 2);
  generator.fill(records, 0, n);
  const region = layout.allocate("reuse trace", n * 8);
  new Uint32Array(layout.memory.buffer, region.offset, n * 2).set(records);
  machine.mmu.flushAll();
  machine.mmu.flushNested();
  machine.runRecords(region, n);
  return machine.stats();
}

describe("translation caches", () => {
  it("page-walk caches and a nested TLB reduce walk references and never change a translation", () => {
    // No TLB at all, so every access walks: only the walk caches differ.
    const bare = run(noTlb, "slat");
    const pwc = run({ ...noTlb, pwcGuest: full.pwcGuest, pwcHost: full.pwcHost }, "slat");
    const both = run(
      { ...noTlb, pwcGuest: full.pwcGuest, pwcHost: full.pwcHost, nestedTlb: full.nestedTlb },
      "slat",
    );
    expect(bare.referencesPerWalk).toBe(24);
    expect(pwc.references).toBeLessThan(bare.references);
    expect(both.references).toBeLessThan(pwc.references);
    expect(pwc.pwcGuestHits + pwc.pwcHostHits).toBeGreaterThan(0);
    expect(both.nestedTlbHits).toBeGreaterThan(0);
    expect(pwc.checksum).toBe(bare.checksum);
    expect(both.checksum).toBe(bare.checksum);
  });

  it("TLBs cut walks without changing a translation, in every mode", () => {
    for (const mode of ["native", "shadow", "slat"] as const) {
      const bare = run(noTlb, mode, "sequential");
      const tlb = run(full, mode, "sequential");
      expect(tlb.walks).toBeLessThan(bare.walks);
      expect(tlb.l1Hits + tlb.l2Hits).toBeGreaterThan(0);
      expect(tlb.checksum).toBe(bare.checksum);
    }
  });

  it("tags address spaces or flushes them on a CR3 load", () => {
    for (const tagged of [true, false]) {
      const { machine, layout } = testMachine({
        mode: "slat",
        caches: { ...full, tagged },
        workingSetBytes: 2 ** 20,
        prefault: true,
        activity: {
          processes: 2,
          contextSwitchesPerSecond: 0,
          pageTableUpdatesPerSecond: 0,
          forkExecPerSecond: 0,
          munmapPerSecond: 0,
          accessesPerSecond: 1e9,
        },
      });
      const trace = writeTrace(layout, [{ va: HEAP_BASE, kind: ACCESS.user }]);
      const [a, b] = [...machine.os.processes.values()];
      if (!a || !b) throw new Error("two processes expected");
      machine.os.switchTo(a);
      machine.runRecords(trace.region, 1);
      machine.os.switchTo(b);
      machine.runRecords(trace.region, 1);
      machine.os.switchTo(a);
      const before = machine.counters().walks;
      machine.runRecords(trace.region, 1);
      // With tags, a's entry survived b's turn: a TLB hit. Without, the CR3 loads flushed it.
      expect(machine.counters().walks - before).toBe(tagged ? 0 : 1);
    }
  });

  it("refuses impossible geometry", () => {
    expect(() => testMachine({ caches: { ...full, l2: { entries: 100, ways: 12 } } })).toThrow(
      /impossible geometry/,
    );
  });
});
