import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { runMigration } from "../src/migration/engine.js";
import { isZeroOneByOne } from "../src/oracle/page.js";
import { PAGE_SCRATCH_BYTES, PageKernel } from "../src/wasm/page.js";

const MiB = 1024 ** 2;
const PAGE = 4096;
const RECORD = PAGE + 8;

/** Counts the zero pages of the starting image the engine seeds, with the one-byte-at-a-time oracle. */
function zeroPagesOfImage(bytes: number, seed: number, zeroFraction: number): number {
  const layout = new MemoryLayout();
  const kernel = PageKernel.on(
    layout.memory,
    layout.allocate("page-kernel-scratch", PAGE_SCRATCH_BYTES),
  );
  const ram = layout.allocate("image", bytes, 4096);
  kernel.seedPages(ram, 12, 0, bytes / PAGE, seed, zeroFraction);
  const view = ram.bytes(layout.memory);
  let zero = 0;
  for (let p = 0; p < bytes / PAGE; p++) {
    if (isZeroOneByOne(view.subarray(p * PAGE, (p + 1) * PAGE))) zero++;
  }
  return zero;
}

describe("content mode", () => {
  it("zero-page detection saves exactly (page + header) - (header + 1 byte) per zero page of the image", async () => {
    const guestBytes = 32 * MiB;
    const common = {
      guestBytes,
      content: true,
      workload: { kind: "uniform" as const },
      writesPerSecond: 0,
      maxBandwidth: 1e9,
      zeroFraction: 0.4,
      seed: 11,
    };
    const on = await runMigration({ ...common, zeroPages: true });
    const off = await runMigration({ ...common, zeroPages: false });
    const zero = zeroPagesOfImage(guestBytes, 11, 0.4);
    expect(zero).toBeGreaterThan(0);
    expect(on.summary.duplicate).toBe(zero);
    expect(off.summary.duplicate).toBe(0);
    expect(off.summary.transferred - on.summary.transferred).toBe(zero * (RECORD - 9));
    expect(on.summary.verified).toBe(true);
    expect(off.summary.verified).toBe(true);
  });

  it("XBZRLE sends small deltas for pages the guest rewrote, and its statistics add up", async () => {
    const result = await runMigration({
      guestBytes: 32 * MiB,
      content: true,
      workload: { kind: "hotset", hotPages: 512, hotFraction: 1 },
      writesPerSecond: 200_000,
      maxBandwidth: 20e6,
      xbzrle: true,
      policy: "xen",
      seed: 4,
    });
    const s = result.summary;
    const cache = s["xbzrle-cache"];
    expect(s.status).toBe("completed");
    expect(s.verified).toBe(true);
    expect(cache).not.toBeNull();
    if (!cache) return;
    expect(cache.pages).toBeGreaterThan(0);
    expect(cache["cache-miss"]).toBeGreaterThan(0);
    // Each write changes 8 bytes: a delta of a few runs, far below a page.
    expect(cache["encoding-rate"]).toBeGreaterThan(20);
    // What went on the wire is exactly what the records say: whole pages,
    // zero pages (header + 1), XBZRLE pages (header + flag + length + delta), device state.
    const xbzrleWire = cache.bytes + cache.pages * 8;
    expect(s.transferred).toBe(s.normal * RECORD + s.duplicate * 9 + xbzrleWire + 1024 ** 2);
    // The same run without XBZRLE sends those pages whole.
    expect(cache.pages * RECORD).toBeGreaterThan(10 * xbzrleWire);
  });

  it("the destination always equals the source, whatever the optimizations", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          kind: fc.constantFrom("uniform", "hotset", "zipf", "sequential"),
          rate: fc.integer({ min: 0, max: 300_000 }),
          xbzrle: fc.boolean(),
          zeroPages: fc.boolean(),
          postcopy: fc.option(fc.integer({ min: 1, max: 3 }), { nil: null }),
          bandwidth: fc.constantFrom(5e6, 50e6, Number.POSITIVE_INFINITY),
          seed: fc.nat(1000),
          policy: fc.constantFrom("qemu", "hyperv", "xen"),
        }),
        async (c) => {
          const result = await runMigration({
            guestBytes: 8 * MiB,
            content: true,
            workload: { kind: c.kind as "uniform" },
            writesPerSecond: c.rate,
            maxBandwidth: c.bandwidth,
            xbzrle: c.xbzrle,
            zeroPages: c.zeroPages,
            postcopyAfterRounds: c.postcopy,
            policy: c.policy as "qemu",
            autoConverge: true,
            seed: c.seed,
          });
          if (result.summary.status === "completed") expect(result.summary.verified).toBe(true);
          else expect(result.summary.status).toBe("not-converged");
        },
      ),
      { numRuns: 25 },
    );
  });

  it("a single wrong byte on the destination fails the run, naming the page", async () => {
    const result = await runMigration({
      guestBytes: 8 * MiB,
      content: true,
      workload: { kind: "uniform" },
      writesPerSecond: 10_000,
      maxBandwidth: 100e6,
      beforeVerify: (ram) => {
        ram[1234 * PAGE + 77] = (ram[1234 * PAGE + 77] ?? 0) ^ 1;
      },
    });
    expect(result.summary.status).toBe("failed");
    expect(result.summary.verified).toBe(false);
    expect(result.summary.reason).toMatch(/destination page 1234 differs/);
  });

  it("a wrong byte on the destination of an idle guest fails the run too", async () => {
    // No guest writes: the hashes recorded while encoding and decoding are
    // compared, and a destination handed out before verification is hashed afresh.
    const result = await runMigration({
      guestBytes: 8 * MiB,
      content: true,
      workload: { kind: "uniform" },
      writesPerSecond: 0,
      maxBandwidth: Number.POSITIVE_INFINITY,
      beforeVerify: (ram) => {
        ram[99 * PAGE + 5] = (ram[99 * PAGE + 5] ?? 0) ^ 0x80;
      },
    });
    expect(result.summary.status).toBe("failed");
    expect(result.summary.reason).toMatch(/destination page 99 differs/);
  });

  it("post-copy fetches touched pages as remote faults and pushes the rest", async () => {
    const result = await runMigration({
      guestBytes: 64 * MiB,
      content: true,
      workload: { kind: "hotset", hotFraction: 0.95 },
      writesPerSecond: 400_000,
      maxBandwidth: 50e6,
      latencyMs: 1,
      postcopyAfterRounds: 1,
      seed: 9,
    });
    const s = result.summary;
    expect(s.status).toBe("completed");
    expect(s.verified).toBe(true);
    expect(result.rounds.some((r) => r.decision === "switch-to-postcopy")).toBe(true);
    expect(s["postcopy-bytes"]).toBeGreaterThan(0);
    expect(s["postcopy-remote-faults"]).toBeGreaterThan(0);
    // Each fault waits a round trip plus one page on the link.
    const perFault = 2 * 1 + (RECORD / 50e6) * 1000;
    expect(s["postcopy-fault-wait-ms"]).toBeCloseTo(s["postcopy-remote-faults"] * perFault, 3);
    // Downtime is the pause for device state and switchover only.
    expect(s.downtime).toBeLessThan(1 + (1024 ** 2 / 50e6) * 1000 + 50 + 1);
  });

  it("multifd channels on the pool send the same pages as one stream, in QEMU's multifd packets", async () => {
    const common = {
      guestBytes: 64 * MiB,
      content: true,
      workload: { kind: "uniform" as const },
      writesPerSecond: 0,
      maxBandwidth: Number.POSITIVE_INFINITY,
      seed: 12,
    };
    const single = await runMigration(common);
    const multi = await runMigration({ ...common, multifdChannels: 2 });
    expect(multi.summary.verified).toBe(true);
    expect(multi.summary["multifd-channels"]).toBe(2);
    expect(multi.summary["multifd-packets"]).toBeGreaterThan(2);
    expect(multi.summary.normal).toBe(single.summary.normal);
    expect(multi.summary.duplicate).toBe(single.summary.duplicate);
    // The single stream sends 8 + 4096 bytes per page and 9 per zero page;
    // multifd sends a 320-byte header per packet, 8 bytes of offset per page
    // listed (zero pages are an offset only) and the normal pages' bytes.
    const normal = single.summary.normal;
    const zero = single.summary.duplicate;
    const besidesPages = single.summary.transferred - normal * (8 + 4096) - zero * 9;
    const packets = multi.summary["multifd-packets"] ?? 0;
    expect(multi.summary.transferred).toBe(
      packets * 320 + (normal + zero) * 8 + normal * 4096 + besidesPages,
    );
    // Packets carry at most 128 pages (pages_alloc), so at least this many went.
    expect(packets).toBeGreaterThanOrEqual(Math.ceil((normal + zero) / 128));
  });
});

describe("metadata mode", () => {
  it("migrates a 16 TiB guest (2^32 pages of bitmap) to completion", async () => {
    const result = await runMigration({
      guestBytes: 16 * 1024 ** 4,
      content: false,
      workload: { kind: "hotset", hotPages: 4096 },
      writesPerSecond: 0,
      maxBandwidth: Number.POSITIVE_INFINITY,
    });
    expect(result.summary.status).toBe("completed");
    expect(result.summary.normal).toBe(2 ** 32);
    expect(result.summary.verified).toBeNull();
  }, 120_000);
});
