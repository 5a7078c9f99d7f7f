// A worker thread that drives a ChannelFile (built JS, as the pool's workers
// load): it runs the operations it is given, one after another, and posts
// back what each returned or the error it threw.
import { parentPort, workerData } from "node:worker_threads";

const { ChannelFile } = await import(workerData.channelModule);
const { Region } = await import(workerData.regionModule);

const file = new ChannelFile("volume file", workerData.memory, new Region(workerData.mailbox));
const results = [];
for (const op of workerData.ops) {
  try {
    if (op.kind === "write") {
      file.write(Uint8Array.from(op.data), op.position);
      results.push({ ok: true });
    } else if (op.kind === "writev") {
      file.writev(
        op.parts.map((p) => Uint8Array.from(p)),
        op.position,
      );
      results.push({ ok: true });
    } else if (op.kind === "read") {
      const into = new Uint8Array(op.length);
      const n = file.read(into, op.position);
      results.push({ ok: true, n, data: [...into.subarray(0, n)] });
    } else if (op.kind === "size") results.push({ ok: true, n: file.size() });
    else if (op.kind === "truncate") {
      file.truncate(op.length);
      results.push({ ok: true });
    } else if (op.kind === "sync") {
      file.sync();
      results.push({ ok: true });
    }
  } catch (error) {
    results.push({ ok: false, name: error.name, message: error.message });
  }
}
parentPort.postMessage(results);
