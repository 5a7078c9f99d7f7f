/*
 * Quick migration's transport for the pre-copy driver
 * (src/migration/quick/saved-state-transport.ts; docs/migration-live.md,
 * "The saved-state file"): the stop-and-copy writes the whole guest to the
 * file, the switchover waits out the storage failover, reads the file back
 * into the destination's own memory and waits the resume cost, and
 * verification compares every page's digest and the device state on the two
 * hosts, naming how many pages differ and the first.
 */
import { statSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { savedStateBytes } from "../src/migration/quick/saved-state.js";
import {
  MAX_QUICK_GUEST_BYTES,
  region,
  type SavedStateHosts,
  SavedStateTransport,
} from "../src/migration/quick/saved-state-transport.js";
import { savedStateHosts } from "./support/saved-state-hosts.js";
import { testTempDir } from "./support/temp.js";

const MiB = 1024 ** 2;
const CHUNK = 64 * 1024;
/** The timers' millisecond granularity: a wait of N ms can read as N - 1 on performance.now(). */
const TIMER_SLACK_MS = 1;

/** A 1 MiB source guest and its device blob, a destination host, and the file between them. */
function hosts(options: Partial<SavedStateHosts> = {}): SavedStateHosts {
  const guest = { ramBytes: MiB, deviceBytes: options.deviceBytes ?? 1000, seed: 21 };
  return savedStateHosts(testTempDir("saved-state-transport"), guest, {
    chunkBytes: CHUNK,
    ...options,
  });
}

/** A transport that has saved and restored, ready to verify. */
async function restored(options: Partial<SavedStateHosts> = {}) {
  const h = hosts(options);
  const transport = new SavedStateTransport(h);
  await transport.sendPending();
  const handover = await transport.switchover();
  return { h, transport, handover };
}

describe("the stop-and-copy: the whole guest into the file", () => {
  // Before anything is saved nothing has gone and no rate is known; after, the
  // pass is every page of the guest and the file's exact size (the format's
  // header, one 24-byte header per 64 KiB chunk, the RAM and the device state).
  it("sends every page as the file's bytes, and counts them as normal pages", async () => {
    const h = hosts();
    const transport = new SavedStateTransport(h);
    expect(transport.mode).toBe("quick");
    expect(transport.transferred).toBe(0);
    expect(transport.counters()).toEqual({ duplicate: 0, normal: 0, xbzrle: null });
    expect(transport.rate()).toBe(0);
    const pass = await transport.sendPending();
    const fileBytes = 64 + 16 * 24 + MiB + 1000;
    expect(savedStateBytes(MiB, CHUNK, 1000)).toBe(fileBytes);
    expect(pass).toEqual({ pages: 256, bytes: fileBytes, cut: false });
    expect(statSync(h.file).size).toBe(fileBytes);
    expect(transport.transferred).toBe(fileBytes);
    expect(transport.steps.fileBytes).toBe(fileBytes);
    expect(transport.steps.saveMs).toBeGreaterThan(0);
    expect(transport.counters()).toEqual({ duplicate: 0, normal: 256, xbzrle: null });
  });

  // The link's rate is the save's: the file's bytes over the time the save took.
  it("measures the link as the save: file bytes per second of saving", async () => {
    const transport = new SavedStateTransport(hosts());
    await transport.sendPending();
    const { fileBytes, saveMs } = transport.steps;
    expect(transport.rate()).toBeCloseTo((fileBytes * 1000) / saveMs, 3);
  });

  // A round's bandwidth is its bytes per second; a round of no time has none.
  it("gives a round's bandwidth in bytes per second, 0 for a round of no time", () => {
    const transport = new SavedStateTransport(hosts());
    expect(transport.bandwidth(3000, 1500)).toBe(2000);
    expect(transport.bandwidth(4096, 0.5)).toBe(8_192_000);
    expect(transport.bandwidth(3000, 0)).toBe(0);
  });
});

describe("the switchover: failover, restore, resume", () => {
  // The handover puts nothing on the link (the device state is in the file)
  // and words both rounds: the save and the failover with the restore.
  it("restores the file and words the two rounds with the failover rounded to a millisecond", async () => {
    const { transport, handover } = await restored({ failoverMs: 12.6 });
    expect(transport.steps.failoverMs).toBe(12.6);
    expect(handover.bytes).toBe(0);
    expect(handover.fixed).toBe("storage failover 13 ms and the restore from the file");
    // 1,050,024 bytes of file is 1.0 MiB; 1,000 bytes of device state is "1000 B".
    expect(handover.ownRound?.copy).toBe(
      "VM paused; RAM and 1000 B of device state saved to 1.0 MiB file",
    );
    expect(handover.ownRound?.resume).toBe(
      `storage failover 13 ms (unmount, move, mount), file read back and checked in ${Math.round(transport.steps.restoreMs)} ms, VM resumed`,
    );
    expect(await transport.verify()).toBeNull();
  });

  // The failover is a wait before the restore; the resume cost a wait after
  // it, counted in the restore step (docs/migration-live.md: "wait --resume ms").
  it("waits the failover before the restore and the resume cost within it", async () => {
    const h = hosts({ failoverMs: 30, resumeMs: 40 });
    const transport = new SavedStateTransport(h);
    await transport.sendPending();
    const before = performance.now();
    await transport.switchover();
    const elapsed = performance.now() - before;
    expect(transport.steps.restoreMs).toBeGreaterThanOrEqual(40 - TIMER_SLACK_MS);
    expect(elapsed).toBeGreaterThanOrEqual(70 - TIMER_SLACK_MS);
    // The restore step is measured from the mount: it holds no failover.
    expect(transport.steps.restoreMs).toBeLessThanOrEqual(elapsed - 30 + TIMER_SLACK_MS);
    expect(await transport.verify()).toBeNull();
  });

  // A guest's limit on the destination is MAX_QUICK_GUEST_BYTES: 2 GiB.
  it("reads a guest of up to 2 GiB", () => {
    expect(MAX_QUICK_GUEST_BYTES).toBe(2 * 1024 ** 3);
  });
});

describe("verification: every page and the device state against the source", () => {
  // Nothing restored is nothing verified.
  it("fails when nothing was restored", async () => {
    const transport = new SavedStateTransport(hosts());
    expect(await transport.verify()).toBe("verification failed: nothing was restored");
    await transport.sendPending();
    expect(await transport.verify()).toBe("verification failed: nothing was restored");
  });

  // Pages whose digests differ are counted, and the first is named.
  it("counts the pages that differ and names the first", async () => {
    const { h, transport } = await restored();
    const ram = h.ram.bytes(h.source.memory);
    ram[200 * 4096 + 77] = (ram[200 * 4096 + 77] ?? 0) ^ 1;
    ram[3 * 4096 + 4095] = (ram[3 * 4096 + 4095] ?? 0) ^ 0x80;
    ram[255 * 4096] = (ram[255 * 4096] ?? 0) ^ 2;
    expect(await transport.verify()).toBe(
      "verification failed: 3 restored pages differ (first: page 3)",
    );
  });

  // The device state is compared byte for byte once the pages agree.
  it("fails on a device state that differs in one byte", async () => {
    const { h, transport } = await restored();
    const device = h.device.bytes(h.source.memory);
    device[999] = (device[999] ?? 0) ^ 1;
    expect(await transport.verify()).toBe("verification failed: the restored device state differs");
  });

  // A check can be asked again (after a page is mended, say): the digest
  // regions are laid out once, not a second time under the same names.
  it("verifies again, each time against the pages as they are then", async () => {
    const { h, transport } = await restored();
    expect(await transport.verify()).toBeNull();
    const ram = h.ram.bytes(h.source.memory);
    ram[9 * 4096] = (ram[9 * 4096] ?? 0) ^ 4;
    expect(await transport.verify()).toBe(
      "verification failed: 1 restored pages differ (first: page 9)",
    );
    ram[9 * 4096] = (ram[9 * 4096] ?? 0) ^ 4;
    expect(await transport.verify()).toBeNull();
    expect(h.sourceLayout.get("quick-source-digests").byteLength).toBe(256 * 8);
  });

  // A guest with no device state restores and verifies: its blob is an empty
  // region of its own, laid out in neither memory.
  it("verifies a guest with no device state", async () => {
    const { h, transport, handover } = await restored({ deviceBytes: 0 });
    expect(h.device.byteLength).toBe(0);
    expect(transport.steps.fileBytes).toBe(64 + 16 * 24 + MiB);
    expect(handover.ownRound?.copy).toBe(
      "VM paused; RAM and 0 B of device state saved to 1.0 MiB file",
    );
    expect(await transport.verify()).toBeNull();
    expect(() => h.destination.get("quick-destination-device")).toThrowError(
      "no region named 'quick-destination-device'",
    );
    expect(h.destination.get("quick-destination-ram").byteLength).toBe(MiB);
  });
});

describe("region", () => {
  // A blob of some bytes is laid out; one of none is an empty region of its name.
  it("lays out a blob of bytes, and gives an empty blob a region of its own name and no bytes", () => {
    const layout = new MemoryLayout();
    const blob = region(layout, "blob", 10);
    expect(blob.byteLength).toBe(10);
    expect(layout.get("blob")).toBe(blob);
    const empty = region(layout, "empty", 0);
    expect(empty).toMatchObject({ name: "empty", offset: 0, byteLength: 0 });
    expect(() => layout.get("empty")).toThrowError("no region named 'empty'");
  });
});

describe("explain", () => {
  // An error names the phase and the file it broke on.
  it("names the phase and the saved-state file", () => {
    const h = hosts();
    const transport = new SavedStateTransport(h);
    expect(transport.explain(new Error("disk full"), "stop-and-copy")).toBe(
      `stop-and-copy (saved-state file ${h.file}): disk full`,
    );
  });
});
