/*
 * hvlab's saved-state file: a paused guest's RAM and device state, as quick
 * migration (Hyper-V 1.0) writes it to shared storage and reads it back on
 * the other node. Every field is checked on read against hostile input.
 *
 * File header (64 bytes, little-endian):
 *
 *   0         8        12       16             24       28       32       36
 *   +---------+--------+--------+--------------+--------+--------+--------+
 *   | magic   | version| header | guest bytes  | page   | chunk  | chunk  |
 *   | HVLSAVE\0| u32=2 | bytes  | u64 (< 2^53) | shift  | bytes  | count  |
 *   |         |        | u32=64 |              | u32=12 | u32    | u32    |
 *   +---------+--------+--------+--------------+--------+--------+--------+
 *   36        40                48                56        60       64
 *   +---------+-----------------+-----------------+---------+--------+
 *   | device  | device-state    | file id         | reserved| header |
 *   | bytes   | digest u64 (*)  | u64, random     | u32 = 0 | check  |
 *   +---------+-----------------+-----------------+---------+--------+
 *   header check = low 32 bits of XXH64(bytes 0..60)
 *
 * Then `chunk count` chunks, each a 24-byte chunk header and its bytes:
 *
 *   0        4        8        12       16              24
 *   +--------+--------+--------+--------+---------------+------------------+
 *   | CHNK   | index  | length | 0      | chunk digest  | length bytes of  |
 *   |        | u32    | u32    | u32    | u64 (*)       | guest RAM        |
 *   +--------+--------+--------+--------+---------------+------------------+
 *
 * and last the device-state blob. The file's size is exactly
 * 64 + 24 x chunks + guest bytes + device bytes; anything else is refused.
 *
 * (*) A digest is bound to its place: it is XXH64 of the 24-byte record
 *
 *   0                8        12       16                24
 *   +----------------+--------+--------+-----------------+
 *   | file id u64    | index  | length | XXH64 of the    |
 *   |                | u32    | u32    | bytes, u64      |
 *   +----------------+--------+--------+-----------------+
 *
 * with the device state's index 0xFFFFFFFF. A chunk moved to another index,
 * or spliced in from another file (another random id), no longer matches
 * its digest even though its bytes are intact. XXH64 catches mix-ups and
 * corruption, not forgery: a file that must resist a hostile writer needs a
 * MAC, which this format does not claim.
 */
import { randomBytes } from "node:crypto";
import { type FileHandle, open } from "node:fs/promises";
import type { Region } from "../../memory/region.js";
import { formatBytes } from "../../util/units.js";
import type { StreamKernel } from "../../wasm/stream.js";

/** "HVLSAVE\0". */
export const SAVED_STATE_MAGIC = Uint8Array.of(0x48, 0x56, 0x4c, 0x53, 0x41, 0x56, 0x45, 0x00);
/** "CHNK". */
export const CHUNK_MAGIC = Uint8Array.of(0x43, 0x48, 0x4e, 0x4b);
/**
 * The format version this build writes and reads. Version 1 (digests of the
 * bytes alone, not bound to their place) is refused.
 */
export const SAVED_STATE_VERSION = 2;
/** Bytes of the file header. */
export const SAVED_STATE_HEADER_BYTES = 64;
/** Bytes of a chunk header. */
export const CHUNK_HEADER_BYTES = 24;
/** Smallest and largest chunk. */
export const MIN_CHUNK_BYTES = 64 * 1024;
export const MAX_CHUNK_BYTES = 64 * 1024 * 1024;
/** Default chunk: 4 MiB, big enough that a write costs little over its bytes. */
export const DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024;
/** Largest device-state blob. */
export const MAX_SAVED_DEVICE_BYTES = 4 * 1024 * 1024;
/** The index the device state's digest is bound to: no chunk has it. */
export const DEVICE_STATE_INDEX = 0xffff_ffff;
/** Bytes of the record a digest is bound through (file id, index, length, XXH64). */
const BINDING_BYTES = 24;

/** Byte offsets of the file header's fields. */
export const SavedStateHeaderField = {
  magic: 0,
  version: 8,
  headerBytes: 12,
  guestBytes: 16,
  pageShift: 24,
  chunkBytes: 28,
  chunkCount: 32,
  deviceBytes: 36,
  deviceDigest: 40,
  fileId: 48,
  reserved: 56,
  check: 60,
} as const;

/** A saved-state file's header, as checked. */
export interface SavedStateHeader {
  readonly guestBytes: number;
  readonly pageShift: number;
  readonly chunkBytes: number;
  readonly chunkCount: number;
  readonly deviceBytes: number;
  /** The device state's digest, bound to the file (see {@link boundDigest}). */
  readonly deviceDigest: bigint;
  /** The file's random identity, which every digest in it is bound to. */
  readonly fileId: bigint;
}

/** A saved-state file that is not what it claims; the message says what and at which offset. */
export class SavedStateError extends Error {
  override name = "SavedStateError";
}

/** What reading and writing need: the hash kernel and a 64-byte scratch region of its memory. */
export interface SavedStateContext {
  readonly memory: WebAssembly.Memory;
  readonly kernel: StreamKernel;
  /** At least 64 bytes, for headers. */
  readonly scratch: Region;
}

function low32(digest: bigint): number {
  return Number(digest & 0xffff_ffffn);
}

function scratchView(context: SavedStateContext): Uint8Array {
  context.scratch.check(0, SAVED_STATE_HEADER_BYTES, "saved-state header");
  return new Uint8Array(context.memory.buffer, context.scratch.offset, SAVED_STATE_HEADER_BYTES);
}

/**
 * The digest of `length` bytes of `region` from `start`, bound to the file
 * `fileId` and to `index`: XXH64 of (file id, index, length, XXH64 of the
 * bytes), the record drawn above. Uses the scratch region's first 24 bytes.
 */
export function boundDigest(
  context: SavedStateContext,
  fileId: bigint,
  index: number,
  region: Region,
  start: number,
  length: number,
): bigint {
  const bytes = context.kernel.hash(region, start, length);
  context.scratch.check(0, BINDING_BYTES, "digest binding");
  const record = new DataView(context.memory.buffer, context.scratch.offset, BINDING_BYTES);
  record.setBigUint64(0, fileId, true);
  record.setUint32(8, index, true);
  record.setUint32(12, length, true);
  record.setBigUint64(16, bytes, true);
  return context.kernel.hash(context.scratch, 0, BINDING_BYTES);
}

/** Chunks needed for a guest. */
export function chunkCount(guestBytes: number, chunkBytes: number): number {
  return Math.ceil(guestBytes / chunkBytes);
}

/** The exact size of a saved-state file. */
export function savedStateBytes(
  guestBytes: number,
  chunkBytes: number,
  deviceBytes: number,
): number {
  return (
    SAVED_STATE_HEADER_BYTES +
    chunkCount(guestBytes, chunkBytes) * CHUNK_HEADER_BYTES +
    guestBytes +
    deviceBytes
  );
}

/** Options for {@link writeSavedState}. */
export interface WriteSavedStateOptions {
  readonly ram: Region;
  readonly pageShift: number;
  /** The device-state blob, in the same memory. */
  readonly device: Region;
  readonly chunkBytes?: number;
  /** fsync before returning, as a VMM must before storage fails over (default true). */
  readonly sync?: boolean;
}

/** Writes a paused guest's RAM and device state to `path`. Returns the file's size. */
export async function writeSavedState(
  path: string,
  context: SavedStateContext,
  options: WriteSavedStateOptions,
): Promise<number> {
  const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
  const guestBytes = options.ram.byteLength;
  checkChunkBytes(chunkBytes, options.pageShift);
  const deviceBytes = options.device.byteLength;
  if (deviceBytes > MAX_SAVED_DEVICE_BYTES) {
    throw new SavedStateError(
      `device state of ${deviceBytes} bytes is over ${MAX_SAVED_DEVICE_BYTES}`,
    );
  }
  const count = chunkCount(guestBytes, chunkBytes);
  // A fresh identity per file: its chunks cannot be spliced into another.
  const fileId = randomBytes(8).readBigUInt64LE(0);
  const deviceDigest = boundDigest(
    context,
    fileId,
    DEVICE_STATE_INDEX,
    options.device,
    0,
    deviceBytes,
  );
  const header = scratchView(context);
  const view = new DataView(header.buffer, header.byteOffset, SAVED_STATE_HEADER_BYTES);
  header.fill(0);
  header.set(SAVED_STATE_MAGIC, 0);
  view.setUint32(SavedStateHeaderField.version, SAVED_STATE_VERSION, true);
  view.setUint32(SavedStateHeaderField.headerBytes, SAVED_STATE_HEADER_BYTES, true);
  view.setBigUint64(SavedStateHeaderField.guestBytes, BigInt(guestBytes), true);
  view.setUint32(SavedStateHeaderField.pageShift, options.pageShift, true);
  view.setUint32(SavedStateHeaderField.chunkBytes, chunkBytes, true);
  view.setUint32(SavedStateHeaderField.chunkCount, count, true);
  view.setUint32(SavedStateHeaderField.deviceBytes, deviceBytes, true);
  view.setBigUint64(SavedStateHeaderField.deviceDigest, deviceDigest, true);
  view.setBigUint64(SavedStateHeaderField.fileId, fileId, true);
  view.setUint32(
    SavedStateHeaderField.check,
    low32(context.kernel.hash(context.scratch, 0, SavedStateHeaderField.check)),
    true,
  );
  const file = await open(path, "w");
  try {
    let at = 0;
    at += await writeAll(file, Buffer.from(header), at);
    const chunkHeader = Buffer.alloc(CHUNK_HEADER_BYTES);
    for (let index = 0; index < count; index++) {
      const start = index * chunkBytes;
      const length = Math.min(chunkBytes, guestBytes - start);
      chunkHeader.set(CHUNK_MAGIC, 0);
      chunkHeader.writeUInt32LE(index, 4);
      chunkHeader.writeUInt32LE(length, 8);
      chunkHeader.writeUInt32LE(0, 12);
      chunkHeader.writeBigUInt64LE(
        boundDigest(context, fileId, index, options.ram, start, length),
        16,
      );
      at += await writeAll(file, chunkHeader, at);
      at += await writeAll(
        file,
        new Uint8Array(context.memory.buffer, options.ram.offset + start, length),
        at,
      );
    }
    at += await writeAll(file, options.device.bytes(context.memory), at);
    if (options.sync ?? true) await file.sync();
    return at;
  } finally {
    await file.close();
  }
}

async function writeAll(file: FileHandle, bytes: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await file.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
  return done;
}

function checkChunkBytes(chunkBytes: number, pageShift: number): void {
  if (
    !Number.isSafeInteger(chunkBytes) ||
    chunkBytes < MIN_CHUNK_BYTES ||
    chunkBytes > MAX_CHUNK_BYTES ||
    (chunkBytes & (chunkBytes - 1)) !== 0 ||
    chunkBytes % 2 ** pageShift !== 0
  ) {
    throw new SavedStateError(
      `chunk size must be a power of two from ${formatBytes(MIN_CHUNK_BYTES)} to ${formatBytes(MAX_CHUNK_BYTES)} and a whole number of pages, not ${chunkBytes}`,
    );
  }
}

/** Limits a reader holds a file to. */
export interface SavedStateLimits {
  /** Largest guest accepted. */
  readonly maxGuestBytes: number;
}

/**
 * Reads and checks a file header (magic, version, sizes within limits, the
 * header check and the file's exact size) before anything is allocated.
 */
export async function readSavedStateHeader(
  file: FileHandle,
  context: SavedStateContext,
  limits: SavedStateLimits,
): Promise<SavedStateHeader> {
  const { size } = await file.stat();
  if (size < SAVED_STATE_HEADER_BYTES) {
    throw new SavedStateError(
      `file of ${size} bytes is shorter than the ${SAVED_STATE_HEADER_BYTES}-byte header`,
    );
  }
  const header = scratchView(context);
  const { bytesRead } = await file.read(header, 0, SAVED_STATE_HEADER_BYTES, 0);
  if (bytesRead !== SAVED_STATE_HEADER_BYTES) throw new SavedStateError("short read of the header");
  for (let i = 0; i < SAVED_STATE_MAGIC.length; i++) {
    if (header[i] !== SAVED_STATE_MAGIC[i]) {
      throw new SavedStateError("not an hvlab saved-state file (bad magic at offset 0)");
    }
  }
  const view = new DataView(header.buffer, header.byteOffset, SAVED_STATE_HEADER_BYTES);
  const version = view.getUint32(SavedStateHeaderField.version, true);
  if (version === 1) {
    throw new SavedStateError(
      `saved-state version 1 (offset 8) was written by an older hvlab whose chunk digests are not bound to their place; this hvlab reads version ${SAVED_STATE_VERSION} only: save the guest again`,
    );
  }
  if (version !== SAVED_STATE_VERSION) {
    throw new SavedStateError(
      `saved-state version ${version} (offset 8); this hvlab reads version ${SAVED_STATE_VERSION}`,
    );
  }
  const check = view.getUint32(SavedStateHeaderField.check, true);
  if (low32(context.kernel.hash(context.scratch, 0, SavedStateHeaderField.check)) !== check) {
    throw new SavedStateError("header check failed: the header (bytes 0 to 59) is corrupted");
  }
  if (view.getUint32(SavedStateHeaderField.headerBytes, true) !== SAVED_STATE_HEADER_BYTES) {
    throw new SavedStateError("header size field is not 64 (offset 12)");
  }
  for (let at = SavedStateHeaderField.reserved; at < SavedStateHeaderField.check; at++) {
    if (header[at] !== 0) throw new SavedStateError(`reserved byte at offset ${at} is not zero`);
  }
  const guestBig = view.getBigUint64(SavedStateHeaderField.guestBytes, true);
  const pageShift = view.getUint32(SavedStateHeaderField.pageShift, true);
  const chunkBytes = view.getUint32(SavedStateHeaderField.chunkBytes, true);
  const count = view.getUint32(SavedStateHeaderField.chunkCount, true);
  const deviceBytes = view.getUint32(SavedStateHeaderField.deviceBytes, true);
  if (pageShift !== 12)
    throw new SavedStateError(`page shift ${pageShift} at offset 24 (only 12: 4 KiB pages)`);
  if (guestBig === 0n || guestBig > BigInt(limits.maxGuestBytes)) {
    throw new SavedStateError(
      `guest of ${guestBig} bytes (offset 16) is not from 1 byte to this reader's limit of ${formatBytes(limits.maxGuestBytes)}`,
    );
  }
  const guestBytes = Number(guestBig);
  if (guestBytes % 2 ** pageShift !== 0) {
    throw new SavedStateError(`guest of ${guestBytes} bytes is not a whole number of pages`);
  }
  checkChunkBytes(chunkBytes, pageShift);
  if (count !== chunkCount(guestBytes, chunkBytes)) {
    throw new SavedStateError(
      `chunk count ${count} (offset 32) does not fit a guest of ${guestBytes} bytes`,
    );
  }
  if (deviceBytes > MAX_SAVED_DEVICE_BYTES) {
    throw new SavedStateError(
      `device state of ${deviceBytes} bytes (offset 36) is over ${MAX_SAVED_DEVICE_BYTES}`,
    );
  }
  const expected = savedStateBytes(guestBytes, chunkBytes, deviceBytes);
  if (size !== expected) {
    throw new SavedStateError(`file is ${size} bytes; its header describes ${expected}`);
  }
  return {
    guestBytes,
    pageShift,
    chunkBytes,
    chunkCount: count,
    deviceBytes,
    deviceDigest: view.getBigUint64(SavedStateHeaderField.deviceDigest, true),
    fileId: view.getBigUint64(SavedStateHeaderField.fileId, true),
  };
}

/** What a read gives back. */
export interface SavedState {
  readonly header: SavedStateHeader;
  readonly ram: Region;
  readonly device: Region;
}

/** Lays out the regions a restore fills, once the header has been checked. */
export type RestoreAllocator = (
  guestBytes: number,
  deviceBytes: number,
) => { readonly ram: Region; readonly device: Region };

/**
 * Reads a saved-state file into guest RAM that `allocate` lays out once the
 * header is checked; every chunk's digest is checked as it lands.
 *
 * @throws SavedStateError naming what is wrong and where.
 */
export async function readSavedState(
  path: string,
  context: SavedStateContext,
  limits: SavedStateLimits,
  allocate: RestoreAllocator,
): Promise<SavedState> {
  const file = await open(path, "r");
  try {
    const header = await readSavedStateHeader(file, context, limits);
    const { ram, device } = allocate(header.guestBytes, header.deviceBytes);
    ram.check(0, header.guestBytes, "restored RAM");
    device.check(0, header.deviceBytes, "restored device state");
    const chunkHeader = Buffer.alloc(CHUNK_HEADER_BYTES);
    let at = SAVED_STATE_HEADER_BYTES;
    for (let index = 0; index < header.chunkCount; index++) {
      const start = index * header.chunkBytes;
      const length = Math.min(header.chunkBytes, header.guestBytes - start);
      await readExactly(file, chunkHeader, at);
      for (let i = 0; i < CHUNK_MAGIC.length; i++) {
        if (chunkHeader[i] !== CHUNK_MAGIC[i])
          throw new SavedStateError(`chunk ${index}: bad magic at offset ${at}`);
      }
      if (chunkHeader.readUInt32LE(4) !== index || chunkHeader.readUInt32LE(8) !== length) {
        throw new SavedStateError(
          `chunk ${index} at offset ${at}: header says chunk ${chunkHeader.readUInt32LE(4)} of ${chunkHeader.readUInt32LE(8)} bytes, expected chunk ${index} of ${length}`,
        );
      }
      if (chunkHeader.readUInt32LE(12) !== 0)
        throw new SavedStateError(`chunk ${index}: reserved field is not zero`);
      at += CHUNK_HEADER_BYTES;
      await readExactly(
        file,
        new Uint8Array(context.memory.buffer, ram.offset + start, length),
        at,
      );
      if (
        boundDigest(context, header.fileId, index, ram, start, length) !==
        chunkHeader.readBigUInt64LE(16)
      ) {
        throw new SavedStateError(
          `chunk ${index} at offset ${at}: digest mismatch: its ${length} bytes are corrupted, or belong to another chunk or another saved-state file`,
        );
      }
      at += length;
    }
    await readExactly(
      file,
      new Uint8Array(context.memory.buffer, device.offset, header.deviceBytes),
      at,
    );
    if (
      boundDigest(context, header.fileId, DEVICE_STATE_INDEX, device, 0, header.deviceBytes) !==
      header.deviceDigest
    ) {
      throw new SavedStateError(
        `device state at offset ${at}: digest mismatch: corrupted, or from another saved-state file`,
      );
    }
    return { header, ram, device };
  } finally {
    await file.close();
  }
}

async function readExactly(file: FileHandle, into: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await file.read(into, done, into.length - done, position + done);
    if (bytesRead === 0)
      throw new SavedStateError(`file ends at offset ${position + done}, inside a record`);
    done += bytesRead;
  }
}
