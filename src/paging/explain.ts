import { MemoryLayout } from "../memory/layout.js";
import { WalkKernel } from "../wasm/walk.js";
import { decodeEpt, decodeX86, type PageSize } from "./entry.js";
import { PagingError } from "./errors.js";
import { PagingMachine, type PagingModeName } from "./machine.js";
import { ACCESS, type Fault, MmuContext, type WalkReference } from "./mmu.js";
import { type CpuPreset, withoutCaches } from "./presets.js";
import { QUIET } from "./workload.js";

/** What to explain. */
export interface ExplainSpec {
  /** The virtual address: a bigint keeps every bit of a 57-bit (5-level) address. */
  readonly address: number | bigint;
  readonly mode: PagingModeName;
  readonly guestLevels: 4 | 5;
  readonly hostLevels: 4 | 5;
  readonly guestPageSize: PageSize;
  readonly hostBacking: PageSize;
  readonly guestBytes: number;
  readonly write: boolean;
  /** EPT accessed and dirty flags on (EPTP bit 6). */
  readonly eptAccessedDirty?: boolean;
  /**
   * Keep the page-walk caches and nested TLB warm from the first touch (the
   * TLBs are flushed); otherwise nothing is cached: a full walk.
   */
  readonly warm: boolean;
  readonly cpu: CpuPreset;
}

/** One explained reference. */
export interface ExplainedReference extends WalkReference {
  /** PML5/PML4/PDPT/PD/PT (guest) or EPT PML5/PML4/PDPT/PD/PT (host). */
  readonly table: string;
  /** The entry's fields that matter, as text. */
  readonly decoded: string;
}

/** The explanation of one translation. */
export interface Explanation {
  readonly address: bigint;
  readonly mode: PagingModeName;
  readonly references: readonly ExplainedReference[];
  readonly hpa: number | null;
  readonly fault: Fault | null;
  /** Faults taken while the guest and host mapped the address the first time. */
  readonly setupFaults: number;
}

const TABLES = ["", "PT", "PD", "PDPT", "PML4", "PML5"];

function describe(ref: WalkReference): string {
  if (ref.dimension === "host") {
    const e = decodeEpt(ref.entry);
    const perms = `${e.read ? "R" : "-"}${e.write ? "W" : "-"}${e.execute ? "X" : "-"}`;
    return `${perms}${e.largePage ? " large" : ""} type ${e.memoryType}${e.accessed ? " A" : ""}${e.dirty ? " D" : ""} -> 0x${e.address.toString(16)}`;
  }
  const e = decodeX86(ref.entry);
  if (!e.present) return "not present";
  const flags = [
    e.writable ? "RW" : "RO",
    e.user ? "U" : "S",
    e.accessed ? "A" : "",
    e.dirty ? "D" : "",
    e.pageSize ? "PS" : "",
    e.noExecute ? "NX" : "",
  ].filter((f) => f !== "");
  return `${flags.join(" ")} -> 0x${e.address.toString(16)}`;
}

/**
 * Builds a guest with one process, touches `address` (taking whatever guest
 * and host faults that takes), then translates it again with cold caches (or
 * warm ones) and returns every memory reference of that walk.
 */
export function explainWalk(spec: ExplainSpec): Explanation {
  const limit = 1n << (spec.guestLevels === 5 ? 56n : 47n);
  const address = BigInt(spec.address);
  if (address < 0n || address >= limit) {
    const hint =
      spec.guestLevels === 4 && address >= 0n && address < 1n << 56n
        ? ": it needs 5-level paging (--levels 5)"
        : "";
    throw new PagingError(
      `address 0x${address.toString(16)} is outside the ${spec.guestLevels}-level user address space [0, 0x${limit.toString(16)})${hint}`,
    );
  }
  // The page (a multiple of 4 KiB below 2^57 is exact as a number) and the offset within it.
  const page = Number(address & ~0xfffn);
  const offset = Number(address & 0xfffn);
  const layout = new MemoryLayout();
  const kernel = WalkKernel.on(layout.memory);
  const tables = 8 * 2 ** 20;
  const caches = spec.warm ? spec.cpu.caches : withoutCaches(spec.cpu.caches);
  const machine = new PagingMachine(
    layout.memory,
    kernel,
    {
      arena: layout.allocate("tables", tables * 3, 4096).toDescriptor(),
      mmu: MmuContext.regions(layout, "walk", caches),
    },
    {
      config: {
        label: spec.mode,
        mode: spec.mode,
        guestPageSize: spec.guestPageSize,
        hostBacking: spec.hostBacking,
        unsync: false,
      },
      caches,
      cost: spec.cpu.cost,
      guestLevels: spec.guestLevels,
      hostLevels: spec.hostLevels,
      guestBytes: spec.guestBytes,
      guestTableBytes: tables,
      hostTableBytes: tables * 2,
      workingSetBytes: null,
      activity: QUIET,
      seed: 1,
      eptAccessedDirty: spec.eptAccessedDirty === true,
    },
  );
  const kind = ACCESS.user | (spec.write ? ACCESS.write : 0);
  const trace = layout.allocate("record", 8);
  const words = new Uint32Array(layout.memory.buffer, trace.offset, 2);
  words[0] = ((page % 2 ** 32) | kind) >>> 0;
  words[1] = Math.floor(page / 2 ** 32);
  machine.runRecords(trace, 1);
  const setupFaults = machine.stats().guestPageFaults + machine.stats().totalExits;
  machine.mmu.flushTlbs();
  const log = layout.allocate("walk log", 64 * 24);
  const { references, outcome } = machine.mmu.explain(page, kind, log);
  return {
    address,
    mode: spec.mode,
    references: references.map((r) => ({
      ...r,
      table: `${r.dimension === "host" ? "EPT " : spec.mode === "shadow" ? "shadow " : ""}${TABLES[r.level] ?? "?"}`,
      decoded: describe(r),
    })),
    hpa: "hpa" in outcome ? outcome.hpa + offset : null,
    fault: "fault" in outcome ? outcome.fault : null,
    setupFaults,
  };
}
