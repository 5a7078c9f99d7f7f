import type { BlockFile } from "../storage/block-file.js";
import { VolumeRangeError } from "./errors.js";

/**
 * The LUN as a volume sees it: byte-addressed, asynchronous (it may sit
 * behind a target on the network), with a flush that orders writes. Reads
 * and writes are whole: a read past the end is an error, not short.
 */
export interface Lun {
  /** Where the bytes are, for messages. */
  readonly name: string;
  /** Bytes the LUN holds. */
  readonly bytes: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Makes every write before it durable before any write after it. */
  flush(): Promise<void>;
}

/** Refuses a request outside `[0, bytes)`. */
export function checkLunRange(
  lun: { name: string; bytes: number },
  offset: number,
  length: number,
): void {
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > lun.bytes
  )
    throw new VolumeRangeError(
      `${lun.name}: bytes ${offset}..${offset + length} are outside the LUN's ${lun.bytes} bytes`,
    );
}

/**
 * Reads bytes `offset..offset + length` of a LUN held in `file`, whole: a
 * request outside the LUN, or a read that comes back short, is an error
 * naming the LUN. Every LUN on a local file reads this way.
 */
export function readLunRange(
  lun: { name: string; bytes: number },
  file: Pick<BlockFile, "read">,
  offset: number,
  length: number,
): Uint8Array {
  checkLunRange(lun, offset, length);
  const out = new Uint8Array(length);
  const n = file.read(out, offset);
  if (n !== length)
    throw new VolumeRangeError(`${lun.name}: read ${n} of ${length} bytes at ${offset}`);
  return out;
}

/** A LUN that is a local file or block device (the storage engine's {@link BlockFile}). */
export class FileLun implements Lun {
  readonly bytes: number;

  constructor(
    private readonly file: BlockFile,
    /** Whether flush calls fdatasync: off for scratch volumes in tests and benchmarks. */
    private readonly durable = true,
  ) {
    this.bytes = file.size();
  }

  get name(): string {
    return this.file.name;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    return readLunRange(this, this.file, offset, length);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    checkLunRange(this, offset, data.length);
    this.file.write(data, offset);
  }

  async flush(): Promise<void> {
    if (this.durable) this.file.sync();
  }

  close(): void {
    this.file.close();
  }
}
