import type { Guest } from "../guest/guest.js";
import type { DirtyBitmap } from "../memory/dirty-bitmap.js";
import type { Region } from "../memory/region.js";
import { RECORD_HEADER_BYTES } from "../wasm/page.js";
import type { Destination } from "./destination.js";
import { LIST_PAGES } from "./in-process-link.js";
import type { MigrationBitmap } from "./migration-bitmap.js";
import type { ResolvedMigrationOptions } from "./options.js";
import type { Pass, PostcopyOutcome } from "./precopy/types.js";
import type { VirtualRunState } from "./virtual-run-state.js";

/** What post-copy on virtual time works with: the source guest, its logs, the link. */
export interface VirtualPostcopyContext {
  readonly o: ResolvedMigrationOptions;
  readonly guest: Guest;
  /** The source's memory (the guest, its bitmaps and the page list live there). */
  readonly memory: WebAssembly.Memory;
  /** The pages synced and not yet sent; post-copy takes them as missing. */
  readonly pending: MigrationBitmap;
  readonly cursor: Region;
  /** The page list (u32 page numbers, LIST_PAGES of them). */
  readonly list: Region;
  /** Scratch bitmap: the pages the destination does not have yet. */
  readonly missing: DirtyBitmap;
  readonly s: VirtualRunState;
  /** Content mode's destination, where the guest's own writes land. */
  readonly destination: Destination | undefined;
  /** Syncs the guest's dirty log into `pending`; returns the pages pending. */
  sync(): number;
  /** Milliseconds the link takes for `bytes`. */
  linkMs(bytes: number): number;
  /** Sends the first `count` page numbers of the list, paused, without XBZRLE. */
  sendListed(count: number): Promise<Pass>;
}

/**
 * Post-copy on virtual time: the guest runs on the destination; missing
 * pages are pushed in the background at link speed, and a page the guest
 * touches before it arrived is a remote fault, fetched at once (a round trip
 * plus the page).
 */
export async function runVirtualPostcopy(
  c: VirtualPostcopyContext,
  untilMs: number,
): Promise<PostcopyOutcome> {
  const o = c.o;
  const s = c.s;
  const pages = c.guest.pages;
  const pageBytes = 2 ** o.pageShift;
  c.pending.moveInto(c.missing);
  const missing = c.missing.region.bytes(c.memory);
  let missingCount = c.guest.dirty.count(c.missing);
  const isMissing = (p: number) => (((missing[p >>> 3] ?? 0) >>> (p & 7)) & 1) === 1;
  const clear = (p: number) => {
    missing[p >>> 3] = (missing[p >>> 3] ?? 0) & ~(1 << (p & 7));
  };
  const pageRecord = pageBytes + RECORD_HEADER_BYTES;
  const listed = new Uint32Array(c.memory.buffer, c.list.offset, LIST_PAGES);
  const sent = { pages: 0, bytes: 0 };
  let faults = 0;
  let faultWaitMs = 0;
  // Time every vCPU was blocked at once (QEMU's postcopy-blocktime), and each one's.
  let blocktime = 0;
  const vcpuBlocktime: number[] = Array.from({ length: o.vcpus }, () => 0);
  // Share of the last window the vCPUs ran rather than waited on a page.
  let running = 1;
  let scan = 0;
  let rounds = 0;
  const sendPages = async (numbers: number[]): Promise<number> => {
    let bytes = 0;
    for (let i = 0; i < numbers.length; i += LIST_PAGES) {
      const part = numbers.slice(i, i + LIST_PAGES);
      if (o.content) {
        listed.set(part);
        bytes += (await c.sendListed(part.length)).bytes;
      } else {
        bytes += part.length * pageRecord;
        s.counts.normal += part.length;
      }
    }
    return bytes;
  };
  while (missingCount > 0) {
    rounds++;
    const windowStart = s.clockMs;
    // The guest runs a window on the destination, for the share of it its
    // vCPUs were not waiting on pages (at least a write, to go on).
    const writes = Math.max(1, Math.floor(((o.writesPerSecond * o.windowMs) / 1000) * running));
    if (writes > 0) s.guestWrote = true;
    await c.guest.write(writes);
    c.sync();
    const faulted: number[] = [];
    const mirrored: number[] = [];
    c.pending.resetCursor(c.cursor);
    for (let n = c.pending.next(c.cursor, c.list); n > 0; n = c.pending.next(c.cursor, c.list)) {
      for (let i = 0; i < n; i++) {
        const p = listed[i] ?? 0;
        if (isMissing(p)) {
          faulted.push(p);
          clear(p);
        } else mirrored.push(p);
      }
    }
    faults += faulted.length;
    missingCount -= faulted.length;
    const pageMs = c.linkMs(pageRecord);
    // A vCPU that touched a missing page waits a round trip and the page,
    // and makes no progress meanwhile: the workload splits writes evenly
    // over the vCPUs, so each took its share of the faults, and none can
    // wait longer than the window. The next window writes only for the
    // time the vCPUs ran in this one.
    const perVcpuMs = Math.min(o.windowMs, (faulted.length / o.vcpus) * (2 * o.latencyMs + pageMs));
    for (let v = 0; v < o.vcpus; v++) vcpuBlocktime[v] = (vcpuBlocktime[v] ?? 0) + perVcpuMs;
    blocktime += perVcpuMs;
    // Each request's own wait, summed (requests overlap: this may pass the phase).
    faultWaitMs += faulted.length * (2 * o.latencyMs + pageMs);
    running = 1 - perVcpuMs / o.windowMs;
    let bytes = await sendPages(faulted);
    const destination = c.destination;
    const ram = c.guest.ram?.bytes(c.memory);
    if (destination && ram) {
      // Pages already on the destination were written there by the guest itself.
      if (mirrored.length > 0) s.destinationWritten = true;
      for (const p of mirrored) {
        destination.writePage(p, ram.subarray(p * pageBytes, (p + 1) * pageBytes));
      }
    }
    // The background push fills the rest of the window.
    const budget = Number.isFinite(o.maxBandwidth)
      ? Math.max(1, Math.floor((o.maxBandwidth * o.windowMs) / 1000 / pageRecord) - faulted.length)
      : missingCount;
    const push: number[] = [];
    while (push.length < budget && missingCount > 0 && scan < pages) {
      const byte = missing[scan >>> 3] ?? 0;
      if (byte === 0 && (scan & 7) === 0) {
        scan += 8;
        continue;
      }
      if (isMissing(scan)) {
        push.push(scan);
        clear(scan);
        missingCount--;
      }
      scan++;
    }
    bytes += await sendPages(push);
    sent.pages += faulted.length + push.length;
    sent.bytes += bytes;
    s.transferred += bytes;
    const linkMs = c.linkMs(bytes);
    s.clockMs = windowStart + Math.max(o.windowMs, linkMs);
    // Post-copy ends when its last page lands, not at the end of that
    // window: a limit inside the window's rest is not missed.
    const lateMs = missingCount > 0 ? s.clockMs - untilMs : windowStart + linkMs - untilMs;
    if (lateMs > 0) {
      // At the limit, the pages still on the source, and (when this window
      // sent the last) this window's pages the link had not yet delivered,
      // as it delivers them evenly over its time.
      const windowPages = faulted.length + push.length;
      const left =
        missingCount > 0
          ? missingCount
          : linkMs > 0
            ? Math.min(windowPages, Math.ceil((windowPages * lateMs) / linkMs))
            : windowPages;
      return {
        ...sent,
        requests: faults,
        faultWaitMs,
        blocktime,
        vcpuBlocktime,
        missing: left,
        windows: rounds,
        failure: `timeout during post-copy with ${left} pages still on the source (the guest cannot run without them)`,
      };
    }
  }
  return {
    ...sent,
    requests: faults,
    faultWaitMs,
    blocktime,
    vcpuBlocktime,
    missing: 0,
    windows: rounds,
    failure: null,
  };
}
