import { Guest } from "../../src/guest/guest.js";
import { MemoryLayout } from "../../src/memory/layout.js";
import { FRAME_HEADER_BYTES, FrameHeader } from "../../src/migration/live/frame.js";
import { FrameWriter, stagingBytes } from "../../src/migration/live/frame-codec.js";
import { Inbox } from "../../src/migration/live/inbox.js";
import type { Link } from "../../src/migration/live/link.js";
import { MAX_RECORDS_PAYLOAD } from "../../src/migration/live/messages.js";
import {
  type Lane,
  type PageSource,
  type PassOptions,
  RECORD_LIST_PAGES,
} from "../../src/migration/live/page-sender.js";
import { MigrationBitmap } from "../../src/migration/migration-bitmap.js";
import { ENCODE_STATS_BYTES, PAGE_SCRATCH_BYTES, PageKernel } from "../../src/wasm/page.js";
import { StreamKernel } from "../../src/wasm/stream.js";
import { xorshiftBytes } from "./xorshift.js";

export const SENDER_PAGE = 4096;

/** A link whose sends leave only when the test lets them (`release`), keeping each frame's bytes. */
export function heldLink() {
  const frames: Buffer[] = [];
  const pending: (() => void)[] = [];
  const link = {
    send(wire: Buffer, sent?: () => void): Promise<void> {
      frames.push(Buffer.from(wire));
      return new Promise<void>((resolve) => {
        pending.push(() => {
          sent?.();
          resolve();
        });
      });
    },
  } as unknown as Link;
  /** Lets every send so far leave. */
  const release = () => {
    for (const go of pending.splice(0)) go();
  };
  return { link, frames, release, held: () => pending.length };
}

/** A link that takes each frame at once, keeping its bytes. */
export function promptLink() {
  const held = heldLink();
  const link = {
    send(wire: Buffer, sent?: () => void): Promise<void> {
      const leaving = held.link.send(wire, sent);
      held.release();
      return leaving;
    },
  } as unknown as Link;
  return { link, frames: held.frames };
}

/** A records or pages frame's payload bytes (after the frame header). */
export function framePayload(frame: Buffer): Buffer {
  const length = frame.readUInt32LE(FrameHeader.length);
  return frame.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length);
}

/** A source of `pages` pages of seeded RAM (none pending) with the kernels and regions a PageSender needs. */
export function senderSource(pages: number) {
  const layout = new MemoryLayout();
  const guest = new Guest(layout, {
    bytes: pages * SENDER_PAGE,
    content: true,
    vcpus: 1,
    workload: { kind: "uniform" },
    seed: 11,
    doubleBuffered: true,
  });
  const region = guest.ram;
  if (!region) throw new Error("the guest has no RAM");
  const ram = region.bytes(layout.memory);
  ram.set(xorshiftBytes(23, ram.length));
  const stream = StreamKernel.on(layout.memory, layout.allocate("stream-scratch", 64));
  const source: PageSource = {
    pending: new MigrationBitmap(guest),
    cursor: layout.allocate("cursor", 8),
    ram: { region, pageShift: 12 },
    stream,
    page: PageKernel.on(layout.memory, layout.allocate("page-scratch", PAGE_SCRATCH_BYTES)),
    list: layout.allocate("records-list", RECORD_LIST_PAGES * 4),
    stats: layout.allocate("stats", ENCODE_STATS_BYTES),
  };
  let made = 0;
  /** A lane of two staging slots over `link`. */
  const lane = (link: Link): Lane => {
    const slots = [0, 1].map((k) =>
      layout.allocate(`slot-${made}-${k}`, stagingBytes(MAX_RECORDS_PAYLOAD), 4096),
    );
    made++;
    return {
      link,
      writer: new FrameWriter(layout.memory, stream, slots, MAX_RECORDS_PAYLOAD),
      frames: 0,
      bytes: 0,
    };
  };
  /** Page `page` of the guest's RAM. */
  const pageBytes = (page: number) => ram.subarray(page * SENDER_PAGE, (page + 1) * SENDER_PAGE);
  /** Marks `pages` pending. */
  const mark = (list: readonly number[]) => {
    new Uint32Array(layout.memory.buffer, source.list.offset, list.length).set(list);
    source.pending.putBack(source.list, 0, list.length);
  };
  /** An empty XBZRLE cache of `slots` pages with its page of scratch. */
  const cache = (slots: number) => ({
    cache: {
      slots,
      tags: layout.allocate("cache-tags", slots * 4),
      data: layout.allocate("cache-data", slots * SENDER_PAGE, 4096),
    },
    scratch: layout.allocate("cache-scratch", SENDER_PAGE),
  });
  return { layout, source, ram, lane, pageBytes, mark, cache };
}

/** A pass with virtual time at 0 and the given deadline (none by default). */
export function passUntil(untilMs = Number.POSITIVE_INFINITY, xbzrle = false): PassOptions {
  return { inbox: new Inbox(), clock: { kind: "virtual", now: () => 0 }, untilMs, xbzrle };
}
