import { describe, expect, it } from "vitest";
import {
  decodeEpt,
  decodeX86,
  type EptEntry,
  encodeEpt,
  encodeEptp,
  encodeX86,
  levelOfPageSize,
  pageSizeOfLevel,
  type X86Entry,
} from "../src/paging/entry.js";

// Field widths from Intel SDM vol. 3A 4.5 (tables 4-15 to 4-20: bits 9-11
// ignored, 12-51 the frame, 52-62 ignored or protection key, 63 XD) and
// vol. 3C 29.3.2 (EPT: bits 5:3 the memory type, 10-11 user-execute and
// ignored, 52-63 ignored and suppress-#VE).

const X86_ZERO: X86Entry = decodeX86(0n);
const EPT_ZERO: EptEntry = decodeEpt(0n);

describe("x86-64 entry fields at their limits (Intel SDM vol. 3A 4.5)", () => {
  it("takes the widest value of each field and refuses one past it, naming the field", () => {
    expect(encodeX86({ ...X86_ZERO, address: 0x000f_ffff_ffff_f000n })).toBe(
      0x000f_ffff_ffff_f000n,
    );
    expect(() => encodeX86({ ...X86_ZERO, address: 0x800n })).toThrow(
      new RangeError("entry address 0x800 has bits outside 12-51"),
    );
    expect(() => encodeX86({ ...X86_ZERO, address: 1n << 52n })).toThrow(
      new RangeError("entry address 0x10000000000000 has bits outside 12-51"),
    );

    expect(encodeX86({ ...X86_ZERO, software: 7 })).toBe(0xe00n);
    expect(encodeX86({ ...X86_ZERO, software: 0 })).toBe(0n);
    for (const software of [8, -1, 1.5, Number.NaN]) {
      expect(() => encodeX86({ ...X86_ZERO, software }), `software ${software}`).toThrow(
        new RangeError(`software bits must be 0-7, not ${software}`),
      );
    }

    expect(encodeX86({ ...X86_ZERO, high: 0x7ff })).toBe(0x7ffn << 52n);
    expect(encodeX86({ ...X86_ZERO, high: 0 })).toBe(0n);
    for (const high of [0x800, -1, 0.5, Number.NaN]) {
      expect(() => encodeX86({ ...X86_ZERO, high }), `high ${high}`).toThrow(
        new RangeError(`bits 52-62 must be 0-0x7ff, not ${high}`),
      );
    }
  });
});

describe("EPT entry fields at their limits (Intel SDM vol. 3C 29.3.2)", () => {
  it("takes the widest value of each field and refuses one past it, naming the field", () => {
    expect(encodeEpt({ ...EPT_ZERO, address: 0x000f_ffff_ffff_f000n })).toBe(
      0x000f_ffff_ffff_f000n,
    );
    expect(() => encodeEpt({ ...EPT_ZERO, address: 0x800n })).toThrow(
      new RangeError("EPT address 0x800 has bits outside 12-51"),
    );
    expect(() => encodeEpt({ ...EPT_ZERO, address: 1n << 52n })).toThrow(
      new RangeError("EPT address 0x10000000000000 has bits outside 12-51"),
    );

    // Write-back is type 6 in bits 5:3 (SDM vol. 3C 29.3.7).
    expect(encodeEpt({ ...EPT_ZERO, memoryType: 6 })).toBe(0x30n);
    expect(encodeEpt({ ...EPT_ZERO, memoryType: 7 })).toBe(0x38n);
    for (const memoryType of [8, -1, 2.5, Number.NaN]) {
      expect(() => encodeEpt({ ...EPT_ZERO, memoryType }), `type ${memoryType}`).toThrow(
        new RangeError(`EPT memory type must be 0-7, not ${memoryType}`),
      );
    }

    expect(encodeEpt({ ...EPT_ZERO, bits10to11: 3 })).toBe(0xc00n);
    expect(encodeEpt({ ...EPT_ZERO, bits10to11: 0 })).toBe(0n);
    for (const bits10to11 of [4, -1, 0.5, Number.NaN]) {
      expect(() => encodeEpt({ ...EPT_ZERO, bits10to11 }), `bits 10-11 ${bits10to11}`).toThrow(
        new RangeError(`EPT bits 10-11 must be 0-3, not ${bits10to11}`),
      );
    }

    expect(encodeEpt({ ...EPT_ZERO, high: 0xfff })).toBe(0xfffn << 52n);
    expect(encodeEpt({ ...EPT_ZERO, high: 0 })).toBe(0n);
    for (const high of [0x1000, -1, 0.5, Number.NaN]) {
      expect(() => encodeEpt({ ...EPT_ZERO, high }), `high ${high}`).toThrow(
        new RangeError(`EPT bits 52-63 must be 0-0xfff, not ${high}`),
      );
    }
  });
});

describe("the EPTP (Intel SDM vol. 3C 25.6.11, Extended-Page-Table Pointer)", () => {
  it("holds write-back in bits 2:0, the walk length minus one in 5:3, A/D in bit 6", () => {
    // 4-level walk: length 4, so 3 in bits 5:3; write-back is 6.
    expect(encodeEptp(0x1000n, 4, false)).toBe(0x1000n | 6n | (3n << 3n));
    // 5-level walk with accessed and dirty flags.
    expect(encodeEptp(0x000f_ffff_ffff_f000n, 5, true)).toBe(
      0x000f_ffff_ffff_f000n | 6n | (4n << 3n) | (1n << 6n),
    );
  });

  it("refuses a root that is not a 4 KiB aligned address below 2^52", () => {
    for (const root of [0x1001n, 0x1800n, 1n << 52n]) {
      expect(() => encodeEptp(root, 4, false), `root 0x${root.toString(16)}`).toThrow(
        new RangeError("EPTP root must be 4 KiB aligned"),
      );
    }
  });
});

describe("leaf levels and page sizes (Intel SDM vol. 3A 4.5: PTE, PDE with PS, PDPTE with PS)", () => {
  it("maps a PTE to 4 KiB, a PDE to 2 MiB, a PDPTE to 1 GiB, and back", () => {
    expect([1, 2, 3].map(pageSizeOfLevel)).toEqual(["4K", "2M", "1G"]);
    expect((["4K", "2M", "1G"] as const).map(levelOfPageSize)).toEqual([1, 2, 3]);
  });

  it("has no leaf at level 0, at a PML4E or a PML5E", () => {
    for (const level of [0, 4, 5]) {
      expect(() => pageSizeOfLevel(level), `level ${level}`).toThrow(
        new RangeError(`no leaf at level ${level}`),
      );
    }
  });
});
