import { Region } from "../../memory/region.js";
import {
  type EncodeCounts,
  emptyEncodeCounts,
  type PageKernel,
  type XbzrleCacheRegions,
} from "../../wasm/page.js";
import type { PagedRam, StreamKernel } from "../../wasm/stream.js";
import type { MigrationBitmap } from "../migration-bitmap.js";
import type { PrecopyClock } from "../precopy/types.js";
import { Deadline } from "./deadline.js";
import { FrameType } from "./frame.js";
import type { FrameWriter } from "./frame-codec.js";
import type { Inbox } from "./inbox.js";
import type { Link } from "./link.js";
import { MAX_PAGES_PER_FRAME, MAX_RECORDS_PAYLOAD } from "./messages.js";

/** Page numbers harvested at a time for records frames (16 KiB of u32). */
export const RECORD_LIST_PAGES = 4096;

/** One connection pages go out on: the main one, or a multifd channel. */
export interface Lane {
  readonly link: Link;
  readonly writer: FrameWriter;
  /** The lane's last send, until it has left. */
  sending?: Promise<void>;
  /** Frames and payload bytes of pages this lane carried. */
  frames: number;
  bytes: number;
}

/** What the sender works on: the source's dirty log, RAM and kernels. */
export interface PageSource {
  readonly pending: MigrationBitmap;
  readonly cursor: Region;
  readonly ram: PagedRam;
  readonly stream: StreamKernel;
  readonly page: PageKernel;
  /** Page numbers for records frames: {@link RECORD_LIST_PAGES} u32. */
  readonly list: Region;
  /** The encoder's statistics block. */
  readonly stats: Region;
}

/** How pages are encoded on the wire. */
export interface PageEncoding {
  /** Zero pages as ZERO records (header and one byte, as QEMU sends them). */
  readonly zeroPages: boolean;
  /** XBZRLE against this cache (and a page of scratch) from the second pass on. */
  readonly xbzrle?: { readonly cache: XbzrleCacheRegions; readonly scratch: Region };
}

/** One pass's limits and where it reports. */
export interface PassOptions {
  readonly inbox: Inbox;
  readonly clock: PrecopyClock;
  readonly untilMs: number;
  /** Use XBZRLE in this pass (QEMU: not in the first, whose pages the cache has never seen). */
  readonly xbzrle: boolean;
  readonly onProgress?: () => void;
}

/** What a pass sent. */
export interface PassSent {
  readonly pages: number;
  readonly cut: boolean;
  /** Sends the deadline overtook, still on their way: whatever follows waits for them. */
  readonly inflight?: Promise<void>;
}

interface Built {
  readonly pages: number;
  readonly bytes: number;
}

const PAGE_SHIFT = 12;
const PAGE_BYTES = 2 ** PAGE_SHIFT;

/**
 * Sends every pending page in frames over one or more lanes, frame by frame
 * in turn (QEMU's multifd hands each channel the next packet). Plain pages
 * frames gather the pages straight into the frame's staging slot; records
 * frames run the page encoder there instead (zero pages, XBZRLE). Counts
 * what it sent as QEMU counts it.
 */
export class PageSender {
  /** Encoder counts of the attempt (normal, zero, XBZRLE, bytes). */
  readonly counts: EncodeCounts = emptyEncodeCounts();
  private listAt = 0;
  private listCount = 0;

  constructor(
    private readonly source: PageSource,
    private readonly encoding: PageEncoding,
  ) {}

  /** Whether pages go as records (some encoding on) rather than plain pages frames. */
  get records(): boolean {
    return this.encoding.zeroPages || this.encoding.xbzrle !== undefined;
  }

  /**
   * One pass over the pending pages. While the guest runs, stops at
   * `untilMs` on the clock, even with a link stalled, and says so.
   */
  async sendPass(lanes: readonly Lane[], pass: PassOptions): Promise<PassSent> {
    if (lanes.length === 0) throw new RangeError("a pass needs at least one lane");
    this.source.pending.resetCursor(this.source.cursor);
    this.listAt = 0;
    this.listCount = 0;
    const stop = new Deadline(pass.clock, pass.untilMs);
    const inflight = () => Promise.all(lanes.map((lane) => lane.sending)).then(() => undefined);
    let sent = 0;
    let turn = 0;
    try {
      for (;;) {
        if (pass.inbox.failed) throw pass.inbox.failed;
        if (stop.passed) return { pages: sent, cut: true, inflight: inflight() };
        const lane = lanes[turn++ % lanes.length] as Lane;
        // Frames go out of their slot without a copy: wait for the lane's slot.
        if (!(await stop.race(idle(lane)))) return { pages: sent, cut: true, inflight: inflight() };
        const built = this.records
          ? this.recordsFrame(lane.writer, pass.xbzrle)
          : this.pagesFrame(lane.writer);
        if (!built) break;
        sent += built.pages;
        if (built.bytes === 0) continue;
        const frame = lane.writer.sealInPlace(
          this.records ? FrameType.records : FrameType.pages,
          built.bytes,
        );
        const sending = lane.link.send(frame.wire, frame.sent);
        // A failure surfaces where the lane is next awaited.
        sending.catch(() => {});
        lane.sending = sending;
        lane.frames++;
        lane.bytes += built.bytes;
        pass.onProgress?.();
      }
      // The pass is sent when every lane's last frame has left.
      for (const lane of lanes) {
        if (!(await stop.race(idle(lane)))) return { pages: sent, cut: true, inflight: inflight() };
      }
      return { pages: sent, cut: false };
    } finally {
      stop.clear();
    }
  }

  /** A pages frame: the next page numbers harvested into the slot, the pages gathered after them. */
  private pagesFrame(writer: FrameWriter): Built | null {
    const s = this.source;
    const staging = writer.staging;
    const listStart = writer.payloadStart + 8;
    const list = new Region({
      name: "frame page list",
      offset: staging.offset + listStart,
      byteLength: MAX_PAGES_PER_FRAME * 4,
    });
    const count = s.pending.next(s.cursor, list);
    if (count === 0) return null;
    const header = writer.payload(8);
    header.setUint32(0, count, true);
    header.setUint32(4, 0, true);
    s.stream.gather(s.ram, staging, listStart, count, staging, listStart + count * 4);
    const bytes = 8 + count * (4 + PAGE_BYTES);
    this.counts.normal += count;
    this.counts.bytes += bytes;
    return { pages: count, bytes };
  }

  /**
   * A records frame: pages from the harvested list encoded into the slot
   * until it is full. Pages XBZRLE finds unchanged send nothing; a frame of
   * only those is not sent (0 bytes).
   */
  private recordsFrame(writer: FrameWriter, xbzrle: boolean): Built | null {
    const s = this.source;
    if (this.listAt >= this.listCount) {
      this.listCount = s.pending.next(s.cursor, s.list);
      this.listAt = 0;
      if (this.listCount === 0) return null;
    }
    writer.payload(1);
    const out = new Region({
      name: "records frame payload",
      offset: writer.staging.offset + writer.payloadStart,
      byteLength: MAX_RECORDS_PAYLOAD,
    });
    const c = this.counts;
    const before = { bytes: c.bytes, pages: c.normal + c.zero + c.xbzrlePages };
    const cache = xbzrle ? this.encoding.xbzrle : undefined;
    const consumed = s.page.encodePages({
      ram: s.ram.region,
      pageShift: PAGE_SHIFT,
      list: s.list,
      listStart: this.listAt,
      count: this.listCount - this.listAt,
      out,
      zeroPages: this.encoding.zeroPages,
      ...(cache ? { xbzrle: cache } : {}),
      stats: s.stats,
    });
    s.page.takeEncodeStats(s.stats, c);
    this.listAt += consumed;
    return {
      pages: c.normal + c.zero + c.xbzrlePages - before.pages,
      bytes: c.bytes - before.bytes,
    };
  }
}

/** Resolves when the lane's last send has left and its next slot is free. */
async function idle(lane: Lane): Promise<void> {
  await lane.sending;
  await lane.writer.ready();
}
