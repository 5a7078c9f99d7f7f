/*
 * Edges of the live payloads the field-by-field tests leave open: a reason
 * read straight from the shared memory the frames land in, and payloads
 * exactly as long as their fixed part, which are refused for the list they
 * lack, not as too short.
 */
import { describe, expect, it } from "vitest";
import { FrameError } from "../src/migration/live/frame.js";
import { decodeDiscard, decodeError, decodePostcopyDone } from "../src/migration/live/messages.js";

function refusal(decode: () => unknown): string {
  try {
    decode();
  } catch (error) {
    if (!(error instanceof FrameError)) throw error;
    return error.message;
  }
  throw new Error("not refused");
}

describe("live payload edges", () => {
  it("an error reason is read from shared memory, as frames land there", () => {
    const shared = new SharedArrayBuffer(16);
    new Uint8Array(shared).set(new TextEncoder().encode("xxdisk full"), 0);
    expect(decodeError(new DataView(shared, 2, 9))).toBe("disk full");
  });

  it("a discard of 8 bytes names the page its count needs", () => {
    const view = new DataView(new ArrayBuffer(8));
    view.setUint32(0, 1, true);
    expect(refusal(() => decodeDiscard(view, 10))).toBe(
      "discard frame: 1 pages need 12 bytes, the payload has 8",
    );
  });

  it("a postcopy-done of 32 bytes names the vCPU time its count needs", () => {
    const view = new DataView(new ArrayBuffer(32));
    view.setUint32(4, 1, true);
    expect(refusal(() => decodePostcopyDone(view))).toBe(
      "postcopy-done frame: payload of 32 bytes, expected 40",
    );
  });
});
