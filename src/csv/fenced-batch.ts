import { type Board, writeRefusal } from "./registration-board.js";

/*
 * A batch of a node's direct writes run back to back on one thread, each
 * fenced by the registration board as WriteFence fences a write on the
 * event loop (docs/csv.md, "The fence for direct writes"):
 *
 *   read board 0 -> check -> pwrite 1 -> read board 1 -> check -> pwrite 2 -> ... -> read board n
 *
 * Board read k (k from 1) began after write k landed, so it is write k's
 * after-check: write k is acknowledged only if the key may still write
 * there. The same read is write k+1's before-check, taken microseconds
 * before its pwrite on the same thread, with nothing in between. The batch
 * stops at the first write that is refused, is not acknowledged, or fails:
 * the writes after it are refused without being issued, so a write is
 * never issued on a board that has shown the key preempted, and no write is
 * acknowledged after one that was not.
 *
 * Pure of I/O: the thread that runs it (io-thread-worker.ts) passes pread
 * and pwrite in, and tests pass boards that change between any two writes.
 */

/** One write of a batch: `length` bytes of buffer `buffer` from `bufferOffset`, at `lunOffset` on the LUN. */
export interface BatchWrite {
  readonly buffer: number;
  readonly bufferOffset: number;
  readonly length: number;
  readonly lunOffset: number;
}

/** What a batch needs of its thread. */
export interface BatchIo {
  /** Reads the board as it is now; throws when it is unreadable (then the key may not write). */
  readBoard(): Board;
  /**
   * Writes all of `data` at `lunOffset`; throws on the first error, with
   * `bytesWritten` (a number) on the error when part of it went out.
   */
  pwrite(data: Uint8Array, lunOffset: number): void;
  /** Called after each write is acknowledged, with how many are (a counter others read without a wake-up). */
  acknowledged?(count: number): void;
  /** Whether the node has stopped this path's writes (its storage path cut): checked before each write. */
  halted?(): string | undefined;
}

/**
 * Why a batch stopped before its end, at write `at` (the first write not
 * acknowledged):
 * - `refused`: refused before its pwrite (RESERVATION CONFLICT, or the
 *   path halted); none of its bytes went out;
 * - `unacknowledged`: its bytes landed, but the board read after it shows
 *   the key preempted (or is unreadable), so it is not acknowledged;
 * - `failed`: its pwrite failed (`code` the errno name, `bytesWritten` how
 *   much of it went out before the error, when known).
 * Every write after `at` is refused without being issued.
 */
export interface BatchStop {
  readonly at: number;
  readonly status: "refused" | "unacknowledged" | "failed";
  /** The board's reason (`refused` on the board, `unacknowledged`), or the path's, or the error's message. */
  readonly reason: string;
  /** Why the stop: the board refused the key, the path was halted, or the write failed. */
  readonly cause: "conflict" | "halted" | "io";
  readonly code?: string;
  readonly bytesWritten?: number;
}

/** What a batch did: writes `0 .. acknowledged - 1` landed and are acknowledged; the rest as {@link BatchStop} says. */
export interface BatchOutcome {
  readonly acknowledged: number;
  readonly stop?: BatchStop;
  /** Board reads the batch took (writes + 1 when it ran to its end). */
  readonly boardReads: number;
}

/** Why `key` may not write now, from a fresh read of the board; undefined when it may. */
function refusalNow(io: BatchIo, key: bigint): string | undefined {
  try {
    return writeRefusal(io.readBoard(), key);
  } catch (error) {
    return `the registration board is unreadable (${(error as Error).message})`;
  }
}

/** Runs `writes` for `key` back to back, each fenced by the board: see the comment at the top of fenced-batch.ts. */
export function runFencedBatch(
  io: BatchIo,
  key: bigint,
  buffers: readonly Uint8Array[],
  writes: readonly BatchWrite[],
): BatchOutcome {
  let boardReads = 1;
  // Write 0's before-check.
  let refusal = refusalNow(io, key);
  for (let at = 0; at < writes.length; at++) {
    const halted = io.halted?.();
    if (halted !== undefined)
      return {
        acknowledged: at,
        boardReads,
        stop: { at, status: "refused", reason: halted, cause: "halted" },
      };
    if (refusal !== undefined)
      return {
        acknowledged: at,
        boardReads,
        stop: { at, status: "refused", reason: refusal, cause: "conflict" },
      };
    const w = writes[at] as BatchWrite;
    const data = (buffers[w.buffer] as Uint8Array).subarray(
      w.bufferOffset,
      w.bufferOffset + w.length,
    );
    try {
      io.pwrite(data, w.lunOffset);
    } catch (error) {
      const e = error as NodeJS.ErrnoException & { bytesWritten?: unknown };
      return {
        acknowledged: at,
        boardReads,
        stop: {
          at,
          status: "failed",
          reason: e.message,
          cause: "io",
          ...(typeof e.code === "string" ? { code: e.code } : {}),
          ...(typeof e.bytesWritten === "number" ? { bytesWritten: e.bytesWritten } : {}),
        },
      };
    }
    // Begun after write `at` landed: its after-check, and the next write's before-check.
    boardReads++;
    refusal = refusalNow(io, key);
    if (refusal !== undefined)
      return {
        acknowledged: at,
        boardReads,
        stop: {
          at,
          status: "unacknowledged",
          reason: `${refusal}; the key was preempted while the write ran, so it is not acknowledged`,
          cause: "conflict",
        },
      };
    io.acknowledged?.(at + 1);
  }
  return { acknowledged: writes.length, boardReads };
}
