import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { Region } from "../src/memory/region.js";
import type { ChannelEnd } from "../src/migration/multifd-channel.js";
import {
  receiveBatch,
  STREAM_BATCH_PACKETS,
  type StreamSender,
  type StreamSplit,
  sendStream,
  serveStream,
  streamSlotBytes,
} from "../src/migration/stream-pipeline.js";
import {
  STREAM_QUEUE_BYTES,
  STREAM_SLOTS,
  StreamQueue,
  StreamState,
} from "../src/migration/stream-queue.js";
import type { StreamReceiveTask } from "../src/migration/task-types.js";
import {
  MULTIFD_SCRATCH_BYTES,
  MultifdField,
  MultifdKernel,
  MultifdPacketError,
  multifdHeaderBytes,
} from "../src/wasm/multifd.js";
import { ENCODE_STATS_BYTES } from "../src/wasm/page.js";

// The rules of one stream whose sender runs on this thread and whose
// destination's thread is played here too (src/migration/stream-pipeline.ts,
// docs/migration.md): batches of STREAM_BATCH_PACKETS packets in a ring of
// STREAM_SLOTS slots, each received whole by whichever thread claims it.

const PAGE = 4096;
/** Pages per packet: a batch carries 32 pages, so waves of a few batches stay small. */
const ALLOC = 2;
const BATCH_PAGES = ALLOC * STREAM_BATCH_PACKETS;

interface WaveOptions {
  readonly slots?: number;
  readonly headerStride?: number;
}

/**
 * The two memories of a stream of `pages` pages: the source's RAM (every
 * fourth page zero, the others filled with a byte of their number) listed in
 * order, the ring, and the destination's RAM with one set of receiving
 * regions per thread.
 */
class Wave {
  readonly source = new MemoryLayout();
  readonly far = new MemoryLayout();
  readonly headerStride: number;
  readonly ram: Region;
  readonly list: Region;
  readonly hashes: Region;
  readonly farRam: Region;
  readonly farHashes: Region;
  readonly queueRegion: Region;
  readonly slots: StreamSender["slots"];
  /** The destination's thread's end. */
  readonly remoteEnd: ChannelEnd;
  private readonly localEnd: ChannelEnd;
  private senders = 0;

  constructor(
    readonly pages: number,
    options: WaveOptions = {},
  ) {
    this.headerStride = options.headerStride ?? multifdHeaderBytes(ALLOC);
    this.ram = this.source.allocate("ram", pages * PAGE, PAGE);
    const bytes = this.ram.bytes(this.source.memory);
    for (let p = 0; p < pages; p++) {
      if (p % 4 !== 3) bytes.fill((p % 251) + 1, p * PAGE, (p + 1) * PAGE);
    }
    this.list = this.source.allocate("list", pages * 4);
    const listed = new Uint32Array(this.source.memory.buffer, this.list.offset, pages);
    for (let p = 0; p < pages; p++) listed[p] = p;
    this.hashes = this.source.allocate("hashes", pages * 8, 8);
    this.farRam = this.far.allocate("far-ram", pages * PAGE, PAGE);
    this.farHashes = this.far.allocate("far-hashes", pages * 8, 8);
    this.queueRegion = this.source.allocate("queue", STREAM_QUEUE_BYTES, 8);
    const sizes = streamSlotBytes(ALLOC, this.headerStride);
    this.slots = Array.from({ length: options.slots ?? STREAM_SLOTS }, (_, k) => ({
      headers: this.source.allocate(`headers-${k}`, sizes.headers, 8),
      sent: this.source.allocate(`sent-${k}`, sizes.sent, 8),
      wire: this.source.allocate(`wire-${k}`, sizes.wire, 8),
      accepted: this.far.allocate(`accepted-${k}`, sizes.accepted, 8),
    }));
    this.remoteEnd = this.end("remote");
    this.localEnd = this.end("local");
  }

  /** One thread's receiving regions in the destination: a header buffer, a place list, scratch. */
  private end(who: string): ChannelEnd {
    this.far.allocate(`${who}-header`, multifdHeaderBytes(ALLOC), 8);
    this.far.allocate(`${who}-place`, ALLOC * 4, 8);
    const scratch = this.far.allocate(`${who}-scratch`, MULTIFD_SCRATCH_BYTES, 8);
    return { memory: this.far.memory, kernel: MultifdKernel.on(this.far.memory, scratch) };
  }

  private destinationOf(who: string): StreamReceiveTask["destination"] {
    return {
      memory: "destination",
      receive: this.far.get(`${who}-header`).toDescriptor(),
      place: this.far.get(`${who}-place`).toDescriptor(),
      ram: this.farRam.toDescriptor(),
      hashes: this.farHashes.toDescriptor(),
      scratch: this.far.get(`${who}-scratch`).toDescriptor(),
    };
  }

  /** The sender, with `receive` starting the destination's thread. */
  sender(receive: StreamSender["receive"]): StreamSender {
    return {
      source: {
        memory: this.source.memory,
        kernel: MultifdKernel.on(
          this.source.memory,
          this.source.allocate(`send-scratch-${this.senders++}`, MULTIFD_SCRATCH_BYTES, 8),
        ),
      },
      local: { end: this.localEnd, destination: this.destinationOf("local") },
      ram: this.ram,
      pageShift: 12,
      list: this.list,
      alloc: ALLOC,
      headerStride: this.headerStride,
      slots: this.slots,
      queue: this.queueRegion,
      stats: this.source.allocate(`stats-${this.senders}`, ENCODE_STATS_BYTES, 8),
      hashes: this.hashes,
      zeroPages: true,
      receive,
      destination: this.destinationOf("remote"),
    };
  }

  /** A view of the ring's queue, as either thread has it. */
  queue(): StreamQueue {
    return new StreamQueue(this.source.memory, this.queueRegion);
  }

  /** Pages `[first, end)` of the destination equal the source's, and their hashes too. */
  landed(first = 0, end = this.pages): boolean {
    const sent = this.ram.bytes(this.source.memory).subarray(first * PAGE, end * PAGE);
    const got = this.farRam.bytes(this.far.memory).subarray(first * PAGE, end * PAGE);
    const ours = this.hashes.bytes(this.source.memory).subarray(first * 8, end * 8);
    const theirs = this.farHashes.bytes(this.far.memory).subarray(first * 8, end * 8);
    return Buffer.from(got).equals(Buffer.from(sent)) && Buffer.from(theirs).equals(ours);
  }

  /** No byte of the destination's RAM written. */
  untouched(): boolean {
    return this.farRam.bytes(this.far.memory).every((b) => b === 0);
  }

  /** Empties the destination (RAM and its hash table) for a wave received again. */
  clearDestination(): void {
    this.farRam.bytes(this.far.memory).fill(0);
    this.farHashes.bytes(this.far.memory).fill(0);
  }

  /** Packet `j`'s header in slot `k`, as the sender wrote it. */
  header(k: number, j: number): DataView {
    const headers = this.slots[k]?.headers;
    if (!headers) throw new Error(`no slot ${k}`);
    return new DataView(this.source.memory.buffer, headers.offset + j * this.headerStride);
  }

  /** What the link says of packet `j` in slot `k`: header bytes, normal, zero, packet number. */
  wire(k: number, j: number): Uint32Array {
    const wire = this.slots[k]?.wire;
    if (!wire) throw new Error(`no slot ${k}`);
    return new Uint32Array(this.source.memory.buffer, wire.offset + j * 16, 4);
  }

  /** Sends the whole wave with a destination's thread that takes no batch; returns its task. */
  async sendAlone(packetNum: number): Promise<{ task: StreamReceiveTask; split: StreamSplit }> {
    let task: StreamReceiveTask | undefined;
    const split: StreamSplit = { remote: 0, local: 0 };
    await sendStream(
      this.sender(async (t) => {
        task = t;
        return 0;
      }),
      0,
      this.pages,
      packetNum,
      split,
    );
    if (!task) throw new Error("the destination's thread was never started");
    return { task, split };
  }
}

/** Lets the other "thread" (a promise chain on this one) run. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Waits turns until `done`, failing after many. */
async function until(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 10_000; i++) {
    if (done()) return;
    await turn();
  }
  throw new Error(`never: ${what}`);
}

describe("the sender alone", () => {
  // A destination's thread started after the sender took every batch (or
  // one that takes none) leaves the whole wave to the sender: the wave's
  // tail is received by whichever thread is free.
  it("receives every batch itself when the destination's thread takes none", async () => {
    const pages = 3 * BATCH_PAGES - 5;
    const wave = new Wave(pages);
    const split: StreamSplit = { remote: 0, local: 0 };
    const result = await sendStream(
      wave.sender(async () => 0),
      0,
      pages,
      0,
      split,
    );
    expect(result.consumed).toBe(pages);
    expect(result.packets).toBe(Math.ceil(pages / ALLOC));
    expect(split).toEqual({ remote: 0, local: 3 });
    expect(wave.landed()).toBe(true);
    // Only batches the destination's thread received count as its own.
    expect(wave.queue().remote).toBe(0);
    expect(wave.queue().state()).toBe(StreamState.sent);
  });

  // QEMU numbers multifd packets one after another across the stream
  // (multifd_send_fill_packet in migration/multifd.c: packet_num, be64):
  // packet i of the wave carries the wave's first number plus i.
  it("numbers the packets' headers one after another from the wave's first", async () => {
    const wave = new Wave(2 * BATCH_PAGES);
    await wave.sendAlone(40);
    for (let b = 0; b < 2; b++) {
      for (let j = 0; j < STREAM_BATCH_PACKETS; j++) {
        expect(wave.header(b, j).getBigUint64(MultifdField.packetNum)).toBe(
          BigInt(40 + b * STREAM_BATCH_PACKETS + j),
        );
      }
    }
  });

  // A header refused by the sender's own receive fails the send: no page of
  // the batch is written, and the wave is failed so nobody takes another.
  it("fails the send on a header refused in a batch it receives itself", async () => {
    const pages = 4 * ALLOC;
    const wave = new Wave(pages);
    const send = sendStream(
      wave.sender(async () => {
        wave.header(0, 1).setUint32(MultifdField.magic, 0x11223345);
        return 0;
      }),
      0,
      pages,
      0,
    );
    await expect(send).rejects.toThrow(MultifdPacketError);
    expect(wave.untouched()).toBe(true);
    expect(wave.queue().state()).toBe(StreamState.failed);
  });
});

describe("a sender that cannot send", () => {
  // The ring needs STREAM_SLOTS slots; with fewer the send is refused
  // before a batch is written or the destination's thread started.
  it("is refused with fewer slots than the ring needs", async () => {
    const wave = new Wave(BATCH_PAGES, { slots: 0 });
    let started = false;
    const send = sendStream(
      wave.sender(async () => {
        started = true;
        return 0;
      }),
      0,
      BATCH_PAGES,
      0,
    );
    await expect(send).rejects.toThrow(`stream: 0 slots, ${STREAM_SLOTS} needed`);
    expect(started).toBe(false);
  });

  // A header stride shorter than a packet's header: the kernel's bounds
  // check names the packet's place in the slot.
  it("is refused when a packet's header does not fit its stride, naming the packet's place", async () => {
    const wave = new Wave(BATCH_PAGES, { headerStride: multifdHeaderBytes(ALLOC) - 8 });
    const send = sendStream(
      wave.sender(async () => 0),
      0,
      BATCH_PAGES,
      0,
    );
    await expect(send).rejects.toMatchObject({ name: "RegionBoundsError", region: "headers-0[0]" });
    expect(wave.queue().state()).toBe(StreamState.failed);
  });
});

describe("the two threads at the ring's edges", () => {
  // Once the last batch is written, the sender ends the wave and takes the
  // rest with the destination's thread: it does not wait for a slot it will
  // not use, even while that thread still holds the wave's first batch.
  it("ends the wave after the last batch without waiting for the held batch's slot", async () => {
    const pages = STREAM_SLOTS * BATCH_PAGES;
    const wave = new Wave(pages);
    const split: StreamSplit = { remote: 0, local: 0 };
    let stateAtRelease: number | undefined;
    const receive = async (task: StreamReceiveTask): Promise<number> => {
      const queue = new StreamQueue(wave.source.memory, new Region(task.queue));
      const first = queue.claim();
      for (let i = 0; i < 100 && queue.state() === StreamState.sending; i++) await turn();
      stateAtRelease = queue.state();
      receiveBatch(wave.source.memory, wave.remoteEnd, task, first % STREAM_SLOTS, queue);
      queue.finish(first, true);
      return 1;
    };
    const result = await sendStream(wave.sender(receive), 0, pages, 0, split);
    expect(stateAtRelease).toBe(StreamState.sent);
    expect(result.consumed).toBe(pages);
    expect(split).toEqual({ remote: 1, local: STREAM_SLOTS - 1 });
    expect(wave.landed()).toBe(true);
  });

  // The destination's thread fails on the batch whose slot the sender waits
  // for: the sender stops waiting and fails, and never writes over the
  // batch in that thread's hands (a slot is reused only once its batch was
  // received). Without the stop it would wait for that slot forever.
  it("stops on the destination thread's failure and never overwrites the batch it holds", {
    timeout: 10_000,
  }, async () => {
    const pages = (STREAM_SLOTS + 1) * BATCH_PAGES;
    const wave = new Wave(pages);
    const split: StreamSplit = { remote: 0, local: 0 };
    const receive = async (task: StreamReceiveTask): Promise<number> => {
      const queue = new StreamQueue(wave.source.memory, new Region(task.queue));
      const first = queue.claim();
      await until(
        () => split.local === STREAM_SLOTS - 1,
        "the sender received the rest of the ring",
      );
      wave.header(0, 0).setUint32(MultifdField.magic, 0);
      try {
        receiveBatch(wave.source.memory, wave.remoteEnd, task, first % STREAM_SLOTS, queue);
      } catch (error) {
        queue.end(StreamState.failed);
        throw error;
      }
      queue.finish(first, true);
      return 1;
    };
    await expect(sendStream(wave.sender(receive), 0, pages, 0, split)).rejects.toThrow(
      MultifdPacketError,
    );
    expect(wave.header(0, 0).getBigUint64(MultifdField.packetNum)).toBe(0n);
    expect(wave.queue().claim()).toBe(-1);
    expect(wave.landed(0, BATCH_PAGES)).toBe(false);
    expect(wave.landed(BATCH_PAGES, STREAM_SLOTS * BATCH_PAGES)).toBe(true);
  });
});

describe("the destination's thread", () => {
  // While the wave is still being sent, a thread that finds no batch waits
  // for the next rather than stopping; it stops once the wave is sent and
  // none is left. Every batch it receives comes from its own slot and
  // counts as received there.
  it("waits for the sender while the wave is sent, and receives each batch from its slot", async () => {
    const pages = 2 * BATCH_PAGES - 3;
    const wave = new Wave(pages);
    const { task } = await wave.sendAlone(0);
    const queue = wave.queue();
    const [first, second] = [queue.packets(0), queue.packets(1)];
    wave.clearDestination();
    queue.reset();
    queue.write(first);
    let waits = 0;
    const received = await serveStream(wave.source.memory, wave.remoteEnd, task, (q) => {
      waits++;
      // The sender writes the wave's last batch meanwhile.
      q.write(second);
      q.end(StreamState.sent);
    });
    expect(received).toBe(2);
    expect(waits).toBe(1);
    expect(queue.remote).toBe(2);
    expect(wave.landed()).toBe(true);
  });
});

describe("a batch as the receiver finds it", () => {
  /** A wave of one batch of four packets, numbered from 40, sent and received by the sender alone. */
  async function sentBatch() {
    const wave = new Wave(4 * ALLOC);
    const { task } = await wave.sendAlone(40);
    wave.clearDestination();
    const receive = (slot = 0) =>
      receiveBatch(wave.source.memory, wave.remoteEnd, task, slot, wave.queue());
    return { wave, task, receive };
  }

  // The ring has STREAM_SLOTS slots; a slot past them is a broken task.
  it("is refused in a slot past the ring", async () => {
    const { receive } = await sentBatch();
    expect(() => receive(STREAM_SLOTS)).toThrow(
      new RangeError(`stream slot ${STREAM_SLOTS} of ${STREAM_SLOTS}`),
    );
  });

  // A batch holds 1 to STREAM_BATCH_PACKETS packets.
  it.each([0, STREAM_BATCH_PACKETS + 1])("is refused with %i packets", async (count) => {
    const { wave, receive } = await sentBatch();
    const queue = wave.queue();
    queue.reset();
    queue.write(count);
    expect(() => receive()).toThrow(
      new RangeError(`stream slot 0: ${count} packets, not 1 to ${STREAM_BATCH_PACKETS}`),
    );
    expect(wave.untouched()).toBe(true);
  });

  // What the link says of a packet must fit the packet: header bytes within
  // the stride, normal pages within pages_alloc. Nothing of the batch is
  // written otherwise.
  it("is refused when a packet's header bytes do not fit its stride", async () => {
    const { wave, task, receive } = await sentBatch();
    const entry = wave.wire(0, 2);
    entry[0] = task.headerStride + 8;
    expect(() => receive()).toThrow(
      new RangeError(
        `stream packet 42: ${task.headerStride + 8} header bytes and ${entry[1]} pages do not fit a packet of ${ALLOC}`,
      ),
    );
    expect(wave.untouched()).toBe(true);
  });

  it("is refused when a packet lists more normal pages than a packet holds", async () => {
    const { wave, task, receive } = await sentBatch();
    const entry = wave.wire(0, 2);
    entry[1] = ALLOC + 1;
    expect(() => receive()).toThrow(
      new RangeError(
        `stream packet 42: ${entry[0]} header bytes and ${ALLOC + 1} pages do not fit a packet of ${task.packetPages}`,
      ),
    );
    expect(wave.untouched()).toBe(true);
  });

  // A header whose counts differ from what was sent is named by its packet
  // number, the third of the wave numbered from 40.
  it("names the packet whose header's counts differ from those sent", async () => {
    const { wave, receive } = await sentBatch();
    const entry = wave.wire(0, 2);
    entry[2] = (entry[2] ?? 0) + 1;
    expect(() => receive()).toThrow(/^multifd packet 42: received /);
    expect(wave.untouched()).toBe(true);
  });
});
