/*
 * The guest image live and quick migration start from
 * (src/migration/live/guest-image.ts): prefillGuest copies one 64 KiB block
 * of xorshift32 words (Marsaglia, "Xorshift RNGs", 2003: shifts 13, 17, 5;
 * the seed mixed with 0x9e3779b9, a state of 0 taken as 1) across RAM and
 * stamps each page with its number and the seed; fillDeviceState is the low
 * byte of each output of the same generator from the seed mixed with 0x5eed.
 */
import { describe, expect, it } from "vitest";
import { fillDeviceState, prefillGuest } from "../src/migration/live/guest-image.js";
import { expectSameBytes } from "./support/bytes.js";
import { xorshiftBytes } from "./support/xorshift.js";

const GOLDEN = 0x9e37_79b9;
const BLOCK = 64 * 1024;

/** `n` full xorshift32 outputs from `state` (0 taken as 1), in BigInt arithmetic. */
function xorshift32Words(state: number, n: number): number[] {
  const mask = 0xffff_ffffn;
  let y = BigInt(state >>> 0 || 1);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    y ^= (y << 13n) & mask;
    y ^= y >> 17n;
    y ^= (y << 5n) & mask;
    out.push(Number(y));
  }
  return out;
}

/** The image prefillGuest must give, built word by word and byte by byte. */
function expectedImage(length: number, pageBytes: number, seed: number): Uint8Array {
  const block = Math.min(BLOCK, length);
  const pattern = new Uint8Array(block);
  const view = new DataView(pattern.buffer);
  const words = xorshift32Words((seed ^ GOLDEN) >>> 0, Math.floor(block / 4));
  words.forEach((word, i) => {
    view.setUint32(i * 4, word, true);
  });
  const image = new Uint8Array(length);
  for (let i = 0; i < length; i++) image[i] = pattern[i % block] ?? 0;
  const stamps = new DataView(image.buffer);
  for (let page = 0; page * pageBytes + 8 <= length; page++) {
    stamps.setUint32(page * pageBytes, page, true);
    stamps.setUint32(page * pageBytes + 4, seed >>> 0, true);
  }
  return image;
}

function prefilled(length: number, pageBytes: number, seed: number): Uint8Array {
  const ram = new Uint8Array(length);
  prefillGuest(ram, pageBytes, seed);
  return ram;
}

describe("prefillGuest", () => {
  // The block is the first 16,384 xorshift32 words of the mixed seed, little-endian,
  // repeated across RAM; a span that is not a power of two of blocks has its
  // last, partial copy too.
  it("repeats the seeded 64 KiB block across RAM, each page stamped with its number and the seed", () => {
    for (const length of [BLOCK, 2 * BLOCK, 3 * BLOCK + 4096 * 3]) {
      expectSameBytes(prefilled(length, 4096, 11), expectedImage(length, 4096, 11), `${length} B`);
    }
    // The first page starts with page number 0 and the seed, then the block's third word.
    const ram = prefilled(2 * BLOCK, 4096, 11);
    const view = new DataView(ram.buffer);
    expect(view.getUint32(0, true)).toBe(0);
    expect(view.getUint32(4, true)).toBe(11);
    expect(view.getUint32(8, true)).toBe(xorshift32Words((11 ^ GOLDEN) >>> 0, 3)[2]);
    expect(view.getUint32(5 * 4096, true)).toBe(5);
    // Past the block the copy repeats it: the second block's page 16 holds page 0's filler.
    expect(view.getUint32(BLOCK + 8, true)).toBe(view.getUint32(8, true));
  });

  // Marsaglia's example state 2463534242 gives 723471715 first: the seed
  // that mixes to that state starts its block with that word.
  it("starts the block at the mixed seed's first xorshift32 output", () => {
    const seed = (2_463_534_242 ^ GOLDEN) >>> 0;
    const ram = prefilled(4096, 64, seed);
    expect(new DataView(ram.buffer).getUint32(8, true)).toBe(xorshift32Words(2_463_534_242, 3)[2]);
    expect(xorshift32Words(2_463_534_242, 1)[0]).toBe(723_471_715);
    expectSameBytes(ram, expectedImage(4096, 64, seed));
  });

  // A seed that mixes to 0 would leave xorshift32 at 0 for ever: it starts at 1.
  it("starts at state 1 for the seed that mixes to zero, so the filler is not all zero", () => {
    const ram = prefilled(1024, 4096, GOLDEN);
    expectSameBytes(ram, expectedImage(1024, 4096, GOLDEN));
    expect(ram.subarray(8).some((byte) => byte !== 0)).toBe(true);
  });

  // RAM smaller than the block is filled word by word to its last whole word;
  // a page is stamped only where its 8 stamp bytes fit.
  it("fills a RAM smaller than the block to its last whole word, stamping only whole stamps", () => {
    // 3 pages of 16 bytes and 6 bytes more: 13 whole words, 2 bytes left zero,
    // and no stamp in the 6-byte tail.
    const ram = prefilled(3 * 16 + 6, 16, 7);
    expectSameBytes(ram.subarray(0, 52), expectedImage(3 * 16 + 6, 16, 7).subarray(0, 52));
    expect([...ram.subarray(52)]).toEqual([0, 0]);
    const view = new DataView(ram.buffer);
    expect([0, 1, 2].map((page) => view.getUint32(page * 16, true))).toEqual([0, 1, 2]);
    expect(view.getUint32(48, true)).not.toBe(3);
    // A tail of exactly 8 bytes is stamped.
    const stamped = new DataView(prefilled(2 * 16 + 8, 16, 7).buffer);
    expect(stamped.getUint32(32, true)).toBe(2);
    expect(stamped.getUint32(36, true)).toBe(7);
  });

  // The stamp holds the seed as an unsigned 32-bit number.
  it("stamps a negative seed as its unsigned 32-bit value", () => {
    const ram = prefilled(BLOCK, 4096, -1);
    expect(new DataView(ram.buffer).getUint32(4096 + 4, true)).toBe(0xffff_ffff);
    expectSameBytes(ram, expectedImage(BLOCK, 4096, -1));
  });

  // Every page differs from every other (the stamp), and another seed gives another image.
  it("gives every page its own content and each seed its own image", () => {
    const ram = prefilled(4 * BLOCK, 4096, 3);
    const pages = new Set<string>();
    for (let at = 0; at < ram.length; at += 4096) {
      pages.add(Buffer.from(ram.subarray(at, at + 4096)).toString("base64"));
    }
    expect(pages.size).toBe(64);
    expect(
      Buffer.from(prefilled(BLOCK, 4096, 4)).equals(Buffer.from(prefilled(BLOCK, 4096, 3))),
    ).toBe(false);
  });
});

describe("fillDeviceState", () => {
  // The blob is the low byte of each xorshift32 output from seed ^ 0x5eed ^ 0x9e3779b9.
  it("is the low bytes of xorshift32 from the seed mixed with 0x5eed and the golden ratio", () => {
    for (const seed of [0, 3, 123_456]) {
      const blob = new Uint8Array(1000);
      fillDeviceState(blob, seed);
      expectSameBytes(blob, xorshiftBytes((seed ^ 0x5eed ^ GOLDEN) >>> 0, 1000), `seed ${seed}`);
    }
    const words = xorshift32Words((3 ^ 0x5eed ^ GOLDEN) >>> 0, 4);
    const blob = new Uint8Array(4);
    fillDeviceState(blob, 3);
    expect([...blob]).toEqual(words.map((word) => word & 0xff));
  });

  // The seed that mixes to zero starts at 1: its blob is not all zero.
  it("starts at state 1 for the seed that mixes to zero", () => {
    const blob = new Uint8Array(64);
    fillDeviceState(blob, (0x5eed ^ GOLDEN) | 0);
    expectSameBytes(blob, xorshiftBytes(1, 64));
    expect(blob.some((byte) => byte !== 0)).toBe(true);
  });

  // It writes exactly the blob's bytes: a view into larger memory leaves its neighbours alone.
  it("fills exactly the view it is given", () => {
    const memory = new Uint8Array(32);
    fillDeviceState(memory.subarray(8, 24), 9);
    expect([...memory.subarray(0, 8)]).toEqual(new Array(8).fill(0));
    expect([...memory.subarray(24)]).toEqual(new Array(8).fill(0));
    expectSameBytes(memory.subarray(8, 24), xorshiftBytes((9 ^ 0x5eed ^ GOLDEN) >>> 0, 16));
  });
});
