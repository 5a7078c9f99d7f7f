import { Region, type RegionDescriptor } from "../memory/region.js";
import type { WalkKernel } from "../wasm/walk.js";
import { priceRun, type TranslationCycles } from "./cost.js";
import { PAGE_BYTES, type PageSize } from "./entry.js";
import { PagingError } from "./errors.js";
import { EXIT_REASONS, type ExitCounters, type ExitReason, emptyExitCounters } from "./exits.js";
import { GuestOs, type GuestProcess, type Vma } from "./guest-os.js";
import { HardwarePaging } from "./hardware.js";
import { HostMemory } from "./host.js";
import {
  ACCESS,
  type Fault,
  MmuContext,
  type MmuContextDescriptor,
  type MmuCounters,
} from "./mmu.js";
import { HOST_BASE, PhysicalWindow } from "./physical.js";
import type { CostModel, TranslationCaches } from "./presets.js";
import { SeededRandom } from "./random.js";
import { ShadowMmu } from "./shadow.js";
import { HEAP_BASE, type OsActivity } from "./workload.js";

/** How the guest's memory is translated. */
export type PagingModeName = "native" | "shadow" | "slat" | "agile";

/** One configuration of a comparison. */
export interface PagingConfig {
  readonly label: string;
  readonly mode: PagingModeName;
  /** The page size of the guest's areas (4K pages, or the guest's large pages). */
  readonly guestPageSize: PageSize;
  /** SLAT: the EPT's leaf size. */
  readonly hostBacking: PageSize;
  /** Shadow: let leaf tables go unsync. */
  readonly unsync: boolean;
  /**
   * Agile paging: a guest page fault that the walk takes in the nested part
   * (in the guest's own tables) goes to the guest without an exit, as under
   * SLAT: the hardware support Gandhi et al. (ISCA 2016) propose knows where
   * the walk switched. Without it (today's VT-x, whose exception bitmap
   * cannot tell the two parts apart) every guest page fault exits.
   */
  readonly agileNestedFaultsToGuest?: boolean;
}

/** The five configurations `hvlab paging compare` runs. */
export function standardConfigs(largeHost: PageSize = "1G"): PagingConfig[] {
  return [
    { label: "native", mode: "native", guestPageSize: "4K", hostBacking: "4K", unsync: false },
    { label: "shadow", mode: "shadow", guestPageSize: "4K", hostBacking: "4K", unsync: true },
    { label: "slat-4k", mode: "slat", guestPageSize: "4K", hostBacking: "4K", unsync: false },
    { label: "slat-2m", mode: "slat", guestPageSize: "4K", hostBacking: "2M", unsync: false },
    {
      label: "slat-large",
      mode: "slat",
      guestPageSize: "2M",
      hostBacking: largeHost,
      unsync: false,
    },
  ];
}

/** Everything a machine is built from (plain data: it crosses to pool workers). */
export interface MachineOptions {
  readonly config: PagingConfig;
  readonly caches: TranslationCaches;
  readonly cost: CostModel;
  readonly guestLevels: 4 | 5;
  readonly hostLevels: 4 | 5;
  readonly guestBytes: number;
  readonly guestTableBytes: number;
  readonly hostTableBytes: number;
  /** Synthetic: the working set at HEAP_BASE; null for a trace (the whole user address space is demand paged). */
  readonly workingSetBytes: number | null;
  readonly activity: OsActivity;
  readonly seed: number;
  /** Shadow: emulated writes that unshadow a page (KVM: 3). */
  readonly floodThreshold?: number;
  /**
   * Synthetic: touch (write) every page of every process's working set first,
   * then zero the counters: the run measures the steady state, not first touch.
   */
  readonly prefault?: boolean;
  /**
   * Dirty logging (as during live migration): the hypervisor write-protects
   * guest memory and harvests the log this many times per second of guest
   * time; each first write after a harvest exits. 0 or absent: off.
   */
  readonly dirtyLogHarvestsPerSecond?: number;
  /** SLAT: EPT accessed and dirty flags (EPTP bit 6): walks set them in EPT entries. */
  readonly eptAccessedDirty?: boolean;
}

/** Where a machine lives in the shared memory. */
export interface MachineRegions {
  readonly arena: RegionDescriptor;
  readonly mmu: MmuContextDescriptor;
}

/** One configuration's results, as `hvlab paging compare` prints and writes them. */
export interface PagingStats {
  readonly label: string;
  readonly mode: PagingModeName;
  readonly guestPageSize: PageSize;
  readonly hostBacking: PageSize | null;
  readonly accesses: number;
  readonly l1Hits: number;
  readonly l2Hits: number;
  /** L1 DTLB hits over data lookups (instruction fetches go to the L1 ITLB). */
  readonly l1HitRate: number;
  readonly l1iHits: number;
  /** L1 ITLB hits over instruction fetches; null when the run fetched nothing. */
  readonly l1iHitRate: number | null;
  /** Writes that hit a TLB entry filled by a read, and walked again to set D. */
  readonly dirtyAssists: number;
  readonly l2HitRate: number;
  readonly walks: number;
  readonly references: number;
  readonly referencesPerWalk: number;
  readonly guestReferences: number;
  readonly hostReferences: number;
  readonly pwcGuestHits: number;
  readonly pwcHostHits: number;
  readonly nestedTlbHits: number;
  readonly exits: Record<ExitReason, number>;
  readonly totalExits: number;
  readonly emulatedWrites: number;
  /** Pages logged dirty under dirty logging. */
  readonly dirtyLogged: number;
  /** Of those, page-table frames (guest kernel stores and the walker's A/D updates). */
  readonly dirtyLoggedTables: number;
  readonly resyncs: number;
  readonly unshadowed: number;
  readonly shadowPages: number;
  readonly guestPageFaults: number;
  readonly copyOnWrite: number;
  /** fork() calls; each child runs and exits. */
  readonly forks: number;
  /** Agile paging: guest tables switched to nested mode, and back to shadow. */
  readonly agileToNested: number;
  readonly agileToShadow: number;
  readonly contextSwitches: number;
  readonly cycles: TranslationCycles;
  /** Sum of every translated address mod 2^64 (hex): the same guest translates alike. */
  readonly checksum: string;
}

/** Trace words per record. */
const WORDS = 2;
const MAX_FAULTS_PER_ACCESS = 3;
const MUNMAP_BYTES = 64 * 1024;
/**
 * A forked child before exec writes a few pages it shares with its parent
 * (its stack and data: copy-on-write faults), then, after exec, runs a small
 * program of its own (a shell command: 32 pages, one write in four) and
 * exits. Assumed sizes; what matters is that the child runs.
 */
const CHILD_COW_PAGES = 8;
/**
 * Agile paging: guest writes to a shadowed table that move it to nested mode
 * (assumed: the second write; Gandhi et al., ISCA 2016, switch a table the
 * guest keeps changing and leave tables written once, as at fork, in shadow).
 */
const AGILE_SWITCH_WRITES = 2;
const CHILD_PAGES = 32;

type EventKind = "switch" | "update" | "fork" | "munmap" | "harvest";
const EVENT_KINDS: readonly EventKind[] = ["switch", "update", "fork", "munmap", "harvest"];

/**
 * One configuration of the comparison: a guest OS over real page tables, a
 * host (EPT) or a shadow MMU, and the translation hardware of a CPU preset,
 * run over trace records with the guest's activity mixed in.
 */
export class PagingMachine {
  readonly window: PhysicalWindow;
  readonly mmu: MmuContext;
  readonly os: GuestOs;
  readonly host: HostMemory | null;
  readonly shadow: ShadowMmu | null;
  readonly exits: ExitCounters = emptyExitCounters();
  private readonly processes: GuestProcess[] = [];
  private readonly random: SeededRandom;
  private readonly areas: Vma[];
  private position = 0;
  private readonly next: Record<EventKind, number>;
  private readonly every: Record<EventKind, number>;
  private running = 0;

  constructor(
    readonly memory: WebAssembly.Memory,
    kernel: WalkKernel,
    regions: MachineRegions,
    readonly options: MachineOptions,
  ) {
    const { config } = options;
    this.random = new SeededRandom(options.seed);
    this.window = new PhysicalWindow(memory, new Region(regions.arena), {
      hostTableBytes: options.hostTableBytes,
      guestTableBytes: options.guestTableBytes,
    });
    const tagged = options.caches.tagged;
    this.mmu = new MmuContext(memory, kernel, regions.mmu, this.window, {
      mode: config.mode === "slat" ? "nested" : config.mode,
      guestLevels: options.guestLevels,
      hostLevels: options.hostLevels,
      caches: options.caches,
      countByLevel: options.cost.referenceCyclesByLevel !== undefined,
      eptAccessedDirty: options.eptAccessedDirty === true,
    });
    this.host = null;
    this.shadow = null;
    if (config.mode === "slat" || config.mode === "agile") {
      this.host = new HostMemory(this.window, {
        levels: options.hostLevels,
        backing: config.hostBacking,
        guestBytes: options.guestBytes,
        dirtyLogging: (options.dirtyLogHarvestsPerSecond ?? 0) > 0,
        accessedDirty: options.eptAccessedDirty === true,
      });
      this.mmu.setEptRoot(this.host.root);
    } else if (config.mode === "native") {
      this.mmu.setNativeDelta(HOST_BASE);
    }
    const hooks =
      config.mode === "shadow" || config.mode === "agile"
        ? new ShadowMmu(
            this.window,
            this.mmu,
            {
              levels: options.guestLevels,
              // Agile paging moves changing tables to nested mode instead of unsyncing them.
              unsync: config.mode === "shadow" && config.unsync,
              floodThreshold: options.floodThreshold ?? 3,
              tagged,
              ...(config.mode === "agile" && this.host
                ? {
                    agileSwitchWrites: AGILE_SWITCH_WRITES,
                    host: this.host,
                    nestedFaultsToGuest: config.agileNestedFaultsToGuest === true,
                  }
                : {}),
            },
            this.exits,
          )
        : new HardwarePaging(this.mmu, tagged, this.exits, this.host);
    if (hooks instanceof ShadowMmu) this.shadow = hooks;
    this.os = new GuestOs(
      this.window,
      {
        levels: options.guestLevels,
        guestBytes: options.guestBytes,
        tableZoneBytes: options.guestTableBytes,
      },
      hooks,
    );
    const ws = options.workingSetBytes;
    this.areas = [
      ws === null
        ? {
            start: 0,
            end: 2 ** (options.guestLevels === 5 ? 56 : 47),
            pageSize: config.guestPageSize,
            writable: true,
            executable: true,
          }
        : {
            start: HEAP_BASE,
            end: HEAP_BASE + Math.ceil(ws / 2 ** 30) * 2 ** 30,
            pageSize: config.guestPageSize,
            writable: true,
            executable: false,
          },
    ];
    const count = Math.max(1, options.activity.processes);
    for (let i = 0; i < count; i++) this.processes.push(this.os.createProcess(this.areas));
    const first = this.processes[0];
    if (!first) throw new PagingError("no process");
    this.os.switchTo(first);
    const a = options.activity;
    const interval = (rate: number) =>
      rate > 0 ? Math.max(1, Math.round(a.accessesPerSecond / rate)) : Infinity;
    this.every = {
      switch: count > 1 ? interval(a.contextSwitchesPerSecond) : Infinity,
      update: interval(a.pageTableUpdatesPerSecond),
      fork: interval(a.forkExecPerSecond),
      munmap: interval(a.munmapPerSecond),
      harvest:
        config.mode === "native" ? Infinity : interval(options.dirtyLogHarvestsPerSecond ?? 0),
    };
    this.next = { ...this.every };
    if (options.prefault && ws !== null) this.prefault(ws);
  }

  /** Translates one address, servicing every fault on the way (guest, shadow, EPT). */
  touch(va: number, kind: number): number {
    for (let tries = 0; tries < 64; tries++) {
      const r = this.mmu.translate(va, kind);
      if ("hpa" in r) return r.hpa;
      this.handle(r.fault);
    }
    throw new PagingError(`0x${va.toString(16)} keeps faulting`);
  }

  private prefault(ws: number): void {
    const { config } = this.options;
    // Every guest page, and every host page under it when SLAT backs it with smaller pages.
    const step = Math.min(
      PAGE_BYTES[config.guestPageSize],
      config.mode === "slat" || config.mode === "agile"
        ? PAGE_BYTES[config.hostBacking]
        : Number.POSITIVE_INFINITY,
    );
    const touchAll = () => {
      for (const process of this.processes) {
        this.os.switchTo(process);
        for (let off = 0; off < ws; off += step)
          this.touch(HEAP_BASE + off, ACCESS.write | ACCESS.user);
      }
      const first = this.processes[0];
      if (first) this.os.switchTo(first);
    };
    touchAll();
    // Agile paging: the warm-up's demand paging moved tables to nested mode; at
    // steady state the guest has left them alone, so they are shadowed again.
    if (this.shadow?.settle()) touchAll();
    this.mmu.resetCounters();
    for (const reason of EXIT_REASONS) this.exits.exits[reason] = 0;
    this.exits.emulatedWrites = 0;
    this.exits.resyncs = 0;
    this.exits.unshadowed = 0;
    this.exits.agileToNested = 0;
    this.exits.agileToShadow = 0;
    this.exits.dirtyLogged = 0;
    this.exits.dirtyLoggedTables = 0;
    for (const key of Object.keys(this.os.counters) as (keyof typeof this.os.counters)[]) {
      this.os.counters[key] = 0;
    }
  }

  /** Records translated so far. */
  get accesses(): number {
    return this.position;
  }

  /**
   * Runs the first `count` records of `trace`, applying the guest's
   * scheduled activity between them. @throws PagingError when the guest
   * cannot go on (a segmentation fault, memory exhausted, a corrupted table).
   */
  runRecords(trace: Region, count: number): void {
    let i = 0;
    while (i < count) {
      const kind = this.dueEvent();
      const until =
        kind === null ? count : Math.min(count, i + Math.max(0, this.next[kind] - this.position));
      if (until > i) {
        this.translateRange(trace, i, until);
        this.position += until - i;
        i = until;
      }
      if (kind !== null && this.position >= this.next[kind]) {
        this.apply(kind, trace, Math.min(i, count - 1));
        this.next[kind] += this.every[kind];
      }
    }
  }

  private dueEvent(): EventKind | null {
    let best: EventKind | null = null;
    for (const kind of EVENT_KINDS) {
      if (this.next[kind] !== Infinity && (best === null || this.next[kind] < this.next[best]))
        best = kind;
    }
    return best;
  }

  private translateRange(trace: Region, from: number, to: number): void {
    let at = from;
    let repeats = 0;
    let last = "";
    while (at < to) {
      const stop = this.mmu.run(trace, at, to);
      if (stop >= to) return;
      const fault = this.mmu.fault();
      // The same fault on the same record again means its handler did not help.
      const key = `${stop} ${fault.code} ${fault.level} ${fault.address}`;
      repeats = key === last ? repeats + 1 : 0;
      last = key;
      if (repeats >= MAX_FAULTS_PER_ACCESS) {
        throw new PagingError(
          `record ${this.position + stop - from} at 0x${fault.address.toString(16)} keeps faulting (${fault.code} at level ${fault.level})`,
        );
      }
      this.handle(fault);
      at = stop;
    }
  }

  private handle(fault: Fault): void {
    switch (fault.code) {
      case "guest-not-present":
      case "guest-protection":
      case "guest-reserved": {
        const guestFault = this.shadow ? this.shadow.handleFault(this.os.current, fault) : fault;
        if (guestFault) this.os.handleFault(guestFault);
        return;
      }
      case "ept-violation": {
        if (!this.host) throw new PagingError("EPT violation without EPT");
        const reason = this.host.service(fault.address);
        this.exits.exits[reason]++;
        if (reason === "dirty-log") {
          this.exits.dirtyLogged++;
          // The walker's A/D update of a write-protected table frame.
          if (fault.address < this.options.guestTableBytes) this.exits.dirtyLoggedTables++;
        }
        return;
      }
      default:
        throw new PagingError(
          `${fault.code} at level ${fault.level}, address 0x${fault.address.toString(16)}: the tables are corrupted`,
        );
    }
  }

  private apply(kind: EventKind, trace: Region, index: number): void {
    const current = this.os.current;
    const ws = this.options.workingSetBytes;
    const here = () => {
      const words = new Uint32Array(this.memory.buffer, trace.check(index * 8, WORDS * 4), WORDS);
      return (words[1] ?? 0) * 2 ** 32 + (words[0] ?? 0) - ((words[0] ?? 0) % 4096);
    };
    switch (kind) {
      case "switch": {
        this.running = (this.running + 1) % this.processes.length;
        const next = this.processes[this.running];
        if (next) this.os.switchTo(next);
        return;
      }
      case "update": {
        const va = ws === null ? here() : HEAP_BASE + this.random.below(ws / 4096) * 4096;
        this.os.trackWrites(current, va);
        return;
      }
      case "fork": {
        const end = (this.areas[0]?.end ?? 0) - CHILD_PAGES * 4096;
        const base = Math.min(
          end,
          ws === null ? here() : HEAP_BASE + this.random.below(ws / 4096) * 4096,
        );
        const child = this.os.fork(current);
        this.os.switchTo(child);
        for (let i = 0; i < CHILD_COW_PAGES; i++) {
          this.touch(base + i * 4096, ACCESS.write | ACCESS.user);
        }
        this.os.exec(child, this.areas);
        for (let i = 0; i < CHILD_PAGES; i++) {
          this.touch(base + i * 4096, ACCESS.user | (i % 4 === 0 ? ACCESS.write : 0));
        }
        this.os.switchTo(current);
        this.os.exit(child);
        return;
      }
      case "harvest": {
        // Clear the log, then flush what cached the writable translations (KVM flushes after write-protecting).
        // Under agile paging both parts log: the nested part's writes reach
        // the EPT, but the shadowed part's leaves map host frames directly
        // and never do, so its log is the shadow MMU's, as shadow paging's.
        if (this.host) {
          this.host.clearDirtyLog();
          this.mmu.flushNested();
        }
        this.shadow?.clearDirtyLog();
        this.mmu.flushAll();
        return;
      }
      case "munmap": {
        const va =
          ws === null
            ? here() - (here() % MUNMAP_BYTES)
            : HEAP_BASE +
              this.random.below(
                Math.max(1, Math.min(ws, this.options.activity.churnBytes ?? ws) / MUNMAP_BYTES),
              ) *
                MUNMAP_BYTES;
        this.os.unmap(current, va, MUNMAP_BYTES);
        return;
      }
    }
  }

  /** The hardware counters. */
  counters(): MmuCounters {
    return this.mmu.counters();
  }

  /** The results so far, priced with the cost model. */
  stats(): PagingStats {
    const c = this.mmu.counters();
    const { config } = this.options;
    const totalExits = EXIT_REASONS.reduce((sum, r) => sum + this.exits.exits[r], 0);

    return {
      label: config.label,
      mode: config.mode,
      guestPageSize: config.guestPageSize,
      hostBacking: config.mode === "slat" || config.mode === "agile" ? config.hostBacking : null,
      accesses: c.accesses,
      l1Hits: c.l1Hits,
      l2Hits: c.l2Hits,
      l1HitRate: c.dtlbLookups > 0 ? c.l1Hits / c.dtlbLookups : 0,
      l1iHits: c.itlbHits,
      l1iHitRate: c.itlbLookups > 0 ? c.itlbHits / c.itlbLookups : null,
      dirtyAssists: c.dirtyAssists,
      l2HitRate: c.l2Hits + c.walks > 0 ? c.l2Hits / (c.l2Hits + c.walks) : 0,
      walks: c.walks,
      references: c.references,
      referencesPerWalk: c.walks > 0 ? c.references / c.walks : 0,
      guestReferences: c.guestReferences,
      hostReferences: c.hostReferences,
      pwcGuestHits: c.pwcGuestHits,
      pwcHostHits: c.pwcHostHits,
      nestedTlbHits: c.nestedTlbHits,
      exits: { ...this.exits.exits },
      totalExits,
      emulatedWrites: this.exits.emulatedWrites,
      dirtyLogged: this.exits.dirtyLogged,
      dirtyLoggedTables: this.exits.dirtyLoggedTables,
      resyncs: this.exits.resyncs,
      unshadowed: this.exits.unshadowed,
      shadowPages: this.exits.shadowPages,
      guestPageFaults: this.os.counters.pageFaults,
      copyOnWrite: this.os.counters.copyOnWrite,
      forks: this.os.counters.forks,
      agileToNested: this.exits.agileToNested,
      agileToShadow: this.exits.agileToShadow,
      contextSwitches: this.os.counters.contextSwitches,
      cycles: priceRun(c, this.exits, this.os.counters.pageFaults, this.options.cost),
      checksum: this.mmu.checksum.toString(16),
    };
  }
}
