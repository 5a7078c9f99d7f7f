/*
 * A content-mode guest's starting image and its device state
 * (src/migration/guest-image.ts): seeding in bounded batches gives the
 * image one call would, and the device state is Marsaglia's xorshift32
 * stream (shifts 13, 17, 5) from the seed mixed with the golden ratio.
 */
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { deviceState, seedGuestImage } from "../src/migration/guest-image.js";
import { PAGE_SCRATCH_BYTES, PageKernel } from "../src/wasm/page.js";

/** The low byte of each of `n` xorshift32 outputs from `state`, in 32-bit BigInt arithmetic. */
function xorshift32LowBytes(state: number, n: number): number[] {
  const mask = 0xffff_ffffn;
  let y = BigInt(state);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    y ^= (y << 13n) & mask;
    y ^= y >> 17n;
    y ^= (y << 5n) & mask;
    out.push(Number(y & 0xffn));
  }
  return out;
}

/** The golden-ratio constant the seed is mixed with. */
const GOLDEN = 0x9e37_79b9;

describe("the device state blob", () => {
  // Seed s starts xorshift32 at s XOR 0x9e3779b9; this seed starts it at
  // 2463534242, the state of Marsaglia's own example (whose first output is
  // 723471715), so the blob is that stream's low bytes.
  it("is the low byte of each xorshift32 output from the mixed seed", () => {
    const seed = (2_463_534_242 ^ GOLDEN) >>> 0;
    const blob = deviceState(64, seed);
    expect(blob.length).toBe(64);
    expect(blob[0]).toBe(723_471_715 & 0xff);
    expect([...blob]).toEqual(xorshift32LowBytes(2_463_534_242, 64));
    expect([...deviceState(64, 7)]).toEqual(xorshift32LowBytes((7 ^ GOLDEN) >>> 0, 64));
  });

  // xorshift32 stays at 0 from 0: the seed that mixes to 0 starts at 1.
  it("starts at 1 for the seed that mixes to zero", () => {
    const blob = deviceState(32, GOLDEN);
    expect([...blob]).toEqual(xorshift32LowBytes(1, 32));
    expect(blob.some((byte) => byte !== 0)).toBe(true);
    expect(deviceState(0, 3).length).toBe(0);
  });
});

describe("the guest's starting image", () => {
  // Each page is seeded from the seed and its own number, so seeding in
  // bounded batches (a guest of any size, bounded work per kernel call)
  // gives the image one call over every page gives. 8-byte pages keep
  // several batches' worth of pages small; the RAM ends at the last page.
  it("seeded in batches equals seeded in one call, to the last page and not past it", () => {
    const pageShift = 3;
    const pages = 3 * 65_536 + 300;
    const layout = new MemoryLayout();
    const kernel = PageKernel.on(layout.memory, layout.allocate("scratch", PAGE_SCRATCH_BYTES));
    const batched = layout.allocate("batched-ram", pages << pageShift);
    const whole = layout.allocate("whole-ram", pages << pageShift);
    seedGuestImage(kernel, batched, pageShift, pages, 9, 0.25);
    kernel.seedPages(whole, pageShift, 0, pages, 9, 0.25);
    const a = Buffer.from(batched.bytes(layout.memory));
    const b = Buffer.from(whole.bytes(layout.memory));
    expect(a.equals(b)).toBe(true);
    // The last batch was seeded: the image's tail is not left zero.
    expect(a.subarray(a.length - (300 << pageShift)).some((byte) => byte !== 0)).toBe(true);
  });
});
