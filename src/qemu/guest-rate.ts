import { GuestState, HPET_HZ } from "./guest-image.js";
import { type GuestStatus, readGuestStatus } from "./guest-status.js";
import type { QmpClient } from "./qmp-client.js";

/** The guest never reached its writing state. */
export class GuestBootError extends Error {
  override name = "GuestBootError";
}

/** Waits until the guest has filled its working set and writes; returns its status then. */
export async function waitUntilWriting(qmp: QmpClient, timeoutMs: number): Promise<GuestStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: GuestStatus | undefined;
  for (;;) {
    last = await readGuestStatus(qmp);
    if (last.state === GuestState.writing) return last;
    if (Date.now() > deadline)
      throw new GuestBootError(
        `the guest is not writing after ${timeoutMs} ms (state ${last.state}, ${last.filled} pages filled)`,
      );
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A write rate measured from the guest's counter. */
export interface MeasuredRate {
  /** Writes per wall-clock second (host time between the two reads). */
  readonly writesPerSecond: number;
  /** Writes per second of the guest's own clock (the HPET). */
  readonly writesPerGuestSecond: number;
  readonly writes: number;
  readonly wallMs: number;
}

/** Reads the counter twice, `ms` apart, and gives the rate between. */
export async function measureWriteRate(qmp: QmpClient, ms: number): Promise<MeasuredRate> {
  const t0 = performance.now();
  const a = await readGuestStatus(qmp);
  const t1 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const t2 = performance.now();
  const b = await readGuestStatus(qmp);
  const t3 = performance.now();
  // Each read's instant is taken as the middle of its round trip.
  const wallMs = (t2 + t3) / 2 - (t0 + t1) / 2;
  const writes = b.writes - a.writes;
  const guestSeconds = (b.clockTicks - a.clockTicks) / HPET_HZ;
  return {
    writesPerSecond: (writes * 1000) / wallMs,
    writesPerGuestSecond: guestSeconds > 0 ? writes / guestSeconds : 0,
    writes,
    wallMs,
  };
}
