import { FileLun, type Lun } from "../../src/csv/lun.js";
import { MemoryFile } from "../../src/storage/block-file.js";

/** A LUN held in memory (no fdatasync), of `bytes` zero bytes or the given contents. */
export function memoryLun(
  bytes: number | Uint8Array,
  name = "/mem/lun",
): { lun: FileLun; file: MemoryFile } {
  const file =
    typeof bytes === "number"
      ? new MemoryFile(name, new Uint8Array(bytes))
      : new MemoryFile(name, bytes);
  return { lun: new FileLun(file, false), file };
}

/**
 * A LUN that dies after `writesLeft` writes: the next write throws, as a
 * coordinator killed at that point would stop. Flushes pass through.
 */
export class DyingLun implements Lun {
  writes = 0;

  constructor(
    private readonly inner: Lun,
    private writesLeft: number,
  ) {}

  get name(): string {
    return this.inner.name;
  }

  get bytes(): number {
    return this.inner.bytes;
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    return this.inner.read(offset, length);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (this.writesLeft <= 0) throw new Error("killed");
    this.writesLeft--;
    this.writes++;
    await this.inner.write(offset, data);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }
}
