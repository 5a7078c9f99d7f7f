import type { Region } from "../memory/region.js";
import { type BandwidthExports, BandwidthKernel } from "./bandwidth.js";
import { type ChecksumExports, ChecksumKernel } from "./checksum.js";
import { type DirtyExports, DirtyKernel } from "./dirty.js";
import { type LackeyExports, LackeyKernel } from "./lackey.js";
import { instantiateKernel, type KernelName } from "./loader.js";
import { type MultifdExports, MultifdKernel } from "./multifd.js";
import { type PageExports, PageKernel } from "./page.js";
import { type PowerExports, PowerKernel } from "./power.js";
import { type ReceiveExports, ReceiveKernel } from "./receive.js";
import { type RssExports, RssKernel } from "./rss.js";
import { type SegmentExports, SegmentKernel } from "./segment.js";
import { type StorageExports, StorageKernel } from "./storage.js";
import { type StreamExports, StreamKernel } from "./stream.js";
import { type WalkExports, WalkKernel } from "./walk.js";
import { type WorkloadExports, WorkloadKernel } from "./workload.js";

/** Each module's raw exports, by name (every {@link KernelName} has an entry). */
interface ModuleExports extends Record<KernelName, object> {
  bandwidth: BandwidthExports;
  checksum: ChecksumExports;
  dirty: DirtyExports;
  lackey: LackeyExports;
  multifd: MultifdExports;
  page: PageExports;
  power: PowerExports;
  receive: ReceiveExports;
  rss: RssExports;
  segment: SegmentExports;
  storage: StorageExports;
  stream: StreamExports;
  walk: WalkExports;
  workload: WorkloadExports;
}

/** What a thread needs to run kernels: the compiled modules and the shared memory. */
export interface KernelBoot {
  readonly memory: WebAssembly.Memory;
  readonly modules: Readonly<Record<KernelName, WebAssembly.Module>>;
  /**
   * Other engines' shared memories the thread also holds, by name (a
   * migration's destination, whose RAM cannot share the source's 4 GiB).
   */
  readonly peers?: Readonly<Record<string, WebAssembly.Memory>>;
}

/**
 * A thread's kernels over the engine's shared memory: one typed,
 * bounds-checked wrapper per module, each module instantiated once per
 * thread on first use from the compiled modules the thread was handed
 * (never recompiled). Wrappers that need a scratch region take it per call
 * of their getter; they share the thread's one instance.
 */
export class KernelContext {
  private readonly instances = new Map<KernelName, unknown>();
  private readonly wrappers = new Map<KernelName, unknown>();
  private readonly peerContexts = new Map<string, KernelContext>();

  constructor(readonly boot: KernelBoot) {}

  /**
   * The kernels over a peer memory the thread was handed: the same compiled
   * modules, instantiated once per thread on that memory.
   */
  peer(name: string): KernelContext {
    let context = this.peerContexts.get(name);
    if (!context) {
      const memory = this.boot.peers?.[name];
      if (!memory) throw new Error(`worker was not handed a memory named '${name}'`);
      context = new KernelContext({ memory, modules: this.boot.modules });
      this.peerContexts.set(name, context);
    }
    return context;
  }

  /** The shared memory. */
  get memory(): WebAssembly.Memory {
    return this.boot.memory;
  }

  /** A module's exports on this thread's memory, instantiated once. */
  private exports<N extends KernelName>(name: N): ModuleExports[N] {
    let instance = this.instances.get(name);
    if (!instance) {
      const module = this.boot.modules[name];
      if (!module) throw new Error(`worker was not handed kernel module '${name}'`);
      instance = instantiateKernel<ModuleExports[N]>(module, this.boot.memory);
      this.instances.set(name, instance);
    }
    return instance as ModuleExports[N];
  }

  /** The wrapper of a module that needs no scratch, built once. */
  private wrapper<N extends KernelName, W>(
    name: N,
    make: (memory: WebAssembly.Memory, exports: ModuleExports[N]) => W,
  ): W {
    let wrapper = this.wrappers.get(name) as W | undefined;
    if (!wrapper) {
      wrapper = make(this.memory, this.exports(name));
      this.wrappers.set(name, wrapper);
    }
    return wrapper;
  }

  /** Memory-bandwidth bounds (read, copy, fill). */
  get bandwidth(): BandwidthKernel {
    return this.wrapper("bandwidth", (memory, k) => new BandwidthKernel(memory, k));
  }

  /** Internet checksums (RFC 1071 / 1624). */
  get checksum(): ChecksumKernel {
    return this.wrapper("checksum", (memory, k) => new ChecksumKernel(memory, k));
  }

  /** The dirty-tracking kernels. */
  get dirty(): DirtyKernel {
    return this.wrapper("dirty", (memory, k) => new DirtyKernel(memory, k));
  }

  /** Valgrind lackey trace lines to trace records. */
  get lackey(): LackeyKernel {
    return this.wrapper("lackey", (memory, k) => new LackeyKernel(memory, k));
  }

  /** multifd packet headers, with a scratch region of `MULTIFD_SCRATCH_BYTES`. */
  multifd(scratch: Region): MultifdKernel {
    return new MultifdKernel(this.memory, this.exports("multifd"), scratch);
  }

  /** Page hashing, zero detection and the page stream, with a scratch region of `PAGE_SCRATCH_BYTES`. */
  page(scratch: Region): PageKernel {
    return new PageKernel(this.memory, this.exports("page"), scratch);
  }

  /** The core parking and C-state machine. */
  get power(): PowerKernel {
    return this.wrapper("power", (memory, k) => new PowerKernel(memory, k));
  }

  /** A VMQ processor's receive work: validate, sort, coalesce and deliver, one call per batch. */
  get receive(): ReceiveKernel {
    return this.wrapper("receive", (memory, k) => new ReceiveKernel(memory, k));
  }

  /** The Toeplitz hash of receive side scaling. */
  get rss(): RssKernel {
    return this.wrapper("rss", (memory, k) => new RssKernel(memory, k));
  }

  /** Large send segmentation and receive checksum validation. */
  get segment(): SegmentKernel {
    return this.wrapper("segment", (memory, k) => new SegmentKernel(memory, k));
  }

  /** The live-migration stream kernels, with a scratch region for single digests. */
  stream(scratch?: Region): StreamKernel {
    return new StreamKernel(this.memory, this.exports("stream"), scratch);
  }

  /** Address translation: native, nested (SLAT) and shadow walks. */
  get walk(): WalkKernel {
    return this.wrapper("walk", (memory, k) => new WalkKernel(memory, k));
  }

  /** The workload generators (vCPU writes). */
  /** The storage kernels (VHD bitmaps, checksums, zero blocks, I/O pattern). */
  get storage(): StorageKernel {
    return this.wrapper("storage", (_memory, k) => new StorageKernel(k));
  }

  get workload(): WorkloadKernel {
    return this.wrapper("workload", (memory, k) => new WorkloadKernel(memory, k));
  }
}
