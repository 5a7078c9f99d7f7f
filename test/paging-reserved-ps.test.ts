import { describe, expect, it } from "vitest";
import { X86 } from "../src/paging/entry.js";
import { ACCESS } from "../src/paging/mmu.js";
import { HOST_BASE } from "../src/paging/physical.js";
import { HEAP_BASE } from "../src/paging/workload.js";
import { testMachine } from "./support/paging.js";

describe("PS in a PML4 entry (Intel SDM vol. 3A 4.5, table 4-15: bit 7 reserved)", () => {
  it("faults as a reserved-bit violation at level 4", () => {
    const { machine } = testMachine({ mode: "native" });
    machine.touch(HEAP_BASE, ACCESS.user);
    const root = machine.os.current.cr3;
    const at = HOST_BASE + root + (Math.floor(HEAP_BASE / 2 ** 39) % 512) * 8;
    machine.window.write(at, machine.window.read(at) | X86.pageSize);
    machine.mmu.flushAll();
    const got = machine.mmu.translate(HEAP_BASE, ACCESS.user);
    expect("fault" in got && got.fault).toMatchObject({ code: "guest-reserved", level: 4 });
  });
});
