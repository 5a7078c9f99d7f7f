import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { MmuOracle } from "../src/oracle/paging.js";
import { ACCESS, FAULTS } from "../src/paging/mmu.js";
import { HEAP_BASE } from "../src/paging/workload.js";
import { testMachine } from "./support/paging.js";

function canary(layout: MemoryLayout, name: string) {
  const region = layout.allocate(name, 4096);
  const bytes = region.bytes(layout.memory);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 37 + 11) & 0xff;
  return () => {
    const now = region.bytes(layout.memory);
    for (let i = 0; i < now.length; i++) if (now[i] !== ((i * 37 + 11) & 0xff)) return false;
    return true;
  };
}

describe("walks over corrupted page tables", () => {
  it("never crash, never touch memory outside their regions, and agree with the oracle", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("native", "shadow", "slat" as const),
        fc.array(
          fc.record({
            frame: fc.nat(4095),
            index: fc.nat(511),
            value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
            keepLow: fc.boolean(),
          }),
          { minLength: 1, maxLength: 40 },
        ),
        fc.array(fc.nat(4095), { minLength: 1, maxLength: 30 }),
        (mode, corruptions, probes) => {
          const twins = [0, 1].map(() => {
            const layout = new MemoryLayout();
            const before = canary(layout, "canary before");
            const { machine } = testMachine(
              { mode, workingSetBytes: 16 * 2 ** 20, prefault: true, tableBytes: 2 ** 20 },
              layout,
            );
            const after = canary(layout, "canary after");
            // Corrupt entries of frames that are in use (the window's first frames are tables).
            const bytes = machine.window.arena.bytes(layout.memory);
            const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
            const frames = bytes.byteLength / 4096;
            for (const c of corruptions) {
              const at = (c.frame % frames) * 4096 + c.index * 8;
              // Half the time keep the entry's address and flip only flags: deeper, subtler faults.
              const old = view.getBigUint64(at, true);
              const value = c.keepLow
                ? (old & 0x000f_ffff_ffff_f000n) | (c.value & ~0x000f_ffff_ffff_f000n)
                : c.value;
              view.setBigUint64(at, value, true);
            }
            machine.mmu.flushAll();
            machine.mmu.flushNested();
            return { machine, before, after };
          });
          const [k, o] = twins as [(typeof twins)[0], (typeof twins)[0]];
          const oracle = new MmuOracle(o.machine.mmu);
          for (const p of probes) {
            const va = HEAP_BASE + p * 4096;
            // Fetches too: NX set in any entry of the walk refuses them.
            const kind = ACCESS.user | (p & 1 ? ACCESS.write : 0) | (p & 2 ? ACCESS.execute : 0);
            const got = k.machine.mmu.translate(va, kind);
            const want = oracle.translate(BigInt(va), kind);
            if ("hpa" in got) {
              expect(typeof want).toBe("bigint");
              expect(BigInt(got.hpa)).toBe(want);
            } else {
              expect(FAULTS).toContain(got.fault.code);
              expect(typeof want).not.toBe("bigint");
              if (typeof want !== "bigint") {
                expect(got.fault.code).toBe(want.code);
                expect(got.fault.level).toBe(want.level);
              }
            }
          }
          expect(k.before()).toBe(true);
          expect(k.after()).toBe(true);
        },
      ),
      { numRuns: 80 },
    );
  });
});
