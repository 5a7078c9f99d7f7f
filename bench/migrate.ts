/**
 * Migration benchmarks: a content-mode migration over an unthrottled
 * in-process link against a plain memory copy of the same bytes; a metadata
 * migration of a 1 TiB hot-set guest over 10 Gbit/s to completion; a sweep
 * of 32 points on two pool workers against one. Every case is verified
 * before it is timed.
 */
import type { BenchCase, BenchSuite } from "../src/bench/harness.js";
import { libraryName } from "../src/bench/machine.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { Migration, runMigration } from "../src/migration/engine.js";
import { STREAM_THREADS_MIN_PAGES } from "../src/migration/in-process-link.js";
import type { MigrationOptions } from "../src/migration/options.js";
import { runSweep, type SweepBase, type SweepGrid } from "../src/migration/sweep.js";
import { xxh3Long } from "../src/oracle/xxh3.js";
import { formatBytes } from "../src/util/units.js";
import { PAGE_SCRATCH_BYTES, PageKernel } from "../src/wasm/page.js";
import { StreamKernel } from "../src/wasm/stream.js";

const GiB = 1024 ** 3;
const TiB = 1024 ** 4;

function assert(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

export const suite: BenchSuite = {
  name: "migrate",
  description:
    "live migration: content mode against a memory copy, a 1 TiB metadata migration, a sweep on 1 and 2 workers",
  async setup({ quick }) {
    const cases: BenchCase[] = [];

    // --- content mode over an unthrottled in-process link ------------------
    const contentBytes = quick ? 64 * 1024 ** 2 : 2 * GiB;
    const migration = new Migration({
      guestBytes: contentBytes,
      content: true,
      workload: { kind: "uniform" },
      writesPerSecond: 0,
      maxBandwidth: Number.POSITIVE_INFINITY,
      deviceStateBytes: 0,
      // A guest whose memory is in use: no zero pages to skip, every byte copied.
      zeroFraction: 0,
      seed: 21,
    });
    // The same migration with two multifd channels: each channel's pool
    // worker runs its sender and its receiver (hashing pages on both sides),
    // the link moving page bytes straight from RAM to RAM.
    const multifd = new Migration({
      guestBytes: contentBytes,
      content: true,
      workload: { kind: "uniform" },
      writesPerSecond: 0,
      maxBandwidth: Number.POSITIVE_INFINITY,
      deviceStateBytes: 0,
      zeroFraction: 0,
      seed: 21,
      multifdChannels: 2,
    });
    const source = migration.sourceRamBytes();
    const destination = migration.destinationRamBytes();
    if (!source || !destination) throw new Error("content migration without RAM");
    cases.push({
      case: `content mode, ${formatBytes(contentBytes)} guest, unthrottled in-process link (hashing included)`,
      bytesPerOp: contentBytes,
      iterations: 5,
      verify: async () => {
        destination.fill(0);
        const result = await migration.run();
        assert(result.summary.status === "completed", `migration ${result.summary.status}`);
        assert(result.summary.verified === true, "destination not verified against the source");
        assert(
          result.summary.normal === contentBytes / 4096,
          `sent ${result.summary.normal} pages whole`,
        );
        assert(same(source, destination), "destination RAM differs from source RAM");
        const viaChannels = await multifd.run();
        assert(viaChannels.summary.verified === true, "multifd destination not verified");
        assert(
          viaChannels.summary.normal === result.summary.normal &&
            viaChannels.summary.duplicate === result.summary.duplicate,
          "multifd sent other pages than one stream",
        );
        const multifdSource = multifd.sourceRamBytes() ?? new Uint8Array();
        const multifdDestination = multifd.destinationRamBytes() ?? new Uint8Array(1);
        assert(same(multifdSource, multifdDestination), "multifd destination differs");
        destination.fill(0);
        destination.set(source);
        assert(same(source, destination), "memory copy differs");
      },
      impls: [
        {
          impl: `hvlab migrate, one stream (sender and receiver on ${
            contentBytes / 4096 >= STREAM_THREADS_MIN_PAGES ? "two threads" : "one thread"
          }, pages RAM to RAM)`,
          fn: async () => {
            const result = await migration.run();
            if (result.summary.verified !== true) throw new Error("verification failed");
          },
        },
        {
          impl: "hvlab migrate, 2 multifd channels (QEMU packets, pages RAM to RAM)",
          fn: async () => {
            const result = await multifd.run();
            if (result.summary.verified !== true) throw new Error("verification failed");
          },
        },
        { impl: "memory copy (bound)", fn: () => destination.set(source) },
      ],
    });

    // --- the page hash against its peers -------------------------------------
    cases.push(await pageHashCase(quick));

    // --- metadata mode, 1 TiB hot-set guest over 10 Gbit/s -----------------
    const metaBytes = quick ? 16 * GiB : TiB;
    const metaOptions: MigrationOptions = {
      guestBytes: metaBytes,
      content: false,
      workload: { kind: "hotset", hotFraction: 0.9 },
      writesPerSecond: 100_000,
      maxBandwidth: 10e9 / 8,
      policy: "qemu",
      seed: 22,
    };
    cases.push({
      case: `metadata mode, ${formatBytes(metaBytes)} hot-set guest, 10 Gbit/s, to completion`,
      iterations: 3,
      verify: async () => {
        const result = await runMigration(metaOptions);
        assert(result.summary.status === "completed", `migration ${result.summary.status}`);
        assert(result.summary.transferred >= metaBytes, "sent less than the guest");
      },
      impls: [
        {
          impl: "hvlab migrate (metadata)",
          fn: async () => {
            const result = await runMigration(metaOptions);
            if (result.summary.status !== "completed") throw new Error("did not complete");
          },
        },
      ],
    });

    // --- a sweep of 32 points on two workers against one -------------------
    const sweepBase: SweepBase = {
      guestBytes: quick ? 2 * GiB : 32 * GiB,
      content: false,
      workload: { kind: "hotset" },
      seed: 23,
    };
    const grid: SweepGrid = {
      bandwidths: [1e9 / 8, 2.5e9 / 8, 5e9 / 8, 10e9 / 8],
      writeRates: [20_000, 50_000, 100_000, 200_000],
      downtimeLimitsMs: [300],
      policies: ["qemu", "xen"],
    };
    cases.push({
      case: "sweep of 32 points (4 bandwidths x 4 dirty rates x 2 policies)",
      opsPerCall: 32,
      iterations: 5,
      verify: async () => {
        const one = await runSweep(sweepBase, grid, { workers: 1 });
        const two = await runSweep(sweepBase, grid, { workers: 2 });
        assert(one.points.length === 32, `${one.points.length} points`);
        assert(
          JSON.stringify(one.points) === JSON.stringify(two.points),
          "two workers gave other results than one",
        );
      },
      impls: [
        {
          impl: "hvlab sweep, 2 workers",
          fn: async () => runSweep(sweepBase, grid, { workers: 2 }),
        },
        {
          impl: "hvlab sweep, 1 worker",
          fn: async () => runSweep(sweepBase, grid, { workers: 1 }),
        },
      ],
    });

    return {
      cases,
      teardown: async () => {
        await migration.close();
        await multifd.close();
      },
    };
  },
};

/**
 * The page hash both sides of a content migration take of every page:
 * XXH3-64 in wasm SIMD against XXH64 in wasm (the hash of the live mode's
 * frames), the xxHash library's native XXH3 (one call per page, as a caller
 * would use it), a memory copy of the same pages (in cache, as the hash
 * reads them) and the BigInt oracle.
 */
async function pageHashCase(quick: boolean): Promise<BenchCase> {
  const pages = quick ? 64 : 256;
  const layout = new MemoryLayout();
  const kernel = PageKernel.on(
    layout.memory,
    layout.allocate("hash-bench-scratch", PAGE_SCRATCH_BYTES),
  );
  const stream = StreamKernel.on(layout.memory);
  const ram = layout.allocate("hash-bench-ram", pages * 4096, 4096);
  const table = layout.allocate("hash-bench-table", pages * 8, 8);
  const copy = layout.allocate("hash-bench-copy", pages * 4096, 4096);
  kernel.seedPages(ram, 12, 0, pages, 23, 0);
  const bytes = ram.bytes(layout.memory);
  const page = (p: number) => bytes.subarray(p * 4096, (p + 1) * 4096);
  const native = await import("@node-rs/xxhash").then(
    (m) => m.xxh3,
    () => undefined,
  );
  const copyBytes = copy.bytes(layout.memory);
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let sink = 0n;
  const impls = [
    {
      impl: "hvlab XXH3-64 (wasm SIMD)",
      fn: () => kernel.hashPages(ram, 12, 0, pages, table),
    },
    {
      impl: "XXH64 (wasm, the live mode's frame hash)",
      fn: () => stream.hashPages({ region: ram, pageShift: 12 }, 0, pages, table),
    },
    {
      // The bound a migration's hash is held against: each page is hashed
      // twice per page copied, so the hash at twice the copy's rate costs
      // as much as the copy.
      impl: "memory copy of the same pages (bound)",
      fn: () => copyBytes.set(bytes),
    },
    {
      impl: "oracle (BigInt, one lane at a time)",
      fn: () => {
        for (let p = 0; p < pages; p++) sink ^= xxh3Long(page(p));
        return sink;
      },
    },
  ];
  if (native) {
    impls.splice(2, 0, {
      impl: `${libraryName("@node-rs/xxhash")} xxh3 (native, a call per page)`,
      fn: () => {
        for (let p = 0; p < pages; p++)
          sink ^= native.xxh64(buffer.subarray(p * 4096, (p + 1) * 4096));
        return sink;
      },
    });
  }
  return {
    case: `page hash, ${pages} pages of 4 KiB`,
    bytesPerOp: pages * 4096,
    iterations: 3,
    verify: () => {
      copyBytes.fill(0);
      copyBytes.set(bytes);
      assert(same(copyBytes, bytes), "memory copy differs");
      kernel.hashPages(ram, 12, 0, pages, table);
      const ours = new BigUint64Array(layout.memory.buffer, table.offset, pages);
      for (let p = 0; p < pages; p++) {
        const want = xxh3Long(page(p));
        assert(ours[p] === want, `page ${p}: XXH3-64 differs from the oracle`);
        if (native) {
          const theirs = native.xxh64(buffer.subarray(p * 4096, (p + 1) * 4096));
          assert(theirs === want, `page ${p}: the library's XXH3 differs from the oracle`);
        }
      }
    },
    impls,
  };
}
