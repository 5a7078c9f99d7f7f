import { FdFile, openFlags } from "../storage/block-file.js";
import { DirectFile, directFlag } from "../storage/direct-file.js";
import type { LunWrite } from "./io-thread.js";
import { type BatchResult, LunIoThreads } from "./io-threads.js";
import { checkLunRange, type Lun, readLunRange } from "./lun.js";
import { BoardReader } from "./registration-board.js";
import { parseSuperblock } from "./superblock.js";
import { WriteFence } from "./write-fence.js";

/** Reads of this path's first sector before a torn one counts as a different volume. */
const IDENTITY_READS = 5;

/**
 * Whether the LUN on this path holds the volume whose first sector the
 * target returned: the same volume UUID where both sectors are
 * superblocks, since the superblock's generation, epoch and coordinator
 * change with every metadata transaction and coordinator term (a node
 * starting while the cluster works reads another generation than the
 * target did a moment before); the same bytes where the LUN holds no
 * volume yet. A read that races the target's write of the superblock can
 * return a torn sector, which fails its CRC: it is read again.
 */
async function sameVolume(there: Uint8Array, lun: Lun, lunBytes: number): Promise<boolean> {
  let theirs: string | undefined;
  try {
    theirs = parseSuperblock(there, lunBytes).uuid;
  } catch {
    theirs = undefined;
  }
  for (let attempt = 1; ; attempt++) {
    const here = await lun.read(0, 512);
    if (theirs === undefined) return there.every((b, i) => b === here[i]);
    try {
      return parseSuperblock(here, lunBytes).uuid === theirs;
    } catch {
      if (attempt >= IDENTITY_READS) return false;
    }
  }
}

/**
 * A node's own path to the shared LUN: the LUN file (or block device)
 * opened by the node itself, read and written with pread/pwrite at the
 * file's extents, as a cluster node's direct I/O goes over its own Fibre
 * Channel, iSCSI or SAS path to the array and not through another node.
 *
 * The target keeps what the array keeps for the cluster, the persistent
 * reservations, and publishes them on its registration board. A WRITE is
 * checked against the board before its bytes go out (a preempted key is
 * refused with ReservationConflictError, as the array answers RESERVATION
 * CONFLICT), and again after they landed: a write whose key was preempted
 * while it ran is not acknowledged. One board read serves every write in
 * hand at once ({@link WriteFence}). A READ is not checked, since under
 * Write Exclusive - Registrants Only anyone may read.
 *
 * Writes run on libuv's thread pool, several at once, so the node's event
 * loop stays free for heartbeats and for the metadata requests it serves
 * as coordinator while its own writes are in flight.
 *
 * FLUSH goes to the target (SYNCHRONIZE CACHE destages the array's cache;
 * here the host's page cache, which this node's buffered writes went into,
 * and which the target's fdatasync of the same file writes out; after
 * unbuffered writes it is the device's own cache).
 *
 * Unbuffered (`direct`), the LUN is opened with O_DIRECT, as Hyper-V's
 * I/O to VHDs on a CSV is unbuffered (CSV direct I/O bypasses the host's
 * cache): writes go around the page cache, and several nodes'
 * overwrites of allocated blocks run at once (ext4 takes the inode lock
 * shared for those, where buffered writes to one inode take it exclusive,
 * fs/ext4/file.c, ext4_dio_write_checks). The volume's clusters and data
 * area must then sit on the device's logical block size, so that every
 * request at a file's extents is aligned; an aligned request goes to the
 * thread pool straight from its memory, and one that is not (or whose
 * memory the kernel refuses) goes through DirectFile's bounce buffer on
 * this thread.
 */
export class DirectLun implements Lun {
  readonly bytes: number;
  private readonly fence: WriteFence;
  /** Buffers the kernel refused for an unbuffered request from the thread pool: they go through the bounce. */
  private readonly refused = new WeakSet<ArrayBufferLike>();
  /** The threads that run batches of writes, started by the first batch. */
  private threads: LunIoThreads | undefined;
  /** Whether the node has halted this path's writes ({@link halt}). */
  private halted = false;
  /** Whether {@link close} has run: every request is refused from then on. */
  private closed = false;

  private constructor(
    private readonly file: FdFile | DirectFile,
    /** The same LUN opened with the same flags, for writes on the thread pool (DirectFile runs its own on this thread). */
    private readonly pooled: FdFile,
    private readonly board: BoardReader,
    /** The node's reservation key now (it changes when the node registers again). */
    private readonly key: () => bigint,
    private readonly flushAtTarget: () => Promise<void>,
    /** The LUN's and the board's paths, for the I/O thread's own descriptors. */
    private readonly paths: { readonly lun: string; readonly board: string },
  ) {
    this.bytes = file.size();
    this.fence = new WriteFence({ readBoard: () => board.read(), maxInFlight: threadPoolSize() });
  }

  /**
   * Opens the LUN at `path` and the board at `registrations`, and checks
   * both are the LUN the target serves: the same size on the board, at the
   * target's login and on this path, and the same first sector read through
   * the target and here (the volume's superblock, holding its UUID), as a
   * host matches a SAN device by its identifier.
   *
   * With `direct` the LUN is opened with O_DIRECT; this throws
   * DirectIoUnavailableError where the platform or the file system has
   * none, and an error naming the volume when its cluster size or data
   * area is not a multiple of the device's logical block size.
   */
  static async open(
    path: string,
    registrations: string,
    target: Lun,
    key: () => bigint,
    options: { direct?: boolean } = {},
  ): Promise<DirectLun> {
    const file = options.direct ? DirectFile.open(path, "r+") : new FdFile(path, "r+");
    let pooled: FdFile | undefined;
    let board: BoardReader | undefined;
    try {
      pooled =
        file instanceof DirectFile
          ? new FdFile(path, "r+", openFlags("r+") | (directFlag() ?? 0))
          : file;
      try {
        board = new BoardReader(registrations);
      } catch (error) {
        throw new Error(
          `--registrations ${registrations}: ${(error as Error).message} (the target publishes it: hvlab csv target --registrations)`,
        );
      }
      const lun = new DirectLun(file, pooled, board, key, () => target.flush(), {
        lun: path,
        board: registrations,
      });
      const published = board.read().lunBytes;
      if (lun.bytes !== target.bytes || published !== target.bytes)
        throw new Error(
          `--lun ${path}: ${lun.bytes} bytes here, ${target.bytes} at the target, ${published} on its board: not the LUN the target serves`,
        );
      const there = await target.read(0, 512);
      if (!(await sameVolume(there, lun, target.bytes)))
        throw new Error(
          `--lun ${path}: its first sector differs from the target's ${target.name}: not the LUN the target serves`,
        );
      if (file instanceof DirectFile) {
        // The data area starts on a cluster (computeLayout rounds it up, and
        // parseSuperblock refuses a stored offset the layout does not give),
        // so clusters on the device's blocks put the data area on them too.
        const { clusterBytes, dataOffset } = parseSuperblock(there, target.bytes).layout;
        if (clusterBytes % file.align !== 0)
          throw new Error(
            `--lun ${path} --lun-direct: the volume's clusters (${clusterBytes} bytes) and data area (at ${dataOffset}) must sit on the device's ${file.align}-byte blocks for unbuffered I/O; format it with a cluster size that is a multiple of ${file.align}`,
          );
      }
      return lun;
    } catch (error) {
      board?.close();
      if (pooled !== file) pooled?.close();
      file.close();
      throw error;
    }
  }

  get name(): string {
    return this.file.name;
  }

  /** Whether this path is unbuffered: the LUN opened with O_DIRECT, around the host's page cache. */
  get unbuffered(): boolean {
    return this.file instanceof DirectFile;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    this.open();
    return readLunRange(this, this.file, offset, length);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    this.open();
    checkLunRange(this, offset, data.length);
    const what = `WRITE of ${data.length} bytes at ${offset} on ${this.name}`;
    // Fenced as docs/csv.md, "The fence for direct writes", says: refused before, unacknowledged after.
    return this.fence.write(this.key(), what, () => this.put(offset, data));
  }

  /** Writes `data` at `offset` on the thread pool where it can go there whole. */
  private async put(offset: number, data: Uint8Array): Promise<void> {
    if (!(this.file instanceof DirectFile)) return this.file.writevAsync([data], offset);
    const a = this.file.align;
    if (
      offset % a === 0 &&
      data.length % a === 0 &&
      data.byteOffset % a === 0 &&
      !this.refused.has(data.buffer)
    ) {
      try {
        return await this.pooled.writevAsync([data], offset);
      } catch (error) {
        // EINVAL before a byte is written: the memory is not aligned where the kernel sees it.
        if ((error as NodeJS.ErrnoException).code !== "EINVAL") throw error;
        this.refused.add(data.buffer);
      }
    }
    this.file.write(data, offset);
  }

  /**
   * Writes `writes` as one batch on the node's I/O threads (io-threads.ts:
   * as many as libuv's pool has, so the node keeps as many writes in
   * flight as its pooled writes did), each thread writing its contiguous
   * part back to back, each write checked against the board before its
   * bytes go out and acknowledged only on a board read that began after it
   * landed (fenced-batch.ts); a part stops at its first write refused,
   * unacknowledged or failed, and the others before their next. Settles
   * once, when the batch has ended, saying which writes are acknowledged.
   * An unbuffered path's thread bounces a request that is not aligned
   * itself, as {@link write} does.
   */
  writeBatch(writes: readonly LunWrite[]): Promise<BatchResult> {
    try {
      this.open();
    } catch (error) {
      return Promise.reject(error);
    }
    if (!this.threads) {
      this.threads = new LunIoThreads(
        this.paths.lun,
        this.paths.board,
        this.unbuffered,
        this.bytes,
        threadPoolSize(),
      );
      if (this.halted) this.threads.halt();
    }
    return this.threads.write(this.key(), writes);
  }

  /** Refuses every batched write not yet issued (the node's storage path is cut), until {@link resume}. */
  halt(): void {
    this.halted = true;
    this.threads?.halt();
  }

  /** Lets batched writes go out again. */
  resume(): void {
    this.halted = false;
    this.threads?.resume();
  }

  flush(): Promise<void> {
    return this.flushAtTarget();
  }

  /**
   * Throws once the LUN is closed: its descriptors are gone, and a batch
   * would otherwise start threads (and descriptors) no one closes.
   */
  private open(): void {
    if (this.closed) throw new Error(`${this.name} is closed`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // The threads end their parts (the rest refused) and close their own descriptors.
    void this.threads?.close();
    this.threads = undefined;
    this.board.close();
    if (this.pooled !== this.file) this.pooled.close();
    this.file.close();
  }
}

/** Threads in libuv's pool, which runs the asynchronous file writes (UV_THREADPOOL_SIZE, libuv's default 4, at most 1024). */
export function threadPoolSize(env: NodeJS.ProcessEnv = process.env): number {
  const value = env.UV_THREADPOOL_SIZE;
  if (value === undefined) return 4;
  // As libuv's init_threads (src/threadpool.c) reads it: atoi(3) into an
  // unsigned int, so text without leading digits is 0 and a negative number
  // wraps past the limit; 0 is made 1, anything over 1024 made 1024.
  const digits = /^[ \t\n\v\f\r]*([+-]?\d+)/.exec(value)?.[1];
  const n = digits === undefined ? 0 : Number.parseInt(digits, 10);
  if (n === 0) return 1;
  return n < 0 || n > 1024 ? 1024 : n;
}
