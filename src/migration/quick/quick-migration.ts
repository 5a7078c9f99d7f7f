import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Guest } from "../../guest/guest.js";
import { MemoryLayout } from "../../memory/layout.js";
import { Region } from "../../memory/region.js";
import { KernelPool } from "../../pool/pool.js";
import { removeTemporary, trackTemporary } from "../../util/temporary.js";
import { formatBytes } from "../../util/units.js";
import { DIGEST_BYTES, StreamKernel } from "../../wasm/stream.js";
import type { WorkloadSpec } from "../../workload/spec.js";
import { LiveConfigError } from "../live/errors.js";
import { fillDeviceState, prefillGuest } from "../live/guest-image.js";
import type { MigrationResult, MigrationRound, MigrationSummary } from "../stats.js";
import {
  DEFAULT_CHUNK_BYTES,
  MAX_SAVED_DEVICE_BYTES,
  readSavedState,
  type SavedStateContext,
  writeSavedState,
} from "./saved-state.js";

/** Largest guest a quick migration holds (source and destination copies both in memory). */
export const MAX_QUICK_GUEST_BYTES = 2 * 1024 ** 3;
/**
 * Default storage failover (unmount, move the LUN, mount), ms. Assumed: no
 * published figure for the step alone; Microsoft's Hyper-V 1.0 quick migration documentation gives about
 * 30 s for the whole quick migration of a VM of a couple of GB.
 */
export const DEFAULT_FAILOVER_MS = 2000;
const PAGE_SHIFT = 12;
const PAGE_BYTES = 2 ** PAGE_SHIFT;
/** Pages hashed per call when verifying. */
const VERIFY_BATCH = 65_536;

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

  // Pause: the vCPUs run no more from here; everything after is downtime.
  const paused = performance.now();
  let fileBytes = 0;
  try {
    fileBytes = await writeSavedState(file, sourceContext, {
      ram,
      pageShift: PAGE_SHIFT,
      device: sourceDevice,
      chunkBytes: options.chunkBytes ?? DEFAULT_CHUNK_BYTES,
      sync: options.sync ?? true,
    });
    const saved = performance.now();
    if (failoverMs > 0) await sleep(failoverMs);
    const mounted = performance.now();
    const restored = await readSavedState(
      file,
      destinationContext,
      { maxGuestBytes: MAX_QUICK_GUEST_BYTES },
      (bytes, device) => ({
        ram: destination.allocate("quick-destination-ram", bytes, 4096),
        device: region(destination, "quick-destination-device", device),
      }),
    );
    if (resumeMs > 0) await sleep(resumeMs);
    const resumed = performance.now();

    const mismatches = comparePages(
      sourceContext,
      ram,
      destinationContext,
      restored.ram,
      source,
      destination,
    );
    const deviceGood = Buffer.from(restored.device.bytes(destination.memory)).equals(
      Buffer.from(sourceDevice.bytes(source.memory)),
    );
    const verified = mismatches.count === 0 && deviceGood;
    const saveMs = saved - paused;
    const restoreMs = resumed - mounted;
    const totalMs = resumed - paused;
    const rounds: MigrationRound[] = [
      round(
        1,
        "stop-and-copy",
        0,
        saveMs,
        guest.pages,
        fileBytes,
        fileBytes,
        `VM paused; RAM and ${formatBytes(deviceBytes)} of device state saved to ${formatBytes(fileBytes)} file`,
      ),
      round(
        2,
        "resume",
        saved - paused,
        resumed - saved,
        0,
        0,
        fileBytes,
        `storage failover ${Math.round(failoverMs)} ms (unmount, move, mount), file read back and checked in ${Math.round(restoreMs)} ms, VM resumed`,
      ),
    ];
    const summary: MigrationSummary = {
      status: verified ? "completed" : "failed",
      reason: verified
        ? null
        : mismatches.count > 0
          ? `verification failed: ${mismatches.count} restored pages differ (first: page ${mismatches.first})`
          : "verification failed: the restored device state differs",
      mode: "quick",
      policy: "quick",
      transferred: fileBytes,
      remaining: 0,
      total: guestBytes,
      duplicate: 0,
      normal: guest.pages,
      "normal-bytes": guestBytes,
      "dirty-pages-rate": 0,
      mbps: totalMs > 0 ? (fileBytes * 8) / (totalMs / 1000) / 1e6 : 0,
      "pages-per-second": totalMs > 0 ? guest.pages / (totalMs / 1000) : 0,
      "dirty-sync-count": 0,
      "precopy-bytes": 0,
      "downtime-bytes": fileBytes,
      "postcopy-bytes": 0,
      "expected-downtime": totalMs,
      downtime: totalMs,
      "setup-time": 0,
      "total-time": totalMs,
      "cpu-throttle-percentage": 0,
      "xbzrle-cache": null,
      "postcopy-remote-faults": 0,
      "postcopy-fault-wait-ms": 0,
      rounds: rounds.length,
      verified,
    };
    return { rounds, summary, file, fileBytes, saveMs, failoverMs, restoreMs };
  } finally {
    if (!keep) removeTemporary(file);
  }
}

/** A region of `bytes` bytes; a zero-byte blob gets an empty region of its own name. */
function region(layout: MemoryLayout, name: string, bytes: number): Region {
  return bytes > 0 ? layout.allocate(name, bytes) : new Region({ name, offset: 0, byteLength: 0 });
}

function round(
  n: number,
  phase: "stop-and-copy" | "resume",
  start: number,
  duration: number,
  pages: number,
  bytes: number,
  transferred: number,
  reason: string,
): MigrationRound {
  return {
    round: n,
    phase,
    "start-ms": start,
    "duration-ms": duration,
    "pages-sent": pages,
    "pages-dirtied": 0,
    "bytes-sent": bytes,
    remaining: 0,
    transferred,
    "dirty-pages-rate": 0,
    mbps: duration > 0 ? (bytes * 8) / (duration / 1000) / 1e6 : 0,
    "bandwidth-estimate": duration > 0 ? (bytes / duration) * 1000 : 0,
    "expected-downtime": 0,
    "cpu-throttle-percentage": 0,
    decision: "stop-and-copy",
    reason,
  };
}

/** Compares every page's digest on both hosts. */
function comparePages(
  sourceContext: SavedStateContext,
  sourceRam: Region,
  destinationContext: SavedStateContext,
  destinationRam: Region,
  source: MemoryLayout,
  destination: MemoryLayout,
): { count: number; first: number | null } {
  const pages = sourceRam.byteLength / PAGE_BYTES;
  const batch = Math.min(VERIFY_BATCH, pages);
  const ours = source.allocate("quick-source-digests", batch * DIGEST_BYTES);
  const theirs = destination.allocate("quick-destination-digests", batch * DIGEST_BYTES);
  let count = 0;
  let first: number | null = null;
  for (let at = 0; at < pages; at += batch) {
    const n = Math.min(batch, pages - at);
    sourceContext.kernel.hashPages({ region: sourceRam, pageShift: PAGE_SHIFT }, at, n, ours);
    destinationContext.kernel.hashPages(
      { region: destinationRam, pageShift: PAGE_SHIFT },
      at,
      n,
      theirs,
    );
    const a = new BigUint64Array(source.memory.buffer, ours.offset, n);
    const b = new BigUint64Array(destination.memory.buffer, theirs.offset, n);
    for (let i = 0; i < n; i++) {
      if (a[i] !== b[i]) {
        count++;
        first ??= at + i;
      }
    }
  }
  return { count, first };
}
