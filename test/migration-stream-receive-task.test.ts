import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { Region } from "../src/memory/region.js";
import {
  type StreamSender,
  sendStream,
  streamSlotBytes,
} from "../src/migration/stream-pipeline.js";
import {
  STREAM_QUEUE_BYTES,
  STREAM_SLOTS,
  StreamQueue,
  StreamState,
} from "../src/migration/stream-queue.js";
import type { StreamReceiveTask } from "../src/migration/task-types.js";
import { handlers } from "../src/migration/tasks.js";
import { KernelContext } from "../src/wasm/context.js";
import { compileAllKernels } from "../src/wasm/loader.js";
import { MULTIFD_SCRATCH_BYTES, MultifdKernel, multifdHeaderBytes } from "../src/wasm/multifd.js";
import { ENCODE_STATS_BYTES } from "../src/wasm/page.js";
import { xorshiftBytes } from "./support/xorshift.js";

/*
 * The pool task of a stream's destination thread (src/migration/tasks.ts,
 * "migration.stream-receive") run on this thread with the kernel context a
 * pool worker builds: it receives a batch the sender wrote into the
 * destination's RAM, in the peer memory the task names, with its own
 * kernel there. The oracle is the source's RAM itself.
 */

const PAGE = 4096;
const PACKET_PAGES = 8;

describe("migration.stream-receive with a batch waiting", () => {
  // A wave of one batch, sent and then left for the destination's thread:
  // the task claims it, places every page in the peer memory's RAM (QEMU's
  // multifd_recv thread writes the pages into the destination guest's
  // RAM) and reports one batch received.
  it("receives the batch into the destination's RAM in the peer memory", async () => {
    const pages = 3 * PACKET_PAGES;
    const near = new MemoryLayout();
    const far = new MemoryLayout();
    const ram = near.allocate("ram", pages * PAGE, PAGE);
    ram.bytes(near.memory).set(xorshiftBytes(77, pages * PAGE));
    const list = near.allocate("list", pages * 4);
    new Uint32Array(near.memory.buffer, list.offset, pages).set(
      Array.from({ length: pages }, (_, page) => page),
    );
    const stride = multifdHeaderBytes(PACKET_PAGES);
    const sizes = streamSlotBytes(PACKET_PAGES, stride);
    const slots = Array.from({ length: STREAM_SLOTS }, (_, k) => ({
      headers: near.allocate(`batch-headers-${k}`, sizes.headers, 8),
      sent: near.allocate(`batch-sent-${k}`, sizes.sent, 8),
      wire: near.allocate(`batch-wire-${k}`, sizes.wire, 8),
      accepted: far.allocate(`batch-accepted-${k}`, sizes.accepted, 8),
    }));
    const farRam = far.allocate("landing-ram", pages * PAGE, PAGE);
    const farHashes = far.allocate("landing-hashes", pages * 8, 8);
    /** A receiving end's regions in the destination's memory. */
    const receiving = (who: string): StreamReceiveTask["destination"] => ({
      memory: "landing",
      receive: far.allocate(`${who}-packet`, stride, 8).toDescriptor(),
      place: far.allocate(`${who}-place-list`, PACKET_PAGES * 4, 8).toDescriptor(),
      ram: farRam.toDescriptor(),
      hashes: farHashes.toDescriptor(),
      scratch: far.allocate(`${who}-kernel`, MULTIFD_SCRATCH_BYTES, 8).toDescriptor(),
    });
    const queueRegion = near.allocate("batch-queue", STREAM_QUEUE_BYTES, 8);
    const senderSide = receiving("sender");
    let task: StreamReceiveTask | undefined;
    const sender: StreamSender = {
      source: {
        memory: near.memory,
        kernel: MultifdKernel.on(near.memory, near.allocate("send-kernel", 64, 8)),
      },
      local: {
        end: {
          memory: far.memory,
          kernel: MultifdKernel.on(far.memory, new Region(senderSide.scratch)),
        },
        destination: senderSide,
      },
      ram,
      pageShift: 12,
      list,
      alloc: PACKET_PAGES,
      headerStride: stride,
      slots,
      queue: queueRegion,
      stats: near.allocate("send-stats", ENCODE_STATS_BYTES, 8),
      hashes: near.allocate("send-hashes", pages * 8, 8),
      zeroPages: true,
      destination: receiving("thread"),
      // The destination's thread takes nothing while the wave is sent.
      receive: async (t) => {
        task = t;
        return 0;
      },
    };
    const sent = await sendStream(sender, 0, pages, 0);
    expect(sent.consumed).toBe(pages);
    if (!task) throw new Error("the destination's thread was never started");
    // Leave the wave's one batch for the destination's thread, on a clean destination.
    farRam.bytes(far.memory).fill(0);
    const queue = new StreamQueue(near.memory, queueRegion);
    queue.reset();
    queue.write(sent.packets);
    queue.end(StreamState.sent);
    const context = new KernelContext({
      memory: near.memory,
      modules: compileAllKernels(),
      peers: { landing: far.memory },
    });
    expect(await handlers["migration.stream-receive"](context, task)).toBe(1);
    expect(queue.remote).toBe(1);
    expect(Buffer.from(farRam.bytes(far.memory)).equals(Buffer.from(ram.bytes(near.memory)))).toBe(
      true,
    );
  });
});
