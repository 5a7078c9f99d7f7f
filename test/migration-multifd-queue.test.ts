import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { Region } from "../src/memory/region.js";
import {
  type ChannelEnd,
  PACKET_QUEUE_BYTES,
  packetQueue,
  runChannel,
} from "../src/migration/multifd-channel.js";
import type { ChannelTask } from "../src/migration/task-types.js";
import { xxh3Long } from "../src/oracle/xxh3.js";
import { MULTIFD_SCRATCH_BYTES, MultifdKernel, multifdHeaderBytes } from "../src/wasm/multifd.js";
import { ENCODE_STATS_BYTES } from "../src/wasm/page.js";

// multifd channels share a wave's packets through one queue (an Int32 in the
// source's memory): a channel takes the next packet whenever it is free, so
// a channel whose partner is busy sends what the partner has not taken, and
// every page of the wave goes exactly once, numbered by its packet's place
// in the wave. Two channels run one after the other on this thread stand
// for the extreme of two threads: one that has taken some packets and is
// still busy with them while the other sends the rest.

const PAGE_SHIFT = 12;
const PAGE = 4096;
const RAM_PAGES = 96;
const MAX_PACKET_PAGES = 16;
/** Where in the page list a wave may start (a wave after others in the round). */
const MAX_LIST_START = 8;
const UNTOUCHED = 0xee;

interface Channel {
  readonly source: ChannelEnd;
  readonly destination: ChannelEnd;
  readonly header: Region;
  readonly sent: Region;
  readonly stats: Region;
  readonly scratch: Region;
  readonly receive: Region;
  readonly place: Region;
  readonly farScratch: Region;
}

function setup() {
  const near = new MemoryLayout();
  const far = new MemoryLayout();
  const ram = near.allocate("source-ram", RAM_PAGES * PAGE, 4096);
  const list = near.allocate("page-list", (MAX_LIST_START + RAM_PAGES) * 4);
  const hashes = near.allocate("source-hashes", RAM_PAGES * 8, 8);
  const queue = near.allocate("packet-queue", PACKET_QUEUE_BYTES, 8);
  const farRam = far.allocate("destination-ram", RAM_PAGES * PAGE, 4096);
  const farHashes = far.allocate("destination-hashes", RAM_PAGES * 8, 8);
  const channels: Channel[] = [0, 1].map((c) => {
    const scratch = near.allocate(`scratch-${c}`, MULTIFD_SCRATCH_BYTES);
    const farScratch = far.allocate(`far-scratch-${c}`, MULTIFD_SCRATCH_BYTES);
    return {
      source: { memory: near.memory, kernel: MultifdKernel.on(near.memory, scratch) },
      destination: { memory: far.memory, kernel: MultifdKernel.on(far.memory, farScratch) },
      header: near.allocate(`header-${c}`, multifdHeaderBytes(MAX_PACKET_PAGES), 4096),
      sent: near.allocate(`sent-${c}`, MAX_PACKET_PAGES * 8, 8),
      stats: near.allocate(`stats-${c}`, ENCODE_STATS_BYTES),
      scratch,
      receive: far.allocate(`receive-${c}`, multifdHeaderBytes(MAX_PACKET_PAGES), 4096),
      place: far.allocate(`place-${c}`, MAX_PACKET_PAGES * 4, 8),
      farScratch,
    };
  });
  const task = (
    channel: Channel,
    wave: { start: number; count: number; packetPages: number; packetNum: number },
    shared: boolean,
  ): ChannelTask => ({
    type: "migration.channel",
    ram: ram.toDescriptor(),
    pageShift: PAGE_SHIFT,
    list: list.toDescriptor(),
    listStart: wave.start,
    count: wave.count,
    packetPages: wave.packetPages,
    packetNum: wave.packetNum,
    ...(shared ? { queue: queue.toDescriptor() } : {}),
    packet: channel.header.toDescriptor(),
    sent: channel.sent.toDescriptor(),
    stats: channel.stats.toDescriptor(),
    scratch: channel.scratch.toDescriptor(),
    zeroPages: true,
    hashes: hashes.toDescriptor(),
    destination: {
      memory: "destination",
      receive: channel.receive.toDescriptor(),
      place: channel.place.toDescriptor(),
      ram: farRam.toDescriptor(),
      hashes: farHashes.toDescriptor(),
      scratch: channel.farScratch.toDescriptor(),
    },
  });
  return { near, far, ram, list, hashes, queue, farRam, farHashes, channels, task };
}

const rig = setup();

/** The packet number in a channel's last header (QEMU's be64 packet_num at byte 24). */
function lastPacketNum(channel: Channel): bigint {
  const bytes = channel.header.bytes(rig.near.memory);
  return new DataView(bytes.buffer, bytes.byteOffset, 32).getBigUint64(24);
}

describe("multifd packet queue", () => {
  it("a channel takes the packets its busy partner has not taken, every page of the wave once (property)", () => {
    fc.assert(
      fc.property(
        fc.shuffledSubarray(
          Array.from({ length: RAM_PAGES }, (_, p) => p),
          { minLength: 1 },
        ),
        fc.integer({ min: 0, max: MAX_LIST_START }),
        fc.integer({ min: 1, max: MAX_PACKET_PAGES }),
        fc.nat(),
        fc.nat(1_000),
        fc.nat(255),
        (pages, listStart, packetPages, takenDraw, packetNum, seed) => {
          const { near, far, channels, task } = rig;
          const [busy, free] = channels;
          if (!busy || !free) throw new Error("two channels");
          const source = rig.ram.bytes(near.memory);
          for (let p = 0; p < RAM_PAGES; p++) {
            const page = source.subarray(p * PAGE, (p + 1) * PAGE);
            // Every fifth page zero, so packets carry zero pages too.
            if ((p + seed) % 5 === 0) page.fill(0);
            else for (let i = 0; i < PAGE; i += 64) page[i] = (p * 7 + i + seed) & 0xff || 1;
          }
          const destination = rig.farRam.bytes(far.memory);
          destination.fill(UNTOUCHED);
          new Uint32Array(near.memory.buffer, rig.list.offset + listStart * 4, pages.length).set(
            pages,
          );
          const count = pages.length;
          const packets = Math.ceil(count / packetPages);
          const taken = takenDraw % (packets + 1);
          const wave = { start: listStart, count, packetPages, packetNum };
          // The busy channel has taken packets [0, taken) from the queue.
          const cursor = packetQueue(near.memory, rig.queue);
          Atomics.store(cursor, 0, taken);
          const freeResult = runChannel(free.source, free.destination, task(free, wave, true));
          const rest = count - Math.min(count, taken * packetPages);
          expect(freeResult.consumed).toBe(rest);
          expect(freeResult.packets).toBe(packets - taken);
          if (taken < packets) expect(lastPacketNum(free)).toBe(BigInt(packetNum + packets - 1));
          // Nothing of the busy channel's packets has arrived yet.
          for (const p of pages.slice(0, taken * packetPages)) {
            expect(destination[p * PAGE]).toBe(UNTOUCHED);
          }
          // The queue is empty now: a channel free again finds nothing.
          const late = runChannel(free.source, free.destination, task(free, wave, true));
          expect(late.consumed).toBe(0);
          expect(late.packets).toBe(0);
          // The busy channel's packets, numbered from the wave's first.
          const own = runChannel(
            busy.source,
            busy.destination,
            task(busy, { ...wave, count: Math.min(count, taken * packetPages) }, false),
          );
          expect(own.consumed + freeResult.consumed).toBe(count);
          if (taken > 0) expect(lastPacketNum(busy)).toBe(BigInt(packetNum + taken - 1));
          const sourceTable = new BigUint64Array(near.memory.buffer, rig.hashes.offset, RAM_PAGES);
          const farTable = new BigUint64Array(far.memory.buffer, rig.farHashes.offset, RAM_PAGES);
          for (const p of pages) {
            const page = destination.subarray(p * PAGE, (p + 1) * PAGE);
            expect(Buffer.compare(page, source.subarray(p * PAGE, (p + 1) * PAGE))).toBe(0);
            expect(farTable[p]).toBe(xxh3Long(page));
            expect(sourceTable[p]).toBe(farTable[p]);
          }
          const listed = new Set(pages);
          for (let p = 0; p < RAM_PAGES; p++) {
            if (!listed.has(p)) expect(destination[p * PAGE]).toBe(UNTOUCHED);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("refuses a queue that is not a 4-byte-aligned Int32, naming it", () => {
    const { near } = rig;
    const odd = new Region({ name: "odd-queue", offset: rig.queue.offset + 2, byteLength: 4 });
    expect(() => packetQueue(near.memory, odd)).toThrow(/'odd-queue' at \d+ \(4 bytes\)/);
    const short = new Region({ name: "short-queue", offset: rig.queue.offset, byteLength: 2 });
    expect(() => packetQueue(near.memory, short)).toThrow(RangeError);
  });
});
