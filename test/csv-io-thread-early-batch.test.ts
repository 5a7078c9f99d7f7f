import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { LunIoThread } from "../src/csv/io-thread.js";
import { ReservedLun, sectorWrites } from "./support/csv-reserved-lun.js";
import { fileTempDir } from "./support/temp.js";

// A batch handed to an I/O thread before it has opened its descriptors
// waits for them on the thread; meanwhile the thread's word that it is
// ready must not let go of the node's process, which the batch still needs
// (csv-io-thread-hold counts the same ports for a thread that is ready
// first). The thread runs the compiled worker (npm run build first).

const KEY = 0x21n;
const dir = fileTempDir("csv-io-thread-early-batch");

/** Message ports that keep this process alive (a referenced worker shows as one). */
function heldPorts(): number {
  return process.getActiveResourcesInfo().filter((r) => r === "MessagePort").length;
}

describe("a batch handed to an I/O thread before it is ready", () => {
  it("keeps the node's process held once the thread is ready, until the batch is answered", async () => {
    const lun = new ReservedLun(join(dir, "lun"), 1 << 20, KEY);
    onTestFinished(() => lun.close());
    const before = heldPorts();
    const thread = new LunIoThread(lun.path, lun.board, false, lun.bytes);
    onTestFinished(() => thread.close());
    const writes = sectorWrites(3, 5);
    const batch = thread.write(KEY, writes);
    await thread.ready;
    expect(heldPorts()).toBe(before + 1);
    expect((await batch).acknowledged).toBe(3);
    expect(heldPorts()).toBe(before);
    expect(lun.holds(writes)).toEqual([true, true, true]);
  });
});
