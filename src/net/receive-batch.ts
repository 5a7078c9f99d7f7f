import type { Region } from "../memory/region.js";
import type { ChecksumKernel } from "../wasm/checksum.js";
import { FRAME_CHECKSUMS_GOOD, type SegmentKernel } from "../wasm/segment.js";
import { type ParsedFrame, PROTO_UDP } from "./frame.js";

/** The kernels and shared memory a processor receives with. */
export interface ReceiveKernels {
  readonly memory: WebAssembly.Memory;
  readonly segment: SegmentKernel;
  readonly checksum: ChecksumKernel;
}

const checkAt = { l3: 0, l4: 0, end: 0, dst: 0, flags: 0 };

/**
 * Validates one frame's checksums in the kernel (a round's frames are
 * validated in bulk by the receive kernel, assembly/receive.ts, by the
 * same rules). Returns true when every
 * checksum the frame carries is good (non-IP frames carry none).
 */
export function checksumsGood(
  k: ReceiveKernels,
  frames: Region,
  start: number,
  p: ParsedFrame,
): boolean {
  if (p.ipVersion === 0) return true;
  if (p.l4 < 0) {
    // A fragment, or IP carrying neither TCP nor UDP (ICMP, GRE, ...): only
    // the IPv4 header has a checksum to validate, over its IHL bytes (the
    // parser leaves `payload` just past the IP header for these). A
    // fragment's transport checksum covers the whole datagram, which this
    // frame does not hold.
    return p.ipVersion === 6 || k.checksum.sum(frames, start + p.l3, p.payload - p.l3) === 0xffff;
  }
  // One record reused for every frame: this runs once per received frame.
  const at = checkAt;
  at.l3 = p.l3;
  at.l4 = p.l4;
  at.end = p.ipEnd;
  at.dst = p.dstAddress;
  at.flags = (p.ipVersion === 6 ? 1 : 0) | (p.protocol === PROTO_UDP ? 2 : 0);
  return k.segment.checkFrame(frames, start, at) === FRAME_CHECKSUMS_GOOD;
}
