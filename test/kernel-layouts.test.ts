import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { DirtyKernel } from "../src/wasm/dirty.js";
import { checkKernelLayout, exportedLayout, KernelLayoutError } from "../src/wasm/kernel-layout.js";
import { checkStaticSlots, kernelManifest } from "../src/wasm/loader.js";
import { PAGE_SCRATCH_BYTES, PageKernel } from "../src/wasm/page.js";
import { ReceiveKernel } from "../src/wasm/receive.js";
import { RssKernel } from "../src/wasm/rss.js";
import { WALK_CACHE_SLOTS, WALK_CONTEXT_BYTES, WalkKernel } from "../src/wasm/walk.js";
import { WorkloadKernel } from "../src/wasm/workload.js";

/*
 * Every layout shared by AssemblyScript and TypeScript is drawn once, in the
 * module, and exported as LAYOUT_ globals; each wrapper refuses a module
 * whose globals differ from the values it lays memory out with. So a copy
 * that drifts (an offset edited on one side, a stale build) fails here and
 * at every load, naming the constant.
 */

const layout = new MemoryLayout();

/** Exports as a module would hand them over: u32 globals. */
function globals(values: Record<string, number>): Record<string, WebAssembly.Global> {
  return Object.fromEntries(
    Object.entries(values).map(([name, value]) => [
      name,
      new WebAssembly.Global({ value: "i32", mutable: false }, value | 0),
    ]),
  );
}

describe("layouts exported by the kernel modules", () => {
  it("agree with every wrapper that lays memory out for them", () => {
    expect(() => DirtyKernel.on(layout.memory)).not.toThrow();
    expect(() => WorkloadKernel.on(layout.memory)).not.toThrow();
    expect(() =>
      PageKernel.on(layout.memory, layout.allocate("scratch", PAGE_SCRATCH_BYTES)),
    ).not.toThrow();
    expect(() => RssKernel.on(layout.memory)).not.toThrow();
    expect(() => ReceiveKernel.on(layout.memory)).not.toThrow();
    expect(() => WalkKernel.on(layout.memory)).not.toThrow();
  });

  it("keep the walk context behind its wrapper: cache arrays and the table window are checked before they are written", () => {
    const walk = WalkKernel.on(layout.memory);
    const context = layout.allocate("walk-context", WALK_CONTEXT_BYTES);
    const caches = layout.allocate("walk-caches", 64 * 32);
    const arena = layout.allocate("walk-arena", 4096);
    const setup = {
      mode: "nested" as const,
      guestLevels: 4 as const,
      hostLevels: 4 as const,
      setAccessedDirty: true,
      eptAccessedDirty: false,
      l2OneGig: false,
      oneGigAsTwoMeg: false,
      l2Holds2M: false,
      countByLevel: false,
      nestedTlbAtLeafSize: false,
      window: { base: 0, bytes: 4096, arena },
      caches: Array.from({ length: WALK_CACHE_SLOTS }, (_, i) =>
        i === 0 ? { entries: 64, ways: 4 } : null,
      ),
    };
    walk.setUp(context, caches, setup);
    walk.setRoot(context, 0x1000);
    walk.setAsid(context, 7);
    expect([walk.root(context), walk.asid(context)]).toEqual([0x1000, 7]);
    // 65 entries of 32 bytes pass the 2,048-byte cache region.
    expect(() =>
      walk.setUp(context, caches, {
        ...setup,
        caches: setup.caches.map((g, i) => (i === 3 ? { entries: 65, ways: 5 } : g)),
      }),
    ).toThrow(/walk-caches.*cache array 3/);
    expect(() =>
      walk.setUp(context, caches, { ...setup, window: { base: 0, bytes: 8192, arena } }),
    ).toThrow(/walk-arena.*table window/);
    expect(() => walk.setAsid(context, 0x8000)).toThrow("address-space tag must be 0 to 32767");
  });

  it("are read as unsigned values, EPOCH_IDLE's 2^32 - 1 included", () => {
    const read = exportedLayout({ ...globals({ LAYOUT_A: 0xffffffff, LAYOUT_B: 66 }), other: 1 });
    expect([...read]).toEqual([
      ["A", 0xffffffff],
      ["B", 66],
    ]);
  });

  it("refuse a module whose value differs, naming the constant and both values", () => {
    const exports = globals({ LAYOUT_WORD_SLOTS: 67, LAYOUT_EPOCH_ACKS: 64 });
    expect(() => checkKernelLayout("dirty", exports, { WORD_SLOTS: 66, EPOCH_ACKS: 64 })).toThrow(
      "kernel module 'dirty' lays out memory differently from src/wasm/dirty.ts: WORD_SLOTS is 67, the wrapper uses 66",
    );
  });

  it("refuse a module missing a constant, or exporting one no wrapper checks", () => {
    expect(() =>
      checkKernelLayout("page", globals({ LAYOUT_HEADER_BYTES: 8 }), {
        HEADER_BYTES: 8,
        ZERO_RECORD_BYTES: 9,
      }),
    ).toThrow("ZERO_RECORD_BYTES is not exported");
    expect(() =>
      checkKernelLayout("page", globals({ LAYOUT_HEADER_BYTES: 8, LAYOUT_NEW: 1 }), {
        HEADER_BYTES: 8,
      }),
    ).toThrow(KernelLayoutError);
  });
});

describe("static slots of the kernel modules", () => {
  it("are the ones the memory layout reserves, in the build's manifest", () => {
    const manifest = kernelManifest();
    expect(() => checkStaticSlots(manifest)).not.toThrow();
  });

  it("refuse a build with other slots", () => {
    expect(() => checkStaticSlots({ slotBytes: 32 * 1024, slots: 16 })).toThrow(
      "kernel modules were built with 16 static slots of 32768 bytes, but src/memory/layout.ts reserves 16 of 65536",
    );
    expect(() => checkStaticSlots({ slotBytes: 64 * 1024, slots: 8 })).toThrow(KernelLayoutError);
  });
});
