import { describe, expect, it } from "vitest";
import { X86 } from "../src/paging/entry.js";
import { ACCESS } from "../src/paging/mmu.js";
import { HOST_BASE } from "../src/paging/physical.js";
import { DATA, setUpShadow, shadowPath, touch } from "./support/shadow-tables.js";

// A shadow entry above the leaf that went missing while the shadow table
// below it survived: the hardware's walk stops at the missing entry, so the
// fault is a hidden page fault (the guest's tables map the address), even
// though the shadow leaf the walk reaches once relinked is still in place.
// Counting it as accessed/dirty emulation would charge the wrong exit's cost.
const READ = ACCESS.user;
const WRITE = ACCESS.user | ACCESS.write;
const VA = 2 ** 30 + 5 * 2 ** 21 + 3 * 4096;
const MAPPED = X86.present | X86.writable | X86.user | X86.accessed;

/** A guest page mapped with `flags` and touched once, then `access` faulting on it as the hardware reports. */
function faultAfter(flags: bigint, first: number, access: number, zapLink: boolean) {
  const s = setUpShadow();
  s.guest.map(VA, DATA, flags);
  s.shadow.cr3Load(s.process, true);
  touch(s, VA, first);
  const leaf = shadowPath(s.window, s.mmu, VA)[3];
  expect(leaf, "the shadow leaf is in place").not.toBe(0n);
  if (zapLink) {
    // The guest rewrites its PDPTE: the emulated write zaps the link to the shadow directory.
    const pdpt = s.guest.tableOf(VA, 3);
    s.shadow.tableWrite(pdpt, (s.guest.entryAt(VA, 3) - pdpt) / 8);
    expect(shadowPath(s.window, s.mmu, VA)[1]).toBe(0n);
  }
  const before = { ...s.counters.exits };
  const outcome = s.mmu.translate(VA, access);
  if (!("fault" in outcome)) throw new Error("the access went through without a fault");
  expect(s.shadow.handleFault(s.process, outcome.fault)).toBeNull();
  const added = (exit: keyof typeof before) => s.counters.exits[exit] - before[exit];
  return { s, leaf, added };
}

describe("shadow paging: a fault that relinks a surviving shadow table", () => {
  for (const [name, access] of [
    ["read", READ],
    ["write", WRITE],
  ] as const) {
    it(`counts a ${name} whose leaf survived as a hidden page fault, not A/D emulation`, () => {
      const { s, leaf, added } = faultAfter(MAPPED | X86.dirty, access, access, true);
      expect(added("hidden-page-fault")).toBe(1);
      expect(added("ad-emulation")).toBe(0);
      expect(added("dirty-log")).toBe(0);
      expect(added("guest-page-fault")).toBe(0);
      expect(shadowPath(s.window, s.mmu, VA)[3], "the surviving leaf is reused").toBe(leaf);
      expect(s.mmu.translate(VA, access)).toEqual({ hpa: HOST_BASE + DATA });
    });
  }

  it("still counts A/D emulation where every link was in place", () => {
    // The guest PTE is clean, so the shadow leaf is read-only until the first write.
    const { s, added } = faultAfter(MAPPED, READ, WRITE, false);
    expect(added("ad-emulation")).toBe(1);
    expect(added("hidden-page-fault")).toBe(0);
    expect(s.guest.read(s.guest.entryAt(VA, 1)) & X86.dirty).toBe(X86.dirty);
  });
});
