import { describe, expect, it } from "vitest";
import { vhdChecksumOracle } from "../src/oracle/storage.js";
import { defaultKernels, StorageKernels } from "../src/storage/kernels.js";

// The arena an image borrows its bitmap caches and copy buffers from:
// regions rounded up to pages, released ones handed out again when they
// fit, a refusal naming the arena when it is full; and the checksum of a
// structure of up to 4 KiB.

const KiB = 1024;

describe("storage kernels' arena", () => {
  it("hands out page-rounded regions after its 4 KiB of scratch, one after the other", () => {
    const kernels = StorageKernels.standalone(64 * KiB);
    const a = kernels.borrow(1);
    const b = kernels.borrow(4 * KiB + 1);
    expect(a.byteLength).toBe(4 * KiB);
    expect(b.byteLength).toBe(8 * KiB);
    expect(b.offset - a.offset).toBe(4 * KiB);
    expect(a.name).toBe("storage arena +4096");
    expect(b.name).toBe("storage arena +8192");
  });

  it("hands a released region out again when it is at least as long and at most twice", () => {
    const kernels = StorageKernels.standalone(64 * KiB);
    const small = kernels.borrow(4 * KiB);
    const large = kernels.borrow(16 * KiB);
    kernels.release(large);
    kernels.release(small);
    // 8 KiB: the 4 KiB is too short, the 16 KiB exactly twice: taken.
    expect(kernels.borrow(8 * KiB)).toBe(large);
    // 3 KiB: the 4 KiB one fits.
    expect(kernels.borrow(3 * KiB)).toBe(small);
    // Nothing released is left: a new region.
    const fresh = kernels.borrow(4 * KiB);
    expect(fresh).not.toBe(small);
    kernels.release(fresh);
    // 1 KiB: 4 KiB is more than twice, so not reused.
    expect(kernels.borrow(KiB)).not.toBe(fresh);
  });

  it("refuses a region past the arena's end, naming it and what is left, and takes one that fills it", () => {
    const kernels = StorageKernels.standalone(16 * KiB);
    expect(() => kernels.borrow(12 * KiB + 1)).toThrow(
      new RangeError(
        `region 'storage arena': no room for ${12 * KiB + 1} more bytes (${12 * KiB} of ${16 * KiB} left)`,
      ),
    );
    expect(kernels.borrow(12 * KiB).byteLength).toBe(12 * KiB);
    expect(() => kernels.borrow(1)).toThrow("(0 of 16384 left)");
  });

  it("checksums a structure of up to 4 KiB as the specification sums it, and refuses a longer one", () => {
    const kernels = StorageKernels.standalone(16 * KiB);
    const bytes = Uint8Array.from({ length: 4 * KiB }, (_, i) => (i * 7) & 0xff);
    expect(kernels.checksum(bytes, 64)).toBe(vhdChecksumOracle(bytes, 64));
    expect(kernels.checksum(bytes.subarray(0, 512), 64)).toBe(
      vhdChecksumOracle(bytes.subarray(0, 512), 64),
    );
    expect(() => kernels.checksum(new Uint8Array(4 * KiB + 1), 0)).toThrow(
      new RangeError("a checksummed structure of 4097 bytes is larger than 4096"),
    );
  });

  it("gives this thread one set of kernels", () => {
    expect(defaultKernels()).toBe(defaultKernels());
  });
});
