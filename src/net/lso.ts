import type { MemoryLayout } from "../memory/layout.js";
import { Region } from "../memory/region.js";
import { SegmentKernel } from "../wasm/segment.js";
import { SendError } from "./errors.js";
import { type ParsedFrame, PROTO_TCP, PROTO_UDP, parseFrame, TCP_FLAGS } from "./frame.js";

/** Bytes the segment output starts past a 4 KiB boundary (see the constructor). */
const OUTPUT_SKEW = 256;

/**
 * The offload that cuts a send: NDIS LSOv1 (IPv4 TCP, up to 64 KiB), LSOv2
 * (IPv4 and IPv6 TCP, larger sends) or UDP segmentation (USO).
 */
export type OffloadKind = "lsov1" | "lsov2" | "uso";

/** How IPv4 IDs advance from segment to segment. */
export type IpIdMode = "increment" | "fixed" | "wrap15";

/** LSOv1's limit: the IPv4 total length is 16 bits, so a send is at most 64 KiB. */
export const LSOV1_MAX_SEND = 65_535;
/**
 * The largest LSOv2 or USO send hvlab accepts by default: NDIS lets each NIC
 * report its MaxOffLoadSize; 256 KiB is (assumed) here, and a parameter.
 */
export const LSOV2_DEFAULT_MAX_SEND = 256 * 1024;
/** The Linux Hyper-V guest's GSO limit (Linux drivers/net/hyperv/netvsc_drv.c, NETVSC_GSO_MAX_SIZE: room for NVGRE). */
export const HYPERV_GUEST_GSO_MAX = 62_768;

/** What a large send asks of the NIC. */
export interface SendOptions {
  readonly offload: OffloadKind;
  /** MTU of the link (1500 or 9000 typically); MSS comes from it when `mss` is absent. */
  readonly mtu: number;
  /** Payload bytes per segment; at most what the MTU allows. */
  readonly mss?: number;
  readonly ipId?: IpIdMode;
  /** "first" (Linux, default) or "all" (DPDK): which segments keep CWR. */
  readonly cwr?: "first" | "all";
  /** Largest send accepted (LSOv2 and USO; LSOv1 is always 64 KiB). */
  readonly maxSend?: number;
}

/** A validated send: what the kernel is called with. */
export interface SendPlan {
  readonly parsed: ParsedFrame;
  readonly headerLength: number;
  readonly payloadLength: number;
  readonly mss: number;
  readonly segments: number;
  /** Kernel flags (IPv6, UDP, ID mode, CWR). */
  readonly flags: number;
  /** Bytes the segments take: segments * header + payload. */
  readonly outputBytes: number;
}

/**
 * The MSS a link of `mtu` allows for headers of `ipAndTransportHeader` bytes
 * (IP header with options or extension headers, plus TCP with options or UDP):
 * 1500 gives 1460 for plain IPv4 TCP, 1440 for IPv6, 1448 with timestamps.
 */
export function mssForMtu(mtu: number, ipAndTransportHeader: number): number {
  return mtu - ipAndTransportHeader;
}

const ID_MODES: Record<IpIdMode, number> = { increment: 0, fixed: 1, wrap15: 2 };

/**
 * Flags a large send cannot carry: a SYN or RST is a single control segment
 * (RFC 9293 section 3.5 and 3.10.7), never data the NIC cuts, and copying
 * either into every segment would open or reset the connection many times;
 * NDIS transports therefore never hand one to LSO, and the NIC refuses it.
 */
export const FLAGS_NOT_OFFLOADABLE = TCP_FLAGS.SYN | TCP_FLAGS.RST;

/** Most bytes of segments one send may write (a bound before laying out room for it). */
export const MAX_SEGMENT_OUTPUT = 64 * 1024 * 1024;

/**
 * Checks a large send against the offload's rules and works out its
 * segments. `template` is the send's headers (see buildHeaders: length fields
 * count the payload, the transport checksum holds the pseudo-header sum).
 *
 * @throws SendError for an MSS of 0 or over the MTU, a send too large for the
 *   offload, an IPv6 or UDP send on LSOv1, or a template that is not one.
 * @throws FrameError when the template's headers fail their bounds checks.
 */
export function planSend(template: Uint8Array, payloadLength: number, o: SendOptions): SendPlan {
  if (!Number.isSafeInteger(payloadLength) || payloadLength < 0) {
    throw new SendError("too-large", `payload length must be a byte count, not ${payloadLength}`);
  }
  if (!Number.isSafeInteger(o.mtu) || o.mtu < 68 || o.mtu > 65_535) {
    throw new SendError("bad-mss", `MTU must be 68 to 65535, not ${o.mtu}`);
  }
  const parsed = parseFrame(template, 0, template.length, {
    superFrame: true,
    payloadBeyond: payloadLength,
  });
  if (parsed.ipVersion === 0) throw new SendError("bad-template", "the template is not IP");
  if (parsed.fragment) throw new SendError("not-offloadable", "the template is a fragment");
  const udp = parsed.protocol === PROTO_UDP;
  if (parsed.protocol !== PROTO_TCP && !udp) {
    throw new SendError("not-offloadable", `protocol ${parsed.protocol} is neither TCP nor UDP`);
  }
  if (parsed.payload !== template.length) {
    throw new SendError(
      "bad-template",
      `the template has ${template.length - parsed.payload} bytes after its headers`,
    );
  }
  if (o.offload === "uso" && !udp)
    throw new SendError("not-offloadable", "UDP segmentation needs a UDP send");
  if (o.offload !== "uso" && udp)
    throw new SendError("not-offloadable", `${o.offload} segments TCP, not UDP`);
  if (!udp) {
    const flags = template[parsed.l4 + 13] ?? 0;
    if (flags & FLAGS_NOT_OFFLOADABLE) {
      throw new SendError(
        "not-offloadable",
        `a large send cannot carry ${flags & TCP_FLAGS.SYN ? "SYN" : "RST"}: it is one control segment, not data to cut`,
      );
    }
  }
  if (o.offload === "lsov1" && parsed.ipVersion !== 4) {
    throw new SendError("not-offloadable", "LSOv1 offloads IPv4 only (use lsov2 for IPv6)");
  }
  const ipAndTransport = template.length - parsed.l3;
  const limit = o.offload === "lsov1" ? LSOV1_MAX_SEND : (o.maxSend ?? LSOV2_DEFAULT_MAX_SEND);
  const sendBytes = ipAndTransport + payloadLength;
  if (sendBytes > limit) {
    throw new SendError(
      "too-large",
      `a send of ${sendBytes} bytes (IP datagram) is over ${o.offload}'s limit of ${limit}`,
    );
  }
  const maxMss = mssForMtu(o.mtu, ipAndTransport);
  const mss = o.mss ?? maxMss;
  if (!Number.isSafeInteger(mss) || mss < 1)
    throw new SendError("bad-mss", `MSS must be at least 1, not ${mss}`);
  if (mss > maxMss) {
    throw new SendError(
      "bad-mss",
      `MSS ${mss} is larger than MTU ${o.mtu} allows with ${ipAndTransport} bytes of headers (${maxMss})`,
    );
  }
  const ipId = o.ipId ?? (o.offload === "lsov2" ? "wrap15" : "increment");
  if (parsed.ipVersion === 4 && ipId === "wrap15") {
    const id = ((template[parsed.l3 + 4] ?? 0) << 8) | (template[parsed.l3 + 5] ?? 0);
    if (id > 0x7fff)
      throw new SendError("bad-id", `IPv4 ID 0x${id.toString(16)} is outside LSOv2's 15-bit range`);
  }
  const segments = payloadLength === 0 ? 1 : Math.ceil(payloadLength / mss);
  const flags =
    (parsed.ipVersion === 6 ? 1 : 0) |
    (udp ? 2 : 0) |
    (ID_MODES[ipId] << 2) |
    (o.cwr === "all" ? 16 : 0);
  return {
    parsed,
    headerLength: template.length,
    payloadLength,
    mss,
    segments,
    flags,
    outputBytes: segments * template.length + payloadLength,
  };
}

/** Where a segmented send's frames are. */
export interface SegmentedSend {
  readonly plan: SendPlan;
  /** Offset (within the output region, from its start) and length of each frame. */
  readonly frames: ReadonlyArray<{ readonly offset: number; readonly length: number }>;
}

/**
 * The NIC's segmentation engine over the shared memory: a template slot,
 * a payload buffer, an output buffer and a segment table, all regions.
 */
export class Segmenter {
  readonly template: Region;
  readonly payload: Region;
  /** Where segments are written; laid out again, larger, for a send of many small segments. */
  output: Region;
  table: Region;
  private readonly k: SegmentKernel;
  private grown = 0;

  /**
   * @param maxSend - largest payload this engine holds
   * @param name - prefix of its regions' names
   */
  constructor(
    readonly layout: MemoryLayout,
    readonly maxSend = LSOV2_DEFAULT_MAX_SEND,
    name = "net.lso",
  ) {
    this.template = layout.allocate(`${name}.template`, 512);
    this.payload = layout.allocate(`${name}.payload`, Math.max(64, maxSend), 4096);
    // Room for segments of 64 bytes or more, each with up to 256 bytes of
    // headers; a smaller MSS that does not fit is refused ("no-room") by plan().
    const maxSegments = Math.ceil(maxSend / 64) + 1;
    const outputBytes = maxSend + maxSegments * 256;
    // Segment i's payload is stored (i + 1) header lengths further from a
    // 4 KiB boundary than it is read. Were that distance within about 200
    // bytes of a multiple of 4 KiB, the CPU would hold loads behind the
    // stores before them (4K aliasing: up to 20 % slower here), so the
    // output starts OUTPUT_SKEW bytes past the boundary the payload starts
    // on: a 64 KiB send at MTU 1500 then keeps every segment clear of it.
    this.output = this.layOutOutput(`${name}.output`, outputBytes);
    this.table = layout.allocate(`${name}.table`, maxSegments * 8);
    this.k = SegmentKernel.on(layout.memory);
  }

  private layOutOutput(name: string, outputBytes: number): Region {
    const raw = this.layout.allocate(name, outputBytes + OUTPUT_SKEW, 4096);
    return new Region({
      name: raw.name,
      offset: raw.offset + OUTPUT_SKEW,
      byteLength: outputBytes,
    });
  }

  /**
   * Makes room for a plan's segments: a small MSS makes many segments, each
   * with its own headers, more than the room laid out at first. Regions
   * never move, so larger ones are laid out (bounded by MAX_SEGMENT_OUTPUT).
   */
  private ensureRoom(plan: SendPlan): void {
    if (plan.outputBytes <= this.output.byteLength && plan.segments * 8 <= this.table.byteLength)
      return;
    if (plan.outputBytes > MAX_SEGMENT_OUTPUT) {
      throw new SendError(
        "no-room",
        `${plan.segments} segments (${plan.outputBytes} bytes) are over the ${MAX_SEGMENT_OUTPUT}-byte limit of one send's output`,
      );
    }
    this.grown++;
    const base = this.output.name;
    if (plan.outputBytes > this.output.byteLength)
      this.output = this.layOutOutput(`${base}.${this.grown}`, plan.outputBytes);
    if (plan.segments * 8 > this.table.byteLength)
      this.table = this.layout.allocate(`${this.table.name}.${this.grown}`, plan.segments * 8);
  }

  /** Copies a payload into the engine's payload buffer. */
  loadPayload(payload: Uint8Array): void {
    this.payload.check(0, payload.length, "payload");
    this.payload.bytes(this.layout.memory).set(payload);
  }

  /** Validates a send and copies its template in; the payload must already be loaded. */
  plan(template: Uint8Array, payloadLength: number, options: SendOptions): SendPlan {
    this.template.check(0, template.length, "template");
    this.payload.check(0, payloadLength, "payload");
    const plan = planSend(template, payloadLength, options);
    this.ensureRoom(plan);
    this.template.bytes(this.layout.memory).set(template);
    return plan;
  }

  /** Runs the kernel for a plan made by {@link plan}: writes every segment. */
  run(plan: SendPlan): number {
    const p = plan.parsed;
    return this.k.segment({
      template: this.template,
      headerLength: plan.headerLength,
      l3: p.l3,
      l4: p.l4,
      flags: plan.flags,
      payload: this.payload,
      payloadLength: plan.payloadLength,
      mss: plan.mss,
      out: this.output,
      table: this.table,
    });
  }

  /** Segments a send: plan, run, and read back the segment table. */
  segment(template: Uint8Array, payload: Uint8Array, options: SendOptions): SegmentedSend {
    this.loadPayload(payload);
    const plan = this.plan(template, payload.length, options);
    const count = this.run(plan);
    const table = new Uint32Array(this.layout.memory.buffer, this.table.offset, count * 2);
    const frames: { offset: number; length: number }[] = [];
    for (let i = 0; i < count; i++) {
      frames.push({ offset: table[i * 2] ?? 0, length: table[i * 2 + 1] ?? 0 });
    }
    return { plan, frames };
  }

  /** Copies the frames of a segmented send out of shared memory. */
  copyFrames(send: SegmentedSend): Uint8Array[] {
    const out = this.output.bytes(this.layout.memory);
    return send.frames.map((f) => out.slice(f.offset, f.offset + f.length));
  }
}
