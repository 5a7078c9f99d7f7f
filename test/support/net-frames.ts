import { buildFrame, type FrameSpec } from "../../src/net/build.js";
import { FrameError } from "../../src/net/errors.js";

// Frames for the net engine's rule tests: one set of addresses and ports,
// a builder that fills in what a test leaves out, a 16-bit field writer,
// and the parser's refusal as its code, field offset and words.

/** Ethernet addresses of two Hyper-V adapters (00:15:5d is Microsoft's OUI). */
export const ETH = { dst: "00:15:5d:00:00:02", src: "00:15:5d:00:00:01" };
export const V4 = { version: 4, src: "10.0.0.1", dst: "10.0.0.2" } as const;
export const V6 = { version: 6, src: "fd00::1", dst: "fd00::2" } as const;
export const TCP = { kind: "tcp", srcPort: 1000, dstPort: 80, seq: 1 } as const;
export const UDP = { kind: "udp", srcPort: 53, dstPort: 5353 } as const;

/** The spec with {@link ETH}, {@link V4} and {@link TCP} where `spec` names none. */
export function frameSpec(spec: Partial<FrameSpec>): FrameSpec {
  return { ethernet: spec.ethernet ?? ETH, ip: spec.ip ?? V4, l4: spec.l4 ?? TCP };
}

/** A whole frame, checksums filled in, carrying `payload` zero bytes. */
export function frame(spec: Partial<FrameSpec>, payload = 10): Uint8Array {
  return buildFrame(frameSpec(spec), new Uint8Array(payload));
}

/** Writes a big-endian 16-bit field of `f` at `at`; returns `f`. */
export function set16(f: Uint8Array, at: number, value: number): Uint8Array {
  new DataView(f.buffer, f.byteOffset).setUint16(at, value);
  return f;
}

/** What a parser refused: the code, the field's offset and the message. */
export interface Refusal {
  readonly code: string;
  readonly offset: number;
  readonly message: string;
}

/** The FrameError `parse` throws; fails when it takes the frame. */
export function refusal(parse: () => unknown): Refusal {
  try {
    parse();
  } catch (e) {
    if (!(e instanceof FrameError)) throw e;
    return { code: e.code, offset: e.offset, message: e.message };
  }
  throw new Error("the frame was taken");
}

/** The refusal a FrameError of `code` at `offset` saying `detail` gives. */
export function refused(code: string, offset: number, detail: string): Refusal {
  return { code, offset, message: `frame: ${detail} (${code} at byte ${offset})` };
}
