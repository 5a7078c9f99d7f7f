import { availableParallelism } from "node:os";
import { join } from "node:path";
import { Piscina } from "piscina";
import { checkAddressSpace, WORKER_RESERVATION_BYTES } from "../memory/address-space.js";
import type { MemoryLayout } from "../memory/layout.js";
import { packageRoot } from "../util/package-root.js";
import type { KernelBoot } from "../wasm/context.js";
import { compileAllKernels } from "../wasm/loader.js";
import { checkDomains } from "./domains.js";
import type { PoolTask, ResultOf } from "./registry.js";

/** What a worker receives once, at start: its kernels' boot and the domains whose tasks it runs. */
export interface WorkerBoot extends KernelBoot {
  readonly domains: readonly string[];
}

/** Options for a {@link KernelPool}. */
export interface KernelPoolOptions {
  /** Worker threads (default: the machine's parallelism). */
  readonly threads?: number;
  /**
   * The domains whose tasks the workers run, by folder name under src/
   * (each worker imports dist/src/<domain>/tasks.js at start-up).
   */
  readonly domains: readonly string[];
  /** Other shared memories the workers hold besides the layout's, by name (see `KernelContext.peer`). */
  readonly peers?: Readonly<Record<string, WebAssembly.Memory>>;
}

/**
 * A piscina pool whose workers hold the engine's shared memory and compiled
 * kernel modules, and then receive only small typed task messages.
 */
export class KernelPool {
  /** Worker threads in the pool. */
  readonly threads: number;
  /** The domains whose tasks the workers run. */
  readonly domains: readonly string[];
  private readonly piscina: Piscina;

  constructor(layout: MemoryLayout, options: KernelPoolOptions) {
    const threads = options.threads ?? availableParallelism();
    if (!Number.isSafeInteger(threads) || threads < 1 || threads > 256) {
      throw new RangeError(`pool threads must be a whole number from 1 to 256, not ${threads}`);
    }
    this.threads = threads;
    this.domains = checkDomains(options.domains);
    // A worker that cannot reserve its isolate aborts the whole process: check first.
    checkAddressSpace(
      threads * WORKER_RESERVATION_BYTES,
      `${threads} pool worker thread${threads === 1 ? "" : "s"} (fewer threads need less)`,
    );
    const boot: WorkerBoot = {
      memory: layout.memory,
      modules: compileAllKernels(),
      domains: this.domains,
      ...(options.peers ? { peers: options.peers } : {}),
    };
    this.piscina = new Piscina({
      // Workers run compiled JavaScript: Node 20 cannot load TypeScript.
      filename: join(packageRoot(), "dist", "src", "pool", "worker.js"),
      workerData: boot,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 60_000,
      // piscina loads its worker file with require() before import(); on
      // Node 20.19+ require() of an ES module loads and links it, and the
      // worker file's top-level await then refuses it, leaving a module
      // half-loaded that a second require() racing the import() aborts the
      // whole process on ("v8::Module::IsGraphAsync must be used on an
      // instantiated module"). With require(esm) off in the workers, the
      // require() fails before loading anything and import() alone loads it.
      execArgv: [...process.execArgv, "--no-experimental-require-module"],
    });
  }

  /** Runs one task on a worker. */
  run<T extends PoolTask>(task: T): Promise<ResultOf<T>> {
    return this.piscina.run(task) as Promise<ResultOf<T>>;
  }

  /** Stops the workers. */
  async close(): Promise<void> {
    await this.piscina.destroy();
  }
}
