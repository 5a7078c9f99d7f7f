/*
 * A virtual-time migration's options (src/migration/options.ts): QEMU's
 * defaults (migration/options.c: max-bandwidth 128 MiB/s, downtime-limit
 * 300 ms, an XBZRLE cache of 64 MiB, auto-converge's 20/10/99 and its
 * trigger of 50 %), the policies' round caps, and every bound taken on its
 * near side and refused on its far side as a MigrationConfigError naming the
 * option and the value.
 */
import { describe, expect, it } from "vitest";
import { MAX_CONTENT_GUEST_BYTES, MAX_GUEST_BYTES } from "../src/guest/guest.js";
import {
  GIVE_UP_RULES,
  HYPERV_VERSIONS,
  MAX_DEVICE_STATE_BYTES,
  MBPS,
  MIGRATION_DEFAULTS,
  MigrationConfigError,
  type MigrationOptions,
  MULTIFD_DEFAULT_CHANNELS,
  POLICY_ROUND_CAPS,
  resolveMigrationOptions,
  STOP_POLICIES,
} from "../src/migration/options.js";

const MiB = 1024 ** 2;
const BASE: MigrationOptions = {
  guestBytes: 64 * MiB,
  content: false,
  workload: { kind: "uniform" },
  writesPerSecond: 1000,
};

/** The message `resolveMigrationOptions` refuses `change` with. */
function refused(change: Partial<MigrationOptions> & Record<string, unknown>): string {
  try {
    resolveMigrationOptions({ ...BASE, ...change } as MigrationOptions);
  } catch (error) {
    expect(error).toBeInstanceOf(MigrationConfigError);
    expect(error).toBeInstanceOf(RangeError);
    expect((error as Error).name).toBe("MigrationConfigError");
    return (error as Error).message;
  }
  throw new Error("taken");
}

function taken(change: Partial<MigrationOptions>) {
  return resolveMigrationOptions({ ...BASE, ...change });
}

describe("defaults", () => {
  it("are QEMU's where QEMU has one", () => {
    expect(MIGRATION_DEFAULTS).toEqual({
      pageShift: 12,
      vcpus: 2,
      seed: 1,
      zeroFraction: 0.25,
      policy: "qemu",
      hypervVersion: "2008r2",
      maxBandwidth: 128 * MiB,
      latencyMs: 0.25,
      downtimeLimitMs: 300,
      timeoutMs: 3_600_000,
      giveUp: "projection",
      deviceStateBytes: MiB,
      switchoverMs: 50,
      zeroPages: true,
      xbzrle: false,
      xbzrleCacheBytes: 64 * MiB,
      autoConverge: false,
      throttleInitial: 20,
      throttleIncrement: 10,
      throttleMax: 99,
      throttleTriggerThreshold: 50,
      throttleTailslow: false,
      multifdChannels: 0,
      windowMs: 100,
    });
    expect(STOP_POLICIES).toEqual(["qemu", "hyperv", "xen"]);
    expect(HYPERV_VERSIONS).toEqual(["2008r2", "2012r2"]);
    expect(GIVE_UP_RULES).toEqual(["projection", "never"]);
    expect(MBPS).toBe(125_000);
    expect(MULTIFD_DEFAULT_CHANNELS).toBe(2);
    expect(MAX_DEVICE_STATE_BYTES).toBe(256 * MiB);
    expect(POLICY_ROUND_CAPS).toEqual({ hyperv2008r2: 10, hyperv2012r2: 5, xen: 29 });
  });

  it("fill in what is not given, and an undefined option is not given", () => {
    const o = resolveMigrationOptions({ ...BASE, seed: undefined, maxBandwidth: undefined });
    expect(o).toMatchObject({
      ...MIGRATION_DEFAULTS,
      postcopyAfterRounds: null,
      qemuIteration: null,
      maxRounds: null,
      guestBytes: 64 * MiB,
      writesPerSecond: 1000,
      content: false,
      workload: { kind: "uniform" },
    });
    expect(taken({ seed: 9, latencyMs: 3 })).toMatchObject({ seed: 9, latencyMs: 3 });
  });

  it("round caps: none for qemu, 10 or 5 passes for Hyper-V, 29 for Xen; a user's cap wins", () => {
    expect(taken({ policy: "qemu" }).maxRounds).toBeNull();
    expect(taken({ policy: "hyperv" }).maxRounds).toBe(10);
    expect(taken({ policy: "hyperv", hypervVersion: "2008r2" }).maxRounds).toBe(10);
    expect(taken({ policy: "hyperv", hypervVersion: "2012r2" }).maxRounds).toBe(5);
    expect(taken({ policy: "xen" }).maxRounds).toBe(29);
    expect(taken({ policy: "xen", maxRounds: 3 }).maxRounds).toBe(3);
    expect(taken({ policy: "qemu", hypervVersion: "2012r2" }).maxRounds).toBeNull();
  });
});

describe("bounds, each on both sides", () => {
  it("page size 4 KiB or 2 MiB", () => {
    expect(taken({ pageShift: 21 }).pageShift).toBe(21);
    expect(refused({ pageShift: 13 as never })).toBe("page size must be 4KiB or 2MiB");
  });

  it("guest size: at least 1 MiB, whole pages, at most 16 TiB, 3 GiB in content mode", () => {
    expect(taken({ guestBytes: MiB }).guestBytes).toBe(MiB);
    expect(refused({ guestBytes: MiB - 4096 })).toBe(
      "guest size must be at least 1 MiB, not 1044480 bytes",
    );
    expect(refused({ guestBytes: MiB + 0.5 })).toBe(
      "guest size must be at least 1 MiB, not 1048576.5 bytes",
    );
    expect(refused({ guestBytes: MiB + 512 })).toBe(
      "guest size 1049088 bytes is not a whole number of 4.0 KiB pages",
    );
    expect(refused({ guestBytes: 3 * MiB, pageShift: 21 })).toBe(
      "guest size 3145728 bytes is not a whole number of 2.0 MiB pages",
    );
    expect(taken({ guestBytes: MAX_GUEST_BYTES }).guestBytes).toBe(MAX_GUEST_BYTES);
    expect(refused({ guestBytes: MAX_GUEST_BYTES + 4096 })).toBe(
      "guest size 16.0 TiB is over 16 TiB",
    );
    expect(taken({ guestBytes: MAX_CONTENT_GUEST_BYTES, content: true }).content).toBe(true);
    expect(refused({ guestBytes: MAX_CONTENT_GUEST_BYTES + 4096, content: true })).toBe(
      "a 3.0 GiB guest cannot be held in content mode (at most 3.0 GiB): use metadata mode",
    );
    expect(taken({ guestBytes: MAX_CONTENT_GUEST_BYTES + 4096 }).content).toBe(false);
  });

  it("policy, Hyper-V version and give-up rule from their lists", () => {
    expect(refused({ policy: "vmware" as never })).toBe(
      "unknown stop policy 'vmware' (one of qemu, hyperv, xen)",
    );
    expect(refused({ hypervVersion: "2016" as never })).toBe(
      "unknown Hyper-V version '2016' (one of 2008r2, 2012r2)",
    );
    expect(refused({ giveUp: "sometimes" as never })).toBe(
      "unknown give-up rule 'sometimes' (one of projection, never)",
    );
    expect(taken({ giveUp: "never" }).giveUp).toBe("never");
  });

  it("bandwidth above 0, Infinity taken, NaN refused", () => {
    expect(taken({ maxBandwidth: Number.POSITIVE_INFINITY }).maxBandwidth).toBe(
      Number.POSITIVE_INFINITY,
    );
    expect(taken({ maxBandwidth: 1e-9 }).maxBandwidth).toBe(1e-9);
    for (const bandwidth of [0, -1, Number.NaN]) {
      expect(refused({ maxBandwidth: bandwidth })).toBe(
        `bandwidth must be more than 0 bytes/s, not ${bandwidth}`,
      );
    }
  });

  it("dirty rate from 0 to 1e11 writes/s", () => {
    expect(taken({ writesPerSecond: 0 }).writesPerSecond).toBe(0);
    expect(taken({ writesPerSecond: 1e11 }).writesPerSecond).toBe(1e11);
    for (const rate of [-1, 1e11 + 1e5, Number.POSITIVE_INFINITY, Number.NaN]) {
      expect(refused({ writesPerSecond: rate })).toBe(
        `dirty rate must be from 0 to 1e11 writes/s, not ${rate}`,
      );
    }
  });

  it("latency 0 to 10,000 ms", () => {
    expect(taken({ latencyMs: 0 }).latencyMs).toBe(0);
    expect(taken({ latencyMs: 10_000 }).latencyMs).toBe(10_000);
    for (const latency of [-0.1, 10_000.1]) {
      expect(refused({ latencyMs: latency })).toBe(`latency must be 0 to 10000 ms, not ${latency}`);
    }
  });

  it("downtime limit above 0, at most an hour", () => {
    expect(taken({ downtimeLimitMs: 0.001 }).downtimeLimitMs).toBe(0.001);
    expect(taken({ downtimeLimitMs: 3_600_000 }).downtimeLimitMs).toBe(3_600_000);
    for (const limit of [0, 3_600_001]) {
      expect(refused({ downtimeLimitMs: limit })).toBe(
        `downtime limit must be more than 0 ms, not ${limit}`,
      );
    }
  });

  it("timeout above 0 and finite", () => {
    expect(taken({ timeoutMs: 1 }).timeoutMs).toBe(1);
    for (const timeout of [0, Number.POSITIVE_INFINITY]) {
      expect(refused({ timeoutMs: timeout })).toBe(
        `timeout must be more than 0 ms, not ${timeout}`,
      );
    }
  });

  it("max rounds 1 to 100,000 whole", () => {
    expect(taken({ maxRounds: 1 }).maxRounds).toBe(1);
    expect(taken({ maxRounds: 100_000 }).maxRounds).toBe(100_000);
    for (const rounds of [0, 100_001, 2.5]) {
      expect(refused({ maxRounds: rounds })).toBe(
        `max rounds must be from 1 to 100000, not ${rounds}`,
      );
    }
  });

  it("device state 0 to 256 MiB whole", () => {
    expect(taken({ deviceStateBytes: 0 }).deviceStateBytes).toBe(0);
    expect(taken({ deviceStateBytes: 256 * MiB }).deviceStateBytes).toBe(256 * MiB);
    for (const bytes of [-1, 256 * MiB + 1, 0.5]) {
      expect(refused({ deviceStateBytes: bytes })).toBe(
        `device state must be 0 to 256.0 MiB, not ${bytes} bytes`,
      );
    }
  });

  it("switchover cost 0 ms to an hour", () => {
    expect(taken({ switchoverMs: 0 }).switchoverMs).toBe(0);
    expect(taken({ switchoverMs: 3_600_000 }).switchoverMs).toBe(3_600_000);
    for (const ms of [-1, 3_600_001]) {
      expect(refused({ switchoverMs: ms })).toBe(`switchover cost must be 0 ms or more, not ${ms}`);
    }
  });

  it("zero fraction within [0, 1]", () => {
    expect(taken({ zeroFraction: 0 }).zeroFraction).toBe(0);
    expect(taken({ zeroFraction: 1 }).zeroFraction).toBe(1);
    for (const fraction of [-0.01, 1.01]) {
      expect(refused({ zeroFraction: fraction })).toBe("zero fraction must be within [0, 1]");
    }
  });

  it("XBZRLE cache a power-of-two number of pages, one page to 1 GiB", () => {
    expect(taken({ xbzrleCacheBytes: 4096 }).xbzrleCacheBytes).toBe(4096);
    expect(taken({ xbzrleCacheBytes: 1024 * MiB }).xbzrleCacheBytes).toBe(1024 * MiB);
    expect(taken({ xbzrleCacheBytes: 2 * MiB, pageShift: 21 }).xbzrleCacheBytes).toBe(2 * MiB);
    for (const bytes of [2048, 3 * 4096, 2048 * MiB, 6144]) {
      expect(refused({ xbzrleCacheBytes: bytes })).toBe(
        `XBZRLE cache must be a power-of-two number of pages up to 1 GiB, not ${bytes} bytes`,
      );
    }
    expect(refused({ xbzrleCacheBytes: MiB, pageShift: 21 })).toMatch(/not 1048576 bytes$/);
  });

  it("XBZRLE needs content mode, 4 KiB pages and no multifd", () => {
    expect(taken({ xbzrle: true, content: true }).xbzrle).toBe(true);
    expect(refused({ xbzrle: true })).toBe("XBZRLE needs page contents: use content mode");
    expect(refused({ xbzrle: true, content: true, pageShift: 21 })).toBe(
      "XBZRLE works on 4 KiB pages only (as QEMU's)",
    );
    expect(refused({ xbzrle: true, content: true, multifdChannels: 2 })).toBe(
      "XBZRLE and multifd cannot be used together (as in QEMU)",
    );
    // Without XBZRLE, 2 MiB pages and multifd are fine.
    expect(taken({ content: true, pageShift: 21, multifdChannels: 2 }).multifdChannels).toBe(2);
  });

  it("multifd channels 0 to 64 whole", () => {
    expect(taken({ multifdChannels: 64 }).multifdChannels).toBe(64);
    for (const channels of [-1, 65, 1.5]) {
      expect(refused({ multifdChannels: channels })).toBe(
        `multifd channels must be 0 to 64, not ${channels}`,
      );
    }
  });

  it("auto-converge: 1 <= initial <= max <= 99 and 1 <= increment <= 99", () => {
    const words =
      "auto-converge throttle must satisfy 1 <= initial <= max <= 99 and 1 <= increment <= 99";
    expect(taken({ throttleInitial: 1, throttleIncrement: 1, throttleMax: 1 })).toMatchObject({
      throttleInitial: 1,
      throttleMax: 1,
    });
    expect(taken({ throttleInitial: 99, throttleIncrement: 99, throttleMax: 99 })).toMatchObject({
      throttleIncrement: 99,
    });
    for (const change of [
      { throttleInitial: 0 },
      { throttleInitial: 100, throttleMax: 99 },
      { throttleIncrement: 0 },
      { throttleIncrement: 100 },
      { throttleInitial: 50, throttleMax: 49 },
      { throttleMax: 100 },
    ]) {
      expect(refused(change)).toBe(words);
    }
  });

  it("throttle trigger threshold 1 to 100 %", () => {
    expect(taken({ throttleTriggerThreshold: 1 }).throttleTriggerThreshold).toBe(1);
    expect(taken({ throttleTriggerThreshold: 100 }).throttleTriggerThreshold).toBe(100);
    for (const threshold of [0, 101]) {
      expect(refused({ throttleTriggerThreshold: threshold })).toBe(
        `throttle trigger threshold must be 1 to 100 %, not ${threshold}`,
      );
    }
  });

  it("post-copy after at least 1 whole round, or never", () => {
    expect(taken({ postcopyAfterRounds: 1 }).postcopyAfterRounds).toBe(1);
    expect(taken({ postcopyAfterRounds: null }).postcopyAfterRounds).toBeNull();
    for (const rounds of [0, 1.5]) {
      expect(refused({ postcopyAfterRounds: rounds })).toBe(
        `post-copy must start after at least 1 round, not ${rounds}`,
      );
    }
  });

  it("bandwidth window above 0, at most a minute", () => {
    expect(taken({ windowMs: 60_000 }).windowMs).toBe(60_000);
    expect(taken({ windowMs: 0.5 }).windowMs).toBe(0.5);
    for (const window of [0, 60_001]) {
      expect(refused({ windowMs: window })).toBe("window must be more than 0 ms");
    }
  });
});

describe("QEMU's iteration", () => {
  const it72 = { hostRate: 1e9, completionRate: 2e9, startMs: 10, stopMs: 5 };

  it("is taken in metadata mode, one stream, with the qemu policy, without post-copy", () => {
    expect(taken({ qemuIteration: it72 }).qemuIteration).toEqual(it72);
    for (const change of [
      { content: true },
      { multifdChannels: 1 },
      { policy: "xen" as const },
      { policy: "hyperv" as const },
    ]) {
      expect(refused({ qemuIteration: it72, ...change })).toBe(
        "QEMU's iteration is modelled in metadata mode, one stream, with the qemu policy",
      );
    }
    expect(refused({ qemuIteration: it72, postcopyAfterRounds: 2 })).toBe(
      "QEMU's iteration is modelled without post-copy",
    );
  });

  it("its own bounds come back as a MigrationConfigError with their words", () => {
    expect(refused({ qemuIteration: { ...it72, hostRate: 0 } })).toBe(
      "QEMU iteration: host rate must be a finite number of bytes/s above 0, not 0",
    );
  });
});
