import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { RegionBoundsError } from "../src/memory/errors.js";
import { MemoryLayout } from "../src/memory/layout.js";
import { packageRoot } from "../src/util/package-root.js";
import { ChecksumKernel } from "../src/wasm/checksum.js";
import { KernelContext } from "../src/wasm/context.js";
import { compileAllKernels, KERNEL_NAMES, kernelNames } from "../src/wasm/loader.js";
import { MULTIFD_SCRATCH_BYTES } from "../src/wasm/multifd.js";
import { PAGE_SCRATCH_BYTES } from "../src/wasm/page.js";
import { RssKernel, TOEPLITZ_TABLE_BYTES } from "../src/wasm/rss.js";
import { SegmentFlag, SegmentKernel } from "../src/wasm/segment.js";
import {
  FlushScope,
  TRACE_RECORD_BYTES,
  WALK_CONTEXT_BYTES,
  WalkKernel,
} from "../src/wasm/walk.js";

/*
 * One kernel ABI: every module in assembly/ has a name in the closed list,
 * a wrapper in src/wasm/ reached through a typed getter on KernelContext,
 * and every wrapper refuses an offset or length outside its region before
 * wasm runs.
 */

describe("the kernel modules", () => {
  it("are exactly the top-level files of assembly/, and the build holds each", () => {
    const sources = readdirSync(join(packageRoot(), "assembly"), { withFileTypes: true })
      .filter((entry) => entry.isFile() && entry.name.endsWith(".ts"))
      .map((entry) => entry.name.replace(/\.ts$/, ""))
      .sort();
    expect([...KERNEL_NAMES].sort()).toEqual(sources);
    expect(kernelNames()).toEqual(KERNEL_NAMES);
  });

  it("each have a wrapper on a thread's kernel context, over that context's memory", () => {
    const layout = new MemoryLayout();
    const context = new KernelContext({ memory: layout.memory, modules: compileAllKernels() });
    const page = layout.allocate("page scratch", PAGE_SCRATCH_BYTES);
    const multifd = layout.allocate("multifd scratch", MULTIFD_SCRATCH_BYTES);
    const wrappers = {
      bandwidth: context.bandwidth,
      checksum: context.checksum,
      dirty: context.dirty,
      lackey: context.lackey,
      multifd: context.multifd(multifd),
      page: context.page(page),
      power: context.power,
      receive: context.receive,
      rss: context.rss,
      segment: context.segment,
      storage: context.storage,
      stream: context.stream(),
      walk: context.walk,
      workload: context.workload,
    } satisfies Record<(typeof KERNEL_NAMES)[number], object>;
    expect(Object.keys(wrappers).sort()).toEqual([...KERNEL_NAMES].sort());
    // The getters without scratch hand out one wrapper per thread.
    expect(context.dirty).toBe(wrappers.dirty);
    expect(context.walk).toBe(wrappers.walk);
    const bytes = layout.allocate("bytes", 64);
    bytes.bytes(layout.memory).set([0x45, 0x00, 0x00, 0x1c]);
    expect(wrappers.checksum.sum(bytes, 0, 4)).toBe(
      ChecksumKernel.on(layout.memory).sum(bytes, 0, 4),
    );
  });
});

describe("wrappers refuse what lies outside their regions before wasm runs", () => {
  const layout = new MemoryLayout();
  const small = layout.allocate("small", 64);

  it("walk: a context too small, a trace too short, an address past 57 bits", () => {
    const walk = WalkKernel.on(layout.memory);
    const context = layout.allocate("walk context", WALK_CONTEXT_BYTES);
    const trace = layout.allocate("trace", 4 * TRACE_RECORD_BYTES);
    expect(() => walk.run(small, trace, 0, 1)).toThrow(RegionBoundsError);
    expect(() => walk.run(small, trace, 0, 1)).toThrow("walk context");
    expect(() => walk.run(context, trace, 0, 5)).toThrow(
      "trace records at [0, 40) is past the end (32 bytes)",
    );
    expect(() => walk.run(context, trace, 3, 2)).toThrow("[3, 2) is not a range");
    expect(() => walk.translate(context, 2 ** 57, 0)).toThrow("outside 57 bits");
    expect(() => walk.translate(context, 0, 0x1000)).toThrow("12-bit");
    expect(() => walk.flush(small, FlushScope.all)).toThrow(RegionBoundsError);
    expect(() => walk.flush(context, 3 as FlushScope)).toThrow("flush scope 3");
  });

  it("segment: a template, payload, output or table that does not hold the send", () => {
    const kernel = SegmentKernel.on(layout.memory);
    const template = layout.allocate("template", 54);
    const payload = layout.allocate("payload", 3000);
    const out = layout.allocate("out", 3000 + 3 * 54);
    const table = layout.allocate("table", 3 * 8);
    const job = {
      template,
      headerLength: 54,
      l3: 14,
      l4: 34,
      flags: 0,
      payload,
      payloadLength: 3000,
      mss: 1000,
      out,
      table,
    };
    expect(() => kernel.segment({ ...job, payloadLength: 3001 })).toThrow(RegionBoundsError);
    expect(() => kernel.segment({ ...job, mss: 999 })).toThrow("needs 4 entries");
    expect(() => kernel.segment({ ...job, out: small })).toThrow("segments");
    const tiny = layout.allocate("tiny", 32);
    expect(() => kernel.segment({ ...job, template: tiny })).toThrow("template");
    expect(() => kernel.segment({ ...job, l4: 40 })).toThrow("do not fit");
    expect(() => kernel.segment({ ...job, flags: SegmentFlag.ipv6 })).toThrow("do not fit");
    expect(kernel.segment(job)).toBe(3);
    const at = { l3: 14, l4: 34, end: 80, dst: 30, flags: 0 };
    expect(() => kernel.checkFrame(small, 0, at)).toThrow("frame at [0, 80) is past the end");
    expect(() => kernel.checkFrame(payload, 0, { ...at, dst: 32 })).toThrow("destination address");
  });

  it("rss: a table region too small, an input past its region or too long", () => {
    const rss = RssKernel.on(layout.memory);
    const table = layout.allocate("toeplitz", TOEPLITZ_TABLE_BYTES);
    expect(() => rss.buildTable(small, 0, 40, small)).toThrow("Toeplitz tables");
    expect(() => rss.buildTable(small, 40, 40, table)).toThrow("RSS key");
    expect(() => rss.buildTable(small, 0, 41, table)).toThrow("4 to 40 bytes");
    rss.buildTable(small, 0, 40, table);
    expect(() => rss.hash(table, small, 60, 12)).toThrow(RegionBoundsError);
    expect(() => rss.hash(table, small, 0, 37)).toThrow("at most 36 bytes");
    expect(() => rss.hashBatch(table, small, 0, 12, 12, 6, small, 0)).toThrow("hash inputs");
    expect(() => rss.hashBatch(table, small, 0, 12, 12, 5, small, 48)).toThrow("hash outputs");
  });

  it("checksum: a range past its region, an IPv4 header of a bad length", () => {
    const checksum = ChecksumKernel.on(layout.memory);
    expect(() => checksum.sum(small, 60, 8)).toThrow(RegionBoundsError);
    expect(() => checksum.fillIpv4Header(small, 0, 22)).toThrow("20 to 60 bytes in 4s");
    expect(() => checksum.fillIpv4Header(small, 50, 20)).toThrow("IPv4 header");
  });
});
