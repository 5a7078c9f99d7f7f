import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ADDRESS_MASK,
  decodeEpt,
  decodeX86,
  EPT,
  encodeEpt,
  encodeEptp,
  encodeX86,
  X86,
} from "../src/paging/entry.js";

const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });

describe("x86-64 and EPT entries (Intel SDM volume 3A chapter 4, volume 3C chapter 29)", () => {
  it("places every x86-64 bit where the SDM puts it", () => {
    // Intel SDM 3A, 4.5: bit 0 P, 1 R/W, 2 U/S, 3 PWT, 4 PCD, 5 A, 6 D, 7 PS, 8 G, 63 NX.
    expect(X86.present).toBe(1n);
    expect(X86.writable).toBe(2n);
    expect(X86.user).toBe(4n);
    expect(X86.writeThrough).toBe(8n);
    expect(X86.cacheDisable).toBe(16n);
    expect(X86.accessed).toBe(32n);
    expect(X86.dirty).toBe(64n);
    expect(X86.pageSize).toBe(128n);
    expect(X86.global).toBe(256n);
    expect(X86.largePat).toBe(4096n);
    expect(X86.noExecute).toBe(2n ** 63n);
    expect(ADDRESS_MASK).toBe(0x000f_ffff_ffff_f000n);
  });

  it("places every EPT bit where the SDM puts it", () => {
    // Intel SDM 3C, 29.3.2: 0 read, 1 write, 2 execute, 5:3 type, 6 ignore PAT, 7 large, 8 A, 9 D.
    expect([EPT.read, EPT.write, EPT.execute]).toEqual([1n, 2n, 4n]);
    expect([EPT.ignorePat, EPT.largePage, EPT.accessed, EPT.dirty]).toEqual([
      64n,
      128n,
      256n,
      512n,
    ]);
    const leaf = encodeEpt({
      read: true,
      write: true,
      execute: false,
      memoryType: 6,
      ignorePat: true,
      largePage: true,
      accessed: false,
      dirty: false,
      bits10to11: 0,
      address: 0x1_4000_0000n,
      high: 0,
    });
    expect(leaf).toBe(0x1_4000_0000n | 0x3n | (6n << 3n) | 0x40n | 0x80n);
  });

  it("decodes every 64-bit value and re-encodes it bit for bit (x86-64)", () => {
    fc.assert(
      fc.property(u64, (value) => {
        expect(encodeX86(decodeX86(value))).toBe(value);
      }),
      { numRuns: 5000 },
    );
  });

  it("decodes every 64-bit value and re-encodes it bit for bit (EPT)", () => {
    fc.assert(
      fc.property(u64, (value) => {
        expect(encodeEpt(decodeEpt(value))).toBe(value);
      }),
      { numRuns: 5000 },
    );
  });

  it("decodes each single bit to exactly one field", () => {
    for (let bit = 0n; bit < 64n; bit++) {
      const value = 1n << bit;
      expect(encodeX86(decodeX86(value))).toBe(value);
      expect(encodeEpt(decodeEpt(value))).toBe(value);
    }
  });

  it("refuses addresses outside bits 12-51", () => {
    const base = decodeX86(0n);
    expect(() => encodeX86({ ...base, address: 0x123n })).toThrow(RangeError);
    expect(() => encodeX86({ ...base, address: 1n << 52n })).toThrow(RangeError);
    expect(() => encodeEpt({ ...decodeEpt(0n), memoryType: 8 })).toThrow(RangeError);
  });

  it("encodes an EPTP: type WB, walk length - 1, A/D enable", () => {
    // Intel SDM 3C, EPTP layout: memory type in 2:0, page-walk length minus one in 5:3.
    expect(encodeEptp(0x5000n, 4, false)).toBe(0x5000n | 6n | (3n << 3n));
    expect(encodeEptp(0x5000n, 5, true)).toBe(0x5000n | 6n | (4n << 3n) | (1n << 6n));
  });
});
