import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { Region } from "../src/memory/region.js";
import {
  type ChannelEnd,
  linkPages,
  PACKET_QUEUE_BYTES,
  packetQueue,
  type ReceiverRegions,
  receivePacket,
  runChannel,
} from "../src/migration/multifd-channel.js";
import type { ChannelTask } from "../src/migration/task-types.js";
import { multifdSendOracle } from "../src/oracle/multifd.js";
import {
  MULTIFD_SCRATCH_BYTES,
  MultifdField,
  MultifdKernel,
  type MultifdSendJob,
  multifdHeaderBytes,
} from "../src/wasm/multifd.js";
import { ENCODE_STATS_BYTES } from "../src/wasm/page.js";

// The rules of one multifd channel (QEMU's migration/multifd.c, both ends)
// that whole migrations cannot tell apart: which bytes the link moves and in
// how many copies, the receiver's counts against the sender's, and what a
// channel does with a sender that takes fewer pages than it was offered.

/** Small pages: the link only moves bytes, their size does not matter to it. */
const LINK_PAGE = 8;
const LINK_SOURCE_PAGES = 512;
const LINK_DESTINATION_PAGES = 96;
const UNTOUCHED = 0xee;

/** A source RAM whose every page differs from every other and from an untouched page. */
function linkSource(): Uint8Array {
  const bytes = new Uint8Array(LINK_SOURCE_PAGES * LINK_PAGE);
  for (let i = 0; i < bytes.length; i++) bytes[i] = ((i >> 3) * 5 + (i & 7) * 37 + 1) & 0xff;
  return bytes;
}

/** What the link must leave: each of the first `count` pages copied alone, nothing else. */
function copiedPageByPage(
  source: Uint8Array,
  from: readonly number[],
  to: readonly number[],
  count: number,
): Uint8Array {
  const want = new Uint8Array(LINK_DESTINATION_PAGES * LINK_PAGE).fill(UNTOUCHED);
  for (let k = 0; k < count; k++) {
    const f = from[k] ?? -1;
    const t = to[k] ?? -1;
    want.set(source.subarray(f * LINK_PAGE, (f + 1) * LINK_PAGE), t * LINK_PAGE);
  }
  return want;
}

/** Runs of pages consecutive on both sides among the first `count`. */
function runsOf(from: readonly number[], to: readonly number[], count: number): number {
  let runs = count > 0 ? 1 : 0;
  for (let k = 1; k < count; k++) {
    const both = from[k] === (from[k - 1] ?? 0) + 1 && to[k] === (to[k - 1] ?? 0) + 1;
    if (!both) runs++;
  }
  return runs;
}

/** Runs the link into an untouched destination, counting its copies. */
function link(from: readonly number[], to: readonly number[], count: number) {
  const source = linkSource();
  const destination = new Uint8Array(LINK_DESTINATION_PAGES * LINK_PAGE).fill(UNTOUCHED);
  const set = destination.set.bind(destination);
  let copies = 0;
  destination.set = (bytes: ArrayLike<number>, offset?: number) => {
    copies++;
    set(bytes, offset);
  };
  linkPages(source, Uint32Array.from(from), destination, Uint32Array.from(to), count, LINK_PAGE);
  return {
    destination,
    copies,
    want: copiedPageByPage(source, from, to, count),
  };
}

/**
 * Page lists as segments: within one, pages consecutive on the destination's
 * side and, on the source's, consecutive, descending, or continuing the
 * segment before; between two, a gap on the destination's side or none.
 */
const segment = fc.record({
  length: fc.integer({ min: 1, max: 4 }),
  toGap: fc.integer({ min: 0, max: 2 }),
  from: fc.oneof(
    fc.constant("continue" as const),
    fc.record({ start: fc.integer({ min: 4, max: 400 }), descending: fc.boolean() }),
  ),
});

type Segment = typeof segment extends fc.Arbitrary<infer S> ? S : never;

function pageLists(segments: readonly Segment[]) {
  const from: number[] = [];
  const to: number[] = [];
  for (const s of segments) {
    const lastTo = to.at(-1) ?? -1;
    const lastFrom = from.at(-1) ?? 0;
    for (let j = 0; j < s.length; j++) {
      to.push(lastTo + s.toGap + 1 + j);
      if (s.from === "continue") from.push(lastFrom + 1 + j);
      else from.push(s.from.descending ? s.from.start - j : s.from.start + j);
    }
  }
  return { from, to };
}

describe("the link (linkPages)", () => {
  // Each normal page goes from its page in the source's RAM to its place in
  // the destination's (QEMU's iovecs), `count` of them whatever follows in
  // the lists; a run consecutive on both sides goes as one copy, and a page
  // consecutive on one side only starts a new copy.
  it("moves exactly the first count pages, one copy a run consecutive on both sides (property)", () => {
    fc.assert(
      fc.property(
        fc.array(segment, { minLength: 1, maxLength: 12 }),
        fc.nat(),
        (segments, countDraw) => {
          const { from, to } = pageLists(segments);
          const count = 1 + (countDraw % to.length);
          const out = link(from, to, count);
          expect(Buffer.compare(out.destination, out.want)).toBe(0);
          expect(out.copies).toBe(runsOf(from, to, count));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("a run that goes on past the count ends at the count", () => {
    const out = link([0, 1, 2, 3], [10, 11, 12, 13], 2);
    expect(Buffer.compare(out.destination, out.want)).toBe(0);
    expect(out.destination[12 * LINK_PAGE]).toBe(UNTOUCHED);
    expect(out.copies).toBe(1);
  });

  it("pages consecutive on one side only go one by one, from where each was listed", () => {
    // Consecutive places, scattered and descending sources.
    for (const from of [
      [5, 9, 2],
      [7, 6, 5],
    ]) {
      const out = link(from, [0, 1, 2], 3);
      expect(Buffer.compare(out.destination, out.want)).toBe(0);
      expect(out.copies).toBe(3);
    }
    // Consecutive sources, scattered and descending places.
    for (const to of [
      [7, 3, 5],
      [7, 6, 5],
    ]) {
      const out = link([0, 1, 2], to, 3);
      expect(Buffer.compare(out.destination, out.want)).toBe(0);
      expect(out.copies).toBe(3);
    }
  });

  it("refuses an accepted list shorter than the count instead of copying to another page", () => {
    const source = linkSource();
    const destination = new Uint8Array(LINK_DESTINATION_PAGES * LINK_PAGE).fill(UNTOUCHED);
    expect(() =>
      linkPages(source, Uint32Array.from([1, 2]), destination, Uint32Array.from([1]), 2, LINK_PAGE),
    ).toThrow(/2 pages to move, but 2 sent and 1 accepted/);
    expect(destination.every((b) => b === UNTOUCHED)).toBe(true);
  });
});

const PAGE_SHIFT = 12;
const PAGE = 4096;
const RAM_PAGES = 16;
const PACKET_PAGES = 4;

/** Whether pages `first` to `last` hold the same bytes on both sides (toEqual is slow on whole pages). */
function samePages(a: Uint8Array, b: Uint8Array, first: number, last: number): boolean {
  return (
    Buffer.compare(
      a.subarray(first * PAGE, (last + 1) * PAGE),
      b.subarray(first * PAGE, (last + 1) * PAGE),
    ) === 0
  );
}

/** One channel, both ends: the source's and the destination's memories, kernels and regions. */
function channel() {
  const near = new MemoryLayout();
  const far = new MemoryLayout();
  const region = (layout: MemoryLayout, name: string, bytes: number, align = 8) =>
    layout.allocate(name, bytes, align);
  const headerBytes = multifdHeaderBytes(PACKET_PAGES);
  const n = {
    ram: region(near, "source-ram", RAM_PAGES * PAGE, 4096),
    list: region(near, "page-list", RAM_PAGES * 4),
    queue: region(near, "packet-queue", PACKET_QUEUE_BYTES),
    packet: region(near, "header", headerBytes),
    sent: region(near, "sent", PACKET_PAGES * 8),
    stats: region(near, "stats", ENCODE_STATS_BYTES),
    scratch: region(near, "scratch", MULTIFD_SCRATCH_BYTES),
  };
  const f = {
    receive: region(far, "receive", headerBytes),
    place: region(far, "place", PACKET_PAGES * 4),
    ram: region(far, "destination-ram", RAM_PAGES * PAGE, 4096),
    hashes: region(far, "destination-hashes", RAM_PAGES * 8),
    scratch: region(far, "far-scratch", MULTIFD_SCRATCH_BYTES),
  };
  const source: ChannelEnd = {
    memory: near.memory,
    kernel: MultifdKernel.on(near.memory, n.scratch),
  };
  const destination: ChannelEnd = {
    memory: far.memory,
    kernel: MultifdKernel.on(far.memory, f.scratch),
  };
  const sourceRam = n.ram.bytes(near.memory);
  for (let i = 0; i < sourceRam.length; i++) sourceRam[i] = ((i >> 12) * 29 + i + 3) & 0xff || 1;
  sourceRam.fill(0, 5 * PAGE, 6 * PAGE);
  new Uint32Array(near.memory.buffer, n.list.offset, RAM_PAGES).set(
    Array.from({ length: RAM_PAGES }, (_, p) => p),
  );
  const farRam = f.ram.bytes(far.memory);
  farRam.fill(UNTOUCHED);
  const receiver: ReceiverRegions = {
    receive: f.receive,
    place: f.place,
    ram: f.ram,
    hashes: f.hashes,
  };
  const task = (count: number, packetNum: number, queued: boolean): ChannelTask => ({
    type: "migration.channel",
    ram: n.ram.toDescriptor(),
    pageShift: PAGE_SHIFT,
    list: n.list.toDescriptor(),
    listStart: 0,
    count,
    packetPages: PACKET_PAGES,
    packetNum,
    ...(queued ? { queue: n.queue.toDescriptor() } : {}),
    packet: n.packet.toDescriptor(),
    sent: n.sent.toDescriptor(),
    stats: n.stats.toDescriptor(),
    scratch: n.scratch.toDescriptor(),
    zeroPages: true,
    destination: {
      memory: "destination",
      receive: f.receive.toDescriptor(),
      place: f.place.toDescriptor(),
      ram: f.ram.toDescriptor(),
      hashes: f.hashes.toDescriptor(),
      scratch: f.scratch.toDescriptor(),
    },
  });
  const cursor = packetQueue(near.memory, n.queue);
  return { source, destination, receiver, sourceRam, farRam, task, cursor };
}

/** Makes the channel's sender take at most `most` of the pages each packet is offered. */
function senderTakingAtMost(end: ChannelEnd, most: number) {
  const send = end.kernel.send.bind(end.kernel);
  return vi
    .spyOn(end.kernel, "send")
    .mockImplementation((job: MultifdSendJob) =>
      send({ ...job, count: Math.min(job.count, most) }),
    );
}

describe("a channel whose sender takes fewer pages than offered (runChannel)", () => {
  // MultifdKernel.send sends "up to" the pages offered (the kernel's
  // sendPacket takes none when the header cannot fit its buffer).

  it("alone on its slice, a sender that takes nothing ends the slice: no packet, no header to the receiver, not asked again", () => {
    const c = channel();
    const offer = c.source.kernel.send.bind(c.source.kernel);
    const send = vi
      .spyOn(c.source.kernel, "send")
      .mockImplementation(() => {
        throw new Error("asked again for a packet after one that took nothing");
      })
      .mockImplementationOnce((job: MultifdSendJob) => offer({ ...job, count: 0 }));
    const check = vi.spyOn(c.destination.kernel, "check");
    const result = runChannel(c.source, c.destination, c.task(8, 0, false));
    expect(result.consumed).toBe(0);
    expect(result.packets).toBe(0);
    expect(send).toHaveBeenCalledTimes(1);
    expect(check).not.toHaveBeenCalled();
    expect(c.farRam.every((b) => b === UNTOUCHED)).toBe(true);
  });

  it("alone on its slice, a sender that takes fewer sends the rest in further packets", () => {
    const c = channel();
    senderTakingAtMost(c.source, 3);
    const result = runChannel(c.source, c.destination, c.task(8, 0, false));
    expect(result.consumed).toBe(8);
    expect(result.packets).toBe(3);
    expect(samePages(c.farRam, c.sourceRam, 0, 7)).toBe(true);
  });

  it("on a shared wave, a packet that took fewer pages than its share is an error naming it, as those pages would go with no channel", () => {
    // Packets 0 and 1 of the wave (numbered 10 and 11) went to another
    // channel; this one takes packet 2, numbered 12, pages [8, 12).
    const c = channel();
    Atomics.store(c.cursor, 0, 2);
    senderTakingAtMost(c.source, 3);
    expect(() => runChannel(c.source, c.destination, c.task(12, 10, true))).toThrow(
      "multifd packet 12 took 3 of its 4 pages",
    );
  });
});

describe("the receiver's counts against the sender's (receivePacket)", () => {
  // The receiver reads the page counts from the header it was handed
  // (QEMU's multifd_recv_unfill_packet); a header whose counts were changed
  // on the way, still well formed, must not place pages the sender did not
  // send, and nothing of the packet is written.
  const sent = [1, 5, 2]; // page 5 is zero: normal 1 and 2, then zero 5

  function wireOf(c: ReturnType<typeof channel>, change: (header: DataView) => void) {
    const packet = multifdSendOracle(c.sourceRam, PAGE_SHIFT, sent, PACKET_PAGES, true, 7);
    expect(packet.normal).toEqual([1, 2]);
    expect(packet.zero).toEqual([5]);
    const header = packet.header.slice();
    change(new DataView(header.buffer));
    return {
      header,
      from: Uint32Array.from(packet.normal),
      normal: packet.normal.length,
      zero: packet.zero.length,
      packetNum: 7,
    };
  }

  function receive(c: ReturnType<typeof channel>, wire: ReturnType<typeof wireOf>) {
    receivePacket(c.destination, c.receiver, c.sourceRam, wire, PAGE_SHIFT, PACKET_PAGES);
  }

  it("the header as sent places the pages", () => {
    const c = channel();
    receive(
      c,
      wireOf(c, () => {}),
    );
    expect(samePages(c.farRam, c.sourceRam, 1, 2)).toBe(true);
    expect(c.farRam[3 * PAGE]).toBe(UNTOUCHED);
    expect(c.farRam.subarray(5 * PAGE, 6 * PAGE).every((b) => b === 0)).toBe(true);
  });

  it("normal pages changed on the way (the last normal page made a zero page) are refused", () => {
    const c = channel();
    const wire = wireOf(c, (h) => {
      h.setUint32(MultifdField.normalPages, 1);
      h.setUint32(MultifdField.nextPacketSize, PAGE);
      h.setUint32(MultifdField.zeroPages, 2);
    });
    const zeroSame = wireOf(c, (h) => {
      h.setUint32(MultifdField.normalPages, 1);
      h.setUint32(MultifdField.nextPacketSize, PAGE);
    });
    expect(() => receive(c, wire)).toThrow(
      "multifd packet 7: received 1 normal and 2 zero pages, sent 2 and 1",
    );
    expect(() => receive(c, zeroSame)).toThrow(
      "multifd packet 7: received 1 normal and 1 zero pages, sent 2 and 1",
    );
    expect(c.farRam.every((b) => b === UNTOUCHED)).toBe(true);
  });

  it("zero pages changed on the way (the zero page dropped) are refused", () => {
    const c = channel();
    const wire = wireOf(c, (h) => h.setUint32(MultifdField.zeroPages, 0));
    expect(() => receive(c, wire)).toThrow(
      "multifd packet 7: received 2 normal and 0 zero pages, sent 2 and 1",
    );
    expect(c.farRam.every((b) => b === UNTOUCHED)).toBe(true);
  });
});

describe("the packet queue (packetQueue)", () => {
  // The queue is one Int32: 4 bytes, 4-byte aligned, are all it needs.
  it("takes a region of exactly 4 aligned bytes", () => {
    const layout = new MemoryLayout();
    const at = layout.allocate("packet-queue", PACKET_QUEUE_BYTES, 8);
    const exact = new Region({ name: "exact-queue", offset: at.offset, byteLength: 4 });
    const cursor = packetQueue(layout.memory, exact);
    expect(cursor.length).toBe(1);
    expect(cursor.byteOffset).toBe(at.offset);
  });
});
