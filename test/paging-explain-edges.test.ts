import { describe, expect, it } from "vitest";
import { type ExplainSpec, explainWalk } from "../src/paging/explain.js";
import { cpuPreset } from "../src/paging/presets.js";

function spec(overrides: Partial<ExplainSpec>): ExplainSpec {
  return {
    address: 0,
    mode: "native",
    guestLevels: 4,
    hostLevels: 4,
    guestPageSize: "4K",
    hostBacking: "4K",
    guestBytes: 8 * 2 ** 30,
    write: false,
    warm: false,
    cpu: cpuPreset("skylake-sp"),
    ...overrides,
  };
}

describe("hvlab paging explain at the edges of the address space", () => {
  it("explains address 0, the first byte of the user address space", () => {
    const w = explainWalk(spec({ address: 0 }));
    expect(w.address).toBe(0n);
    expect(w.references.map((r) => r.table)).toEqual(["PML4", "PDPT", "PD", "PT"]);
    expect((w.hpa ?? -1) % 4096).toBe(0);
  });

  it("refuses a negative address without suggesting 5-level paging, at either depth", () => {
    for (const guestLevels of [4, 5] as const) {
      const top = guestLevels === 5 ? "100000000000000" : "800000000000";
      expect(
        () => explainWalk(spec({ address: -4096n, guestLevels })),
        `${guestLevels} levels`,
      ).toThrow(
        new RegExp(
          `^address 0x-1000 is outside the ${guestLevels}-level user address space \\[0, 0x${top}\\)$`,
        ),
      );
    }
  });
});
