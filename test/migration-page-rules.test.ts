import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { Region } from "../src/memory/region.js";
import { PAGE_SCRATCH_BYTES, PageKernel, PageStreamError } from "../src/wasm/page.js";

/*
 * Rules of the page kernels (assembly/page.ts, assembly/lib/zero.ts), each
 * on a case worked out by hand:
 *
 * - XBZRLE (QEMU migration/xbzrle.c, xbzrle_encode_buffer): an encoding that
 *   would pass the output's `slen` bytes by even one is an overflow (-1),
 *   and nothing is written past `slen`;
 * - the page stream's decoder (migration/ram.c's RAM records): a record for
 *   the page at the end of guest RAM, one past the last, is refused before
 *   anything is written;
 * - the zero-page test (QEMU's buffer_is_zero, util/bufferiszero.c): a
 *   buffer with one non-zero byte, wherever it lies, is not zero.
 */

const PAGE_SHIFT = 12;
const PAGE = 1 << PAGE_SHIFT;
const RAM_PAGES = 8;

let layout: MemoryLayout;
let kernel: PageKernel;
let prev: Region;
let next: Region;
let out: Region;
let stream: Region;
/** Guest RAM, with one guard page right after it in the same allocation. */
let ram: Region;
let guard: Uint8Array;
let buffer: Region;

beforeAll(() => {
  layout = new MemoryLayout();
  kernel = PageKernel.on(layout.memory, layout.allocate("page-scratch", PAGE_SCRATCH_BYTES));
  prev = layout.allocate("xbzrle-prev", PAGE);
  next = layout.allocate("xbzrle-next", PAGE);
  out = layout.allocate("xbzrle-out", 2 * PAGE);
  stream = layout.allocate("page-stream", 4 * PAGE);
  const ramAndGuard = layout.allocate("ram-and-guard", (RAM_PAGES + 1) * PAGE, 4096);
  ram = new Region({ name: "guest-ram", offset: ramAndGuard.offset, byteLength: RAM_PAGES * PAGE });
  guard = new Uint8Array(layout.memory.buffer, ram.end, PAGE);
  buffer = layout.allocate("zero-test", 2 * PAGE);
});

describe("XBZRLE: an encoding one byte past its output is an overflow", () => {
  /** 16 bytes: 4 unchanged, then 12 changed to 0x11 up to the end. */
  function smallPair(): void {
    prev.bytes(layout.memory).fill(0, 0, 16);
    next.bytes(layout.memory).fill(0, 0, 16).fill(0x11, 4, 16);
  }

  // By hand: uleb128(4) = 04, uleb128(12) = 0c, then the 12 changed bytes:
  // 14 bytes. The changed run reaches the end, so the loop ends there (a
  // further unchanged run would first need room for two more bytes).
  const encoding = [0x04, 0x0c, ...new Array<number>(12).fill(0x11)];

  it("fits exactly in 14 bytes", () => {
    smallPair();
    const dst = out.bytes(layout.memory).fill(0xcc);
    expect(kernel.xbzrleEncode(prev, 0, next, 0, 16, out, 0, 14)).toBe(14);
    expect([...dst.subarray(0, 14)]).toEqual(encoding);
    expect(dst[14]).toBe(0xcc);
  });

  it("overflows 13 bytes, writing nothing past the thirteenth", () => {
    smallPair();
    const dst = out.bytes(layout.memory).fill(0xcc);
    expect(kernel.xbzrleEncode(prev, 0, next, 0, 16, out, 0, 13)).toBe(-1);
    expect(dst.subarray(13).every((b) => b === 0xcc)).toBe(true);
  });

  it("overflows a page whose every byte changed: 1 + 2 + 4096 bytes do not fit 4098", () => {
    // uleb128(0) = 00, uleb128(4096) = 80 20, then 4096 bytes: 4099 in all,
    // more than the page (QEMU then sends the page whole).
    prev.bytes(layout.memory).fill(0x00);
    next.bytes(layout.memory).fill(0xff);
    expect(kernel.xbzrleEncode(prev, 0, next, 0, PAGE, out, 0, PAGE)).toBe(-1);
    const dst = out.bytes(layout.memory).fill(0xcc);
    expect(kernel.xbzrleEncode(prev, 0, next, 0, PAGE, out, 0, 4098)).toBe(-1);
    expect(dst.subarray(4098).every((b) => b === 0xcc)).toBe(true);
    expect(kernel.xbzrleEncode(prev, 0, next, 0, PAGE, out, 0, 4099)).toBe(4099);
    expect([...dst.subarray(0, 3)]).toEqual([0x00, 0x80, 0x20]);
    expect(dst.subarray(3, 4099).every((b) => b === 0xff)).toBe(true);
  });
});

describe("page stream: a record for the page one past guest RAM is refused", () => {
  /** A ZERO record (flag 0x02, fill byte 0) for `page`: be64 address | flag, u8 fill. */
  function zeroRecord(page: number): number[] {
    const bytes = new Uint8Array(9);
    new DataView(bytes.buffer).setBigUint64(0, (BigInt(page) << BigInt(PAGE_SHIFT)) | 0x02n);
    return [...bytes];
  }

  /** A PAGE record (flag 0x08) for `page`, its bytes all `fill`. */
  function pageRecord(page: number, fill: number): number[] {
    const bytes = new Uint8Array(8 + PAGE).fill(fill);
    new DataView(bytes.buffer).setBigUint64(0, (BigInt(page) << BigInt(PAGE_SHIFT)) | 0x08n);
    return [...bytes];
  }

  function decode(records: number[]): number {
    stream.bytes(layout.memory).set(records);
    return kernel.decodePages(stream, records.length, ram, PAGE_SHIFT);
  }

  function refusal(records: number[]): { code: number; offset: number } {
    try {
      decode(records);
    } catch (error) {
      if (error instanceof PageStreamError) return { code: error.code, offset: error.offset };
      throw error;
    }
    return expect.fail("the stream was accepted");
  }

  /** E_BAD_PAGE from assembly/page.ts: "page address outside guest memory". */
  const E_BAD_PAGE = -3;

  it("takes the last page of RAM", () => {
    ram.bytes(layout.memory).fill(0x5a);
    expect(decode([...zeroRecord(RAM_PAGES - 1), ...pageRecord(RAM_PAGES - 2, 0x77)])).toBe(2);
    const bytes = ram.bytes(layout.memory);
    expect(bytes.subarray((RAM_PAGES - 1) * PAGE).every((b) => b === 0)).toBe(true);
    expect(
      bytes.subarray((RAM_PAGES - 2) * PAGE, (RAM_PAGES - 1) * PAGE).every((b) => b === 0x77),
    ).toBe(true);
  });

  it("refuses a ZERO record for page `pages`, naming its offset, and writes past RAM nothing", () => {
    guard.fill(0xaa);
    expect(refusal([...zeroRecord(RAM_PAGES - 1), ...zeroRecord(RAM_PAGES)])).toEqual({
      code: E_BAD_PAGE,
      offset: 9,
    });
    expect(guard.every((b) => b === 0xaa)).toBe(true);
  });

  it("refuses a PAGE record for page `pages`, and writes past RAM nothing", () => {
    guard.fill(0xaa);
    expect(refusal(pageRecord(RAM_PAGES, 0x33))).toEqual({ code: E_BAD_PAGE, offset: 0 });
    expect(guard.every((b) => b === 0xaa)).toBe(true);
  });
});

describe("zero-page test: one non-zero byte anywhere makes a buffer non-zero", () => {
  it("every length 0..160 at every alignment 0..15: zero, then each byte set in turn", () => {
    const bytes = buffer.bytes(layout.memory);
    for (let offset = 0; offset < 16; offset++) {
      for (let length = 0; length <= 160; length++) {
        bytes.fill(0, 0, 256);
        expect(kernel.isZero(buffer, offset, length)).toBe(true);
        for (let at = 0; at < length; at++) {
          bytes[offset + at] = 0x01;
          if (kernel.isZero(buffer, offset, length)) {
            expect.fail(`length ${length} at offset ${offset}: byte ${at} set, called zero`);
          }
          bytes[offset + at] = 0;
        }
      }
    }
  });

  it("the last byte of a short tail: lengths 1 to 7, and 64 + 8 + 1 to 7", () => {
    const bytes = buffer.bytes(layout.memory);
    for (const length of [1, 2, 3, 4, 5, 6, 7, 73, 74, 75, 76, 77, 78, 79]) {
      bytes.fill(0, 0, 128);
      bytes[length - 1] = 0x80;
      expect(kernel.isZero(buffer, 0, length)).toBe(false);
      expect(kernel.isZero(buffer, 0, length - 1)).toBe(true);
    }
  });

  it("each of a 64-byte step's four 16-byte vectors, in a 4 KiB page", () => {
    const bytes = buffer.bytes(layout.memory);
    for (const step of [0, 1, 63]) {
      for (const vector of [0, 1, 2, 3]) {
        for (const within of [0, 15]) {
          bytes.fill(0, 0, PAGE);
          bytes[step * 64 + vector * 16 + within] = 0x01;
          expect(kernel.isZero(buffer, 0, PAGE)).toBe(false);
        }
      }
    }
    bytes.fill(0, 0, PAGE);
    expect(kernel.isZero(buffer, 0, PAGE)).toBe(true);
  });
});
