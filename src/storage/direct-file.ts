import {
  constants,
  existsSync,
  fstatSync,
  readFileSync,
  readSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { type BlockFile, FdFile, openFlags } from "./block-file.js";
import { DirectIoUnavailableError } from "./errors.js";

/**
 * Alignment assumed when the device's logical block size cannot be read:
 * the largest in common use, so that it is a multiple of any smaller one.
 */
const FALLBACK_ALIGN = 4096;
/** Bytes of the aligned bounce buffer that unaligned requests go through (a 64 KiB wasm page x 16). */
const BOUNCE_BYTES = 1 << 20;

/** open(2)'s O_DIRECT on this platform (Linux), or undefined where Node has none (macOS, Windows). */
export function directFlag(): number | undefined {
  return (constants as Record<string, number | undefined>).O_DIRECT;
}

let bounceBuffer: Uint8Array | undefined;

/**
 * `bytes` bytes at a page-aligned address, as O_DIRECT wants a request's
 * memory. A WebAssembly memory's bytes are page-aligned (V8 maps them with
 * the page allocator), which an ordinary ArrayBuffer's are not: a buffer
 * that direct requests go straight from, without a bounce. `shared`: in
 * a SharedArrayBuffer, which another thread (a node's I/O thread) writes
 * from without a copy.
 */
export function pageAlignedBytes(bytes: number, shared = false): Uint8Array {
  const pages = Math.max(1, Math.ceil(bytes / 65536));
  return new Uint8Array(
    new WebAssembly.Memory({ initial: pages, maximum: pages, shared }).buffer,
    0,
    bytes,
  );
}

/**
 * One aligned bounce buffer per thread; the file's requests run one at a
 * time, so one buffer serves every direct file of the thread.
 */
function bounce(): Uint8Array {
  bounceBuffer ??= pageAlignedBytes(BOUNCE_BYTES);
  return bounceBuffer;
}

/**
 * The logical block size of the device under an open file, from
 * /sys/dev/block/MAJOR:MINOR (a partition's is its disk's), or
 * {@link FALLBACK_ALIGN} where there is none to read (a virtual file system).
 */
export function logicalBlockSize(fd: number): number {
  const dev = fstatSync(fd, { bigint: true }).dev;
  // glibc's gnu_dev_major and gnu_dev_minor.
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  for (const queue of [
    `/sys/dev/block/${major}:${minor}/queue`,
    `/sys/dev/block/${major}:${minor}/../queue`,
  ]) {
    const path = `${queue}/logical_block_size`;
    if (!existsSync(path)) continue;
    const size = Number.parseInt(readFileSync(path, "utf8"), 10);
    if (size >= 512 && size <= 65536 && (size & (size - 1)) === 0) return size;
  }
  return FALLBACK_ALIGN;
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException).code;
}

/**
 * A file opened with O_DIRECT: its reads and writes go to the device and
 * around the host's page cache. The kernel takes only requests whose
 * offset, length and memory address are multiples of the device's logical
 * block size (open(2), "O_DIRECT"). A request that is aligned goes straight
 * through; the kernel's EINVAL on one whose memory is not (an address only
 * the kernel sees) marks that buffer, and it and every unaligned request go
 * through an aligned bounce buffer, partial blocks read, modified and
 * written back.
 */
export class DirectFile extends FdFile {
  /** The alignment requests need, in bytes. */
  readonly align: number;
  /** Buffers the kernel refused as unaligned: they are bounced from then on. */
  private readonly refused = new WeakSet<ArrayBufferLike>();

  private constructor(name: string, flags: number) {
    super(name, "r", flags);
    this.align = logicalBlockSize(this.handle);
  }

  /**
   * Opens `name` for direct I/O.
   *
   * @throws DirectIoUnavailableError, in one line, where the platform has no
   *   O_DIRECT or the file system refuses it (tmpfs: EINVAL).
   */
  static open(name: string, mode: "r" | "r+" | "w+" | "wx+" = "r"): DirectFile {
    const direct = directFlag();
    if (direct === undefined) {
      throw new DirectIoUnavailableError(
        `${name}: direct I/O is not available on ${process.platform} (Node has no O_DIRECT there)`,
      );
    }
    const existed = mode === "r" || mode === "r+" || existsSync(name);
    try {
      return new DirectFile(name, openFlags(mode) | direct);
    } catch (error) {
      if (errorCode(error) !== "EINVAL") throw error;
      // open(2) creates the file before the file system refuses O_DIRECT.
      if (!existed) unlinkSync(name);
      throw new DirectIoUnavailableError(
        `${name}: the file system refuses direct I/O (O_DIRECT gives EINVAL, as tmpfs before Linux 6.6 does); use a directory on another file system, or leave out --direct`,
      );
    }
  }

  private aligned(bytes: Uint8Array, position: number): boolean {
    const a = this.align;
    return (
      position % a === 0 &&
      bytes.length % a === 0 &&
      bytes.byteOffset % a === 0 &&
      !this.refused.has(bytes.buffer)
    );
  }

  /** Runs an aligned request straight through; false when the kernel refused the buffer's address. */
  private straight(run: () => void, bytes: Uint8Array): boolean {
    try {
      run();
      return true;
    } catch (error) {
      if (errorCode(error) !== "EINVAL") throw error;
      this.refused.add(bytes.buffer);
      return false;
    }
  }

  override read(into: Uint8Array, position: number): number {
    let n = 0;
    if (this.aligned(into, position) && this.straight(() => (n = super.read(into, position)), into))
      return n;
    return this.bounced(into, position, "read");
  }

  override write(from: Uint8Array, position: number): void {
    if (this.aligned(from, position) && this.straight(() => super.write(from, position), from))
      return;
    this.bounced(from, position, "write");
  }

  override writev(parts: readonly Uint8Array[], position: number): void {
    // One gathered direct write when every part is aligned (pwritev takes them so).
    if (
      parts.every((p) => this.aligned(p, 0)) &&
      position % this.align === 0 &&
      this.straight(() => super.writev(parts, position), parts[0] ?? new Uint8Array(0))
    )
      return;
    let at = position;
    for (const part of parts) {
      this.write(part, at);
      at += part.length;
    }
  }

  // Direct requests run here, one at a time: the bounce buffer is one per
  // thread, and a request the kernel refuses must be retried through it.
  override async readAsync(into: Uint8Array, position: number): Promise<number> {
    return this.read(into, position);
  }

  override async writevAsync(parts: readonly Uint8Array[], position: number): Promise<void> {
    this.writev(parts, position);
  }

  /**
   * Serves a request through the bounce buffer, one aligned window at a
   * time: a write reads the window's partial blocks first, and cuts the file
   * back if the aligned window passed its end. Returns the bytes read.
   */
  private bounced(bytes: Uint8Array, position: number, op: "read" | "write"): number {
    const a = this.align;
    const buf = bounce();
    const end = position + bytes.length;
    let lo = Math.floor(position / a) * a;
    let got = 0;
    while (lo < end) {
      const hi = Math.min(lo + buf.length, Math.ceil(end / a) * a);
      const window = buf.subarray(0, hi - lo);
      const from = Math.max(position, lo);
      const to = Math.min(end, hi);
      if (op === "read") {
        const n = this.rawRead(window, lo);
        const stop = Math.min(to, lo + n);
        if (stop > from) {
          bytes.set(window.subarray(from - lo, stop - lo), from - position);
          got += stop - from;
        }
        if (lo + n < hi) break;
      } else {
        let fileEnd = Number.POSITIVE_INFINITY;
        if (from > lo || to < hi) {
          const n = this.rawRead(window, lo);
          if (n < window.length) {
            window.fill(0, n);
            fileEnd = lo + n;
          }
        }
        window.set(bytes.subarray(from - position, to - position), from - lo);
        this.rawWrite(window, lo);
        if (hi > fileEnd && hi > to) this.truncate(Math.max(fileEnd, to));
      }
      lo = hi;
    }
    return got;
  }

  private rawRead(window: Uint8Array, at: number): number {
    let done = 0;
    while (done < window.length) {
      const n = this.refusing(() =>
        readSync(this.handle, window, done, window.length - done, at + done),
      );
      if (n === 0) break;
      done += n;
      // A short direct read ends at the end of the file, which is not block-aligned.
      if (done % this.align !== 0) break;
    }
    return done;
  }

  private rawWrite(window: Uint8Array, at: number): void {
    let done = 0;
    while (done < window.length) {
      done += this.refusing(() =>
        writeSync(this.handle, window, done, window.length - done, at + done),
      );
    }
  }

  /** The bounce buffer is aligned: an EINVAL now means the device wants more than {@link align}. */
  private refusing(run: () => number): number {
    try {
      return run();
    } catch (error) {
      if (errorCode(error) !== "EINVAL") throw error;
      throw new DirectIoUnavailableError(
        `${this.name}: the device refused a direct I/O request aligned to ${this.align} bytes (EINVAL)`,
      );
    }
  }
}

/** Opens a file through the page cache, or around it with `direct`. */
export function openFile(
  name: string,
  mode: "r" | "r+" | "w+" | "wx+",
  options: { direct?: boolean } = {},
): BlockFile & { mtimeMs(): number } {
  return options.direct ? DirectFile.open(name, mode) : new FdFile(name, mode);
}

/**
 * Why direct I/O cannot be had in directory `dir`, or undefined when it
 * can: a probe file there is written and read back with O_DIRECT, then
 * removed.
 */
export function directIoRefusal(dir: string): string | undefined {
  const probe = join(dir, `.hvlab-direct-probe-${process.pid}`);
  let file: DirectFile | undefined;
  try {
    file = DirectFile.open(probe, "w+");
    const block = new Uint8Array(file.align).fill(0x5a);
    file.write(block, 0);
    const back = new Uint8Array(file.align);
    if (file.read(back, 0) !== back.length || back[back.length - 1] !== 0x5a)
      return `${dir}: a direct write did not read back`;
    return undefined;
  } catch (error) {
    return (error as Error).message;
  } finally {
    file?.close();
    try {
      unlinkSync(probe);
    } catch {}
  }
}

/** The first of `dirs` where direct I/O works, or a one-line error saying why none does. */
export function directIoDir(dirs: readonly string[]): string {
  const reasons: string[] = [];
  for (const dir of dirs) {
    const refusal = directIoRefusal(dir);
    if (refusal === undefined) return dir;
    reasons.push(refusal);
  }
  throw new DirectIoUnavailableError(`no directory takes direct I/O: ${reasons.join("; ")}`);
}
