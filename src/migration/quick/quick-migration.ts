import { tmpdir } from "node:os";
import { join } from "node:path";
import { Guest } from "../../guest/guest.js";
import { MemoryLayout } from "../../memory/layout.js";
import type { Region } from "../../memory/region.js";
import { KernelPool } from "../../pool/pool.js";
import { removeTemporary, trackTemporary } from "../../util/temporary.js";
import { formatBytes } from "../../util/units.js";
import { StreamKernel } from "../../wasm/stream.js";
import type { WorkloadSpec } from "../../workload/spec.js";
import { LiveConfigError } from "../live/errors.js";
import { fillDeviceState, prefillGuest } from "../live/guest-image.js";
import { runPrecopy } from "../precopy/driver.js";
import { RoundRecorder } from "../precopy/recorder.js";
import type { PrecopyClock, PrecopyGuest } from "../precopy/types.js";
import type { MigrationResult } from "../stats.js";
import {
  DEFAULT_CHUNK_BYTES,
  MAX_SAVED_DEVICE_BYTES,
  type SavedStateContext,
} from "./saved-state.js";
import { MAX_QUICK_GUEST_BYTES, region, SavedStateTransport } from "./saved-state-transport.js";

export { MAX_QUICK_GUEST_BYTES };

/**
 * Default storage failover (unmount, move the LUN, mount), ms. Assumed: no
 * published figure for the step alone; Microsoft's Hyper-V 1.0 quick migration documentation gives about
 * 30 s for the whole quick migration of a VM of a couple of GB.
 */
export const DEFAULT_FAILOVER_MS = 2000;
const PAGE_BYTES = 4096;

/** How a quick migration runs. */
export interface QuickMigrationOptions {
  /** Guest RAM: whole 4 KiB pages, 1 MiB to 2 GiB. */
  readonly guestBytes: number;
  readonly vcpus: number;
  readonly workload: WorkloadSpec;
  /** Guest writes before the pause (default: one per page). */
  readonly writes?: number;
  /** Pool workers for those writes (0: this thread). */
  readonly threads?: number;
  readonly seed: number;
  /** Storage failover time, ms (default 2,000, assumed). */
  readonly failoverMs?: number;
  /** Fixed cost of resuming the VM on the destination, ms (default 0). */
  readonly resumeMs?: number;
  /** The saved-state file (default: a temporary file, removed afterwards). */
  readonly file?: string;
  /** Keep the file afterwards (default: keep it only when `file` was given). */
  readonly keepFile?: boolean;
  readonly chunkBytes?: number;
  /** Device-state blob, bytes (default 64 KiB). */
  readonly deviceStateBytes?: number;
  /** fsync the file before failover (default true). */
  readonly sync?: boolean;
}

/** A quick migration's result, with the timings of its steps. */
export interface QuickMigrationResult extends MigrationResult {
  readonly file: string;
  readonly fileBytes: number;
  readonly saveMs: number;
  readonly failoverMs: number;
  readonly restoreMs: number;
}

/**
 * Quick migration as Hyper-V 1.0 did it: pause the VM, save its RAM and
 * device state to a real saved-state file, fail the storage over (unmount,
 * move, mount: a configurable wait), read the file back into the
 * destination's memory checking every chunk, resume. The VM is down the
 * whole time, so its downtime is its total time. Every destination page is
 * then checked against the source.
 */
export async function runQuickMigration(
  options: QuickMigrationOptions,
): Promise<QuickMigrationResult> {
  const guestBytes = options.guestBytes;
  if (
    !Number.isSafeInteger(guestBytes) ||
    guestBytes < 1024 ** 2 ||
    guestBytes > MAX_QUICK_GUEST_BYTES
  ) {
    throw new LiveConfigError(
      `quick-migration guest must be from 1 MiB to 2 GiB, not ${guestBytes} bytes`,
    );
  }
  if (guestBytes % PAGE_BYTES !== 0) {
    throw new LiveConfigError(
      `guest size ${guestBytes} bytes is not a whole number of 4 KiB pages`,
    );
  }
  const failoverMs = options.failoverMs ?? DEFAULT_FAILOVER_MS;
  const resumeMs = options.resumeMs ?? 0;
  if (!(failoverMs >= 0) || !(resumeMs >= 0)) {
    throw new LiveConfigError("failover and resume times must be 0 or more");
  }
  const deviceBytes = options.deviceStateBytes ?? 64 * 1024;
  if (
    !Number.isSafeInteger(deviceBytes) ||
    deviceBytes < 0 ||
    deviceBytes > MAX_SAVED_DEVICE_BYTES
  ) {
    throw new LiveConfigError(
      `device state must be from 0 to ${formatBytes(MAX_SAVED_DEVICE_BYTES)}`,
    );
  }
  const file =
    options.file ?? join(tmpdir(), `hvlab-saved-state-${process.pid}-${Date.now()}.hvls`);
  const keep = options.keepFile ?? options.file !== undefined;
  // Ctrl-C must not leave a guest-sized temporary file behind (a named one is the user's).
  if (!keep) trackTemporary(file);

  // The source host.
  const source = new MemoryLayout();
  const guest = new Guest(source, {
    bytes: guestBytes,
    content: true,
    vcpus: options.vcpus,
    workload: options.workload,
    seed: options.seed,
    name: "quick-source",
  });
  const ram = guest.ram as Region;
  prefillGuest(ram.bytes(source.memory), PAGE_BYTES, options.seed);
  const pool = options.threads
    ? new KernelPool(source, { threads: options.threads, domains: ["guest"] })
    : undefined;
  try {
    await guest.write(options.writes ?? guest.pages, pool);
  } finally {
    await pool?.close();
  }
  const sourceDevice = region(source, "quick-source-device", deviceBytes);
  fillDeviceState(sourceDevice.bytes(source.memory), options.seed);
  const sourceContext: SavedStateContext = {
    memory: source.memory,
    kernel: StreamKernel.on(source.memory, source.allocate("quick-source-scratch", 64)),
    scratch: source.allocate("quick-source-header", 64),
  };
  // The destination host: its own memory.
  const destination = new MemoryLayout();
  const destinationContext: SavedStateContext = {
    memory: destination.memory,
    kernel: StreamKernel.on(
      destination.memory,
      destination.allocate("quick-destination-scratch", 64),
    ),
    scratch: destination.allocate("quick-destination-header", 64),
  };

  const transport = new SavedStateTransport({
    file,
    sourceLayout: source,
    source: sourceContext,
    ram,
    device: sourceDevice,
    destination,
    destinationContext,
    chunkBytes: options.chunkBytes ?? DEFAULT_CHUNK_BYTES,
    sync: options.sync ?? true,
    failoverMs,
    resumeMs,
    deviceBytes,
  });
  // The clock starts at the pause: quick migration has no setup and no
  // pre-copy, so everything it measures is downtime.
  let pausedAt: number | null = null;
  const clock: PrecopyClock = {
    kind: "wall",
    now: () => (pausedAt === null ? 0 : performance.now() - pausedAt),
  };
  const paused: PrecopyGuest = {
    pageBytes: PAGE_BYTES,
    ramBytes: guestBytes,
    logAll: () => guest.pages,
    sync: () => guest.pages,
    pause: async () => {
      // The vCPUs run no more from here.
      pausedAt = performance.now();
      return guest.pages;
    },
    resume: () => {},
    writeRate: () => 0,
    syncs: 0,
  };
  try {
    const result = await runPrecopy({
      guest: paused,
      clock,
      transport,
      policy: {
        name: "quick",
        label: "quick",
        downtimeLimitMs: Number.POSITIVE_INFINITY,
        maxRounds: 0,
        timeoutMs: Number.POSITIVE_INFINITY,
        giveUp: "never",
        postcopyAfterRounds: null,
      },
      recorder: new RoundRecorder(clock, PAGE_BYTES, guestBytes),
    });
    const steps = transport.steps;
    return {
      ...result,
      file,
      fileBytes: steps.fileBytes,
      saveMs: steps.saveMs,
      failoverMs: steps.failoverMs,
      restoreMs: steps.restoreMs,
    };
  } finally {
    if (!keep) removeTemporary(file);
  }
}
