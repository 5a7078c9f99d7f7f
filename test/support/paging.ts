import { MemoryLayout } from "../../src/memory/layout.js";
import type { Region } from "../../src/memory/region.js";
import { ADDRESS_MASK, EPT, type PageSize, X86 } from "../../src/paging/entry.js";
import {
  type MachineOptions,
  type PagingConfig,
  PagingMachine,
  type PagingModeName,
} from "../../src/paging/machine.js";
import { MmuContext } from "../../src/paging/mmu.js";
import { HOST_BASE } from "../../src/paging/physical.js";
import {
  CACHE_LEVEL_REFERENCE_CYCLES,
  cpuPreset,
  type TranslationCaches,
} from "../../src/paging/presets.js";
import { QUIET } from "../../src/paging/workload.js";
import { WalkKernel } from "../../src/wasm/walk.js";

/** A small machine for tests, on its own memory. */
export function testMachine(
  options: {
    mode?: PagingModeName;
    guestPageSize?: PageSize;
    hostBacking?: PageSize;
    guestLevels?: 4 | 5;
    hostLevels?: 4 | 5;
    caches?: TranslationCaches;
    workingSetBytes?: number | null;
    prefault?: boolean;
    unsync?: boolean;
    /** Agile paging: guest page faults in the nested part reach the guest without an exit. */
    agileNestedFaultsToGuest?: boolean;
    tableBytes?: number;
    activity?: MachineOptions["activity"];
    seed?: number;
    guestBytes?: number;
    /** Price references per level (so the kernel counts them by level). */
    countByLevel?: boolean;
    /** EPT accessed and dirty flags (EPTP bit 6). */
    eptAccessedDirty?: boolean;
    /** Dirty-log harvests per second of guest time (dirty logging on when > 0). */
    dirtyLogHarvestsPerSecond?: number;
  } = {},
  layout = new MemoryLayout(),
): { machine: PagingMachine; layout: MemoryLayout } {
  const preset = cpuPreset("skylake-sp");
  const caches = options.caches ?? preset.caches;
  const mode = options.mode ?? "slat";
  const config: PagingConfig = {
    label: mode,
    mode,
    guestPageSize: options.guestPageSize ?? "4K",
    hostBacking: options.hostBacking ?? "4K",
    unsync: options.unsync ?? true,
    ...(options.agileNestedFaultsToGuest ? { agileNestedFaultsToGuest: true } : {}),
  };
  const tables = options.tableBytes ?? 4 * 2 ** 20;
  const n = layout.list().length;
  const machine = new PagingMachine(
    layout.memory,
    WalkKernel.on(layout.memory),
    {
      arena: layout.allocate(`arena ${n}`, tables * 3, 4096).toDescriptor(),
      mmu: MmuContext.regions(layout, `mmu ${n}`, caches),
    },
    {
      config,
      caches,
      cost: options.countByLevel
        ? { ...preset.cost, referenceCyclesByLevel: CACHE_LEVEL_REFERENCE_CYCLES }
        : preset.cost,
      guestLevels: options.guestLevels ?? 4,
      hostLevels: options.hostLevels ?? 4,
      guestBytes: options.guestBytes ?? 4 * 2 ** 30,
      guestTableBytes: tables,
      hostTableBytes: tables * 2,
      workingSetBytes:
        options.workingSetBytes === undefined ? 16 * 2 ** 20 : options.workingSetBytes,
      activity: options.activity ?? QUIET,
      seed: options.seed ?? 1,
      prefault: options.prefault ?? false,
      eptAccessedDirty: options.eptAccessedDirty ?? false,
      dirtyLogHarvestsPerSecond: options.dirtyLogHarvestsPerSecond ?? 0,
    },
  );
  return { machine, layout };
}

/** Writes trace records (virtual address, kind) into a new region; returns its offset. */
export function writeTrace(
  layout: MemoryLayout,
  records: readonly { va: number; kind: number }[],
): { offset: number; region: Region; words: Uint32Array } {
  const region = layout.allocate(`trace ${layout.list().length}`, Math.max(8, records.length * 8));
  const words = new Uint32Array(layout.memory.buffer, region.offset, records.length * 2);
  for (const [i, r] of records.entries()) {
    const low = r.va % 2 ** 32;
    words[2 * i] = ((low - (low % 4096)) | r.kind) >>> 0;
    words[2 * i + 1] = Math.floor(r.va / 2 ** 32);
  }
  return { offset: region.offset, region, words };
}

/** The leaf entry's address (guest-physical) and value of `va` in the guest's tables, or null. */
export function guestLeaf(
  machine: PagingMachine,
  va: number,
): { gpa: number; entry: bigint } | null {
  let table = machine.os.current.cr3;
  for (let level: number = machine.options.guestLevels; level >= 1; level--) {
    const gpa = table + (Math.floor(va / 2 ** (12 + 9 * (level - 1))) % 512) * 8;
    const entry = machine.window.read(HOST_BASE + gpa);
    if ((entry & X86.present) === 0n) return null;
    if (level === 1 || (entry & X86.pageSize) !== 0n) return { gpa, entry };
    table = Number(entry & ADDRESS_MASK);
  }
  return null;
}

/** The EPT leaf entry that maps guest-physical `gpa` (SLAT machines), or null. */
export function eptLeaf(machine: PagingMachine, gpa: number): bigint | null {
  const host = machine.host;
  if (!host) throw new Error("not a SLAT machine");
  let table = host.root;
  for (let level: number = machine.options.hostLevels; level >= 1; level--) {
    const entry = machine.window.read(
      table + (Math.floor(gpa / 2 ** (12 + 9 * (level - 1))) % 512) * 8,
    );
    if ((entry & EPT.read) === 0n) return null;
    if (level === 1 || (entry & EPT.largePage) !== 0n) return entry;
    table = Number(entry & ADDRESS_MASK);
  }
  return null;
}
