// A worker thread that serves a channel mailbox (built JS, as a node's event
// loop does for its pool's workers) from a file in memory, so that a
// ChannelFile on the test's thread, which blocks on Atomics.wait until each
// request is answered, can be driven there. It records every request it is
// handed; a message "report" has it post that record and the file's bytes,
// a message "stop" stops serving. Writes at or past `failFrom` fail with a
// reason naming the byte.
import { parentPort, workerData } from "node:worker_threads";

const { serveChannel } = await import(workerData.channelModule);
const { Region } = await import(workerData.regionModule);
const { MemoryFile } = await import(workerData.blockFileModule);

const backing = new MemoryFile("backing", Uint8Array.from(workerData.contents), 1 << 20);
const requests = [];
const server = serveChannel(workerData.memory, new Region(workerData.mailbox), {
  read: async (position, length) => {
    requests.push(["read", position, length]);
    const out = new Uint8Array(length);
    return out.subarray(0, backing.read(out, position));
  },
  write: async (position, data) => {
    requests.push(["write", position, data.length]);
    if (position >= workerData.failFrom)
      throw new Error(`no path to the target at byte ${position}`);
    backing.write(data, position);
  },
  size: async () => {
    requests.push(["size"]);
    return backing.size();
  },
  truncate: async (length) => {
    requests.push(["truncate", length]);
    backing.truncate(length);
  },
  sync: async () => {
    requests.push(["sync"]);
  },
});
parentPort.on("message", async (message) => {
  if (message === "report") {
    parentPort.postMessage({ requests: requests.splice(0), contents: [...backing.contents()] });
  } else if (message === "stop") {
    await server.stop();
    parentPort.postMessage("stopped");
  }
});
parentPort.postMessage("serving");
