import { closeSync, ftruncateSync, openSync, readFileSync } from "node:fs";
import type { LunWrite } from "../../src/csv/io-thread.js";
import { BoardPublisher } from "../../src/csv/registration-board.js";
import {
  PersistentReservations,
  ReservationType,
  ServiceAction,
} from "../../src/csv/reservations.js";
import { pageAlignedBytes } from "../../src/storage/direct-file.js";

/** The key of the node holding the reservation in a {@link ReservedLun}. */
export const HOLDER_KEY = 0x99n;

/**
 * A LUN file of zeros and the registration board its target publishes
 * beside it (`<path>.registrations`): `key` registered, and the LUN
 * reserved Write Exclusive - Registrants Only by another node
 * ({@link HOLDER_KEY}), so that a key may write only while registered.
 * Every change is published before the method returns, as the target
 * publishes before it answers GOOD. `boardBytes` is the LUN size the board
 * states (the LUN's own unless a test says otherwise).
 */
export class ReservedLun {
  readonly board: string;
  readonly reservations = new PersistentReservations();
  private readonly publisher: BoardPublisher;
  private registered = 0;

  constructor(
    readonly path: string,
    readonly bytes: number,
    key: bigint,
    boardBytes = bytes,
  ) {
    const fd = openSync(path, "w");
    ftruncateSync(fd, bytes);
    closeSync(fd);
    this.board = `${path}.registrations`;
    this.publisher = new BoardPublisher(this.board, boardBytes);
    this.out("holder", ServiceAction.register, 0n, HOLDER_KEY);
    this.out("holder", ServiceAction.reserve, HOLDER_KEY, 0n);
    this.register(key);
  }

  /** Registers `key` for a node of its own (PRgeneration rises by one). */
  register(key: bigint): void {
    this.out(`node-${++this.registered}`, ServiceAction.register, 0n, key);
  }

  /** The holder preempts `key` (PRgeneration rises by one): it may no longer write. */
  preempt(key: bigint): void {
    this.out("holder", ServiceAction.preempt, HOLDER_KEY, key);
  }

  /** The LUN file's bytes now. */
  contents(): Buffer {
    return readFileSync(this.path);
  }

  /** Per write, whether the LUN file holds its bytes where it went. */
  holds(writes: readonly LunWrite[]): boolean[] {
    const bytes = this.contents();
    return writes.map((w) =>
      Buffer.from(w.data).equals(bytes.subarray(w.lunOffset, w.lunOffset + w.data.length)),
    );
  }

  /** Marks the board offline and removes it, as the target does when it stops. */
  close(): void {
    this.publisher.close(this.reservations);
  }

  private out(who: string, action: number, key: bigint, serviceKey: bigint): void {
    const outcome = this.reservations.out(who, {
      action,
      type: ReservationType.writeExclusiveRegistrantsOnly,
      key,
      serviceKey,
    });
    if (outcome.status !== "good")
      throw new Error(`PERSISTENT RESERVE OUT by ${who}: ${JSON.stringify(outcome)}`);
    this.publisher.publish(this.reservations);
  }
}

/**
 * `count` writes of one 512-byte sector each, back to back from LUN offset
 * `first`, write k filled with `seed + k` (mod 256), in one page-aligned
 * shared memory: an I/O thread writes them from it without a copy.
 */
export function sectorWrites(count: number, seed: number, first = 0): LunWrite[] {
  const memory = pageAlignedBytes(512 * count, true);
  return Array.from({ length: count }, (_, k) => ({
    lunOffset: first + 512 * k,
    data: memory.subarray(512 * k, 512 * (k + 1)).fill((seed + k) & 0xff),
  }));
}
