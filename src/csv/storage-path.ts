import type { Lun } from "./lun.js";

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
  }

  /** Restores the path. */
  restore(): void {
    this.cutBecause = undefined;
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

  async flush(): Promise<void> {
    this.check("FLUSH");
    await this.lun.flush();
  }
}
