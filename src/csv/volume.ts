import { randomBytes } from "node:crypto";
import {
  EPOCH_RECORD_BYTES,
  type EpochRecord,
  encodeEpochRecord,
  epochSlotOffset,
  parseEpochLog,
} from "./epoch-log.js";
import { VolumeFileError, VolumeFullError, VolumeRangeError } from "./errors.js";
import {
  checkName,
  clustersFor,
  type Extent,
  encodeFileEntry,
  type FileEntry,
  MAX_EXTENTS,
  parseFileEntry,
} from "./file-entry.js";
import {
  encodeTransaction,
  MAX_TXN_SECTORS,
  parseJournal,
  type Transaction,
  TxnOperation,
} from "./journal.js";
import {
  computeLayout,
  EPOCH_LOG_SECTORS,
  type LayoutParameters,
  SECTOR,
  type VolumeLayout,
} from "./layout.js";
import type { Lun } from "./lun.js";
import { encodeSuperblock, parseSuperblock, type Superblock } from "./superblock.js";

/** A coordinator's metadata write found the volume in a newer term: it has been replaced. */
export class StaleEpochError extends Error {
  override name = "StaleEpochError";
}

/** Options of {@link Volume.format}. */
export interface FormatOptions extends Partial<Omit<LayoutParameters, "volumeBytes">> {
  /** Bytes of the LUN to use (default: all of it, rounded down to a cluster). */
  readonly volumeBytes?: number;
  readonly label?: string;
  /** 32 hex digits (default: random). */
  readonly uuid?: string;
}

/** What opening found in the journal. */
export type JournalState =
  | { readonly state: "empty" }
  | { readonly state: "applied"; readonly sequence: number }
  | {
      readonly state: "pending";
      readonly sequence: number;
      readonly epoch: number;
      readonly node: number;
    }
  | {
      readonly state: "stale";
      readonly sequence: number;
      readonly epoch: number;
      readonly node: number;
    };

/** A file as the metadata path returns it: where its bytes are on the LUN. */
export interface FileMap {
  readonly name: string;
  readonly size: number;
  readonly extents: readonly Extent[];
}

/** One byte range on the LUN that a file range maps to. */
export interface LunRange {
  readonly lunOffset: number;
  readonly length: number;
  /** Where this piece starts in the caller's buffer. */
  readonly bufferOffset: number;
}

/**
 * Maps `[offset, offset + length)` of a file to LUN byte ranges through its
 * extents (the sector map a CSV node does direct I/O through).
 */
export function mapFileRange(
  layout: VolumeLayout,
  file: FileMap,
  offset: number,
  length: number,
): LunRange[] {
  if (
    !Number.isSafeInteger(offset) ||
    !Number.isSafeInteger(length) ||
    offset < 0 ||
    length < 0 ||
    offset + length > file.size
  )
    throw new VolumeRangeError(
      `${file.name}: bytes ${offset}..${offset + length} are outside its ${file.size} bytes`,
    );
  const out: LunRange[] = [];
  let fileAt = 0;
  let done = 0;
  for (const e of file.extents) {
    const bytes = e.count * layout.clusterBytes;
    const lo = Math.max(offset + done, fileAt);
    const hi = Math.min(offset + length, fileAt + bytes);
    if (lo < hi) {
      const piece = hi - lo;
      out.push({
        lunOffset: layout.dataOffset + e.first * layout.clusterBytes + (lo - fileAt),
        length: piece,
        bufferOffset: lo - offset,
      });
      done += piece;
    }
    fileAt += bytes;
    if (done === length) break;
  }
  return out;
}

/** Sectors changed by one metadata operation, copied on first write. */
class Stage {
  readonly sectors = new Map<number, Uint8Array>();

  constructor(private readonly volume: Volume) {}

  /** The sector's bytes as this operation will leave them (writable). */
  sector(sector: number): Uint8Array {
    let bytes = this.sectors.get(sector);
    if (!bytes) {
      bytes = this.volume.metadataSector(sector).slice();
      this.sectors.set(sector, bytes);
    }
    return bytes;
  }
}

/**
 * A cluster shared volume on a LUN: the metadata (superblock, epoch log,
 * file table, allocation bitmap) held in memory and written through the
 * journal, and file data read and written at the files' extents.
 *
 * Only the coordinator calls the metadata operations; every node may call
 * {@link Volume.read} and {@link Volume.write} with a {@link FileMap} it got
 * from the coordinator. One instance serves one caller at a time: metadata
 * operations are serialised by the caller (the coordinator queues them).
 */
export class Volume {
  private superblock: Superblock;
  private readonly epochLog: Uint8Array;
  private readonly fileTable: Uint8Array;
  private readonly bitmap: Uint8Array;
  private readonly files = new Map<string, { slot: number; entry: FileEntry }>();
  private freeClusters: number;
  private allocHint = 0;
  /** What {@link Volume.open} found in the journal. */
  readonly journal: JournalState;

  private constructor(
    readonly lun: Lun,
    sb: Superblock,
    epochLog: Uint8Array,
    fileTable: Uint8Array,
    bitmap: Uint8Array,
    journal: JournalState,
  ) {
    this.superblock = sb;
    this.epochLog = epochLog;
    this.fileTable = fileTable;
    this.bitmap = bitmap;
    this.journal = journal;
    const l = sb.layout;
    for (let slot = 0; slot < l.fileSlots; slot++) {
      const at = l.fileTableOffset + slot * SECTOR;
      const entry = parseFileEntry(
        fileTable.subarray(slot * SECTOR, (slot + 1) * SECTOR),
        at,
        l.dataClusters,
        l.clusterBytes,
      );
      if (entry) {
        if (this.files.has(entry.name))
          throw new VolumeFileError(
            `file table slot ${slot} at offset ${at}: ${JSON.stringify(entry.name)} is already in another slot`,
          );
        this.files.set(entry.name, { slot, entry });
      }
    }
    let used = 0;
    for (let c = 0; c < l.dataClusters; c++) used += this.bit(c);
    this.freeClusters = l.dataClusters - used;
  }

  /**
   * Writes an empty volume on the LUN: superblock at generation 0 and epoch
   * 0, zeroed journal, epoch log, file table and bitmap.
   */
  static async format(lun: Lun, options: FormatOptions = {}): Promise<Volume> {
    const clusterBytes = options.clusterBytes ?? 65536;
    const layout = computeLayout({
      volumeBytes: options.volumeBytes ?? Math.floor(lun.bytes / clusterBytes) * clusterBytes,
      clusterBytes,
      fileSlots: options.fileSlots ?? 256,
      journalSectors: options.journalSectors ?? 64,
    });
    if (layout.volumeBytes > lun.bytes)
      throw new VolumeRangeError(
        `${lun.name}: a volume of ${layout.volumeBytes} bytes does not fit its ${lun.bytes} bytes`,
      );
    const uuid = options.uuid ?? randomBytes(16).toString("hex");
    if (!/^[0-9a-f]{32}$/.test(uuid))
      throw new RangeError(`volume uuid must be 32 hex digits, not ${JSON.stringify(uuid)}`);
    const zeros = new Uint8Array(Math.min(1 << 20, layout.dataOffset));
    for (let at = 0; at < layout.dataOffset; at += zeros.length)
      await lun.write(at, zeros.subarray(0, Math.min(zeros.length, layout.dataOffset - at)));
    await lun.write(
      0,
      encodeSuperblock({
        layout,
        generation: 0,
        epoch: 0,
        coordinator: 0,
        uuid,
        label: options.label ?? "",
      }),
    );
    await lun.flush();
    return Volume.open(lun);
  }

  /**
   * Reads and checks the volume's metadata. With `replay` (the default), a
   * pending journal transaction is applied on the LUN; without it (a
   * read-only check), it is applied to the copy in memory only.
   */
  static async open(lun: Lun, options: { replay?: boolean } = {}): Promise<Volume> {
    const replay = options.replay ?? true;
    let sb = parseSuperblock(await lun.read(0, Math.min(SECTOR, lun.bytes)), lun.bytes);
    const l = sb.layout;
    const epochLog = await lun.read(l.epochLogOffset, EPOCH_LOG_SECTORS * SECTOR);
    const fileTable = await lun.read(l.fileTableOffset, l.fileSlots * SECTOR);
    const bitmap = await lun.read(l.bitmapOffset, l.bitmapSectors * SECTOR);
    const txn = parseJournal(await lun.read(l.journalOffset, l.journalSectors * SECTOR), l);
    let journal: JournalState = { state: "empty" };
    if (txn && txn.sequence <= sb.generation)
      journal = { state: "applied", sequence: txn.sequence };
    else if (txn && txn.sequence === sb.generation + 1) {
      if (txn.epoch < sb.epoch) {
        journal = { state: "stale", sequence: txn.sequence, epoch: txn.epoch, node: txn.node };
      } else {
        journal = { state: "pending", sequence: txn.sequence, epoch: txn.epoch, node: txn.node };
        const regions = { epochLog, fileTable, bitmap };
        for (const image of txn.images) placeImage(l, regions, image.sector, image.bytes);
        const next = nextSuperblock(sb, txn);
        if (replay) {
          for (const image of txn.images) await lun.write(image.sector * SECTOR, image.bytes);
          await lun.flush();
          await lun.write(0, encodeSuperblock(next));
          await lun.flush();
        }
        sb = next;
      }
    } else if (txn) {
      journal = { state: "stale", sequence: txn.sequence, epoch: txn.epoch, node: txn.node };
    }
    return new Volume(lun, sb, epochLog, fileTable, bitmap, journal);
  }

  /** The layout. */
  get layout(): VolumeLayout {
    return this.superblock.layout;
  }

  /** Sequence of the last metadata transaction applied. */
  get generation(): number {
    return this.superblock.generation;
  }

  /** The current coordinator term, and its holder. */
  get epoch(): number {
    return this.superblock.epoch;
  }

  get coordinator(): number {
    return this.superblock.coordinator;
  }

  get uuid(): string {
    return this.superblock.uuid;
  }

  get label(): string {
    return this.superblock.label;
  }

  /** Data clusters not held by any file. */
  get free(): number {
    return this.freeClusters;
  }

  /** Every coordinator term in the log, oldest first. */
  epochs(): EpochRecord[] {
    return parseEpochLog(this.epochLog, this.layout.epochLogOffset);
  }

  /** Every file, in file-table order. */
  list(): FileEntry[] {
    return [...this.files.values()].sort((a, b) => a.slot - b.slot).map((f) => f.entry);
  }

  /** A file's map, or a {@link VolumeFileError}. */
  lookup(name: string): FileMap {
    const f = this.files.get(name);
    if (!f) throw new VolumeFileError(`no file ${JSON.stringify(name)} on the volume`);
    return { name, size: f.entry.size, extents: f.entry.extents };
  }

  /** The bytes of one metadata sector as this volume holds them. */
  metadataSector(sector: number): Uint8Array {
    const l = this.layout;
    const byte = sector * SECTOR;
    const pick = (base: number, region: Uint8Array): Uint8Array | undefined =>
      byte >= base && byte < base + region.length
        ? region.subarray(byte - base, byte - base + SECTOR)
        : undefined;
    const bytes =
      pick(l.epochLogOffset, this.epochLog) ??
      pick(l.fileTableOffset, this.fileTable) ??
      pick(l.bitmapOffset, this.bitmap);
    if (!bytes) throw new RangeError(`sector ${sector} is not a metadata sector`);
    return bytes;
  }

  /** 1 when data cluster `c` is allocated. */
  bit(c: number): number {
    return ((this.bitmap[c >>> 3] ?? 0) >>> (7 - (c & 7))) & 1;
  }

  /**
   * Opens a new coordinator term for `node`: epoch + 1, recorded in the
   * epoch log by its own transaction. Returns the new epoch.
   */
  async takeOver(node: number, now = Date.now()): Promise<number> {
    const epoch = this.superblock.epoch + 1;
    const stage = new Stage(this);
    const record: EpochRecord = {
      epoch,
      node,
      firstGeneration: this.generation + 1,
      takenAtMs: now,
    };
    const l = this.layout;
    const at = l.epochLogOffset + epochSlotOffset(epoch);
    const sector = Math.floor(at / SECTOR);
    const scratch = new Uint8Array(EPOCH_LOG_SECTORS * SECTOR);
    encodeEpochRecord(scratch, record);
    stage
      .sector(sector)
      .set(
        scratch.subarray(at - l.epochLogOffset, at - l.epochLogOffset + EPOCH_RECORD_BYTES),
        at - sector * SECTOR,
      );
    await this.commit(TxnOperation.takeover, stage, { epoch, node }, false);
    return epoch;
  }

  /** Creates a file of `size` bytes (its clusters allocated, contents undefined until written). */
  async create(name: string, size: number): Promise<FileMap> {
    checkName(name);
    checkSize(size);
    if (this.files.has(name))
      throw new VolumeFileError(`${JSON.stringify(name)} already exists on the volume`);
    const slot = this.freeSlot();
    const stage = new Stage(this);
    const extents = this.allocate(stage, clustersFor(size, this.layout.clusterBytes), []);
    const entry: FileEntry = {
      name,
      size,
      extents,
      createdGeneration: this.generation + 1,
      writtenEpoch: this.epoch,
    };
    stage.sector(this.slotSector(slot)).set(encodeFileEntry(entry));
    await this.commit(TxnOperation.create, stage);
    return this.lookup(name);
  }

  /** Deletes a file and frees its clusters. */
  async delete(name: string): Promise<void> {
    const f = this.files.get(name);
    if (!f) throw new VolumeFileError(`no file ${JSON.stringify(name)} on the volume`);
    const stage = new Stage(this);
    for (const e of f.entry.extents) this.setBits(stage, e, 0);
    stage.sector(this.slotSector(f.slot)).fill(0);
    await this.commit(TxnOperation.delete, stage);
  }

  /** Grows (or shrinks) a file to `size` bytes; new bytes are undefined until written. */
  async resize(name: string, size: number): Promise<FileMap> {
    const f = this.files.get(name);
    if (!f) throw new VolumeFileError(`no file ${JSON.stringify(name)} on the volume`);
    checkSize(size);
    const cb = this.layout.clusterBytes;
    const have = clustersFor(f.entry.size, cb);
    const want = clustersFor(size, cb);
    const stage = new Stage(this);
    let extents: Extent[] = [...f.entry.extents];
    if (want > have) extents = this.allocate(stage, want - have, extents);
    else if (want < have) {
      let keep = want;
      const kept: Extent[] = [];
      for (const e of extents) {
        const take = Math.min(keep, e.count);
        if (take > 0) kept.push({ first: e.first, count: take });
        if (take < e.count)
          this.setBits(stage, { first: e.first + take, count: e.count - take }, 0);
        keep -= take;
      }
      extents = kept;
    }
    const entry: FileEntry = { ...f.entry, size, extents, writtenEpoch: this.epoch };
    stage.sector(this.slotSector(f.slot)).set(encodeFileEntry(entry));
    await this.commit(want >= have ? TxnOperation.extend : TxnOperation.truncate, stage);
    return this.lookup(name);
  }

  /** Reads a file's bytes through its map. */
  async read(file: FileMap, offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    for (const r of mapFileRange(this.layout, file, offset, length))
      out.set(await this.lun.read(r.lunOffset, r.length), r.bufferOffset);
    return out;
  }

  /** Writes a file's bytes through its map (data is not journaled, as in NTFS and OCFS2's default). */
  async write(file: FileMap, offset: number, data: Uint8Array): Promise<void> {
    for (const r of mapFileRange(this.layout, file, offset, data.length))
      await this.lun.write(r.lunOffset, data.subarray(r.bufferOffset, r.bufferOffset + r.length));
  }

  private slotSector(slot: number): number {
    return this.layout.fileTableOffset / SECTOR + slot;
  }

  private freeSlot(): number {
    const used = new Set([...this.files.values()].map((f) => f.slot));
    for (let slot = 0; slot < this.layout.fileSlots; slot++) if (!used.has(slot)) return slot;
    throw new VolumeFullError(`the file table's ${this.layout.fileSlots} slots are all used`);
  }

  private setBits(stage: Stage, e: Extent, value: 0 | 1): void {
    const l = this.layout;
    for (let c = e.first; c < e.first + e.count; c++) {
      const byte = c >>> 3;
      const sector = l.bitmapOffset / SECTOR + Math.floor(byte / SECTOR);
      const bytes = stage.sector(sector);
      const mask = 0x80 >>> (c & 7);
      const i = byte % SECTOR;
      bytes[i] = value ? (bytes[i] ?? 0) | mask : (bytes[i] ?? 0) & ~mask;
    }
  }

  /**
   * Allocates `count` clusters, first fit from a rotating hint, appending to
   * `extents` (merging with the last when contiguous). MSB-first bits, as
   * the VHD sector bitmap.
   */
  private allocate(stage: Stage, count: number, extents: Extent[]): Extent[] {
    if (count > this.freeClusters)
      throw new VolumeFullError(
        `${count} clusters asked, ${this.freeClusters} free of ${this.layout.dataClusters}`,
      );
    const out = [...extents];
    const total = this.layout.dataClusters;
    let left = count;
    let c = this.allocHint % total;
    let scanned = 0;
    while (left > 0 && scanned < total) {
      if (this.bit(c) === 0) {
        let n = 0;
        while (n < left && c + n < total && this.bit(c + n) === 0) n++;
        const last = out[out.length - 1];
        if (last && last.first + last.count === c)
          out[out.length - 1] = { first: last.first, count: last.count + n };
        else out.push({ first: c, count: n });
        if (out.length > MAX_EXTENTS)
          throw new VolumeFullError(
            `the free space is too fragmented: the file would need more than ${MAX_EXTENTS} extents`,
          );
        this.setBits(stage, { first: c, count: n }, 1);
        left -= n;
        scanned += n;
        c += n;
      } else {
        c++;
        scanned++;
      }
      if (c >= total) c = 0;
    }
    if (left > 0) throw new VolumeFullError(`${count} clusters asked; the bitmap has fewer free`);
    this.allocHint = c;
    return out;
  }

  /**
   * Commits the staged sectors: journal, flush, in place, flush, superblock,
   * flush. Before that it reads the superblock back: a coordinator whose term
   * has been taken (a newer epoch on the LUN) must not write.
   */
  private async commit(
    operation: number,
    stage: Stage,
    term: { epoch: number; node: number } = { epoch: this.epoch, node: this.coordinator },
    checkTerm = true,
  ): Promise<void> {
    const l = this.layout;
    const onLun = parseSuperblock(await this.lun.read(0, SECTOR), this.lun.bytes);
    if (checkTerm ? onLun.epoch !== this.epoch : onLun.epoch > this.epoch)
      throw new StaleEpochError(
        `the volume is in epoch ${onLun.epoch} (node ${onLun.coordinator}); this coordinator holds epoch ${this.epoch}`,
      );
    if (onLun.generation !== this.generation)
      throw new StaleEpochError(
        `the volume is at generation ${onLun.generation}; this coordinator expected ${this.generation}`,
      );
    const images = [...stage.sectors].map(([sector, bytes]) => ({ sector, bytes }));
    if (images.length > MAX_TXN_SECTORS || images.length + 2 > l.journalSectors)
      throw new VolumeFullError(
        `one operation touches ${images.length} metadata sectors; a transaction holds ${Math.min(MAX_TXN_SECTORS, l.journalSectors - 2)}`,
      );
    const txn: Transaction = {
      sequence: this.generation + 1,
      epoch: term.epoch,
      node: term.node,
      operation,
      images,
    };
    await this.lun.write(l.journalOffset, encodeTransaction(txn));
    await this.lun.flush();
    for (const image of images) await this.lun.write(image.sector * SECTOR, image.bytes);
    await this.lun.flush();
    const next = nextSuperblock(this.superblock, txn);
    await this.lun.write(0, encodeSuperblock(next));
    await this.lun.flush();
    for (const image of images) this.metadataSector(image.sector).set(image.bytes);
    this.superblock = next;
    this.reload(images.map((i) => i.sector));
  }

  /** Re-reads the file entries and free count after a commit. */
  private reload(sectors: readonly number[]): void {
    const l = this.layout;
    const first = l.fileTableOffset / SECTOR;
    for (const sector of sectors) {
      const slot = sector - first;
      if (slot < 0 || slot >= l.fileSlots) continue;
      for (const [name, f] of this.files) if (f.slot === slot) this.files.delete(name);
      const entry = parseFileEntry(
        this.metadataSector(sector),
        sector * SECTOR,
        l.dataClusters,
        l.clusterBytes,
      );
      if (entry) this.files.set(entry.name, { slot, entry });
    }
    let used = 0;
    for (let c = 0; c < l.dataClusters; c++) used += this.bit(c);
    this.freeClusters = l.dataClusters - used;
  }
}

function checkSize(size: number): void {
  if (!Number.isSafeInteger(size) || size < 0)
    throw new RangeError(`file size must be a whole number of bytes, not ${size}`);
}

/** Copies a replayed image into the region it belongs to. */
function placeImage(
  l: VolumeLayout,
  regions: { epochLog: Uint8Array; fileTable: Uint8Array; bitmap: Uint8Array },
  sector: number,
  bytes: Uint8Array,
): void {
  const byte = sector * SECTOR;
  for (const [base, region] of [
    [l.epochLogOffset, regions.epochLog],
    [l.fileTableOffset, regions.fileTable],
    [l.bitmapOffset, regions.bitmap],
  ] as const) {
    if (byte >= base && byte < base + region.length) {
      region.set(bytes, byte - base);
      return;
    }
  }
}

/** The superblock after `txn`: a takeover moves the term to its epoch and node. */
function nextSuperblock(sb: Superblock, txn: Transaction): Superblock {
  const newTerm = txn.epoch > sb.epoch;
  return {
    ...sb,
    generation: txn.sequence,
    epoch: newTerm ? txn.epoch : sb.epoch,
    coordinator: newTerm ? txn.node : sb.coordinator,
  };
}
