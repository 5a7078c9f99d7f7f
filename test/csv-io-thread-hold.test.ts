import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it, onTestFinished } from "vitest";
import { LunIoThread } from "../src/csv/io-thread.js";
import { LunIoThreads } from "../src/csv/io-threads.js";
import { ReservedLun, sectorWrites } from "./support/csv-reserved-lun.js";
import { descriptorsOn } from "./support/descriptors.js";
import { fileTempDir } from "./support/temp.js";

// What a node's I/O threads hold of the node's process: an idle thread
// does not keep it alive, a thread with a batch in hand does (a node that
// has nothing else to do must still see its batch through); and what a
// group's `ready` waits for: every thread's descriptors open, or the first
// thread's reason it could not open them. The threads run the compiled
// worker (npm run build first).

const KEY = 0x21n;
const LUN_BYTES = 1 << 20;
const dir = fileTempDir("csv-io-thread-hold");

let luns = 0;
/** A LUN with KEY registered, its board closed once the test has finished. */
function reservedLun(): ReservedLun {
  const lun = new ReservedLun(join(dir, `lun-${++luns}`), LUN_BYTES, KEY);
  onTestFinished(() => lun.close());
  return lun;
}

/**
 * Message ports that keep this process alive: a worker kept referenced
 * shows as one (process.getActiveResourcesInfo, which lists only handles
 * that hold the event loop open).
 */
function heldPorts(): number {
  return process.getActiveResourcesInfo().filter((r) => r === "MessagePort").length;
}

describe("what an I/O thread holds of the node's process", () => {
  it("itself while it opens its descriptors and while a batch is in hand; nothing while idle", async () => {
    const lun = reservedLun();
    const before = heldPorts();
    const thread = new LunIoThread(lun.path, lun.board, false, lun.bytes);
    onTestFinished(() => thread.close());
    expect(heldPorts()).toBe(before + 1);
    await thread.ready;
    expect(heldPorts()).toBe(before);
    const writes = sectorWrites(4, 1);
    const batch = thread.write(KEY, writes);
    expect(heldPorts()).toBe(before + 1);
    // A second batch queued behind the first changes nothing.
    const second = thread.write(KEY, sectorWrites(2, 2, 8192));
    expect(heldPorts()).toBe(before + 1);
    expect((await batch).acknowledged).toBe(4);
    expect((await second).acknowledged).toBe(2);
    expect(heldPorts()).toBe(before);
    expect(lun.holds(writes)).toEqual([true, true, true, true]);
  });
});

/**
 * Runs a script in a process of its own that starts a thread on a LUN of
 * `lun` and awaits `ready`, then runs `then`; resolves with what it
 * printed once the process has exited of itself.
 */
async function ownProcess(lun: ReservedLun, then: string): Promise<string> {
  const module = (path: string) => pathToFileURL(join(process.cwd(), path)).href;
  const script = `
    import { LunIoThread } from ${JSON.stringify(module("dist/src/csv/io-thread.js"))};
    const thread = new LunIoThread(${JSON.stringify(lun.path)}, ${JSON.stringify(lun.board)}, false, ${lun.bytes});
    await thread.ready;
    console.log("ready");
    ${then}
  `;
  const file = join(dir, `own-process-${++luns}.mjs`);
  writeFileSync(file, script);
  const { stdout } = await promisify(execFile)(process.execPath, [file], { timeout: 15_000 });
  return stdout;
}

describe("a process with an I/O thread and nothing else to do", () => {
  it("exits once the thread is ready and idle (it waited forever), and once its batch is answered", async () => {
    const lun = reservedLun();
    expect(await ownProcess(lun, "")).toBe("ready\n");
    const batch = `
      const data = new Uint8Array(new SharedArrayBuffer(512)).fill(9);
      thread.write(${KEY}n, [{ lunOffset: 4096, data }]).then((o) => console.log("acknowledged", o.acknowledged));
    `;
    expect(await ownProcess(lun, batch)).toBe("ready\nacknowledged 1\n");
    expect(lun.contents().subarray(4096, 4608)).toEqual(Buffer.alloc(512, 9));
  });
});

describe("a group's `ready`", () => {
  it.skipIf(process.platform !== "linux")(
    "settles once every thread has the LUN open, before any batch",
    async () => {
      const lun = reservedLun();
      const threads = new LunIoThreads(lun.path, lun.board, false, lun.bytes, 3);
      onTestFinished(() => threads.close());
      await threads.ready;
      expect(descriptorsOn(lun.path)).toBe(3);
    },
  );

  it("rejects with the thread's reason when a thread cannot open the LUN", async () => {
    const lun = reservedLun();
    const missing = join(dir, "no-such-lun");
    const threads = new LunIoThreads(missing, lun.board, false, lun.bytes, 2);
    onTestFinished(() => threads.close());
    await expect(threads.ready).rejects.toThrow(/ENOENT.*no-such-lun|no-such-lun.*ENOENT/);
  });
});
