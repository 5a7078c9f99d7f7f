import { closeSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { crc32c } from "./checksum.js";
import type { PersistentReservations } from "./reservations.js";
import { ReservationType } from "./reservations.js";

/*
 * The registration board: where `hvlab csv target` publishes, for nodes
 * that reach the LUN over their own path, what its persistent reservations
 * allow. A node's direct I/O is pread/pwrite on the LUN itself (as a
 * cluster node's I/O goes over its own Fibre Channel or SAS path straight
 * to the array), so the target never sees those writes; the node reads
 * this board before it issues its writes and again after they land (a
 * batch at a time, write-fence.ts), and refuses, or withholds the
 * acknowledgement of, a write its key no longer allows. The target rewrites
 * the board before it answers GOOD to any PERSISTENT RESERVE OUT, so once a
 * PREEMPT has returned, no write that starts afterwards passes the check.
 *
 * One 4 KiB page, little-endian, in a side file next to the LUN:
 *
 *   0      8        12      16             20         24         32     33      40          48       52        56            4092   4096
 *   +------+--------+-------+--------------+----------+----------+------+-------+-----------+--------+---------+-------------+------+
 *   |magic |version |state  | PRgeneration | sequence | LUN bytes| type | 0 x 7 | holder key| keys n | 0 u32   | n keys, u64 | CRC- |
 *   |HVCSV |u32 = 1 |1 on,  | u32          | u32      | u64      | u8,  |       | u64       | u32    |         | (at most    | 32C  |
 *   |PRB   |        |2 off  |              |          |          | 0 =  |       |           |        |         |  504)       |      |
 *   +------+--------+-------+--------------+----------+----------+------+-------+-----------+--------+---------+-------------+------+
 *
 * The page is written with one pwrite; a reader racing it may see a torn
 * page, which the CRC catches, and reads again.
 */

/** Bytes of the board: one page. */
export const BOARD_BYTES = 4096;
/** Keys the board lists; an initiator past them is not listed and so may not write direct. */
export const MAX_BOARD_KEYS = 504;
const MAGIC = "HVCSVPRB";
const KEYS_AT = 56;
const CRC_AT = BOARD_BYTES - 4;
/** Reads of a board torn by a concurrent publish before the reader gives up. */
const TORN_RETRIES = 64;

/** The board's state field: the target serves the LUN, or has stopped (then nobody writes). */
export const BoardState = { online: 1, offline: 2 } as const;

/** What a board says. */
export interface Board {
  readonly state: number;
  readonly prGeneration: number;
  readonly sequence: number;
  readonly lunBytes: number;
  /** Reservation type, 0 when nothing is reserved. */
  readonly type: number;
  readonly holderKey: bigint;
  readonly keys: readonly bigint[];
}

/** A board that is not one (bad magic, version, count or CRC), naming the field and its offset. */
export class BoardFormatError extends Error {
  override name = "BoardFormatError";
}

/** Encodes a board page. */
export function encodeBoard(board: Board): Uint8Array {
  const out = new Uint8Array(BOARD_BYTES);
  const v = new DataView(out.buffer);
  out.set(new TextEncoder().encode(MAGIC), 0);
  v.setUint32(8, 1, true);
  v.setUint32(12, board.state, true);
  v.setUint32(16, board.prGeneration >>> 0, true);
  v.setUint32(20, board.sequence >>> 0, true);
  v.setBigUint64(24, BigInt(board.lunBytes), true);
  out[32] = board.type;
  v.setBigUint64(40, board.holderKey, true);
  const keys = board.keys.slice(0, MAX_BOARD_KEYS);
  v.setUint32(48, keys.length, true);
  for (const [i, k] of keys.entries()) v.setBigUint64(KEYS_AT + 8 * i, k, true);
  v.setUint32(CRC_AT, crc32c(out.subarray(0, CRC_AT)), true);
  return out;
}

/** Parses a board page; every field is checked before it is used. */
export function parseBoard(page: Uint8Array, where: string): Board {
  if (page.length !== BOARD_BYTES)
    throw new BoardFormatError(`${where}: ${page.length} bytes, not a ${BOARD_BYTES}-byte board`);
  const v = new DataView(page.buffer, page.byteOffset, page.byteLength);
  if (v.getUint32(CRC_AT, true) !== crc32c(page.subarray(0, CRC_AT)))
    throw new BoardFormatError(`${where}: CRC-32C at offset ${CRC_AT} does not match`);
  if (new TextDecoder().decode(page.subarray(0, 8)) !== MAGIC)
    throw new BoardFormatError(`${where}: magic at offset 0 is not ${MAGIC}`);
  if (v.getUint32(8, true) !== 1)
    throw new BoardFormatError(`${where}: version ${v.getUint32(8, true)} at offset 8 is not 1`);
  const state = v.getUint32(12, true);
  if (state !== BoardState.online && state !== BoardState.offline)
    throw new BoardFormatError(`${where}: state ${state} at offset 12 is not 1 or 2`);
  const n = v.getUint32(48, true);
  if (n > MAX_BOARD_KEYS)
    throw new BoardFormatError(`${where}: ${n} keys at offset 48, more than ${MAX_BOARD_KEYS}`);
  const lunBytes = v.getBigUint64(24, true);
  if (lunBytes > BigInt(Number.MAX_SAFE_INTEGER))
    throw new BoardFormatError(`${where}: LUN bytes ${lunBytes} at offset 24 are out of range`);
  const keys: bigint[] = [];
  for (let i = 0; i < n; i++) keys.push(v.getBigUint64(KEYS_AT + 8 * i, true));
  return {
    state,
    prGeneration: v.getUint32(16, true),
    sequence: v.getUint32(20, true),
    lunBytes: Number(lunBytes),
    type: page[32] ?? 0,
    holderKey: v.getBigUint64(40, true),
    keys,
  };
}

/**
 * Whether `key` may write under `board` (SPC-3 5.6's rules by key, as
 * {@link PersistentReservations.mayWrite} applies them by initiator):
 * anyone when nothing is reserved, registered keys under a registrants-only
 * type, the holder alone under the plain types; nobody once the target has
 * stopped. Returns why not, or undefined.
 */
export function writeRefusal(board: Board, key: bigint): string | undefined {
  const hex = `0x${key.toString(16)}`;
  if (board.state !== BoardState.online) return "the target has stopped serving the LUN";
  if (board.type === 0) return undefined;
  if (
    board.type === ReservationType.writeExclusiveRegistrantsOnly ||
    board.type === ReservationType.exclusiveAccessRegistrantsOnly
  )
    return board.keys.includes(key)
      ? undefined
      : `key ${hex} is not registered (PRgeneration ${board.prGeneration}): the LUN is reserved`;
  return board.holderKey === key ? undefined : `key ${hex} does not hold the reservation`;
}

/** The target's side: rewrites the board whenever the reservations change. */
export class BoardPublisher {
  private readonly fd: number;
  private sequence = 0;
  private closed = false;

  constructor(
    readonly path: string,
    private readonly lunBytes: number,
  ) {
    this.fd = openSync(path, "w");
  }

  /** Publishes the reservations as they are now (before the command that changed them is answered). */
  publish(reservations: PersistentReservations, state: number = BoardState.online): void {
    if (this.closed) return;
    const held = reservations.held();
    const page = encodeBoard({
      state,
      prGeneration: reservations.generation,
      sequence: ++this.sequence,
      lunBytes: this.lunBytes,
      type: held?.type ?? 0,
      holderKey: held?.key ?? 0n,
      keys: reservations.registeredKeys(),
    });
    writeSync(this.fd, page, 0, page.length, 0);
  }

  /** Marks the board offline (no node writes direct once the target is gone) and removes it. */
  close(reservations: PersistentReservations): void {
    if (this.closed) return;
    this.publish(reservations, BoardState.offline);
    this.closed = true;
    closeSync(this.fd);
    rmSync(this.path, { force: true });
  }
}

/** A node's side: reads the board the target publishes. */
export class BoardReader {
  private readonly fd: number;
  private readonly page = new Uint8Array(BOARD_BYTES);
  /** The last page that parsed, and what it said: the same bytes again need no parse. */
  private readonly lastPage = Buffer.alloc(BOARD_BYTES);
  private last: Board | undefined;
  private closed = false;

  constructor(readonly path: string) {
    this.fd = openSync(path, "r");
  }

  /** The board as it is now; a page torn by a concurrent publish is read again. */
  read(): Board {
    let last: Error | undefined;
    for (let i = 0; i < TORN_RETRIES; i++) {
      const n = readSync(this.fd, this.page, 0, BOARD_BYTES, 0);
      if (n !== BOARD_BYTES)
        throw new BoardFormatError(`${this.path}: ${n} bytes, not a ${BOARD_BYTES}-byte board`);
      if (this.last && this.lastPage.equals(this.page)) return this.last;
      try {
        const board = parseBoard(this.page, this.path);
        this.lastPage.set(this.page);
        this.last = board;
        return board;
      } catch (error) {
        last = error as Error;
      }
    }
    throw last ?? new BoardFormatError(`${this.path}: unreadable`);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
  }
}
