// A worker thread playing the other end of a stream queue (built JS, as the
// pool's workers load): after a pause of its own it receives a batch, which
// bumps the queue's signal and wakes a thread waiting on it.
import { workerData } from "node:worker_threads";

const { StreamQueue } = await import(workerData.queueModule);
const { Region } = await import(workerData.regionModule);

const queue = new StreamQueue(workerData.memory, new Region(workerData.queue));
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, workerData.pauseMs);
queue.finish(0, true);
