import { describe, expect, it } from "vitest";
import { ADDRESS_MASK, EPT, X86 } from "../src/paging/entry.js";
import { ACCESS } from "../src/paging/mmu.js";
import { HOST_BASE } from "../src/paging/physical.js";
import { HEAP_BASE } from "../src/paging/workload.js";
import { eptLeaf, guestLeaf, testMachine } from "./support/paging.js";

/** Bit 12 of a 2 MiB or 1 GiB leaf (Intel SDM vol. 3A 4.5, tables 4-17 and 4-18). */
const LARGE_PAT = 1n << 12n;
const MiB2 = 2 ** 21;

describe("PAT in a large guest leaf (Intel SDM vol. 3A 4.5: bit 12 of a 2 MiB PDE is PAT)", () => {
  it("selects a memory type and is not part of the frame's address", () => {
    for (const mode of ["native", "slat", "shadow"] as const) {
      const { machine } = testMachine({ mode, guestPageSize: "2M", hostBacking: "2M" });
      const va = HEAP_BASE + 0x1_2345;
      machine.touch(va, ACCESS.user);
      const leaf = guestLeaf(machine, va);
      expect(leaf, mode).not.toBeNull();
      if (!leaf) return;
      expect(leaf.entry & X86.pageSize, mode).toBe(X86.pageSize);
      const before = machine.mmu.translate(va, ACCESS.user);
      expect("hpa" in before, mode).toBe(true);
      machine.window.write(HOST_BASE + leaf.gpa, leaf.entry | LARGE_PAT);
      machine.mmu.flushAll();
      const after = machine.mmu.translate(va, ACCESS.user);
      // The 2 MiB frame is aligned, so the offset in the page comes from the address.
      expect(after, mode).toEqual(before);
      if ("hpa" in after) expect(after.hpa % MiB2, mode).toBe(va % MiB2);
    }
  });
});

describe("write-only EPT entries (Intel SDM vol. 3C 29.3.3.1: W without R is a misconfiguration)", () => {
  it("faults as an EPT misconfiguration at the level of the entry, leaf or not", () => {
    for (const level of [1, 2, 3, 4]) {
      const { machine } = testMachine({ mode: "slat" });
      machine.touch(HEAP_BASE, ACCESS.user);
      const host = machine.host;
      if (!host) throw new Error("not a SLAT machine");
      const gpa = Number((guestLeaf(machine, HEAP_BASE)?.entry ?? 0n) & ADDRESS_MASK);
      expect(eptLeaf(machine, gpa)).not.toBeNull();
      // The EPT entry at `level` on the way to the data page's frame.
      let table = host.root;
      let at = 0;
      for (let l = machine.options.hostLevels; l >= level; l--) {
        at = table + (Math.floor(gpa / 2 ** (12 + 9 * (l - 1))) % 512) * 8;
        table = Number(machine.window.read(at) & ADDRESS_MASK);
      }
      const entry = machine.window.read(at);
      machine.window.write(at, (entry & ~(EPT.read | EPT.execute)) | EPT.write);
      // INVVPID and INVEPT: nothing cached may stand in for the walk.
      machine.mmu.flushAll();
      machine.mmu.flushNested();
      const got = machine.mmu.translate(HEAP_BASE, ACCESS.user);
      expect("fault" in got && got.fault, `level ${level}`).toMatchObject({
        code: "ept-misconfig",
        level,
      });
      // Read and write is a valid entry again.
      machine.window.write(at, (entry & ~EPT.execute) | EPT.read | EPT.write);
      machine.mmu.flushAll();
      machine.mmu.flushNested();
      expect("hpa" in machine.mmu.translate(HEAP_BASE, ACCESS.user), `level ${level}`).toBe(true);
    }
  });
});
