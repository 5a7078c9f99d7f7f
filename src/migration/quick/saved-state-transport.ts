import { setTimeout as sleep } from "node:timers/promises";
import type { MemoryLayout } from "../../memory/layout.js";
import { Region } from "../../memory/region.js";
import { formatBytes } from "../../util/units.js";
import { DIGEST_BYTES } from "../../wasm/stream.js";
import type { Handover, Pass, PrecopyTransport, TransportCounters } from "../precopy/types.js";
import { readSavedState, type SavedStateContext, writeSavedState } from "./saved-state.js";
/** Largest guest a quick migration holds (source and destination copies both in memory). */
export const MAX_QUICK_GUEST_BYTES = 2 * 1024 ** 3;
const PAGE_SHIFT = 12;
const PAGE_BYTES = 2 ** PAGE_SHIFT;
/** Pages hashed per call when verifying. */
const VERIFY_BATCH = 65_536;

/** The two hosts and the file between them. */
export interface SavedStateHosts {
  readonly file: string;
  readonly sourceLayout: MemoryLayout;
  readonly source: SavedStateContext;
  /** The source guest's RAM and device-state blob. */
  readonly ram: Region;
  readonly device: Region;
  /** The destination host: its own memory, where the file is restored. */
  readonly destination: MemoryLayout;
  readonly destinationContext: SavedStateContext;
  readonly chunkBytes: number;
  /** fsync the file before failover. */
  readonly sync: boolean;
  /** Storage failover (unmount, move, mount), ms. */
  readonly failoverMs: number;
  /** Fixed cost of resuming the VM on the destination, ms. */
  readonly resumeMs: number;
  readonly deviceBytes: number;
}

/** How long each step of a quick migration took, and the file's size. */
export interface QuickSteps {
  fileBytes: number;
  saveMs: number;
  /** The storage failover as configured (it is a wait). */
  failoverMs: number;
  restoreMs: number;
}

/**
 * Quick migration's transport for the pre-copy driver: the stop-and-copy
 * saves RAM and device state to a real saved-state file on shared storage;
 * the switchover waits out the storage failover, reads the file back into
 * the destination's memory checking every chunk, and resumes; verification
 * compares every page's digest on the two hosts.
 */
export class SavedStateTransport implements PrecopyTransport {
  readonly mode = "quick" as const;
  readonly steps: QuickSteps = { fileBytes: 0, saveMs: 0, failoverMs: 0, restoreMs: 0 };
  private restored: { ram: Region; device: Region } | undefined;
  private pages = 0;
  /** The digest regions verification hashes into, laid out by the first verify and reused. */
  private digests: Digests | undefined;

  constructor(private readonly hosts: SavedStateHosts) {}

  get transferred(): number {
    return this.steps.fileBytes;
  }

  async open(): Promise<void> {}

  async sendPending(): Promise<Pass> {
    const h = this.hosts;
    const started = performance.now();
    const fileBytes = await writeSavedState(h.file, h.source, {
      ram: h.ram,
      pageShift: PAGE_SHIFT,
      device: h.device,
      chunkBytes: h.chunkBytes,
      sync: h.sync,
    });
    this.steps.saveMs = performance.now() - started;
    this.steps.fileBytes = fileBytes;
    this.pages = h.ram.byteLength / PAGE_BYTES;
    return { pages: this.pages, bytes: fileBytes, cut: false };
  }

  bandwidth(roundBytes: number, roundMs: number): number {
    return roundMs > 0 ? (roundBytes / roundMs) * 1000 : 0;
  }

  rate(): number {
    const { fileBytes, saveMs } = this.steps;
    return saveMs > 0 ? (fileBytes / saveMs) * 1000 : 0;
  }

  async switchover(): Promise<Handover> {
    const h = this.hosts;
    if (h.failoverMs > 0) await sleep(h.failoverMs);
    const mounted = performance.now();
    this.steps.failoverMs = h.failoverMs;
    const destination = h.destination;
    this.restored = await readSavedState(
      h.file,
      h.destinationContext,
      { maxGuestBytes: MAX_QUICK_GUEST_BYTES },
      (bytes, device) => ({
        ram: destination.allocate("quick-destination-ram", bytes, 4096),
        device: region(destination, "quick-destination-device", device),
      }),
    );
    if (h.resumeMs > 0) await sleep(h.resumeMs);
    this.steps.restoreMs = performance.now() - mounted;
    const { fileBytes } = this.steps;
    return {
      bytes: 0,
      fixed: `storage failover ${Math.round(h.failoverMs)} ms and the restore from the file`,
      ownRound: {
        copy: `VM paused; RAM and ${formatBytes(h.deviceBytes)} of device state saved to ${formatBytes(fileBytes)} file`,
        resume: `storage failover ${Math.round(h.failoverMs)} ms (unmount, move, mount), file read back and checked in ${Math.round(this.steps.restoreMs)} ms, VM resumed`,
      },
    };
  }

  async cancel(): Promise<void> {}

  async verify(): Promise<string | null> {
    const h = this.hosts;
    const restored = this.restored;
    if (!restored) return "verification failed: nothing was restored";
    this.digests ??= digestRegions(h);
    const mismatches = comparePages(h, restored.ram, this.digests);
    if (mismatches.count > 0) {
      return `verification failed: ${mismatches.count} restored pages differ (first: page ${mismatches.first})`;
    }
    const deviceGood = Buffer.from(restored.device.bytes(h.destination.memory)).equals(
      Buffer.from(h.device.bytes(h.source.memory)),
    );
    return deviceGood ? null : "verification failed: the restored device state differs";
  }

  counters(): TransportCounters {
    return { duplicate: 0, normal: this.pages, xbzrle: null };
  }

  explain(error: Error, phase: string): string {
    return `${phase} (saved-state file ${this.hosts.file}): ${error.message}`;
  }
}

/** A region of `bytes` bytes; a zero-byte blob gets an empty region of its own name. */
export function region(layout: MemoryLayout, name: string, bytes: number): Region {
  return bytes > 0 ? layout.allocate(name, bytes) : new Region({ name, offset: 0, byteLength: 0 });
}

/** Where each host's page digests go: a batch of them on each side. */
interface Digests {
  readonly ours: Region;
  readonly theirs: Region;
}

/** Lays out the digest regions, once per transport: a layout refuses a name twice. */
function digestRegions(h: SavedStateHosts): Digests {
  const batch = Math.min(VERIFY_BATCH, h.ram.byteLength / PAGE_BYTES);
  return {
    ours: h.sourceLayout.allocate("quick-source-digests", batch * DIGEST_BYTES),
    theirs: h.destination.allocate("quick-destination-digests", batch * DIGEST_BYTES),
  };
}

/** Compares every page's digest on both hosts. */
function comparePages(
  h: SavedStateHosts,
  destinationRam: Region,
  { ours, theirs }: Digests,
): { count: number; first: number | null } {
  const { sourceLayout: source, destination, ram: sourceRam } = h;
  const pages = sourceRam.byteLength / PAGE_BYTES;
  const batch = Math.min(VERIFY_BATCH, pages);
  let count = 0;
  let first: number | null = null;
  for (let at = 0; at < pages; at += batch) {
    const n = Math.min(batch, pages - at);
    h.source.kernel.hashPages({ region: sourceRam, pageShift: PAGE_SHIFT }, at, n, ours);
    h.destinationContext.kernel.hashPages(
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
