import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseQueueUrl } from "../src/distributed/connection.js";
import { PAYLOAD_VERSION, type Payload } from "../src/distributed/payload.js";
import { submitSweep } from "../src/distributed/submitter.js";
import {
  haveRedis,
  startRedis,
  startWorkers,
  stopWorkers,
  type TestRedis,
} from "./support/redis.js";

// A submission ends when its last point is in, not at the next progress
// poll: with a poll interval far longer than the jobs, the sweep still
// returns at once.
describe.skipIf(!haveRedis())("a submission's end", () => {
  let redis: TestRedis;
  let workers: ChildProcess[] = [];
  beforeAll(async () => {
    redis = await startRedis();
    workers = await startWorkers(redis.url, ["end-w1"], ["--quiet"]);
  }, 120_000);
  afterAll(async () => {
    await stopWorkers(workers);
    await redis?.close();
  });

  it("returns once the last job completes, without waiting out a poll interval", async () => {
    const pollMs = 60_000;
    const payloads: Payload[] = [0, 1, 2].map((index) => ({
      hvlab: PAYLOAD_VERSION,
      sweep: "end",
      index,
      kind: "empty",
    }));
    const started = performance.now();
    const submission = await submitSweep({
      target: parseQueueUrl(redis.url),
      sweepId: "end",
      payloads,
      attempts: 1,
      pollMs,
    });
    const elapsed = performance.now() - started;
    expect(submission.outcomes).toEqual(
      payloads.map(() => ({ ok: true, value: {}, worker: "end-w1" })),
    );
    // Three empty jobs take milliseconds; a minute's poll interval must not show.
    expect(elapsed).toBeLessThan(pollMs / 2);
    expect(submission.wallMs).toBeLessThan(pollMs / 2);
  }, 120_000);
});
