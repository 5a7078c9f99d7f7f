import { MAX_CONTENT_GUEST_BYTES, MAX_GUEST_BYTES } from "../guest/guest.js";
import type { PageShift } from "../memory/dirty-bitmap.js";
import { formatBytes } from "../util/units.js";
import type { WorkloadSpec } from "../workload/spec.js";
import { checkQemuIteration, type QemuIterationOptions } from "./qemu-iteration/iteration.js";

/** The stop policies, each named after the system it reproduces. */
export const STOP_POLICIES = ["qemu", "hyperv", "xen"] as const;
/** One of {@link STOP_POLICIES}. */
export type StopPolicyName = (typeof STOP_POLICIES)[number];
/** Hyper-V releases whose pass cap differs (docs/references.md, Hyper-V 2.0). */
export const HYPERV_VERSIONS = ["2008r2", "2012r2"] as const;
/** One of {@link HYPERV_VERSIONS}. */
export type HypervVersion = (typeof HYPERV_VERSIONS)[number];

/**
 * When qemu's rule gives up: "projection" once the fitted shrink of pending
 * bytes says it will not converge within max-time, "never" (QEMU's own
 * behaviour) only at max-time.
 */
export const GIVE_UP_RULES = ["projection", "never"] as const;
/** One of {@link GIVE_UP_RULES}. */
export type GiveUpRule = (typeof GIVE_UP_RULES)[number];

/** Everything a virtual-time migration runs with. Defaults in {@link MIGRATION_DEFAULTS}. */
export interface MigrationOptions {
  /** Guest memory in bytes: a whole number of pages; content mode up to 3 GiB, metadata to 16 TiB. */
  readonly guestBytes: number;
  /** log2 of the page size: 12 (4 KiB) or 21 (2 MiB). */
  readonly pageShift?: PageShift;
  /** Hold and copy real page bytes (content mode) or only bitmaps (metadata mode). */
  readonly content: boolean;
  /** vCPUs writing. */
  readonly vcpus?: number;
  /** The guest's write pattern. */
  readonly workload: WorkloadSpec;
  /** Guest writes (8 bytes into a page each) per second of virtual time, all vCPUs. */
  readonly writesPerSecond: number;
  /** Seed of the workload and of the guest's starting image. */
  readonly seed?: number;
  /** Content mode: fraction of the starting image that is all-zero pages. */
  readonly zeroFraction?: number;
  /** Stop policy. */
  readonly policy?: StopPolicyName;
  /** hyperv: 2008r2 (10 passes) or 2012r2 (5 passes). */
  readonly hypervVersion?: HypervVersion;
  /** Link bandwidth cap in bytes per second (QEMU's max-bandwidth); Infinity for unthrottled. */
  readonly maxBandwidth?: number;
  /** One-way link latency, ms. */
  readonly latencyMs?: number;
  /** Largest downtime the qemu and hyperv policies aim for, ms (QEMU's downtime-limit). */
  readonly downtimeLimitMs?: number;
  /** Cap on pre-copy rounds (default: none for qemu, 10 or 5 for hyperv, 30 for xen). */
  readonly maxRounds?: number;
  /** Give up after this much virtual time, ms (--max-time). */
  readonly timeoutMs?: number;
  /** When the qemu policy gives up before max-time (default "projection"). */
  readonly giveUp?: GiveUpRule;
  /** Device state sent during stop-and-copy, bytes. */
  readonly deviceStateBytes?: number;
  /** Fixed cost of switching over (creating the VM, resuming, unsolicited ARP), ms; counted in downtime. */
  readonly switchoverMs?: number;
  /** Send all-zero pages as a header and one byte. */
  readonly zeroPages?: boolean;
  /** XBZRLE delta encoding with this cache (content mode, 4 KiB pages). */
  readonly xbzrle?: boolean;
  /** XBZRLE cache size in bytes: a power of two of pages. */
  readonly xbzrleCacheBytes?: number;
  /** QEMU's auto-converge throttle. */
  readonly autoConverge?: boolean;
  /** Auto-converge: first throttle, step and maximum, percent (QEMU's cpu-throttle-initial, cpu-throttle-increment, max-cpu-throttle). */
  readonly throttleInitial?: number;
  readonly throttleIncrement?: number;
  readonly throttleMax?: number;
  /** Auto-converge: throttle when dirtied bytes pass this percentage of sent bytes (QEMU's throttle-trigger-threshold). */
  readonly throttleTriggerThreshold?: number;
  /** Auto-converge: QEMU's cpu-throttle-tailslow. */
  readonly throttleTailslow?: boolean;
  /** multifd channels (0: one stream on this thread); each channel is a pool worker. */
  readonly multifdChannels?: number;
  /** Switch to post-copy after this many pre-copy rounds (null: pure pre-copy). */
  readonly postcopyAfterRounds?: number | null;
  /** Bandwidth estimation window, ms (QEMU: 100). */
  readonly windowMs?: number;
  /**
   * Iterate as QEMU 7.2's migration thread does (syncs when the pending
   * estimate falls below the threshold, chunks of at most 50 ms, the host's
   * own sending rate, the last pages unthrottled): metadata mode, one
   * stream, the qemu policy. Null: one sync per full pass.
   */
  readonly qemuIteration?: QemuIterationOptions | null;
  /** Called after every round (progress bars). */
  readonly onRound?: (round: number, remainingBytes: number, guestBytes: number) => void;
  /**
   * Content mode: called with the destination's RAM just before it is checked
   * against the source (tests use it to show that one wrong byte fails the run).
   */
  readonly beforeVerify?: (destinationRam: Uint8Array) => void;
}

/** {@link MigrationOptions} with every default filled in. */
export type ResolvedMigrationOptions = Required<
  Omit<MigrationOptions, "onRound" | "beforeVerify" | "maxRounds" | "qemuIteration">
> & {
  readonly maxRounds: number | null;
  readonly qemuIteration: QemuIterationOptions | null;
  readonly onRound?: MigrationOptions["onRound"];
  readonly beforeVerify?: MigrationOptions["beforeVerify"];
};

/** Bytes per second in a megabit per second. */
export const MBPS = 1_000_000 / 8;

/**
 * Defaults: QEMU's where QEMU has one (QEMU migration/options.c: max-bandwidth
 * 128 MiB/s, downtime-limit 300 ms, XBZRLE cache 64 MiB, multifd packets of
 * 512 KiB, a 100 ms bandwidth window), assumed values otherwise (marked).
 */
export const MIGRATION_DEFAULTS = {
  pageShift: 12 as PageShift,
  vcpus: 2,
  seed: 1,
  /** (assumed) a quarter of a fresh guest's pages are zero. */
  zeroFraction: 0.25,
  policy: "qemu" as StopPolicyName,
  hypervVersion: "2008r2" as HypervVersion,
  maxBandwidth: 128 * 1024 ** 2,
  /** (assumed) a LAN. */
  latencyMs: 0.25,
  downtimeLimitMs: 300,
  /** (assumed) an hour of virtual time. */
  timeoutMs: 3_600_000,
  giveUp: "projection" as GiveUpRule,
  /** (assumed) device state of a small VM. */
  deviceStateBytes: 1024 ** 2,
  /** (assumed) VM creation, resume and unsolicited ARP on the destination. */
  switchoverMs: 50,
  zeroPages: true,
  xbzrle: false,
  xbzrleCacheBytes: 64 * 1024 ** 2,
  autoConverge: false,
  throttleInitial: 20,
  throttleIncrement: 10,
  throttleMax: 99,
  throttleTriggerThreshold: 50,
  throttleTailslow: false,
  multifdChannels: 0,
  windowMs: 100,
} as const;

/**
 * Pre-copy round caps of the policies that have one: Hyper-V's passes
 * (10 in 2008 R2, 5 from 2012 R2), and Xen's DEF_MAX_ITERS (29 rounds, then
 * the last one paused: 30 in all; tools/libxc/xc_domain_save.c).
 */
export const POLICY_ROUND_CAPS = { hyperv2008r2: 10, hyperv2012r2: 5, xen: 29 } as const;

/** multifd channels when multifd is asked for without a count (QEMU's multifd-channels, 2). */
export const MULTIFD_DEFAULT_CHANNELS = 2;

/** Largest device state sent in content mode (it is held in both memories). */
export const MAX_DEVICE_STATE_BYTES = 256 * 1024 ** 2;

/** Thrown for migration options that cannot run: says which and why. */
export class MigrationConfigError extends RangeError {
  override name = "MigrationConfigError";
}

function check(ok: boolean, message: string): void {
  if (!ok) throw new MigrationConfigError(message);
}

/**
 * Fills in defaults and checks every option before anything is allocated.
 *
 * @throws MigrationConfigError naming the option and what is wrong with it.
 */
export function resolveMigrationOptions(options: MigrationOptions): ResolvedMigrationOptions {
  const o = {
    ...MIGRATION_DEFAULTS,
    postcopyAfterRounds: null,
    qemuIteration: null,
    ...stripUndefined(options),
    guestBytes: options.guestBytes,
    writesPerSecond: options.writesPerSecond,
    content: options.content,
    workload: options.workload,
  };
  const pageBytes = 2 ** o.pageShift;
  check(o.pageShift === 12 || o.pageShift === 21, "page size must be 4KiB or 2MiB");
  check(
    Number.isSafeInteger(o.guestBytes) && o.guestBytes >= 1024 ** 2,
    `guest size must be at least 1 MiB, not ${o.guestBytes} bytes`,
  );
  check(
    o.guestBytes % pageBytes === 0,
    `guest size ${o.guestBytes} bytes is not a whole number of ${formatBytes(pageBytes)} pages`,
  );
  check(o.guestBytes <= MAX_GUEST_BYTES, `guest size ${formatBytes(o.guestBytes)} is over 16 TiB`);
  check(
    !o.content || o.guestBytes <= MAX_CONTENT_GUEST_BYTES,
    `a ${formatBytes(o.guestBytes)} guest cannot be held in content mode (at most ${formatBytes(MAX_CONTENT_GUEST_BYTES)}): use metadata mode`,
  );
  check(
    (STOP_POLICIES as readonly string[]).includes(o.policy),
    `unknown stop policy '${String(o.policy)}' (one of ${STOP_POLICIES.join(", ")})`,
  );
  check(
    (HYPERV_VERSIONS as readonly string[]).includes(o.hypervVersion),
    `unknown Hyper-V version '${String(o.hypervVersion)}' (one of ${HYPERV_VERSIONS.join(", ")})`,
  );
  check(
    o.maxBandwidth > 0 && !Number.isNaN(o.maxBandwidth),
    `bandwidth must be more than 0 bytes/s, not ${o.maxBandwidth}`,
  );
  check(
    o.writesPerSecond >= 0 && Number.isFinite(o.writesPerSecond) && o.writesPerSecond <= 1e11,
    `dirty rate must be from 0 to 1e11 writes/s, not ${o.writesPerSecond}`,
  );
  check(
    o.latencyMs >= 0 && o.latencyMs <= 10_000,
    `latency must be 0 to 10000 ms, not ${o.latencyMs}`,
  );
  check(
    o.downtimeLimitMs > 0 && o.downtimeLimitMs <= 3_600_000,
    `downtime limit must be more than 0 ms, not ${o.downtimeLimitMs}`,
  );
  check(
    (GIVE_UP_RULES as readonly string[]).includes(o.giveUp),
    `unknown give-up rule '${String(o.giveUp)}' (one of ${GIVE_UP_RULES.join(", ")})`,
  );
  check(
    o.timeoutMs > 0 && Number.isFinite(o.timeoutMs),
    `timeout must be more than 0 ms, not ${o.timeoutMs}`,
  );
  check(
    o.maxRounds === undefined ||
      (Number.isSafeInteger(o.maxRounds) && o.maxRounds >= 1 && o.maxRounds <= 100_000),
    `max rounds must be from 1 to 100000, not ${o.maxRounds}`,
  );
  check(
    Number.isSafeInteger(o.deviceStateBytes) &&
      o.deviceStateBytes >= 0 &&
      o.deviceStateBytes <= MAX_DEVICE_STATE_BYTES,
    `device state must be 0 to ${formatBytes(MAX_DEVICE_STATE_BYTES)}, not ${o.deviceStateBytes} bytes`,
  );
  check(
    o.switchoverMs >= 0 && o.switchoverMs <= 3_600_000,
    `switchover cost must be 0 ms or more, not ${o.switchoverMs}`,
  );
  check(o.zeroFraction >= 0 && o.zeroFraction <= 1, `zero fraction must be within [0, 1]`);
  const cachePages = o.xbzrleCacheBytes / pageBytes;
  check(
    Number.isSafeInteger(cachePages) &&
      cachePages >= 1 &&
      (cachePages & (cachePages - 1)) === 0 &&
      o.xbzrleCacheBytes <= 1024 ** 3,
    `XBZRLE cache must be a power-of-two number of pages up to 1 GiB, not ${o.xbzrleCacheBytes} bytes`,
  );
  check(!o.xbzrle || o.content, "XBZRLE needs page contents: use content mode");
  check(!o.xbzrle || o.pageShift === 12, "XBZRLE works on 4 KiB pages only (as QEMU's)");
  check(
    !o.xbzrle || o.multifdChannels === 0,
    "XBZRLE and multifd cannot be used together (as in QEMU)",
  );
  check(
    Number.isSafeInteger(o.multifdChannels) && o.multifdChannels >= 0 && o.multifdChannels <= 64,
    `multifd channels must be 0 to 64, not ${o.multifdChannels}`,
  );
  check(
    o.throttleInitial >= 1 &&
      o.throttleInitial <= 99 &&
      o.throttleIncrement >= 1 &&
      o.throttleIncrement <= 99 &&
      o.throttleMax >= o.throttleInitial &&
      o.throttleMax <= 99,
    "auto-converge throttle must satisfy 1 <= initial <= max <= 99 and 1 <= increment <= 99",
  );
  check(
    o.throttleTriggerThreshold >= 1 && o.throttleTriggerThreshold <= 100,
    `throttle trigger threshold must be 1 to 100 %, not ${o.throttleTriggerThreshold}`,
  );
  check(
    o.postcopyAfterRounds === null ||
      (Number.isSafeInteger(o.postcopyAfterRounds) && o.postcopyAfterRounds >= 1),
    `post-copy must start after at least 1 round, not ${o.postcopyAfterRounds}`,
  );
  check(o.windowMs > 0 && o.windowMs <= 60_000, `window must be more than 0 ms`);
  if (o.qemuIteration) {
    try {
      checkQemuIteration(o.qemuIteration);
    } catch (error) {
      throw new MigrationConfigError((error as Error).message);
    }
    check(
      !o.content && o.multifdChannels === 0 && o.policy === "qemu",
      "QEMU's iteration is modelled in metadata mode, one stream, with the qemu policy",
    );
    check(o.postcopyAfterRounds === null, "QEMU's iteration is modelled without post-copy");
  }
  const maxRounds =
    o.maxRounds ??
    (o.policy === "xen"
      ? POLICY_ROUND_CAPS.xen
      : o.policy === "hyperv"
        ? o.hypervVersion === "2012r2"
          ? POLICY_ROUND_CAPS.hyperv2012r2
          : POLICY_ROUND_CAPS.hyperv2008r2
        : null);
  return { ...o, maxRounds } as ResolvedMigrationOptions;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
