import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import {
  type Board,
  BoardPublisher,
  BoardReader,
  BoardState,
} from "../src/csv/registration-board.js";
import { PersistentReservations, ReservationType, ServiceAction } from "../src/csv/reservations.js";
import { ReservationConflictError } from "../src/csv/target-client.js";
import { WriteFence } from "../src/csv/write-fence.js";

// The fence a node's direct writes pass: checked against the registration
// board before they are issued and after they land, a batch at a time. A
// write whose key was preempted while it ran is never acknowledged, and a
// preempted key's writes are never issued.

const KEY = 0x11n;
const board = (keys: bigint[]): Board => ({
  state: BoardState.online,
  prGeneration: keys.length,
  sequence: 1,
  lunBytes: 1 << 20,
  type: ReservationType.writeExclusiveRegistrantsOnly,
  holderKey: 0x99n,
  keys,
});
const registered = board([KEY, 0x99n]);
const preempted = board([0x99n]);

/** A write whose landing the test decides. */
function pending() {
  let land: () => void = () => {};
  let fail: (e: Error) => void = () => {};
  const landed = new Promise<void>((resolve, reject) => {
    land = resolve;
    fail = reject;
  });
  return { landed, land, fail };
}

/** What a write's promise came to, once the event loop has run the fence's turns. */
async function outcome(p: Promise<void>): Promise<"acknowledged" | Error> {
  return p.then(
    () => "acknowledged" as const,
    (e: Error) => e,
  );
}

const turns = () => new Promise((r) => setImmediate(r)).then(() => new Promise(setImmediate));

describe("the write fence", () => {
  it("does not acknowledge writes in flight when the key is preempted before they land", async () => {
    let now = registered;
    const fence = new WriteFence({ readBoard: () => now, maxInFlight: 4 });
    const writes = [pending(), pending(), pending()];
    let issued = 0;
    const results = writes.map((w, i) =>
      outcome(
        fence.write(KEY, `WRITE ${i}`, () => {
          issued++;
          return w.landed;
        }),
      ),
    );
    await turns();
    expect(issued).toBe(3);
    // A survivor's PREEMPT returns while the three are on their way to the LUN.
    now = preempted;
    for (const w of writes) w.land();
    for (const r of await Promise.all(results)) {
      expect(r).toBeInstanceOf(ReservationConflictError);
      expect((r as Error).message).toMatch(
        /preempted while the write ran, so it is not acknowledged/,
      );
    }
    // And a write asked for now is refused before it is issued.
    const late = await outcome(fence.write(KEY, "WRITE late", async () => void issued++));
    expect(late).toBeInstanceOf(ReservationConflictError);
    expect((late as Error).message).toMatch(/^WRITE late: key 0x11 is not registered/);
    expect(issued).toBe(3);
  });

  it("acknowledges a write only on a board read that began after it landed", async () => {
    let now = registered;
    let reads = 0;
    const fence = new WriteFence({
      readBoard: () => {
        reads++;
        return now;
      },
      maxInFlight: 2,
    });
    const w = pending();
    let settled = false;
    const result = fence
      .write(KEY, "WRITE", () => w.landed)
      .then(() => {
        settled = true;
      });
    await turns();
    const readsBeforeLanding = reads;
    await turns();
    expect(settled).toBe(false);
    w.land();
    await result;
    expect(settled).toBe(true);
    expect(reads).toBeGreaterThan(readsBeforeLanding);
    // An unreadable board refuses: no write is acknowledged on a board nobody could read.
    now = undefined as unknown as Board;
    const broken = new WriteFence({
      readBoard: () => {
        throw new Error("torn 64 times");
      },
      maxInFlight: 1,
    });
    const refused = await outcome(broken.write(KEY, "WRITE", async () => {}));
    expect((refused as Error).message).toMatch(
      /registration board is unreadable \(torn 64 times\)/,
    );
  });

  it("keeps at most maxInFlight writes issued, and reads the board about once per write, not twice", async () => {
    const fence = new WriteFence({ readBoard: () => registered, maxInFlight: 3 });
    let inFlight = 0;
    let most = 0;
    const one = async () => {
      inFlight++;
      most = Math.max(most, inFlight);
      await new Promise(setImmediate);
      inFlight--;
    };
    // Four writers, each handing in its next write as the last is acknowledged (file-write).
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let k = 0; k < 25; k++) await fence.write(KEY, "WRITE", one);
      }),
    );
    expect(most).toBe(3);
    // Two per write (100) before batching; one read serves a landing and the next issue.
    expect(fence.boardReads).toBeLessThanOrEqual(100);
    expect(fence.boardReads).toBeGreaterThan(0);
  });

  it("a write's own error is its result, and the writes behind it still run", async () => {
    const fence = new WriteFence({ readBoard: () => registered, maxInFlight: 1 });
    const a = outcome(
      fence.write(KEY, "WRITE a", async () => {
        throw new Error("EIO");
      }),
    );
    const b = outcome(fence.write(KEY, "WRITE b", async () => {}));
    expect(((await a) as Error).message).toBe("EIO");
    expect(await b).toBe("acknowledged");
  });

  it("refuses a maxInFlight that is not a whole number from 1", () => {
    for (const bad of [0, -1, 1.5, Number.NaN])
      expect(() => new WriteFence({ readBoard: () => registered, maxInFlight: bad })).toThrow(
        /maxInFlight must be a whole number from 1/,
      );
  });

  it("property: whatever the order of landings and the moment of the PREEMPT, no write that landed after it is acknowledged, none is issued after it, and every write settles", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 4 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 40 }),
        fc.option(fc.nat({ max: 40 }), { nil: undefined }),
        async (count, maxInFlight, picks, preemptAt) => {
          let now = registered;
          let isPreempted = false;
          const fence = new WriteFence({ readBoard: () => now, maxInFlight });
          const writes = Array.from({ length: count }, () => ({
            ...pending(),
            started: false,
            hasLanded: false,
            settled: false,
            issuedAfterPreempt: false,
            landedAfterPreempt: false,
          }));
          const results = writes.map((w, i) =>
            outcome(
              fence.write(KEY, `WRITE ${i}`, () => {
                w.started = true;
                w.issuedAfterPreempt = isPreempted;
                return w.landed;
              }),
            ).then((r) => {
              w.settled = true;
              return r;
            }),
          );
          for (let step = 0; step < 500 && !writes.every((w) => w.settled); step++) {
            await turns();
            if (step === preemptAt) {
              now = preempted;
              isPreempted = true;
            }
            const open = writes.filter((w) => w.started && !w.hasLanded);
            const w = open[(picks[step % picks.length] ?? 0) % Math.max(1, open.length)];
            if (!w) continue;
            w.hasLanded = true;
            w.landedAfterPreempt = isPreempted;
            w.land();
          }
          expect(writes.every((w) => w.settled)).toBe(true);
          const got = await Promise.all(results);
          for (const [i, w] of writes.entries()) {
            expect(w.issuedAfterPreempt).toBe(false);
            if (w.landedAfterPreempt || !w.started) expect(got[i]).not.toBe("acknowledged");
            // With no PREEMPT, the board lets every write through.
            if (preemptAt === undefined) expect(got[i]).toBe("acknowledged");
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("the write fence on a real registration board", () => {
  const dir = mkdtempSync(join(tmpdir(), "hvlab-csv-fence-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("a PREEMPT the target published while a write ran withholds its acknowledgement", async () => {
    const path = join(dir, "lun.registrations");
    const reservations = new PersistentReservations();
    const publisher = new BoardPublisher(path, 1 << 20);
    const reader = new BoardReader(path);
    try {
      const out = (who: string, action: number, key: bigint, serviceKey: bigint) =>
        expect(
          reservations.out(who, {
            action,
            type: ReservationType.writeExclusiveRegistrantsOnly,
            key,
            serviceKey,
          }),
        ).toEqual({ status: "good" });
      out("node-1", ServiceAction.register, 0n, KEY);
      out("node-2", ServiceAction.register, 0n, 0x99n);
      out("node-2", ServiceAction.reserve, 0x99n, 0n);
      publisher.publish(reservations);
      const fence = new WriteFence({ readBoard: () => reader.read(), maxInFlight: 4 });
      const ok = pending();
      const acked = fence.write(KEY, "WRITE before", () => ok.landed);
      await turns();
      ok.land();
      await expect(acked).resolves.toBeUndefined();

      const inFlight = pending();
      const result = outcome(fence.write(KEY, "WRITE during", () => inFlight.landed));
      await turns();
      out("node-2", ServiceAction.preempt, 0x99n, KEY);
      publisher.publish(reservations);
      inFlight.land();
      const r = await result;
      expect(r).toBeInstanceOf(ReservationConflictError);
      expect((r as Error).message).toMatch(
        /^WRITE during: key 0x11 is not registered .*not acknowledged$/,
      );
    } finally {
      reader.close();
      publisher.close(reservations);
    }
  });
});
