/*
 * A malformed synced frame from the destination (the acknowledgement of a
 * pass's sync, src/migration/live/inbox.ts) is refused with an error that
 * names the synced frame, so that the source's report says which reply was
 * bad: the epoch payload is 8 bytes, a 32-bit epoch then a reserved zero
 * word.
 */
import { describe, expect, it } from "vitest";
import { Region } from "../src/memory/region.js";
import { FrameError, FrameType } from "../src/migration/live/frame.js";
import type { ReceivedFrame } from "../src/migration/live/frame-codec.js";
import { Inbox } from "../src/migration/live/inbox.js";

/** A synced frame as the reader hands it over, carrying `bytes` as its payload. */
function syncedFrame(bytes: number[]): ReceivedFrame {
  const body = Uint8Array.from(bytes);
  return {
    version: 1,
    type: FrameType.synced,
    sequence: 7,
    length: body.length,
    staging: new Region({ name: "synced", offset: 0, byteLength: body.length }),
    payloadStart: 0,
    payload: new DataView(body.buffer),
  };
}

describe("inbox: malformed synced frames", () => {
  // A payload shorter than the 8-byte epoch is refused as the synced frame's.
  it("names the synced frame when its payload has the wrong size", () => {
    const inbox = new Inbox();
    const take = () => inbox.take(syncedFrame([3, 0, 0, 0]));
    expect(take).toThrow(FrameError);
    expect(take).toThrow("synced frame: payload of 4 bytes, expected 8");
  });

  // The reserved word after the epoch must be zero.
  it("names the synced frame when its reserved word is not zero", () => {
    const inbox = new Inbox();
    expect(() => inbox.take(syncedFrame([3, 0, 0, 0, 1, 0, 0, 0]))).toThrow(
      "synced frame: reserved field is not zero",
    );
  });
});
