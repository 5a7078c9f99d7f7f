import {
  closeSync,
  constants,
  fdatasyncSync,
  fstatSync,
  ftruncateSync,
  openSync,
  read,
  readSync,
  write,
  writeSync,
  writev,
  writevSync,
} from "node:fs";

/**
 * The bytes under a disk image: a file, a block device, or (for tests and
 * fuzzing) a buffer. Synchronous, positional and whole: a short read past
 * the end returns fewer bytes, a write is completed before it returns.
 */
export interface BlockFile {
  /** Where the bytes come from, for error messages. */
  readonly name: string;
  /** Current length in bytes. */
  size(): number;
  /** Reads up to `into.length` bytes at `position`; returns how many were read. */
  read(into: Uint8Array, position: number): number;
  /** Writes all of `from` at `position`. */
  write(from: Uint8Array, position: number): void;
  /** Writes `parts` one after the other from `position` (one gathered write where the platform has it). */
  writev(parts: readonly Uint8Array[], position: number): void;
  /**
   * {@link read}, run off this thread where the file can (libuv's thread
   * pool for a file by path): several may be in flight at once, on
   * disjoint ranges. The bytes of `into` must stay put until it settles.
   */
  readAsync(into: Uint8Array, position: number): Promise<number>;
  /** {@link writev}, off this thread where the file can; see {@link readAsync}. */
  writevAsync(parts: readonly Uint8Array[], position: number): Promise<void>;
  /** Sets the length (zero-filling when it grows). */
  truncate(length: number): void;
  /** Makes written data durable (fdatasync). */
  sync(): void;
  close(): void;
}

/**
 * A block file whose calls all complete on the calling thread: its gathered
 * write is its writes one after the other, and its asynchronous calls are
 * its synchronous ones, settled.
 */
export abstract class SynchronousFile implements BlockFile {
  abstract readonly name: string;
  abstract size(): number;
  abstract read(into: Uint8Array, position: number): number;
  abstract write(from: Uint8Array, position: number): void;
  abstract truncate(length: number): void;
  abstract sync(): void;
  abstract close(): void;

  writev(parts: readonly Uint8Array[], position: number): void {
    let at = position;
    for (const part of parts) {
      this.write(part, at);
      at += part.length;
    }
  }

  async readAsync(into: Uint8Array, position: number): Promise<number> {
    return this.read(into, position);
  }

  async writevAsync(parts: readonly Uint8Array[], position: number): Promise<void> {
    this.writev(parts, position);
  }
}

/** A file (or block device) opened by path. */
export class FdFile implements BlockFile {
  protected fd: number | undefined;

  /**
   * @param name - the path
   * @param mode - "r" read-only, "r+" read-write, "w+" create or truncate, "wx+" create new
   * @param flags - open(2) flags that replace `mode`'s (see {@link openFlags})
   */
  constructor(
    readonly name: string,
    mode: "r" | "r+" | "w+" | "wx+" = "r",
    flags?: number,
  ) {
    this.fd = flags === undefined ? openSync(name, mode) : openSync(name, flags);
  }

  protected get handle(): number {
    if (this.fd === undefined) throw new Error(`${this.name} is closed`);
    return this.fd;
  }

  size(): number {
    const stat = fstatSync(this.handle);
    return stat.isBlockDevice() ? blockDeviceSize(this.handle) : stat.size;
  }

  /** Modification time in milliseconds. */
  mtimeMs(): number {
    return fstatSync(this.handle).mtimeMs;
  }

  read(into: Uint8Array, position: number): number {
    let done = 0;
    while (done < into.length) {
      const n = readSync(this.handle, into, done, into.length - done, position + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  write(from: Uint8Array, position: number): void {
    let done = 0;
    while (done < from.length) {
      done += writeSync(this.handle, from, done, from.length - done, position + done);
    }
  }

  writev(parts: readonly Uint8Array[], position: number): void {
    const total = parts.reduce((n, p) => n + p.length, 0);
    const done = writevSync(this.handle, parts as Uint8Array[], position);
    if (done < total) writeRest(this, parts, position, done);
  }

  async readAsync(into: Uint8Array, position: number): Promise<number> {
    const fd = this.handle;
    let done = 0;
    while (done < into.length) {
      const n = await new Promise<number>((resolve, reject) =>
        read(fd, into, done, into.length - done, position + done, (error, bytes) =>
          error ? reject(error) : resolve(bytes),
        ),
      );
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  async writevAsync(parts: readonly Uint8Array[], position: number): Promise<void> {
    const fd = this.handle;
    const done = await new Promise<number>((resolve, reject) =>
      writev(fd, parts as Uint8Array[], position, (error, bytes) =>
        error ? reject(error) : resolve(bytes),
      ),
    );
    // A short gathered write (rare: a signal, a full disk) is finished part by part.
    let at = 0;
    for (const part of parts) {
      let skip = Math.min(part.length, Math.max(0, done - at));
      while (skip < part.length) {
        const offset = skip;
        skip += await new Promise<number>((resolve, reject) =>
          write(fd, part, offset, part.length - offset, position + at + offset, (error, bytes) =>
            error ? reject(error) : resolve(bytes),
          ),
        );
      }
      at += part.length;
    }
  }

  truncate(length: number): void {
    ftruncateSync(this.handle, length);
  }

  sync(): void {
    fdatasyncSync(this.handle);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** The open(2) flags of an {@link FdFile} mode. */
export function openFlags(mode: "r" | "r+" | "w+" | "wx+"): number {
  const { O_RDONLY, O_RDWR, O_CREAT, O_TRUNC, O_EXCL } = constants;
  if (mode === "r") return O_RDONLY;
  if (mode === "r+") return O_RDWR;
  return O_RDWR | O_CREAT | (mode === "w+" ? O_TRUNC : O_EXCL);
}

/** Finishes a gathered write the system took only `done` bytes of, part by part. */
function writeRest(
  file: BlockFile,
  parts: readonly Uint8Array[],
  position: number,
  done: number,
): void {
  let at = 0;
  for (const part of parts) {
    const skip = Math.min(part.length, Math.max(0, done - at));
    if (skip < part.length) file.write(part.subarray(skip), position + at + skip);
    at += part.length;
  }
}

/** A block device's size: found by reading at doubling offsets (no ioctl from Node). */
function blockDeviceSize(fd: number): number {
  const probe = new Uint8Array(1);
  let low = 0;
  let high = 512;
  while (readSync(fd, probe, 0, 1, high - 1) === 1) {
    low = high;
    high *= 2;
  }
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2);
    if (readSync(fd, probe, 0, 1, mid - 1) === 1) low = mid;
    else high = mid;
  }
  return low;
}

/** A growable in-memory file, bounded so that a hostile image cannot make it huge. */
export class MemoryFile extends SynchronousFile {
  private bytes: Uint8Array;
  private length: number;

  constructor(
    readonly name: string,
    initial: Uint8Array = new Uint8Array(0),
    private readonly maxBytes = 1 << 30,
  ) {
    super();
    this.bytes = initial;
    this.length = initial.length;
  }

  /** The file's current contents. */
  contents(): Uint8Array {
    return this.bytes.subarray(0, this.length);
  }

  size(): number {
    return this.length;
  }

  read(into: Uint8Array, position: number): number {
    const n = Math.max(0, Math.min(into.length, this.length - position));
    into.set(this.bytes.subarray(position, position + n));
    return n;
  }

  private grow(end: number): void {
    if (end > this.maxBytes)
      throw new RangeError(`${this.name}: grows past ${this.maxBytes} bytes`);
    if (end > this.bytes.length) {
      const next = new Uint8Array(Math.max(end, this.bytes.length * 2));
      next.set(this.bytes.subarray(0, this.length));
      this.bytes = next;
    }
  }

  write(from: Uint8Array, position: number): void {
    this.grow(position + from.length);
    if (position > this.length) this.bytes.fill(0, this.length, position);
    this.bytes.set(from, position);
    this.length = Math.max(this.length, position + from.length);
  }

  truncate(length: number): void {
    this.grow(length);
    if (length > this.length) this.bytes.fill(0, this.length, length);
    this.length = length;
  }

  sync(): void {}

  close(): void {}
}
