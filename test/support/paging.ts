import { MemoryLayout } from "../../src/memory/layout.js";
import type { Region } from "../../src/memory/region.js";
import type { PageSize } from "../../src/paging/entry.js";
import {
  type MachineOptions,
  type PagingConfig,
  PagingMachine,
  type PagingModeName,
} from "../../src/paging/machine.js";
import { MmuContext } from "../../src/paging/mmu.js";
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
    tableBytes?: number;
    activity?: MachineOptions["activity"];
    seed?: number;
    guestBytes?: number;
    /** Price references per level (so the kernel counts them by level). */
    countByLevel?: boolean;
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
