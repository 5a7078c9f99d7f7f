import { DirtyKernel } from "./dirty.js";
import { instantiateKernel, type KernelName } from "./loader.js";
import { WorkloadKernel } from "./workload.js";

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
 * A thread's kernels over the engine's shared memory, instantiated on first
 * use from the modules it was handed (never recompiled).
 */
export class KernelContext {
  private dirtyKernel?: DirtyKernel;
  private workloadKernel?: WorkloadKernel;
  private readonly instances = new Map<KernelName, unknown>();
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

  /** Raw exports of a module, instantiated once per thread. */
  exports<Exports>(name: KernelName): Exports {
    let instance = this.instances.get(name);
    if (!instance) {
      const module = this.boot.modules[name];
      if (!module) throw new Error(`worker was not handed kernel module '${name}'`);
      instance = instantiateKernel<Exports>(module, this.boot.memory);
      this.instances.set(name, instance);
    }
    return instance as Exports;
  }

  /** The dirty-tracking kernels. */
  get dirty(): DirtyKernel {
    this.dirtyKernel ??= new DirtyKernel(this.memory, this.exports("dirty"));
    return this.dirtyKernel;
  }

  /** The workload kernels. */
  get workload(): WorkloadKernel {
    this.workloadKernel ??= new WorkloadKernel(this.memory, this.exports("workload"));
    return this.workloadKernel;
  }
}
