/** First retry's delay before jitter, in milliseconds. */
export const RETRY_BASE_MS = 250;
/** Longest delay between two attempts, in milliseconds. */
export const RETRY_CAP_MS = 10_000;

/**
 * How long a source waits before retry `retry` (1 for the first retry):
 * exponential backoff with "equal jitter" (Brooker, "Exponential Backoff And
 * Jitter", AWS Architecture Blog, 2015): half of min(cap, base * 2^(retry-1))
 * is kept and the other half drawn at random, so the waits double on average
 * while sources that failed together do not retry in lockstep, and no wait
 * is near zero (a destination still discarding the last attempt gets time).
 *
 * @param retry - 1 for the first retry; a whole number from 1.
 * @param random - a draw in [0, 1) (Math.random by default; fixed in tests).
 */
export function retryDelayMs(retry: number, random: () => number = Math.random): number {
  if (!Number.isSafeInteger(retry) || retry < 1) {
    throw new RangeError(`retry must be a whole number from 1, not ${retry}`);
  }
  // Past 2^6 * 250 ms the cap holds: keep the power small.
  const ceiling = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** Math.min(retry - 1, 16));
  const draw = Math.min(Math.max(random(), 0), 1);
  return Math.round(ceiling / 2 + (ceiling / 2) * draw);
}
