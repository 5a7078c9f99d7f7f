import { RegionBoundsError } from "../memory/errors.js";
import type { Region } from "../memory/region.js";
import { compileKernel, instantiateKernel } from "./loader.js";

/** The raw exports of assembly/segment.ts. */
export interface SegmentExports {
  segment(
    hdr: number,
    hdrLength: number,
    l3: number,
    l4: number,
    flags: number,
    payload: number,
    payloadLength: number,
    mss: number,
    out: number,
    table: number,
  ): number;
  checkFrame(
    frame: number,
    l3: number,
    l4: number,
    end: number,
    dst: number,
    flags: number,
  ): number;
}

/** Flag bits of a send or a frame check (assembly/segment.ts). */
export const SegmentFlag = { ipv6: 1, udp: 2 } as const;
/** What {@link SegmentKernel.checkFrame} returns when both checksums are good. */
export const FRAME_CHECKSUMS_GOOD = 3;
/** Bytes of a segment-table entry: u32 offset in the output, u32 length. */
export const SEGMENT_ENTRY_BYTES = 8;

/** A large send for the segmentation kernel: a header template, a payload, and where segments go. */
export interface SegmentJob {
  /** The template's region; the headers start at its first byte. */
  readonly template: Region;
  readonly headerLength: number;
  /** Offsets of the IP and the TCP/UDP header in the template. */
  readonly l3: number;
  readonly l4: number;
  /** Flag bits: {@link SegmentFlag}, the IPv4 ID mode at bits 2-3, CWR on every segment at bit 4. */
  readonly flags: number;
  readonly payload: Region;
  readonly payloadLength: number;
  readonly mss: number;
  /** Where the segments are written from the first byte, and their table of entries. */
  readonly out: Region;
  readonly table: Region;
}

/** Where a received frame's checksums are, relative to the frame's first byte. */
export interface FrameChecksums {
  readonly l3: number;
  readonly l4: number;
  /** The IP datagram's end. */
  readonly end: number;
  /** The destination address the pseudo-header uses (IPv6: the final destination). */
  readonly dst: number;
  readonly flags: number;
}

const IPV4_HEADER = 20;
const IPV6_HEADER = 40;
const TCP_HEADER = 20;
const UDP_HEADER = 8;

function checkHeaders(where: string, l3: number, l4: number, end: number, flags: number): void {
  const ip = flags & SegmentFlag.ipv6 ? IPV6_HEADER : IPV4_HEADER;
  const transport = flags & SegmentFlag.udp ? UDP_HEADER : TCP_HEADER;
  // Plain comparisons (no array, no closure): this runs once per send or frame.
  const whole = Number.isSafeInteger(l3) && Number.isSafeInteger(l4) && Number.isSafeInteger(end);
  if (!whole || l3 < 0 || l3 + ip > l4 || l4 + transport > end) {
    throw new RangeError(
      `${where}: headers at l3 ${l3}, l4 ${l4} do not fit ${ip} + ${transport} bytes before ${end}`,
    );
  }
}

/**
 * Typed, bounds-checked calls into the segmentation (large send offload)
 * and receive-checksum kernels. Every byte either kernel reads or writes is
 * checked against its region before wasm runs.
 */
export class SegmentKernel {
  constructor(
    readonly memory: WebAssembly.Memory,
    private readonly k: SegmentExports,
  ) {}

  /** Instantiates the kernel on a shared memory. */
  static on(memory: WebAssembly.Memory): SegmentKernel {
    return new SegmentKernel(
      memory,
      instantiateKernel<SegmentExports>(compileKernel("segment"), memory),
    );
  }

  /** Segments the kernel writes for a payload (one for an empty payload). */
  static segmentsFor(payloadLength: number, mss: number): number {
    return payloadLength === 0 ? 1 : Math.ceil(payloadLength / mss);
  }

  /** Cuts a large send into segments; returns how many it wrote (table entries too). */
  segment(job: SegmentJob): number {
    const { headerLength, payloadLength, mss } = job;
    if (!Number.isSafeInteger(mss) || mss < 1 || mss > 0xffff) {
      throw new RangeError(`segmentation MSS must be 1 to 65535, not ${mss}`);
    }
    if (!Number.isSafeInteger(payloadLength) || payloadLength < 0 || payloadLength >= 2 ** 32) {
      throw new RangeError(`segmentation payload length ${payloadLength} is not a u32`);
    }
    checkHeaders("segmentation template", job.l3, job.l4, headerLength, job.flags);
    const segments = SegmentKernel.segmentsFor(payloadLength, mss);
    const outBytes = payloadLength + segments * headerLength;
    if (segments * SEGMENT_ENTRY_BYTES > job.table.byteLength) {
      throw new RegionBoundsError(job.table.name, "segment table", `needs ${segments} entries`);
    }
    return (
      this.k.segment(
        job.template.check(0, headerLength, "template"),
        headerLength,
        job.l3,
        job.l4,
        job.flags,
        job.payload.check(0, payloadLength, "payload"),
        payloadLength,
        mss,
        job.out.check(0, outBytes, "segments"),
        job.table.check(0, segments * SEGMENT_ENTRY_BYTES, "segment table"),
      ) >>> 0
    );
  }

  /**
   * Validates the IP and TCP/UDP checksums of the frame at `start` in
   * `frames`; returns a good-IP (1) | good-L4 (2) mask, {@link FRAME_CHECKSUMS_GOOD} when both are.
   */
  checkFrame(frames: Region, start: number, at: FrameChecksums): number {
    checkHeaders("frame", at.l3, at.l4, at.end, at.flags);
    const address = at.flags & SegmentFlag.ipv6 ? 16 : 4;
    if (!Number.isSafeInteger(at.dst) || at.dst < at.l3 || at.dst + address > at.l4) {
      throw new RangeError(`frame: destination address at ${at.dst} is outside its IP header`);
    }
    return (
      this.k.checkFrame(
        frames.check(start, at.end, "frame"),
        at.l3,
        at.l4,
        at.end,
        at.dst,
        at.flags,
      ) >>> 0
    );
  }
}
