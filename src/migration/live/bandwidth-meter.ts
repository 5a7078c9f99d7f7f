/** QEMU re-estimates bandwidth over windows of at least 100 ms (migration/migration.c, BUFFER_DELAY). */
export const BANDWIDTH_WINDOW_MS = 100;

/**
 * Measures the link's bandwidth as QEMU does: bytes that left in a window of
 * at least 100 ms divided by its length; the estimate is the last complete
 * window's.
 */
export class BandwidthMeter {
  private windowStart: number;
  private windowBytes = 0;
  private last: number | null = null;
  /** Bytes counted in total. */
  total = 0;

  constructor(private readonly now: () => number = () => performance.now()) {
    this.windowStart = now();
  }

  /** Counts bytes that left now. */
  record(bytes: number): void {
    this.windowBytes += bytes;
    this.total += bytes;
    const now = this.now();
    const elapsed = now - this.windowStart;
    if (elapsed >= BANDWIDTH_WINDOW_MS) {
      this.last = (this.windowBytes / elapsed) * 1000;
      this.windowStart = now;
      this.windowBytes = 0;
    }
  }

  /** Bytes per second in the last complete window (the current one's if none closed yet). */
  estimate(): number {
    if (this.last !== null) return this.last;
    const elapsed = this.now() - this.windowStart;
    return elapsed > 0 ? (this.windowBytes / elapsed) * 1000 : 0;
  }
}
