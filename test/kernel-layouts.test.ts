import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { DirtyKernel } from "../src/wasm/dirty.js";
import { checkKernelLayout, exportedLayout, KernelLayoutError } from "../src/wasm/kernel-layout.js";
import { checkStaticSlots, kernelManifest } from "../src/wasm/loader.js";
import { PAGE_SCRATCH_BYTES, PageKernel } from "../src/wasm/page.js";
import { RssKernel } from "../src/wasm/rss.js";
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
