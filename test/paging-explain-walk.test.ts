import { describe, expect, it } from "vitest";
import { ADDRESS_MASK } from "../src/paging/entry.js";
import { type ExplainSpec, explainWalk } from "../src/paging/explain.js";
import { cpuPreset } from "../src/paging/presets.js";

const ADDRESS = 0x10_1234_5678;

function spec(overrides: Partial<ExplainSpec>): ExplainSpec {
  return {
    address: ADDRESS,
    mode: "slat",
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

describe("hvlab paging explain: one walk, reference by reference", () => {
  it("walks the EPT for each guest table and for the page: a two-dimensional walk (Intel SDM vol. 3C 29.3.2)", () => {
    // Guest 4 KiB pages over 2 MiB EPT leaves: three EPT references per guest
    // physical address, (4 + 1) x 3 + 4 = 19 references.
    const w = explainWalk(spec({ hostBacking: "2M", write: true, eptAccessedDirty: true }));
    const ept = ["EPT PML4", "EPT PDPT", "EPT PD"];
    expect(w.references.map((r) => r.table)).toEqual([
      ...ept,
      "PML4",
      ...ept,
      "PDPT",
      ...ept,
      "PD",
      ...ept,
      "PT",
      ...ept,
    ]);
    expect(w.references.map((r) => r.dimension)).toEqual(
      w.references.map((r) => (r.table.startsWith("EPT") ? "host" : "guest")),
    );
    expect(w.fault).toBeNull();
    expect(w.mode).toBe("slat");
    expect(w.address).toBe(BigInt(ADDRESS));
    // The first touch: the guest's page fault, and an EPT violation for the
    // 2 MiB host page of its tables and one for the page's.
    expect(w.setupFaults).toBe(3);
  });

  it("decodes each entry: A on every entry used, D on the leaves written; EPT leaves RWX, write-back, large (SDM vol. 3A 4.8, vol. 3C 29.3.5)", () => {
    const w = explainWalk(spec({ hostBacking: "2M", write: true, eptAccessedDirty: true }));
    const decoded = (table: string) =>
      w.references.filter((r) => r.table === table).map((r) => r.decoded.replace(/ -> .*/, ""));
    for (const table of ["PML4", "PDPT", "PD"]) expect(decoded(table)).toEqual(["RW U A"]);
    expect(decoded("PT")).toEqual(["RW U A D"]);
    for (const table of ["EPT PML4", "EPT PDPT"])
      expect(new Set(decoded(table))).toEqual(new Set(["RWX type 0 A"]));
    // The walker's A/D writes to guest tables are writes under EPT A/D, so the tables' EPT leaf is dirty too.
    expect(new Set(decoded("EPT PD"))).toEqual(new Set(["RWX large type 6 A D"]));
    for (const r of w.references) {
      const target = BigInt(`0x${r.decoded.split(" -> 0x")[1]}`);
      expect(target, r.table).toBe(r.entry & ADDRESS_MASK);
    }
  });

  it("ends at the page's frame plus the address's offset in the page", () => {
    // The guest's 4 KiB leaf gives the guest-physical address; the EPT's
    // 2 MiB leaf maps it.
    const w = explainWalk(spec({ hostBacking: "2M", write: true }));
    const guestLeaf = w.references.find((r) => r.table === "PT");
    const eptLeaf = w.references.at(-1);
    if (!guestLeaf || !eptLeaf) throw new Error("no leaves");
    const gpa = Number(guestLeaf.entry & ADDRESS_MASK) + (ADDRESS % 4096);
    expect(w.hpa).toBe(Number(eptLeaf.entry & ADDRESS_MASK) + (gpa % 2 ** 21));
    expect((w.hpa ?? 0) % 4096).toBe(0x678);
  });

  it("reads without A/D: no D anywhere, EPT entries without A", () => {
    const w = explainWalk(spec({ write: false }));
    expect(w.references).toHaveLength(24);
    for (const r of w.references) expect(r.decoded.includes(" D "), r.table).toBe(false);
    for (const r of w.references.filter((r) => r.dimension === "host")) {
      expect(r.decoded.startsWith("RWX"), r.table).toBe(true);
      expect(r.decoded.includes(" A "), r.table).toBe(false);
    }
    expect(w.references.at(-1)?.decoded.replace(/ -> .*/, "")).toBe("RWX type 6");
  });

  it("natively reads the guest's tables alone, down to a 2 MiB leaf with PS (SDM vol. 3A 4.5)", () => {
    const w = explainWalk(spec({ mode: "native", guestPageSize: "2M" }));
    expect(w.references.map((r) => `${r.table}: ${r.decoded.replace(/ -> .*/, "")}`)).toEqual([
      "PML4: RW U A",
      "PDPT: RW U A",
      "PD: RW U A PS",
    ]);
    const leaf = w.references.at(-1);
    if (!leaf) throw new Error("no references");
    expect(w.hpa).toBe(Number(leaf.entry & ADDRESS_MASK) + (ADDRESS % 2 ** 21));
    // One guest page fault, and no hypervisor to exit to.
    expect(w.setupFaults).toBe(1);
  });

  it("over shadow tables, names them shadow tables and reaches the host frame directly", () => {
    const w = explainWalk(spec({ mode: "shadow", write: true }));
    expect(w.references.map((r) => `${r.table}: ${r.decoded.replace(/ -> .*/, "")}`)).toEqual([
      "shadow PML4: RW U A",
      "shadow PDPT: RW U A",
      "shadow PD: RW U A",
      "shadow PT: RW U A D",
    ]);
    expect(w.references.every((r) => r.dimension === "guest")).toBe(true);
  });

  it("refuses an address outside the user address space, suggesting 5-level paging when it would fit", () => {
    expect(() => explainWalk(spec({ address: 2 ** 47 }))).toThrow(
      "address 0x800000000000 is outside the 4-level user address space [0, 0x800000000000): it needs 5-level paging (--levels 5)",
    );
    expect(() => explainWalk(spec({ address: 1n << 56n }))).toThrow(
      /^address 0x100000000000000 is outside the 4-level user address space \[0, 0x800000000000\)$/,
    );
    expect(() => explainWalk(spec({ address: -1n }))).toThrow(
      /^address 0x-1 is outside the 4-level user address space/,
    );
    expect(() => explainWalk(spec({ address: 1n << 56n, guestLevels: 5 }))).toThrow(
      /^address 0x100000000000000 is outside the 5-level user address space \[0, 0x100000000000000\)$/,
    );
    const top = explainWalk(spec({ address: (1n << 56n) - 1n, guestLevels: 5, mode: "native" }));
    expect(top.references.map((r) => r.table)).toEqual(["PML5", "PML4", "PDPT", "PD", "PT"]);
    expect((top.hpa ?? 0) % 4096).toBe(0xfff);
  });
});
