/*
 * The edges of a virtual-time migration's options (src/migration/options.ts)
 * that the bounds test leaves open. QEMU's migrate-set-parameters refuses an
 * XBZRLE cache smaller than one target page (migration/options.c,
 * migrate_params_check: xbzrle_cache_size at least qemu_target_page_size()
 * and a power of 2), so a cache of no pages is refused here too, though 0 is
 * a power-of-two count by the bit test alone. A value that is not a number
 * at all is refused by each range check, never taken for a bound.
 */
import { describe, expect, it } from "vitest";
import {
  MigrationConfigError,
  type MigrationOptions,
  resolveMigrationOptions,
} from "../src/migration/options.js";

const MiB = 1024 ** 2;
const BASE: MigrationOptions = {
  guestBytes: 64 * MiB,
  content: false,
  workload: { kind: "uniform" },
  writesPerSecond: 1000,
};

/** The message `resolveMigrationOptions` refuses `change` with. */
function refused(change: Partial<MigrationOptions>): string {
  try {
    resolveMigrationOptions({ ...BASE, ...change });
  } catch (error) {
    expect(error).toBeInstanceOf(MigrationConfigError);
    return (error as Error).message;
  }
  throw new Error(`taken: ${JSON.stringify(change)}`);
}

describe("the XBZRLE cache", () => {
  it("holds at least one page, as QEMU's migrate_params_check asks", () => {
    expect(refused({ xbzrleCacheBytes: 0 })).toBe(
      "XBZRLE cache must be a power-of-two number of pages up to 1 GiB, not 0 bytes",
    );
    expect(refused({ xbzrleCacheBytes: 0, pageShift: 21 })).toBe(
      "XBZRLE cache must be a power-of-two number of pages up to 1 GiB, not 0 bytes",
    );
    expect(
      resolveMigrationOptions({ ...BASE, xbzrleCacheBytes: 4096, xbzrle: true, content: true })
        .xbzrleCacheBytes,
    ).toBe(4096);
  });
});

describe("a value that is not a number", () => {
  it("is refused by each range check with its words", () => {
    expect(refused({ latencyMs: Number.NaN })).toBe("latency must be 0 to 10000 ms, not NaN");
    expect(refused({ downtimeLimitMs: Number.NaN })).toBe(
      "downtime limit must be more than 0 ms, not NaN",
    );
    expect(refused({ timeoutMs: Number.NaN })).toBe("timeout must be more than 0 ms, not NaN");
    expect(refused({ switchoverMs: Number.NaN })).toBe(
      "switchover cost must be 0 ms or more, not NaN",
    );
    expect(refused({ zeroFraction: Number.NaN })).toBe("zero fraction must be within [0, 1]");
    expect(refused({ windowMs: Number.NaN })).toBe("window must be more than 0 ms");
    expect(refused({ throttleTriggerThreshold: Number.NaN })).toBe(
      "throttle trigger threshold must be 1 to 100 %, not NaN",
    );
    expect(refused({ guestBytes: Number.NaN })).toBe(
      "guest size must be at least 1 MiB, not NaN bytes",
    );
  });
});
