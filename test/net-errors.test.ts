import { describe, expect, it } from "vitest";
import { readCapture } from "../src/net/capture.js";
import { CaptureError, FrameError, SendError } from "../src/net/errors.js";
import { parseFrame } from "../src/net/frame.js";
import { planSend } from "../src/net/lso.js";

/*
 * The net engine's errors as a user meets them: the command line prints an
 * error's name and message on one line, and a program catches it by class
 * (every one a RangeError: the input was out of what is taken) and reads its
 * code and the byte offset of the field that failed.
 */

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (error) {
    return error;
  }
  return expect.fail("nothing was thrown");
}

describe("net errors", () => {
  it("a frame's error names the field's check and its byte", () => {
    const e = thrown(() => parseFrame(new Uint8Array(10)));
    expect(e).toBeInstanceOf(FrameError);
    expect(e).toBeInstanceOf(RangeError);
    if (!(e instanceof FrameError)) return;
    expect(e.name).toBe("FrameError");
    expect(e.code).toBe("truncated");
    expect(e.offset).toBe(0);
    expect(e.message).toBe(
      "frame: 10 bytes is shorter than an Ethernet header (14) (truncated at byte 0)",
    );
    expect(String(e)).toBe(
      "FrameError: frame: 10 bytes is shorter than an Ethernet header (14) (truncated at byte 0)",
    );
    const made = new FrameError("bad-ihl", 14, "IHL 4 is under the minimum of 5");
    expect([made.code, made.offset, made.message]).toEqual([
      "bad-ihl",
      14,
      "frame: IHL 4 is under the minimum of 5 (bad-ihl at byte 14)",
    ]);
  });

  it("a capture's error names the check and the byte of the file", () => {
    const e = thrown(() => readCapture(new Uint8Array(3)));
    expect(e).toBeInstanceOf(CaptureError);
    expect(e).toBeInstanceOf(RangeError);
    if (!(e instanceof CaptureError)) return;
    expect(e.name).toBe("CaptureError");
    expect([e.code, e.offset]).toEqual(["truncated", 0]);
    expect(e.message).toBe(
      "capture: file is shorter than any capture header (truncated at byte 0)",
    );
    const made = new CaptureError("bad-block", 96, "packet block is too short");
    expect(`${made}`).toBe(
      "CaptureError: capture: packet block is too short (bad-block at byte 96)",
    );
    expect(made.offset).toBe(96);
  });

  it("a large send's error names its check", () => {
    const e = thrown(() => planSend(new Uint8Array(54), 100, { offload: "lsov2", mtu: 67 }));
    expect(e).toBeInstanceOf(SendError);
    expect(e).toBeInstanceOf(RangeError);
    if (!(e instanceof SendError)) return;
    expect(e.name).toBe("SendError");
    expect(e.code).toBe("bad-mss");
    expect(e.message).toBe("large send: MTU must be 68 to 65535, not 67 (bad-mss)");
    expect(`${new SendError("no-room", "x")}`).toBe("SendError: large send: x (no-room)");
  });
});
