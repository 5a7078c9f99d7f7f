/*
 * prefillGuest's doubling copy (src/migration/live/guest-image.ts) on the
 * smallest RAM there is: an empty one has no block to repeat and no page
 * to stamp, so the fill ends at once and writes nothing.
 */
import { describe, expect, it } from "vitest";
import { prefillGuest } from "../src/migration/live/guest-image.js";

describe("prefillGuest on empty RAM", () => {
  // The copy loop runs while the filled span is short of the RAM: an empty
  // RAM is already full, and the span (0) would never double past it.
  it("returns at once and leaves the memory around an empty view alone", () => {
    const memory = new Uint8Array(16);
    prefillGuest(memory.subarray(8, 8), 4096, 1);
    prefillGuest(new Uint8Array(0), 4096, 2);
    expect([...memory]).toEqual(new Array(16).fill(0));
  });
});
