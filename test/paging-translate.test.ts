import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { referenceTranslate } from "../src/oracle/paging.js";
import type { PageSize } from "../src/paging/entry.js";
import type { PagingMachine } from "../src/paging/machine.js";
import { ACCESS } from "../src/paging/mmu.js";
import { HOST_BASE } from "../src/paging/physical.js";
import { QUIET } from "../src/paging/workload.js";
import { testMachine } from "./support/paging.js";

/** Translates `va` as the hardware would once the hypervisor has done its part; null if the guest itself faults. */
function resolve(machine: PagingMachine, va: number): number | null {
  for (let i = 0; i < 16; i++) {
    const r = machine.mmu.translate(va, ACCESS.user);
    if ("hpa" in r) return r.hpa;
    const f = r.fault;
    if (f.code === "ept-violation") {
      machine.host?.map(f.address);
      continue;
    }
    if (machine.shadow && f.code.startsWith("guest")) {
      if (machine.shadow.handleFault(machine.os.current, f) === null) continue;
      return null;
    }
    return null;
  }
  throw new Error(`0x${va.toString(16)} does not resolve`);
}

/** Random guest activity: touches, unmaps, write tracking, fork+exec, context switches. */
const op = fc.oneof(
  fc.record({ kind: fc.constant("touch"), slot: fc.nat(63), write: fc.boolean() }),
  fc.record({ kind: fc.constant("unmap"), slot: fc.nat(63) }),
  fc.record({ kind: fc.constant("track"), slot: fc.nat(63) }),
  fc.record({ kind: fc.constant("fork") }),
  fc.record({ kind: fc.constant("switch") }),
);

/** Where slot s lies: spread over three 1 GiB regions so that every table level varies. */
function slotAddress(slot: number, page: PageSize): number {
  const bytes = page === "4K" ? 4096 : page === "2M" ? 2 ** 21 : 2 ** 30;
  const region = [0x40_0000_0000, 0x7f00_0000_0000, 0x1_0000_0000][slot % 3] as number;
  return region + Math.floor(slot / 3) * bytes * (page === "1G" ? 1 : 3) + (slot % 7) * 64;
}

describe("every mode translates like the reference translator", () => {
  it("shadow and SLAT give HOST_BASE + the guest's own translation, after random guest activity", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("4K", "2M", "1G" as const),
        fc.array(op, { minLength: 1, maxLength: 60 }),
        fc.array(fc.nat(63), { minLength: 1, maxLength: 40 }),
        (page, ops, queries) => {
          const modes = [
            { mode: "shadow" as const, hostBacking: "4K" as const },
            { mode: "slat" as const, hostBacking: "4K" as const },
            { mode: "slat" as const, hostBacking: "2M" as const },
            { mode: "slat" as const, hostBacking: "1G" as const },
            { mode: "native" as const, hostBacking: "4K" as const },
          ];
          for (const { mode, hostBacking } of modes) {
            const { machine } = testMachine({
              mode,
              guestPageSize: page,
              hostBacking,
              workingSetBytes: null,
              activity: { ...QUIET, processes: 2 },
              tableBytes: 2 * 2 ** 20,
              guestBytes: 128 * 2 ** 30,
            });
            const processes = [...machine.os.processes.values()];
            let running = 0;
            for (const o of ops) {
              const current = machine.os.current;
              if (o.kind === "touch") {
                machine.touch(
                  slotAddress(o.slot, page),
                  ACCESS.user | (o.write ? ACCESS.write : 0),
                );
              } else if (o.kind === "unmap") {
                machine.os.unmap(current, slotAddress(o.slot, page), 4096);
              } else if (o.kind === "track") {
                machine.os.trackWrites(current, slotAddress(o.slot, page));
              } else if (o.kind === "fork") {
                const child = machine.os.fork(current);
                machine.os.exec(child, current.vmas);
                machine.os.exit(child);
              } else {
                running = (running + 1) % processes.length;
                const next = processes[running];
                if (next) machine.os.switchTo(next);
              }
            }
            const read = (gpa: number) => machine.window.read(HOST_BASE + gpa);
            for (const q of queries) {
              const va = slotAddress(q, page);
              const expected = referenceTranslate(read, machine.os.current.cr3, 4, va);
              const got = resolve(machine, va);
              if (expected === null) expect(got, `${mode} 0x${va.toString(16)}`).toBeNull();
              else {
                const base = mode === "native" ? 0 : HOST_BASE;
                expect(got, `${mode}/${hostBacking} 0x${va.toString(16)}`).toBe(base + expected);
              }
            }
          }
        },
      ),
      { numRuns: 100 },
    );
  });
});
