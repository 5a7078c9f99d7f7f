/*
 * One iteration of QEMU's (`ram_save_iterate`, migration/ram.c) sends until
 * its budget is used, and its scan wraps at the end of RAM within it: the
 * pending estimate is looked at between iterations, never at the wrap. The
 * rates make every link time an exact binary fraction of a millisecond (a
 * record of 4104 bytes at 4104 x 1024 bytes/s takes 1000/1024 ms).
 */
import { describe, expect, it } from "vitest";
import { runMigration } from "../src/migration/engine.js";
import { RECORD_HEADER_BYTES } from "../src/wasm/page.js";

const MiB = 1024 ** 2;
const RECORD = 4096 + RECORD_HEADER_BYTES;
const RATE = RECORD * 1024;

describe("an iteration whose scan wraps at the end of RAM", () => {
  it("sends its whole chunk across the wrap before the pending estimate is looked at", async () => {
    // 256 pages, the bottom 102 rewritten 20,000 times a second; chunks of
    // 51 pages (50 ms at the host's rate), threshold 102.6 pages (102.4
    // records of 4104 bytes, against pages of 4096). The first pass sends 4
    // chunks and leaves pages 204 to 255; the sync finds those 52 and the
    // 102 hot pages: 154. The second pass resumes at page 204: a chunk of
    // 51 (103 left, not below), then page 255 and, past the wrap, pages 0
    // to 49 in the same chunk (52 left, below): 102 sent. Looked at the
    // wrap, with 102 left, it would have stopped after 52.
    const r = await runMigration({
      guestBytes: MiB,
      content: false,
      vcpus: 1,
      workload: { kind: "hotset", hotBase: 0, hotPages: 102, hotFraction: 1 },
      writesPerSecond: 20_000,
      latencyMs: 0,
      maxBandwidth: 100 * RATE,
      deviceStateBytes: 0,
      giveUp: "never",
      downtimeLimitMs: 100,
      policy: "qemu",
      timeoutMs: 20_000,
      qemuIteration: { hostRate: RATE, completionRate: 4 * RATE, startMs: 0, stopMs: 0 },
    });
    expect(r.summary.status).toBe("completed");
    expect(r.rounds.map((x) => [x.phase, x["pages-sent"], x["pages-dirtied"]])).toEqual([
      ["precopy", 204, 154],
      ["precopy", 102, 102],
      ["stop-and-copy", 102, 0],
    ]);
  });
});
