import { type Board, writeRefusal } from "./registration-board.js";
import { ReservationConflictError } from "./target-client.js";

/*
 * The fence for a node's direct writes, checked against the registration
 * board a batch at a time rather than twice per write. A board read costs a
 * pread of a 4 KiB page (about 10 us on a virtual machine), which is a
 * tenth of a 256 KiB unbuffered write; one read serves every write the
 * node has in hand at that moment.
 *
 * One turn of the fence reads the board once, then, with what it read:
 *
 *   1. after-check: acknowledges every write whose bytes landed before the
 *      read began, or refuses them all with RESERVATION CONFLICT if the key
 *      was preempted (a write preempted while it ran is never acknowledged:
 *      its landing was recorded before this read started, so a PREEMPT that
 *      returned before it landed shows on this board);
 *   2. before-check: issues waiting writes, up to `maxInFlight` in flight,
 *      or refuses them if the key may not write (a preempted key is refused).
 *
 * Writes asked for while the turn's acknowledgements settle (the node's
 * writers handing in their next chunk in the same macrotask, before any
 * I/O completion or timer can run) are issued on the same read, so a
 * node at queue depth 1 still reads the board once per write. No I/O is
 * handled between that read and those writes' issue, which keeps the
 * window between check and pwrite the microseconds it was when every
 * write read the board itself (docs/csv.md, "The fence for direct writes").
 *
 * `maxInFlight` is the thread-pool size the writes run on: a write is
 * issued only when a thread is free to start it at once, so a checked write
 * does not wait in the pool's queue behind others while a PREEMPT lands.
 */

interface FencedWrite {
  readonly key: bigint;
  /** What the write is, for messages: "WRITE of N bytes at O on LUN". */
  readonly what: string;
  readonly issue: () => Promise<void>;
  readonly acknowledge: () => void;
  readonly refuse: (error: Error) => void;
}

/** How a {@link WriteFence} reads the board and how many writes it lets run at once. */
export interface WriteFenceOptions {
  /** Reads the board as it is now; throws when it is unreadable (then every write is refused). */
  readonly readBoard: () => Board;
  /** Writes issued and not yet landed, at most (1 or more). */
  readonly maxInFlight: number;
}

/** Batches a node's direct writes between board checks: see the comment at the top of write-fence.ts. */
export class WriteFence {
  private readonly waiting: FencedWrite[] = [];
  private readonly landed: FencedWrite[] = [];
  private inFlight = 0;
  private scheduled = false;
  /** The board read by the current turn, while its acknowledgements settle (see {@link turn}). */
  private fresh: (key: bigint) => string | undefined = () => undefined;
  private freshValid = false;
  /** Board reads so far (for tests and profiles). */
  boardReads = 0;

  constructor(private readonly options: WriteFenceOptions) {
    if (!Number.isSafeInteger(options.maxInFlight) || options.maxInFlight < 1)
      throw new RangeError(
        `WriteFence: maxInFlight must be a whole number from 1, not ${options.maxInFlight}`,
      );
  }

  /**
   * Runs `issue` (the write itself) once the board lets `key` write, and
   * settles when the board, read after the bytes landed, still does: with
   * RESERVATION CONFLICT otherwise, or with `issue`'s own error.
   */
  write(key: bigint, what: string, issue: () => Promise<void>): Promise<void> {
    return new Promise<void>((acknowledge, refuse) => {
      const w: FencedWrite = { key, what, issue, acknowledge, refuse };
      if (this.freshValid && this.inFlight < this.options.maxInFlight) {
        this.start(w, this.fresh);
        return;
      }
      this.waiting.push(w);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // After the poll phase: every write that landed in it is gathered for one read.
    setImmediate(() => this.turn());
  }

  private turn(): void {
    this.scheduled = false;
    if (this.landed.length === 0 && this.waiting.length === 0) return;
    const refusal = this.readRefusal();
    for (const w of this.landed.splice(0)) {
      const why = refusal(w.key);
      if (why === undefined) w.acknowledge();
      else
        w.refuse(
          new ReservationConflictError(
            `${w.what}: ${why}; the key was preempted while the write ran, so it is not acknowledged`,
          ),
        );
    }
    this.issueWaiting(refusal);
    // The acknowledgements settle in microtasks; a tick queued from one runs only
    // after every microtask has drained, and before the event loop handles any I/O.
    this.fresh = refusal;
    this.freshValid = true;
    queueMicrotask(() =>
      process.nextTick(() => {
        this.freshValid = false;
      }),
    );
  }

  /** Reads the board once; a function saying why a key may not write now, or undefined. */
  private readRefusal(): (key: bigint) => string | undefined {
    this.boardReads++;
    try {
      const board = this.options.readBoard();
      return (key) => writeRefusal(board, key);
    } catch (error) {
      const why = `the registration board is unreadable (${(error as Error).message})`;
      return () => why;
    }
  }

  private issueWaiting(refusal: (key: bigint) => string | undefined): void {
    while (this.inFlight < this.options.maxInFlight) {
      const w = this.waiting.shift();
      if (!w) return;
      this.start(w, refusal);
    }
  }

  private start(w: FencedWrite, refusal: (key: bigint) => string | undefined): void {
    const why = refusal(w.key);
    if (why !== undefined) {
      w.refuse(new ReservationConflictError(`${w.what}: ${why}`));
      return;
    }
    this.inFlight++;
    let issued: Promise<void>;
    try {
      issued = w.issue();
    } catch (error) {
      issued = Promise.reject(error);
    }
    issued.then(
      () => {
        this.inFlight--;
        this.landed.push(w);
        this.schedule();
      },
      (error: unknown) => {
        this.inFlight--;
        w.refuse(error as Error);
        if (this.waiting.length > 0) this.schedule();
      },
    );
  }
}
