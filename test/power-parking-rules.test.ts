import { describe, expect, it } from "vitest";
import { PowerConfigError } from "../src/power/errors.js";
import {
  checkParking,
  DEFAULT_PARKING,
  type ParkingParameters,
  parkingStep,
  unparkedBounds,
  wantedUnparked,
} from "../src/power/parking.js";

/*
 * The core parking rules one check at a time, with the parameters'
 * meanings from Microsoft's "Static configuration options for core
 * parking" (Windows Server 2008 R2): CPMinCores and CPMaxCores bound a
 * NUMA node's unparked processors (at least one per node), CPDistribution
 * spreads the node's load to pick the count, CPConcurrency counts the busy
 * processors, CPHeadroom unparks one more when even the least busy unparked
 * processor is above it, CPIncreaseTime and CPDecreaseTime hold changes back
 * for that many checks. Utilizations here are chosen to be exact in binary
 * floating point where a rule's boundary is tested.
 */

const params = (p: Partial<ParkingParameters> = {}): ParkingParameters => ({
  ...DEFAULT_PARKING,
  ...p,
});
const all = (n: number, value: boolean) => new Array<boolean>(n).fill(value);

describe("CPMinCores and CPMaxCores: the bounds of a node's unparked processors", () => {
  it.each([
    [{}, 8, [1, 8]],
    // 10 % of 8 is 0.8: rounded up to one processor.
    [{ CPMinCores: 10 }, 8, [1, 8]],
    [{ CPMinCores: 25 }, 8, [2, 8]],
    // 30 % of 10 is 3 (3.0000000000000004 in floating point): 3, not 4.
    [{ CPMinCores: 30, CPMaxCores: 30 }, 10, [3, 3]],
    [{ CPMinCores: 26, CPMaxCores: 26 }, 8, [3, 3]],
    [{ CPMaxCores: 25 }, 8, [1, 2]],
    // Never below one per node, even when both are 0.
    [{ CPMinCores: 0, CPMaxCores: 0 }, 8, [1, 1]],
    [{ CPMinCores: 100 }, 8, [8, 8]],
    [{ CPMinCores: 0, CPMaxCores: 100 }, 1, [1, 1]],
  ] as const)("%o over %i processors: %o", (p, nodeSize, bounds) => {
    expect(unparkedBounds(params(p), nodeSize)).toEqual(bounds);
  });
});

describe("the wanted count of unparked processors", () => {
  it("spreads the node's load at CPDistribution each", () => {
    // 1.8 processors of load at 90 % each: 2 processors.
    const u = [0.9, 0.9, 0, 0, 0, 0, 0, 0];
    expect(wantedUnparked(params(), u, all(8, true))).toBe(2);
    // 3 processors of load at 50 % each: 6.
    expect(
      wantedUnparked(params({ CPDistribution: 50 }), [1, 1, 1, 0, 0, 0, 0, 0], all(8, true)),
    ).toBe(6);
    // 0.1 + 0.2 is 0.30000000000000004: at 30 % each that is one processor, not two.
    expect(
      wantedUnparked(
        params({ CPDistribution: 30, CPHeadroom: 100 }),
        [0.1, 0.2, 0, 0],
        all(4, true),
      ),
    ).toBe(1);
  });

  it("keeps every processor at or above CPConcurrency unparked", () => {
    // Four processors at exactly CPConcurrency 25 %: four, though their load is only 1.
    const u = [0.25, 0.25, 0.25, 0.25, 0, 0, 0, 0];
    expect(wantedUnparked(params({ CPConcurrency: 25 }), u, all(8, true))).toBe(4);
    // Just below it: they do not count, and the load's 1 processor at 90 % wants 2.
    expect(wantedUnparked(params({ CPConcurrency: 26 }), u, all(8, true))).toBe(2);
  });

  it("wants one more than the unparked ones when even the least busy of them is above CPHeadroom", () => {
    const unparked = [true, true, true, true, false, false, false, false];
    // 2.4 processors of load at 90 %: 3; the least busy unparked at 60 % > 50 %: 4 + 1.
    expect(wantedUnparked(params(), [0.6, 0.6, 0.6, 0.6, 0, 0, 0, 0], unparked)).toBe(5);
    // At exactly CPHeadroom it is not above: the load's 3.
    expect(wantedUnparked(params(), [0.5, 0.5, 0.5, 0.5, 0, 0, 0, 0], unparked)).toBe(3);
    // One unparked processor at 10 % is the least busy: no headroom rule.
    expect(wantedUnparked(params(), [0.6, 0.6, 0.6, 0.1, 0, 0, 0, 0], unparked)).toBe(3);
    // Parked processors are not asked: their idleness does not hide the busy unparked ones.
    expect(
      wantedUnparked(
        params(),
        [0, 0, 0, 0, 0.6, 0.6, 0.6, 0.6],
        [false, false, false, false, true, true, true, true],
      ),
    ).toBe(5);
  });

  it("is bounded by CPMinCores and CPMaxCores", () => {
    const busy = new Array<number>(8).fill(1);
    expect(wantedUnparked(params({ CPMaxCores: 25 }), busy, all(8, true))).toBe(2);
    expect(
      wantedUnparked(params({ CPMinCores: 50 }), new Array<number>(8).fill(0), all(8, true)),
    ).toBe(4);
    expect(
      wantedUnparked(params({ CPMinCores: 0 }), new Array<number>(8).fill(0), all(8, true)),
    ).toBe(1);
  });
});

describe("one check of the parking engine", () => {
  it("unparks straight to the wanted count once CPIncreaseTime checks have passed, busiest parked first", () => {
    const p = params({ CPIncreaseTime: 3 });
    // Two unparked at 90 % (headroom: want 3, then 4 for the parked ones' own load).
    const u = [0.9, 0.9, 0, 0.1, 0, 0.3, 0.3, 0];
    const unparked = [true, true, false, false, false, false, false, false];
    expect(wantedUnparked(p, u, unparked)).toBe(3);
    // Too soon: nothing changes.
    expect(parkingStep(p, u, unparked, 2)).toEqual(unparked);
    // Exactly CPIncreaseTime checks: the busiest parked one, 5 and 6 tied at 30 %, the lower number first.
    expect(parkingStep(p, u, unparked, 3)).toEqual([
      true,
      true,
      false,
      false,
      false,
      true,
      false,
      false,
    ]);
    // Straight to the wanted count, not one at a time.
    // 3 processors of load at 50 % each: 6, so four more at once, the busiest parked first.
    const heavy = [1, 1, 0.2, 0.1, 0.4, 0.3, 0, 0];
    const spread = params({ CPHeadroom: 100, CPDistribution: 50 });
    expect(wantedUnparked(spread, heavy, unparked)).toBe(6);
    expect(parkingStep(spread, heavy, unparked, 1)).toEqual([
      true,
      true,
      true,
      true,
      true,
      true,
      false,
      false,
    ]);
  });

  it("parks one processor at a time once CPDecreaseTime checks have passed, least busy first, highest number on ties", () => {
    const p = params({ CPDecreaseTime: 2 });
    const u = [0.1, 0.1, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1];
    expect(wantedUnparked(p, u, all(8, true))).toBe(1);
    expect(parkingStep(p, u, all(8, true), 1)).toEqual(all(8, true));
    // The least busy, processor 2.
    expect(parkingStep(p, u, all(8, true), 2)).toEqual([
      true,
      true,
      false,
      true,
      true,
      true,
      true,
      true,
    ]);
    // All alike: the highest number.
    const even = new Array<number>(8).fill(0.1);
    expect(parkingStep(p, even, all(8, true), 5)).toEqual([
      true,
      true,
      true,
      true,
      true,
      true,
      true,
      false,
    ]);
  });

  it("leaves a node alone when it has what it wants", () => {
    const u = [0.9, 0.9, 0, 0, 0, 0, 0, 0];
    const unparked = [true, true, false, false, false, false, false, false];
    expect(wantedUnparked(params({ CPHeadroom: 100 }), u, unparked)).toBe(2);
    expect(parkingStep(params({ CPHeadroom: 100 }), u, unparked, 100)).toEqual(unparked);
  });

  it("holds CPMinCores and CPMaxCores at every check, whatever the times", () => {
    const slow = params({ CPMinCores: 50, CPIncreaseTime: 10, CPDecreaseTime: 10 });
    const idle = new Array<number>(8).fill(0);
    // Two unparked, four the least: unparked at once, the lowest numbers on ties.
    const two = [true, true, false, false, false, false, false, false];
    expect(parkingStep(slow, idle, two, 0)).toEqual([
      true,
      true,
      true,
      true,
      false,
      false,
      false,
      false,
    ]);
    // Eight unparked, at most two: six parked at once, the least busy first.
    const capped = params({ CPMaxCores: 25, CPDecreaseTime: 10 });
    const u = [0.9, 0.8, 0.7, 0.95, 0.6, 0.5, 0.99, 0.4];
    expect(parkingStep(capped, u, all(8, true), 0)).toEqual([
      false,
      false,
      false,
      true,
      false,
      false,
      true,
      false,
    ]);
  });

  it("does not change the flags it was given", () => {
    const unparked = all(8, true);
    parkingStep(params({ CPDecreaseTime: 1 }), new Array<number>(8).fill(0), unparked, 5);
    expect(unparked).toEqual(all(8, true));
  });
});

describe("the parking parameters are checked, naming the one that is wrong", () => {
  it("takes the defaults and the ends of every range", () => {
    expect(checkParking(DEFAULT_PARKING)).toEqual(DEFAULT_PARKING);
    const ends = params({
      CPMinCores: 0,
      CPMaxCores: 100,
      CPIncreaseTime: 1000,
      CPDecreaseTime: 1,
      CPConcurrency: 0,
      CPHeadroom: 100,
      CPDistribution: 100,
    });
    expect(checkParking(ends)).toEqual(ends);
    expect(checkParking(params({ CPMinCores: 40, CPMaxCores: 40 })).CPMinCores).toBe(40);
  });

  it.each([
    [{ CPMinCores: -1 }, /^CPMinCores -1: /],
    [{ CPMaxCores: 100.5 }, /^CPMaxCores 100\.5: /],
    [{ CPIncreaseTime: 0 }, /^CPIncreaseTime 0: /],
    [{ CPDecreaseTime: 1001 }, /^CPDecreaseTime 1001: /],
    [{ CPDecreaseTime: 1.5 }, /^CPDecreaseTime 1\.5: /],
    [{ CPConcurrency: Number.NaN }, /^CPConcurrency NaN: /],
    [{ CPHeadroom: Number.POSITIVE_INFINITY }, /^CPHeadroom Infinity: /],
    [{ CPDistribution: 0 }, /^CPDistribution 0: must be above 0$/],
    [{ CPMinCores: 60, CPMaxCores: 50 }, /^CPMinCores 60 is above CPMaxCores 50$/],
  ] as const)("refuses %o", (p, message) => {
    expect(() => checkParking(params(p))).toThrow(PowerConfigError);
    expect(() => checkParking(params(p))).toThrow(message);
  });

  it("refuses a parameter it does not know", () => {
    expect(() => checkParking({ ...DEFAULT_PARKING, CPIdle: 5 } as ParkingParameters)).toThrow(
      PowerConfigError,
    );
  });
});
