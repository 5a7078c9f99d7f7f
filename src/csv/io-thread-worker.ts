import { parentPort, workerData } from "node:worker_threads";
import { FdFile } from "../storage/block-file.js";
import { DirectFile } from "../storage/direct-file.js";
import { type BatchOutcome, type BatchWrite, runFencedBatch } from "./fenced-batch.js";
import type { IoThreadBoot, IoThreadReply, IoThreadRequest } from "./io-thread.js";
import { BoardReader } from "./registration-board.js";

// A node's I/O thread (io-thread.ts): its own descriptors of the LUN and of
// the registration board, and one batch of fenced writes at a time, back to
// back, with one message back per batch. The control words it shares with
// the node and its group are described at IoThreadBoot.control.

const boot = workerData as IoThreadBoot;
const lun = boot.direct ? DirectFile.open(boot.lun, "r+") : new FdFile(boot.lun, "r+");
const board = new BoardReader(boot.board);
const control = boot.control;
// Both descriptors are open: the node may count on them (a failure to open
// them is thrown above, and reaches the node as the thread's error).
parentPort?.postMessage({ ready: true } satisfies IoThreadReply);

function run(request: IoThreadRequest): BatchOutcome {
  const writes: BatchWrite[] = [];
  const t = request.table;
  for (let i = 0; i + 3 < t.length; i += 4)
    writes.push({
      buffer: t[i] as number,
      bufferOffset: t[i + 1] as number,
      length: t[i + 2] as number,
      lunOffset: t[i + 3] as number,
    });
  Atomics.store(control, boot.slot, 0);
  const outcome = runFencedBatch(
    {
      readBoard: () => board.read(),
      pwrite: (data, at) => lun.write(data, at),
      acknowledged: (n) => Atomics.store(control, boot.slot, n),
      halted: () => {
        if (Atomics.load(control, 0) !== 0) return "the node halted its direct writes";
        if (Atomics.load(control, 1) !== 0) return "another part of the batch stopped";
        return undefined;
      },
    },
    request.key,
    request.buffers,
    writes,
  );
  // The other threads of the batch stop before their next write.
  if (outcome.stop && outcome.stop.cause !== "halted") Atomics.store(control, 1, 1);
  return outcome;
}

parentPort?.on("message", (request: IoThreadRequest | "close") => {
  if (request === "close") {
    // The descriptors are the process's: they outlive the thread unless closed here.
    lun.close();
    board.close();
    parentPort?.close();
    return;
  }
  let reply: IoThreadReply;
  try {
    reply = { id: request.id, outcome: run(request) };
  } catch (error) {
    reply = { id: request.id, error: (error as Error).message };
  }
  parentPort?.postMessage(reply);
});
