import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import type { Region } from "../src/memory/region.js";
import {
  MULTIFD_SCRATCH_BYTES,
  MultifdKernel,
  MultifdPacketError,
  multifdHeaderBytes,
} from "../src/wasm/multifd.js";

/*
 * Two rules of the multifd receiver's header check, each on headers written
 * by hand from QEMU's MultiFDPacket_t (migration/multifd.h) and checked as
 * migration/multifd.c's multifd_recv_unfill_packet (multifd-nocomp.c's
 * multifd_ram_unfill_packet since QEMU 9.1) checks them:
 *
 * - the normal and zero pages together fit pages_alloc: zero_pages is
 *   refused when it is more than pages_alloc - normal_pages, even when it
 *   alone fits pages_alloc;
 * - the RAM block name is a C string: "pc.ram" must be followed by its NUL
 *   (QEMU looks the block up with qemu_ram_block_by_name, so "pc.ram1" is
 *   another block); bytes after the NUL are not part of the name.
 */

const PAGE_SHIFT = 12;
const PAGE = 1 << PAGE_SHIFT;
const RAM_PAGES = 256;
/** The receiver's pages per packet: QEMU's default, 128 pages of 4 KiB. */
const ALLOC = 128;

let layout: MemoryLayout;
let kernel: MultifdKernel;
let ram: Region;
let packet: Region;
let place: Region;

beforeAll(() => {
  layout = new MemoryLayout();
  kernel = MultifdKernel.on(
    layout.memory,
    layout.allocate("multifd-scratch", MULTIFD_SCRATCH_BYTES),
  );
  ram = layout.allocate("guest-ram", RAM_PAGES * PAGE, 4096);
  packet = layout.allocate("packet", multifdHeaderBytes(2 * ALLOC));
  place = layout.allocate("place", 2 * ALLOC * 4);
});

interface Header {
  readonly pagesAlloc: number;
  readonly normal: number;
  readonly zero: number;
  /** The 256-byte ramblock field's first bytes (the rest stays zero). */
  readonly ramblock: readonly number[];
}

const PC_RAM = [...Buffer.from("pc.ram", "latin1")];

/**
 * A whole packet header, field by field (MultiFDPacket_t, big-endian): page
 * i of the listing is at byte offset i pages in the block, all inside RAM and
 * page-aligned, so that only the field under test can be refused.
 */
function header(h: Header): Uint8Array {
  const entries = h.normal + h.zero;
  const bytes = new Uint8Array(320 + 8 * entries);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 0x11223344); // MULTIFD_MAGIC
  view.setUint32(4, 1); // MULTIFD_VERSION
  view.setUint32(8, 0); // flags: no compression
  view.setUint32(12, h.pagesAlloc);
  view.setUint32(16, h.normal);
  view.setUint32(20, h.normal * PAGE); // next_packet_size
  view.setBigUint64(24, 9n); // packet_num
  view.setUint32(32, h.zero);
  bytes.set(h.ramblock, 64);
  for (let i = 0; i < entries; i++) view.setBigUint64(320 + 8 * i, BigInt(i * PAGE));
  return bytes;
}

function check(bytes: Uint8Array) {
  packet.bytes(layout.memory).set(bytes);
  return kernel.check(packet, bytes.length, ram, PAGE_SHIFT, ALLOC, place);
}

/** The refusal `bytes` get: its code and the header byte it names. */
function refusal(bytes: Uint8Array): { code: number; offset: number } {
  try {
    check(bytes);
  } catch (error) {
    if (error instanceof MultifdPacketError) return { code: error.code, offset: error.offset };
    throw error;
  }
  return expect.fail("the header was accepted");
}

/** E_PAGES (-5, "more pages than allocated") and E_RAMBLOCK (-7), from assembly/multifd.ts. */
const E_PAGES = -5;
const E_RAMBLOCK = -7;
const ZERO_PAGES_FIELD = 32;
const RAMBLOCK_FIELD = 64;

describe("multifd receiver: normal plus zero pages fit pages_alloc", () => {
  it("accepts normal + zero = pages_alloc, every page listed", () => {
    const accepted = check(header({ pagesAlloc: ALLOC, normal: 100, zero: 28, ramblock: PC_RAM }));
    expect(accepted.normal).toBe(100);
    expect(accepted.zero).toBe(28);
    expect([...accepted.pages]).toEqual(Array.from({ length: 128 }, (_, i) => i));
  });

  it("refuses one zero page more, at the zero_pages field, though zero alone fits pages_alloc", () => {
    // 100 + 29 = 129 > 128: 29 is more than the 28 pages_alloc leaves.
    expect(refusal(header({ pagesAlloc: ALLOC, normal: 100, zero: 29, ramblock: PC_RAM }))).toEqual(
      { code: E_PAGES, offset: ZERO_PAGES_FIELD },
    );
  });

  it("refuses zero pages up to pages_alloc on top of normal pages", () => {
    for (const [normal, zero] of [
      [1, 128],
      [64, 65],
      [127, 2],
      [128, 1],
      [128, 128],
    ] as const) {
      expect(refusal(header({ pagesAlloc: ALLOC, normal, zero, ramblock: PC_RAM }))).toEqual({
        code: E_PAGES,
        offset: ZERO_PAGES_FIELD,
      });
    }
  });

  it("holds the bound to the packet's own pages_alloc, not the receiver's", () => {
    // pages_alloc 16 (at most the receiver's 128): 10 normal leave 6 zero pages.
    expect(check(header({ pagesAlloc: 16, normal: 10, zero: 6, ramblock: PC_RAM })).zero).toBe(6);
    expect(refusal(header({ pagesAlloc: 16, normal: 10, zero: 7, ramblock: PC_RAM }))).toEqual({
      code: E_PAGES,
      offset: ZERO_PAGES_FIELD,
    });
  });
});

describe("multifd receiver: the RAM block name ends with its NUL", () => {
  it('accepts "pc.ram" and its NUL, whatever follows the NUL', () => {
    expect(check(header({ pagesAlloc: ALLOC, normal: 2, zero: 0, ramblock: PC_RAM })).normal).toBe(
      2,
    );
    const trailing = [...PC_RAM, 0, 0x41, 0x42, 0xff];
    expect(
      check(header({ pagesAlloc: ALLOC, normal: 2, zero: 0, ramblock: trailing })).normal,
    ).toBe(2);
  });

  it('refuses a name that goes on past "pc.ram" (another block), at the ramblock field', () => {
    for (const name of ["pc.ram1", "pc.ramX", "pc.ram\u00ff", "pc.ram12", "pc.ram0123456789"]) {
      const ramblock = [...Buffer.from(name, "latin1")];
      expect(refusal(header({ pagesAlloc: ALLOC, normal: 2, zero: 0, ramblock }))).toEqual({
        code: E_RAMBLOCK,
        offset: RAMBLOCK_FIELD,
      });
    }
  });

  it('refuses a name that is a prefix of "pc.ram" or differs before its end', () => {
    for (const name of ["pc.ra", "pc", "", "pc.rom", "Pc.ram"]) {
      const ramblock = [...Buffer.from(name, "latin1")];
      expect(refusal(header({ pagesAlloc: ALLOC, normal: 2, zero: 0, ramblock }))).toEqual({
        code: E_RAMBLOCK,
        offset: RAMBLOCK_FIELD,
      });
    }
  });
});
