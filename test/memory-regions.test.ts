import { describe, expect, it } from "vitest";
import {
  AddressSpaceError,
  addressSpace,
  checkAddressSpace,
  parseAddressSpace,
} from "../src/memory/address-space.js";
import { RegionAllocationError, RegionBoundsError, tooLarge } from "../src/memory/errors.js";
import {
  MAX_MEMORY_BYTES,
  MemoryLayout,
  STATIC_AREA_BYTES,
  WASM_PAGE_BYTES,
} from "../src/memory/layout.js";
import { Region } from "../src/memory/region.js";

/*
 * The rules of the shared memory's layout that every kernel wrapper relies
 * on: a region's bounds are checked to the byte, the memory grows by whole
 * wasm pages only as far as asked, only the last region grows in place, and
 * the address space is checked before it is reserved.
 */

const GiB = 1024 ** 3;

describe("region", () => {
  const packets = new Region({ name: "packets", offset: 4096, byteLength: 100 });

  it("checks an access to the byte: up to its end is inside, one past is not", () => {
    expect(packets.end).toBe(4196);
    expect(packets.check(0, 100)).toBe(4096);
    expect(packets.check(100, 0)).toBe(4196);
    expect(packets.check(99, 1, "last byte")).toBe(4195);
    expect(() => packets.check(100, 1)).toThrow(
      new RegionBoundsError("packets", "access", "at [100, 101) is past the end (100 bytes)"),
    );
    expect(() => packets.check(0, 101, "frame")).toThrow(
      "region 'packets': frame at [0, 101) is past the end (100 bytes)",
    );
  });

  it.each([
    [-1, 0, "has a bad offset -1"],
    [0.5, 0, "has a bad offset 0.5"],
    [Number.NaN, 0, "has a bad offset NaN"],
    [2 ** 53, 0, `has a bad offset ${2 ** 53}`],
    [0, -1, "has a bad length -1"],
    [0, 0.5, "has a bad length 0.5"],
    [0, Number.POSITIVE_INFINITY, "has a bad length Infinity"],
  ])("refuses offset %s, length %s", (start, length, detail) => {
    expect(() => packets.check(start, length, "read")).toThrow(
      new RegionBoundsError("packets", "read", detail),
    );
  });

  it("names the region in its errors, and sees its own bytes of the memory", () => {
    const error = new RegionBoundsError("ring", "entry 5", "is past the end");
    expect(error.region).toBe("ring");
    expect(error.name).toBe("RegionBoundsError");
    expect(error.message).toBe("region 'ring': entry 5 is past the end");
    expect(new RegionAllocationError("x").name).toBe("RegionAllocationError");
    expect(tooLarge("ram", 3 * GiB, 1024).message).toBe(
      "cannot allocate region 'ram' of 3.0 GiB (3221225472 bytes): only 1.0 KiB (1024 bytes) left below the 4 GiB wasm32 limit",
    );
    const layout = new MemoryLayout();
    const a = layout.allocate("a", 10, 1);
    const view = a.bytes(layout.memory);
    expect(view.byteOffset).toBe(a.offset);
    expect(view.length).toBe(10);
    expect(a.toDescriptor()).toEqual({ name: "a", offset: STATIC_AREA_BYTES, byteLength: 10 });
  });
});

describe("memory layout", () => {
  it("grows the memory by whole wasm pages, only as far as the regions reach", () => {
    const layout = new MemoryLayout();
    expect(layout.memory.buffer.byteLength).toBe(STATIC_AREA_BYTES);
    expect(layout.bytesLeft).toBe(MAX_MEMORY_BYTES - STATIC_AREA_BYTES);
    layout.allocate("one", 1);
    expect(layout.memory.buffer.byteLength).toBe(STATIC_AREA_BYTES + WASM_PAGE_BYTES);
    // Still inside that page: no growth.
    layout.allocate("two", WASM_PAGE_BYTES - 128);
    expect(layout.memory.buffer.byteLength).toBe(STATIC_AREA_BYTES + WASM_PAGE_BYTES);
    // Two bytes past it: one page more, not two.
    layout.allocate("three", 66, 1);
    expect(layout.memory.buffer.byteLength).toBe(STATIC_AREA_BYTES + 2 * WASM_PAGE_BYTES);
    expect(layout.bytesLeft).toBe(MAX_MEMORY_BYTES - layout.get("three").end);
    expect(layout.list().map((r) => r.name)).toEqual(["one", "two", "three"]);
  });

  it("aligns each region to the power of two asked, 64 bytes by default", () => {
    const layout = new MemoryLayout();
    layout.allocate("odd", 3, 1);
    expect(layout.allocate("default", 1).offset).toBe(STATIC_AREA_BYTES + 64);
    expect(layout.allocate("byte", 1, 1).offset).toBe(STATIC_AREA_BYTES + 65);
    expect(layout.allocate("page", 1, 4096).offset).toBe(STATIC_AREA_BYTES + 4096);
    for (const alignment of [0, -64, 3, 48, 1.5, Number.NaN]) {
      expect(() => layout.allocate(`bad ${alignment}`, 8, alignment)).toThrow(
        new RegionAllocationError(
          `region 'bad ${alignment}': alignment must be a power of two, not ${alignment}`,
        ),
      );
    }
  });

  it("takes a region that ends exactly at 4 GiB and refuses one byte more", () => {
    const layout = new MemoryLayout();
    const left = layout.bytesLeft;
    expect(() => layout.allocate("too big", left + 1, 1)).toThrow(
      tooLarge("too big", left + 1, left),
    );
    // Refused before the memory grows.
    expect(layout.memory.buffer.byteLength).toBe(STATIC_AREA_BYTES);
    const rest = layout.allocate("rest", left, 1);
    expect(rest.end).toBe(MAX_MEMORY_BYTES);
    expect(layout.bytesLeft).toBe(0);
    expect(() => layout.allocate("more", 1, 1)).toThrow(tooLarge("more", 1, 0));
    // Aligned past the end: nothing left, not a negative amount.
    expect(() => layout.allocate("aligned", 1, 4096)).toThrow(tooLarge("aligned", 1, 0));
  });

  it("grows only the last region in place, never shrinking it, and lays the next after it", () => {
    const layout = new MemoryLayout();
    const first = layout.allocate("first", 100);
    const buffer = layout.allocate("buffer", 100);
    const grown = layout.extendLast("buffer", WASM_PAGE_BYTES * 2);
    expect(grown.offset).toBe(buffer.offset);
    expect(grown.byteLength).toBe(WASM_PAGE_BYTES * 2);
    expect(layout.get("buffer")).toBe(grown);
    expect(layout.memory.buffer.byteLength).toBeGreaterThanOrEqual(grown.end);
    expect(layout.memory.buffer.byteLength - grown.end).toBeLessThan(WASM_PAGE_BYTES);
    // The same size again is allowed (a buffer reused for an input of the same size).
    expect(layout.extendLast("buffer", WASM_PAGE_BYTES * 2).byteLength).toBe(WASM_PAGE_BYTES * 2);
    expect(() => layout.extendLast("buffer", WASM_PAGE_BYTES * 2 - 1)).toThrow(
      new RegionAllocationError(
        `region 'buffer': cannot shrink or resize to ${WASM_PAGE_BYTES * 2 - 1} bytes from ${WASM_PAGE_BYTES * 2}`,
      ),
    );
    expect(() => layout.extendLast("buffer", 1e6 + 0.5)).toThrow("cannot shrink or resize");
    expect(() => layout.extendLast("first", 200)).toThrow(
      new RegionAllocationError("region 'first' is not the last one laid out"),
    );
    expect(first.byteLength).toBe(100);
    expect(layout.allocate("next", 8, 1).offset).toBe(grown.end);
    expect(() => layout.extendLast("nothing", 8)).toThrow("no region named 'nothing'");
  });

  it("grows the last region up to exactly 4 GiB and refuses one byte more", () => {
    const layout = new MemoryLayout();
    const buffer = layout.allocate("buffer", 8);
    const most = MAX_MEMORY_BYTES - buffer.offset;
    expect(() => layout.extendLast("buffer", most + 1)).toThrow(tooLarge("buffer", most + 1, most));
    expect(layout.extendLast("buffer", most).end).toBe(MAX_MEMORY_BYTES);
    expect(layout.bytesLeft).toBe(0);
  });

  it("adopts a worker's view of an existing memory and lays regions out from the static area", () => {
    const owner = new MemoryLayout();
    owner.allocate("data", 4 * WASM_PAGE_BYTES);
    const size = owner.memory.buffer.byteLength;
    const view = new MemoryLayout({ memory: owner.memory });
    expect(view.memory).toBe(owner.memory);
    // Inside what the owner already grew: laid out without growing (or shrinking) it.
    expect(view.allocate("data", 8).offset).toBe(STATIC_AREA_BYTES);
    expect(owner.memory.buffer.byteLength).toBe(size);
  });
});

describe("address space", () => {
  const space = { limit: 12 * GiB, used: 11 * GiB };

  it("fits what is exactly left, and not a byte more", () => {
    expect(() => checkAddressSpace(GiB, "a worker", space)).not.toThrow();
    expect(() => checkAddressSpace(GiB + 1, "a worker", space)).toThrow(AddressSpaceError);
  });

  it("counts nothing left, not less than nothing, once the use is past the limit", () => {
    expect(() => checkAddressSpace(1, "a worker", { limit: GiB, used: 2 * GiB })).toThrow(
      new AddressSpaceError(
        "a worker needs 1 B of address space, and only 0 B is left under this process's limit of 1.0 GiB (ulimit -v): raise the limit to at least 2.0 GiB",
      ),
    );
  });

  it("does not check when the limit or the use is unknown", () => {
    expect(() => checkAddressSpace(100 * GiB, "x", { limit: GiB, used: null })).not.toThrow();
    expect(() => checkAddressSpace(100 * GiB, "x", { limit: null, used: GiB })).not.toThrow();
  });

  it("reads the limit and the use, each alone", () => {
    expect(parseAddressSpace("Max address space  4096  unlimited  bytes\n", "")).toEqual({
      limit: 4096,
      used: null,
    });
    expect(parseAddressSpace("", "VmSize:\t 3 kB\n")).toEqual({ limit: null, used: 3072 });
    // Only the line's start counts: another field's value is not the limit.
    expect(parseAddressSpace("Max stack size 8388608\nX Max address space 5\n", "")).toEqual({
      limit: null,
      used: null,
    });
    // A limit is a count of bytes or unknown: nothing else is read as one.
    for (const value of ["4096kB", "x4096", "-1"]) {
      expect(
        parseAddressSpace(`Max address space  ${value}  unlimited  bytes\n`, "").limit,
      ).toBeNull();
    }
    // Only a line that starts with the field's name (proc(5): "Name:\tvalue").
    expect(parseAddressSpace("", "NotVmSize:\t 7 kB\n").used).toBeNull();
    expect(new AddressSpaceError("x").name).toBe("AddressSpaceError");
  });

  it("reads this process's own use from /proc on Linux", () => {
    if (process.platform !== "linux") return;
    const now = addressSpace();
    expect(now.used).toBeGreaterThan(0);
  });
});
