import { describe, expect, it } from "vitest";
import { ADDRESS_MASK, EPT, X86 } from "../src/paging/entry.js";
import { ACCESS } from "../src/paging/mmu.js";
import { HEAP_BASE } from "../src/paging/workload.js";
import { eptLeaf, guestLeaf, testMachine } from "./support/paging.js";

const READ = ACCESS.user;
const WRITE = ACCESS.user | ACCESS.write;

/** The guest leaf of `va` (it must be mapped). */
function leafOf(machine: ReturnType<typeof testMachine>["machine"], va: number) {
  const leaf = guestLeaf(machine, va);
  if (!leaf) throw new Error(`0x${va.toString(16)} is not mapped`);
  return leaf;
}

describe("accessed and dirty bits (Intel SDM vol. 3A 4.8; EPT: 29.3.5)", () => {
  it("a write sets D in the guest PTE, a read sets A only, natively and under SLAT", () => {
    for (const mode of ["native", "slat"] as const) {
      const { machine } = testMachine({ mode });
      machine.touch(HEAP_BASE, READ);
      machine.touch(HEAP_BASE + 4096, WRITE);
      const read = leafOf(machine, HEAP_BASE).entry;
      const written = leafOf(machine, HEAP_BASE + 4096).entry;
      expect(read & X86.accessed, `${mode}: A after a read`).toBe(X86.accessed);
      expect(read & X86.dirty, `${mode}: D after a read`).toBe(0n);
      expect(written & X86.accessed, `${mode}: A after a write`).toBe(X86.accessed);
      expect(written & X86.dirty, `${mode}: D after a write`).toBe(X86.dirty);
    }
  });

  it("with EPT A/D, a write sets D in the EPT leaf of the page written, a read sets A only", () => {
    const { machine } = testMachine({ mode: "slat", eptAccessedDirty: true });
    machine.touch(HEAP_BASE, READ);
    machine.touch(HEAP_BASE + 4096, WRITE);
    const readGpa = Number(leafOf(machine, HEAP_BASE).entry & ADDRESS_MASK);
    const writtenGpa = Number(leafOf(machine, HEAP_BASE + 4096).entry & ADDRESS_MASK);
    const read = eptLeaf(machine, readGpa) ?? 0n;
    const written = eptLeaf(machine, writtenGpa) ?? 0n;
    expect(read & (EPT.accessed | EPT.dirty)).toBe(EPT.accessed);
    expect(written & (EPT.accessed | EPT.dirty)).toBe(EPT.accessed | EPT.dirty);
  });

  it("without EPT A/D, the EPT leaves keep A and D clear", () => {
    const { machine } = testMachine({ mode: "slat" });
    machine.touch(HEAP_BASE, WRITE);
    const gpa = Number(leafOf(machine, HEAP_BASE).entry & ADDRESS_MASK);
    expect((eptLeaf(machine, gpa) ?? 0n) & (EPT.accessed | EPT.dirty)).toBe(0n);
  });
});
