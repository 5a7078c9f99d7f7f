import { describe, expect, it } from "vitest";
import { type Board, BoardState } from "../src/csv/registration-board.js";
import { ReservationType } from "../src/csv/reservations.js";
import { ReservationConflictError } from "../src/csv/target-client.js";
import { WriteFence } from "../src/csv/write-fence.js";

// The fence for direct writes (docs/csv.md, "The fence for direct writes"):
// a write is issued only on a board read made after it was asked for, and
// acknowledged only on a read made after it landed. The one read a turn
// makes also serves the writes handed in while its acknowledgements settle
// (same macrotask, before any I/O), so a writer at queue depth 1 costs one
// read per write; a write asked for later waits for a read of its own.

const NODE = 0x2an;
const SURVIVOR = 0x7n;

/** The board under type 5 (write exclusive, registrants only) with these keys registered. */
function boardWith(...keys: bigint[]): Board {
  return {
    state: BoardState.online,
    prGeneration: keys.length + 1,
    sequence: 7,
    lunBytes: 1 << 16,
    type: ReservationType.writeExclusiveRegistrantsOnly,
    holderKey: SURVIVOR,
    keys,
  };
}

/** A fence over a board the test swaps, counting the writes it actually issues. */
function fenceOver(first: Board, maxInFlight: number) {
  const rig = { board: first, issued: 0 };
  const fence = new WriteFence({ readBoard: () => rig.board, maxInFlight });
  return Object.assign(rig, { fence });
}

/**
 * Runs the event loop for at most `passes` passes (setImmediate each), then
 * says how each write settled; "pending" when it had not, so that a write
 * left hanging fails the test rather than stalling it.
 */
async function settledWithin(passes: number, writes: readonly Promise<void>[]) {
  const states: (string | Error)[] = writes.map(() => "pending");
  for (const [i, w] of writes.entries())
    w.then(
      () => {
        states[i] = "acknowledged";
      },
      (e: Error) => {
        states[i] = e;
      },
    );
  for (let pass = 0; pass < passes && states.includes("pending"); pass++)
    await new Promise(setImmediate);
  return states;
}

describe("the write fence's board reads", () => {
  // A fresh fence has read no board yet: its first write waits for a read and
  // is refused on it when the key is not registered, without being issued.
  it("checks the very first write on a board read, and never issues a preempted key's", async () => {
    const rig = fenceOver(boardWith(SURVIVOR), 2);
    const [result] = await settledWithin(20, [
      rig.fence.write(NODE, "WRITE of 4096 bytes at 0 on lun0", async () => {
        rig.issued++;
      }),
    ]);
    expect(result).toBeInstanceOf(ReservationConflictError);
    expect((result as Error).message).toMatch(
      /^WRITE of 4096 bytes at 0 on lun0: key 0x2a is not registered/,
    );
    expect(rig.issued).toBe(0);
    expect(rig.fence.boardReads).toBe(1);
  });

  // The board a turn read is good only until the event loop moves on: a
  // write asked for in a later pass is checked on a new read, so a PREEMPT
  // that returned in between refuses it before it is issued.
  it("checks a write asked for in a later pass of the event loop on a new read", async () => {
    const rig = fenceOver(boardWith(NODE, SURVIVOR), 2);
    const first = await settledWithin(20, [
      rig.fence.write(NODE, "WRITE first", async () => {
        rig.issued++;
      }),
    ]);
    expect(first).toEqual(["acknowledged"]);
    await new Promise(setImmediate);
    const readsBefore = rig.fence.boardReads;
    rig.board = boardWith(SURVIVOR); // the survivor's PREEMPT returned
    const [late] = await settledWithin(20, [
      rig.fence.write(NODE, "WRITE late", async () => {
        rig.issued++;
      }),
    ]);
    expect(late).toBeInstanceOf(ReservationConflictError);
    expect((late as Error).message).toMatch(/^WRITE late: key 0x2a is not registered/);
    expect(rig.issued).toBe(1);
    expect(rig.fence.boardReads).toBe(readsBefore + 1);
  });

  // A writer at queue depth 1 hands in its next write as the last is
  // acknowledged: that write is issued on the read that acknowledged the last,
  // so n writes cost n + 1 reads (one to issue the first, one per landing),
  // not 2n (docs/csv.md: one read per write, not two).
  it("issues a depth-1 writer's next write on the read that acknowledged the last", async () => {
    const rig = fenceOver(boardWith(NODE, SURVIVOR), 1);
    const n = 16;
    const writer = (async () => {
      for (let k = 0; k < n; k++)
        await rig.fence.write(NODE, `WRITE ${k}`, async () => {
          rig.issued++;
        });
    })();
    expect(await settledWithin(4 * n, [writer])).toEqual(["acknowledged"]);
    expect(rig.issued).toBe(n);
    expect(rig.fence.boardReads).toBe(n + 1);
  });

  // A write asked for from inside another's issue (the same synchronous run)
  // is issued on that turn's read; the pass its asking scheduled then has
  // nothing landed and nothing waiting, and reads no board (a turn reads
  // once per pass that saw a write land or a write asked for and not served).
  it("issues a write asked for during another's issue on the same read, and reads no board for an empty pass", async () => {
    const rig = fenceOver(boardWith(NODE, SURVIVOR), 2);
    const landings: (() => void)[] = [];
    const readsAtIssue: number[] = [];
    const held = () =>
      new Promise<void>((land) => {
        readsAtIssue.push(rig.fence.boardReads);
        landings.push(land);
      });
    let inner: Promise<void> | undefined;
    const outer = rig.fence.write(NODE, "WRITE outer", () => {
      inner = rig.fence.write(NODE, "WRITE inner", held);
      return held();
    });
    await settledWithin(8, [outer]); // neither has landed: these passes settle nothing
    expect(readsAtIssue).toEqual([1, 1]);
    expect(rig.fence.boardReads).toBe(1);
    for (const land of landings) land();
    expect(await settledWithin(20, [outer, inner as Promise<void>])).toEqual([
      "acknowledged",
      "acknowledged",
    ]);
    expect(rig.fence.boardReads).toBe(2);
  });
});

describe("a write whose issue fails", () => {
  // An issue that throws before returning its promise (a bad descriptor, say)
  // fails that write with its own error and frees its slot: the write queued
  // behind it, with one write in flight at most, still runs and is acknowledged.
  it("is refused with the error its issue threw at once, and the write behind it runs", async () => {
    const rig = fenceOver(boardWith(NODE, SURVIVOR), 1);
    const bad = rig.fence.write(NODE, "WRITE a", () => {
      throw new Error("EBADF: bad file descriptor");
    });
    const good = rig.fence.write(NODE, "WRITE b", async () => {
      rig.issued++;
    });
    const [a, b] = await settledWithin(20, [bad, good]);
    expect((a as Error).message).toBe("EBADF: bad file descriptor");
    expect(a).not.toBeInstanceOf(ReservationConflictError);
    expect(b).toBe("acknowledged");
    expect(rig.issued).toBe(1);
  });
});
