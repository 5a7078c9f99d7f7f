import { MemoryLayout } from "../../src/memory/layout.js";
import { ADDRESS_MASK, type PageSize, tableIndex, X86 } from "../../src/paging/entry.js";
import {
  GuestOs,
  type GuestPagingHooks,
  type GuestProcess,
  type Vma,
} from "../../src/paging/guest-os.js";
import { ACCESS, type Fault } from "../../src/paging/mmu.js";
import { HOST_BASE, PhysicalWindow } from "../../src/paging/physical.js";

/** The guest OS tests' table zone: 64 pages of 4 KiB. */
export const GUEST_OS_ZONE = 64 * 4096;

/** What the guest OS told its hypervisor, in order: a table write, an allocation, a CR3 load, an INVLPG. */
export type GuestOsEvent =
  | ["write", number, number, number]
  | ["allocated", number]
  | ["cr3", number, boolean]
  | ["invlpg", number];

/**
 * A guest OS over a fresh window of `zoneBytes` of tables, recording every
 * hook it calls, and `entry`, which reads a process's entry for `va` at
 * `level` by walking its tables (0 where a table above is absent or a large
 * leaf ends the walk).
 */
export function guestOsRig(
  guestBytes = 64 * 2 ** 20,
  levels: 4 | 5 = 4,
  zoneBytes = GUEST_OS_ZONE,
) {
  const layout = new MemoryLayout();
  const window = PhysicalWindow.allocate(layout, "tables", {
    hostTableBytes: 4096,
    guestTableBytes: zoneBytes,
  });
  const events: GuestOsEvent[] = [];
  const hooks: GuestPagingHooks = {
    tableWrite: (table, index, level) => events.push(["write", table, index, level]),
    tableAllocated: (table) => events.push(["allocated", table]),
    cr3Load: (process, fresh) => events.push(["cr3", process.pid, fresh]),
    invlpg: (va) => events.push(["invlpg", va]),
  };
  const os = new GuestOs(window, { levels, guestBytes, tableZoneBytes: zoneBytes }, hooks);
  const entry = (process: GuestProcess, va: number, level: number): bigint => {
    let table = process.cr3;
    for (let l = levels; l > level; l--) {
      const e = window.read(HOST_BASE + table + tableIndex(va, l) * 8);
      if ((e & X86.present) === 0n || (e & X86.pageSize) !== 0n) return 0n;
      table = Number(e & ADDRESS_MASK);
    }
    return window.read(HOST_BASE + table + tableIndex(va, level) * 8);
  };
  return { window, os, events, entry };
}

/** A VMA from `start` to `end` (4 KiB pages, writable, not executable unless asked). */
export const vma = (
  start: number,
  end: number,
  pageSize: PageSize = "4K",
  writable = true,
  executable = false,
): Vma => ({ start, end, pageSize, writable, executable });

/** A fault the MMU would hand the guest: `code` at `address`, a user access unless `kind` says otherwise. */
export const fault = (
  code: Fault["code"],
  address: number,
  kind: number = ACCESS.user,
  level = 1,
): Fault => ({ code, address, kind, level, index: 0 });
