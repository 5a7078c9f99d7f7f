import type { LunWrite } from "./io-thread.js";
import type { BatchResult } from "./io-threads.js";
import type { Lun } from "./lun.js";

/** A LUN that also takes a batch of writes at once, fenced write by write (DirectLun). */
export interface BatchLun extends Lun {
  writeBatch(writes: readonly LunWrite[]): Promise<BatchResult>;
  /** Refuses every batched write not yet issued, until {@link resume}. */
  halt(): void;
  resume(): void;
}

function takesBatches(lun: Lun): lun is BatchLun {
  return typeof (lun as Partial<BatchLun>).writeBatch === "function";
}

/** The node's storage path is cut: the I/O must go through the coordinator (redirected access). */
export class PathCutError extends Error {
  override name = "PathCutError";
}

/**
 * A node's path to the LUN: the target connection as a {@link Lun}, with a
 * switch that cuts it. While cut, every read, write and flush fails with a
 * {@link PathCutError} before a byte leaves, as a node that has lost its
 * HBA or its iSCSI session sees; requests already in flight fail too when
 * they come back, so no write is acknowledged through a path that was cut
 * while it ran. Persistent-reservation commands do not go through here:
 * the node needs them to come back after the path is restored.
 */
export class StoragePath implements Lun {
  private cutBecause: string | undefined;

  constructor(private readonly lun: Lun) {}

  get name(): string {
    return this.lun.name;
  }

  get bytes(): number {
    return this.lun.bytes;
  }

  /** Why the path is cut, or undefined while it carries I/O. */
  get cut(): string | undefined {
    return this.cutBecause;
  }

  /** Cuts the path; `reason` is kept for messages. */
  cutOff(reason: string): void {
    this.cutBecause = reason;
    // A batch running on another thread stops before its next write.
    if (takesBatches(this.lun)) this.lun.halt();
  }

  /** Restores the path. */
  restore(): void {
    this.cutBecause = undefined;
    if (takesBatches(this.lun)) this.lun.resume();
  }

  /** Whether the LUN behind this path takes batches ({@link writeBatch}). */
  get batches(): boolean {
    return takesBatches(this.lun);
  }

  private check(what: string): void {
    if (this.cutBecause !== undefined)
      throw new PathCutError(
        `${what} on ${this.lun.name}: the storage path is cut (${this.cutBecause})`,
      );
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.check(`READ of ${length} bytes at ${offset}`);
    const out = await this.lun.read(offset, length);
    this.check(`READ of ${length} bytes at ${offset}`);
    return out;
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.check(`WRITE of ${data.length} bytes at ${offset}`);
    await this.lun.write(offset, data);
    this.check(`WRITE of ${data.length} bytes at ${offset}`);
  }

  /**
   * Writes a batch on a LUN that takes batches (see {@link batches}). A
   * path cut while the batch ran acknowledges none of it: the writes
   * after the cut were not issued, and the ones before it may have landed
   * but are not acknowledged through a cut path.
   */
  async writeBatch(writes: readonly LunWrite[]): Promise<BatchResult> {
    const what = `WRITE batch of ${Array.isArray(writes) ? writes.length : 0} writes`;
    if (!takesBatches(this.lun))
      throw new TypeError(`${this.lun.name} takes one write at a time, not batches`);
    this.check(what);
    const outcome = await this.lun.writeBatch(writes);
    this.check(what);
    return outcome;
  }

  async flush(): Promise<void> {
    this.check("FLUSH");
    await this.lun.flush();
  }
}
