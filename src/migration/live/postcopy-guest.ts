import { setTimeout as sleep } from "node:timers/promises";
import type { Region } from "../../memory/region.js";
import type { PagedRam, StreamKernel } from "../../wasm/stream.js";
import { mix64, step64, vcpuState } from "../../workload/splitmix.js";
import type { PostcopyDone, PostcopyRun } from "./messages.js";

/** How often a paced vCPU wakes, ms. */
const TICK_MS = 2;
/** Credit carried across a stall, in seconds of writes: a vCPU back from a fault does not burst. */
const MAX_CREDIT_SECONDS = 0.05;

/** What the destination's guest needs from the session. */
export interface PostcopyGuestDeps {
  readonly memory: WebAssembly.Memory;
  readonly ram: PagedRam;
  readonly kernel: StreamKernel;
  /** 8 bytes of scratch for one page digest. */
  readonly digest: Region;
  /** Sends a page request on the return path. */
  readonly request: (page: number) => void;
  /** A vCPU failed (a kernel error): the session fails with it. */
  readonly failed: (error: Error) => void;
}

/**
 * The guest on a post-copy destination: its vCPUs run on the landing memory
 * from the switch on. A vCPU that touches a page not there yet (never sent,
 * or discarded as stale) sends a page request on the return path and waits
 * for the page, as a vCPU blocked in QEMU's userfaultfd handler
 * (migration/postcopy-ram.c); its wait is its postcopy-vcpu-blocktime, and
 * the time every vCPU waits at once is postcopy-blocktime.
 *
 * It runs on this thread in TypeScript, not as a batch of writes on the
 * pool: a vCPU must stop at the very page it faults on, which a batch in
 * wasm cannot. Each write stores a 64-bit stamp in one word of a page picked
 * uniformly from a splitmix64 stream per vCPU (the workload kernels' PRNG).
 *
 * For verification it keeps, per page the guest wrote: the digest of the
 * page as it first touched it (it must be the source's final copy) and the
 * digest after its last write (nothing may overwrite the page since).
 * Pages that arrive where a page is already present are dropped: a late
 * background copy never lands on what the guest wrote.
 */
export class PostcopyGuest {
  /** 1 where the page is in the landing memory and current. */
  private readonly present: Uint8Array;
  private readonly requested: Uint8Array;
  /** 1 where the guest wrote the page after the switch. */
  private readonly wroteFlag: Uint8Array;
  /** Digest of each page the guest wrote, as it first touched it. */
  readonly touched: BigUint64Array;
  /** Digest of each page the guest wrote, after its last write. */
  readonly written: BigUint64Array;
  private readonly wanted = new Map<number, (() => void)[]>();
  private missingPages = 0;
  private running = false;
  private loops: Promise<void>[] = [];
  private startedAt = 0;
  private stoppedAt = 0;
  private blocked = 0;
  private allBlockedSince: number | null = null;
  private blocktime = 0;
  private readonly vcpuBlocktime: number[];
  private requests = 0;

  /** Page requests sent on the return path so far. */
  get requestsSent(): number {
    return this.requests;
  }
  /** Pages dropped because the destination already had them. */
  dropped = 0;
  /** Writes the vCPUs did. */
  writes = 0;

  constructor(
    private readonly deps: PostcopyGuestDeps,
    readonly pages: number,
    private readonly run: PostcopyRun,
  ) {
    this.present = new Uint8Array(pages).fill(1);
    this.requested = new Uint8Array(pages);
    this.wroteFlag = new Uint8Array(pages);
    this.touched = new BigUint64Array(pages);
    this.written = new BigUint64Array(pages);
    this.vcpuBlocktime = new Array<number>(run.vcpus).fill(0);
  }

  /** Pages still on the source. */
  get missing(): number {
    return this.missingPages;
  }

  /** Whether page `page` is here and current. */
  has(page: number): boolean {
    return this.present[page] === 1;
  }

  /** Whether the guest wrote page `page` after the switch. */
  wrote(page: number): boolean {
    return this.wroteFlag[page] === 1;
  }

  /**
   * Pages a vCPU requested that have not arrived: after a broken link is
   * recovered they are requested again, since a request may have died with
   * the link (QEMU's migrate_send_rp_req_pages_pending, migration/savevm.c).
   */
  awaitedPages(): number[] {
    const pages: number[] = [];
    for (let page = 0; page < this.pages; page++) {
      if (this.requested[page] === 1 && this.present[page] === 0) pages.push(page);
    }
    return pages;
  }

  /** Marks pages stale or never sent (the source's discard list): a vCPU faults on them. */
  discard(pages: Uint32Array): void {
    if (this.running) throw new Error("discard after the guest started");
    for (const page of pages) {
      if (this.present[page] === 1) {
        this.present[page] = 0;
        this.missingPages++;
      }
    }
  }

  /**
   * Lands a page the source sent (pushed or requested), from `from` in
   * memory, unless the page is already here: then it is dropped and false
   * is returned.
   */
  land(page: number, from: number): boolean {
    if (this.present[page] === 1) {
      this.dropped++;
      return false;
    }
    const bytes = 2 ** this.deps.ram.pageShift;
    const buffer = this.deps.memory.buffer;
    new Uint8Array(buffer, this.deps.ram.region.offset + page * bytes, bytes).set(
      new Uint8Array(buffer, from, bytes),
    );
    this.present[page] = 1;
    this.missingPages--;
    const waiters = this.wanted.get(page);
    if (waiters) {
      this.wanted.delete(page);
      for (const wake of waiters) wake();
    }
    return true;
  }

  /** Starts the vCPUs. */
  start(): void {
    this.running = true;
    this.startedAt = performance.now();
    this.loops = Array.from({ length: this.run.vcpus }, (_, vcpu) => this.vcpu(vcpu));
  }

  /**
   * Stops the vCPUs: waits for each to leave its write; a vCPU waiting on a
   * page gives up the wait. Returns what post-copy measured.
   */
  async stop(): Promise<PostcopyDone> {
    if (this.running) {
      this.running = false;
      this.stoppedAt = performance.now();
      for (const waiters of this.wanted.values()) for (const wake of waiters) wake();
      this.wanted.clear();
      await Promise.all(this.loops);
    }
    const phaseMs = Math.max(0, this.stoppedAt - this.startedAt);
    return {
      requests: this.requests,
      dropped: this.dropped,
      phaseMs,
      blocktime: this.blocktime,
      vcpuBlocktime: [...this.vcpuBlocktime],
    };
  }

  private async vcpu(index: number): Promise<void> {
    let state = vcpuState(this.run.seed, index);
    const rate = this.run.writesPerSecond / this.run.vcpus;
    let credit = 0;
    let last = performance.now();
    const pageBytes = 2 ** this.deps.ram.pageShift;
    try {
      while (this.running) {
        const now = performance.now();
        credit = Math.min(
          credit + ((now - last) / 1000) * rate,
          Math.max(1, rate * MAX_CREDIT_SECONDS),
        );
        last = now;
        if (credit < 1) {
          await sleep(TICK_MS);
          continue;
        }
        credit -= 1;
        state = step64(state);
        const draw = mix64(state);
        const page = Number(draw % BigInt(this.pages));
        const word = Number((draw >> 40n) % BigInt(pageBytes / 8));
        if (this.present[page] !== 1) {
          await this.fault(index, page);
          if (!this.running) return;
        }
        this.write(page, word, draw);
      }
    } catch (error) {
      this.deps.failed(error as Error);
    }
  }

  /** A vCPU touched a missing page: request it (once) and wait; the wait is its blocktime. */
  private async fault(vcpu: number, page: number): Promise<void> {
    if (this.requested[page] === 0) {
      this.requested[page] = 1;
      this.requests++;
      this.deps.request(page);
    }
    const began = performance.now();
    this.blocked++;
    if (this.blocked === this.run.vcpus) this.allBlockedSince = began;
    await new Promise<void>((resolve) => {
      const waiters = this.wanted.get(page);
      if (waiters) waiters.push(resolve);
      else this.wanted.set(page, [resolve]);
    });
    const ended = this.running ? performance.now() : this.stoppedAt;
    if (this.allBlockedSince !== null) {
      this.blocktime += ended - this.allBlockedSince;
      this.allBlockedSince = null;
    }
    this.blocked--;
    this.vcpuBlocktime[vcpu] = (this.vcpuBlocktime[vcpu] ?? 0) + (ended - began);
  }

  /** One guest write: a stamp in one word of a present page, with the page's digests kept. */
  private write(page: number, word: number, stamp: bigint): void {
    const { memory, ram } = this.deps;
    if (this.wroteFlag[page] === 0) {
      this.touched[page] = this.hash(page);
      this.wroteFlag[page] = 1;
    }
    const at = ram.region.offset + page * 2 ** ram.pageShift + word * 8;
    new DataView(memory.buffer, at, 8).setBigUint64(0, stamp, true);
    this.writes++;
    this.written[page] = this.hash(page);
  }

  private hash(page: number): bigint {
    const { memory, ram, kernel, digest } = this.deps;
    kernel.hashPages(ram, page, 1, digest);
    return new BigUint64Array(memory.buffer, digest.offset, 1)[0] ?? 0n;
  }
}
