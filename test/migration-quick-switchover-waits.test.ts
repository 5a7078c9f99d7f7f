/*
 * The waits of a quick migration's switchover
 * (src/migration/quick/saved-state-transport.ts; docs/migration-live.md,
 * "The saved-state file (quick migration)"): the storage failover is a wait
 * of the configured ms before the file is read back, the resume cost a wait
 * of its ms after; a time of 0 is no wait at all, so a switchover with
 * neither schedules no timer. The timer module is wrapped, not replaced:
 * the waits still run, and each is seen with its length.
 */
import { describe, expect, it, vi } from "vitest";
import { SavedStateTransport } from "../src/migration/quick/saved-state-transport.js";
import { savedStateHosts } from "./support/saved-state-hosts.js";
import { testTempDir } from "./support/temp.js";

const timers = vi.hoisted(() => ({ waits: [] as number[] }));

vi.mock("node:timers/promises", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:timers/promises")>();
  return {
    ...real,
    setTimeout: (ms: number, ...rest: unknown[]) => {
      timers.waits.push(ms);
      return (real.setTimeout as (ms: number, ...rest: unknown[]) => Promise<unknown>)(ms, ...rest);
    },
  };
});

/** The waits one save and switchover of a 1 MiB guest take. */
async function switchoverWaits(failoverMs: number, resumeMs: number): Promise<number[]> {
  const hosts = savedStateHosts(
    testTempDir("quick-waits"),
    { ramBytes: 1024 ** 2, deviceBytes: 256, seed: 5 },
    { failoverMs, resumeMs },
  );
  const transport = new SavedStateTransport(hosts);
  await transport.sendPending();
  timers.waits.length = 0;
  await transport.switchover();
  const waits = [...timers.waits];
  // The restore is whole either way.
  expect(await transport.verify()).toBeNull();
  return waits;
}

describe("the switchover's waits", () => {
  // No failover and no resume cost: straight from the save to the restore
  // and on to the resume, with no timer between.
  it("waits on no timer when the failover and the resume take 0 ms", async () => {
    expect(await switchoverWaits(0, 0)).toEqual([]);
  });

  // Each wait alone: the failover before the restore, the resume after it,
  // each once and for its own ms; the other, at 0, is not waited.
  it("waits the failover, then the resume, each once for its ms", async () => {
    expect(await switchoverWaits(3, 0)).toEqual([3]);
    expect(await switchoverWaits(0, 2)).toEqual([2]);
    expect(await switchoverWaits(3, 2)).toEqual([3, 2]);
  });
});
