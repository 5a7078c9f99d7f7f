import { STATUS_PAGE } from "./guest-image.js";
import type { QmpClient } from "./qmp-client.js";

/** The write guest's status page, read from guest-physical memory. */
export interface GuestStatus {
  /** Writes done since boot. */
  readonly writes: number;
  /** HPET ticks the guest has counted while writing (100 MHz). */
  readonly clockTicks: number;
  /** 0 not started, 1 filling the working set, 2 writing. */
  readonly state: number;
  /** Working-set pages filled. */
  readonly filled: number;
}

/** HMP `xp` printed something hvlab cannot read as the status page. */
export class GuestStatusError extends Error {
  override name = "GuestStatusError";
}

/**
 * Reads the six words of `xp /6wx ADDR` output
 * (`0000000000101000: 0x00000001 0x00000000 ...`, four words a line).
 */
export function parseXpWords(text: string, count: number): number[] {
  const words: number[] = [];
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    for (const token of line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)) {
      if (!/^0x[0-9a-fA-F]{1,8}$/.test(token)) {
        if (token !== "") throw new GuestStatusError(`xp printed '${token}', not a 32-bit word`);
        continue;
      }
      words.push(Number.parseInt(token.slice(2), 16));
    }
  }
  if (words.length !== count)
    throw new GuestStatusError(
      `xp printed ${words.length} words, not ${count}: ${text.slice(0, 120)}`,
    );
  return words;
}

/** Reads the guest's status page over QMP (HMP `xp`, which reads guest-physical memory). */
export async function readGuestStatus(qmp: QmpClient): Promise<GuestStatus> {
  const text = await qmp.hmp(`xp /6wx 0x${STATUS_PAGE.toString(16)}`);
  const [lo = 0, hi = 0, tlo = 0, thi = 0, state = 0, filled = 0] = parseXpWords(text, 6);
  return { writes: hi * 2 ** 32 + lo, clockTicks: thi * 2 ** 32 + tlo, state, filled };
}
