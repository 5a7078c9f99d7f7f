/*
 * How a quick migration verifies the restored guest
 * (src/migration/quick/saved-state-transport.ts, comparePages): every
 * page's digest on the source against the destination's, at most 65,536
 * pages a batch, in one digest region per host of one batch's digests
 * (8 bytes each, XXH64) - no more than the guest's pages for a small guest.
 * A guest one page past a batch takes two, the second of a single page.
 */
import { describe, expect, it } from "vitest";
import { SavedStateTransport } from "../src/migration/quick/saved-state-transport.js";
import { DIGEST_BYTES } from "../src/wasm/stream.js";
import { savedStateHosts } from "./support/saved-state-hosts.js";
import { testTempDir } from "./support/temp.js";

const PAGE = 4096;
const BATCH = 65_536;

/** Saves and restores a guest of `pages` pages; the transport is ready to verify. */
async function restoredGuest(pages: number, prefill: boolean) {
  const hosts = savedStateHosts(testTempDir("quick-verify"), {
    ramBytes: pages * PAGE,
    deviceBytes: 64,
    seed: 9,
    prefill,
  });
  const transport = new SavedStateTransport(hosts);
  await transport.sendPending();
  await transport.switchover();
  return { hosts, transport };
}

/** Flips one bit of a source page, so that page alone differs from the restored one. */
function touchSourcePage(hosts: ReturnType<typeof savedStateHosts>, page: number): void {
  const ram = hosts.ram.bytes(hosts.source.memory);
  ram[page * PAGE + 100] = (ram[page * PAGE + 100] ?? 0) ^ 1;
}

describe("verification's digest batches", () => {
  // A 1 MiB guest (256 pages): each host's digest region holds its 256
  // digests, not a whole batch's.
  it("holds a small guest's digests, one per page, on each host", async () => {
    const { hosts, transport } = await restoredGuest(256, true);
    expect(await transport.verify()).toBeNull();
    expect(hosts.sourceLayout.get("quick-source-digests").byteLength).toBe(256 * DIGEST_BYTES);
    expect(hosts.destination.get("quick-destination-digests").byteLength).toBe(256 * DIGEST_BYTES);
  });

  // 65,537 pages (256 MiB and a page): a batch of 65,536 digests, then one
  // of the last page alone; a page differing on each side of the batches'
  // edge is counted, and the first named.
  it("verifies a guest one page past a batch in two batches", async () => {
    const { hosts, transport } = await restoredGuest(BATCH + 1, false);
    touchSourcePage(hosts, BATCH - 1);
    touchSourcePage(hosts, BATCH);
    expect(await transport.verify()).toBe(
      `verification failed: 2 restored pages differ (first: page ${BATCH - 1})`,
    );
    expect(hosts.sourceLayout.get("quick-source-digests").byteLength).toBe(BATCH * DIGEST_BYTES);
  });
});
