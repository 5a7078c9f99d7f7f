import { describe, expect, it } from "vitest";
import { PagingError } from "../src/paging/errors.js";
import {
  CPU_PRESETS,
  checkGeometry,
  cpuPreset,
  parseGeometry,
  withoutCaches,
} from "../src/paging/presets.js";

// The presets' geometries are Intel's optimization manual's (248966); what is
// checked here is how a preset is found, how a geometry the user writes is
// read and refused, and what "no caches" leaves of a CPU (its tagging and
// how its TLBs hold large pages, which are properties of the CPU, not of a
// cache's contents).
describe("CPU presets", () => {
  it("are found by name, and an unknown name is refused naming the ones there are", () => {
    expect(Object.keys(CPU_PRESETS)).toEqual(["nehalem", "skylake-sp", "icelake-sp"]);
    for (const name of Object.keys(CPU_PRESETS)) expect(cpuPreset(name).name).toBe(name);
    expect(() => cpuPreset("pentium")).toThrow(
      new PagingError("unknown CPU preset 'pentium' (one of nehalem, skylake-sp, icelake-sp)"),
    );
  });

  it("price each event: the walk's references and the exits assumed, the STLB hit published", () => {
    const cost = cpuPreset("skylake-sp").cost;
    expect(cost.walkReferenceCycles).toMatchObject({ value: 25, assumed: true });
    expect(cost.l2HitCycles).toEqual({
      value: 9,
      assumed: false,
      source: "Intel 248966: STLB hit",
    });
    expect(cost.vmExitCycles).toMatchObject({ value: 1200, assumed: true });
    expect(cost.emulationCycles).toMatchObject({ value: 2000, assumed: true });
    expect(cost.hiddenFaultCycles).toMatchObject({ value: 1500, assumed: true });
    expect(cost.resyncCycles).toMatchObject({ value: 4000, assumed: true });
    expect(cost.guestFaultCycles).toMatchObject({ value: 2000, assumed: true });
    expect(cost.eptViolationCycles).toMatchObject({ value: 2000, assumed: true });
    expect(cpuPreset("nehalem").cost.l2HitCycles.value).toBe(7);
    expect(cpuPreset("icelake-sp").cost.vmExitCycles.value).toBe(1100);
  });
});

describe("a CPU without caches", () => {
  it("holds nothing anywhere and keeps the CPU's tagging and large-page handling", () => {
    for (const name of Object.keys(CPU_PRESETS)) {
      const caches = cpuPreset(name).caches;
      const none = withoutCaches(caches);
      const empty = { entries: 0, ways: 1 };
      expect(none).toEqual({
        l1: { "4K": empty, "2M": empty, "1G": null },
        l1i: { "4K": empty, "2M": empty },
        l2: empty,
        l2Holds2M: caches.l2Holds2M,
        l2OneGig: null,
        pwcGuest: { 2: null, 3: null, 4: null, 5: null },
        pwcHost: { 2: null, 3: null, 4: null, 5: null },
        nestedTlb: null,
        nestedTlbAtLeafSize: caches.nestedTlbAtLeafSize,
        tagged: caches.tagged,
      });
    }
    // The presets differ in each kept property, so each is read from the CPU.
    expect(withoutCaches(cpuPreset("nehalem").caches)).toMatchObject({
      l2Holds2M: false,
      nestedTlbAtLeafSize: false,
      tagged: false,
    });
    expect(withoutCaches(cpuPreset("skylake-sp").caches)).toMatchObject({
      l2Holds2M: true,
      nestedTlbAtLeafSize: true,
      tagged: true,
    });
  });
});

describe("cache geometries", () => {
  it("take 0 or up to 1 Mi entries in 1 to 64 ways, a whole number of sets", () => {
    for (const geometry of [
      null,
      { entries: 0, ways: 0 },
      { entries: 1, ways: 1 },
      { entries: 2 ** 20, ways: 64 },
      { entries: 1536, ways: 12 },
    ]) {
      expect(() => checkGeometry("l2", geometry)).not.toThrow();
    }
  });

  it("refuse entries, ways or sets out of range, naming the cache and the value", () => {
    const refusals: [number, number, string][] = [
      [2 ** 20 + 1, 1, "l2: entries must be 0 to 1,048,576, not 1048577"],
      [-4, 1, "l2: entries must be 0 to 1,048,576, not -4"],
      [2.5, 1, "l2: entries must be 0 to 1,048,576, not 2.5"],
      [64, 0, "l2: ways must be 1 to 64, not 0"],
      [130, 65, "l2: ways must be 1 to 64, not 65"],
      [64, 1.5, "l2: ways must be 1 to 64, not 1.5"],
      [1536, 10, "l2: 1536 entries cannot be split into sets of 10 ways (impossible geometry)"],
    ];
    for (const [entries, ways, message] of refusals) {
      expect(() => checkGeometry("l2", { entries, ways })).toThrow(new PagingError(message));
    }
  });

  it("are read as entries/ways, blanks around them allowed, anything else refused", () => {
    expect(parseGeometry("--l2", "1536/12")).toEqual({ entries: 1536, ways: 12 });
    expect(parseGeometry("--l2", "  64/4\n")).toEqual({ entries: 64, ways: 4 });
    expect(parseGeometry("--pwc", "0/1")).toEqual({ entries: 0, ways: 1 });
    for (const text of ["1536", "1536/12/1", "a/4", "64 / 4", "x64/4", "64/4x", "-4/1"]) {
      expect(() => parseGeometry("--l2", text)).toThrow(
        new PagingError(`--l2: write a geometry as entries/ways, not '${text}'`),
      );
    }
    expect(() => parseGeometry("--nested-tlb", "64/5")).toThrow(
      new PagingError(
        "--nested-tlb: 64 entries cannot be split into sets of 5 ways (impossible geometry)",
      ),
    );
  });
});
