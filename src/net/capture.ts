import { CaptureError } from "./errors.js";

/*
 * Capture formats (the pcap file format, draft-ietf-opsawg-pcap; pcapng,
 * draft-ietf-opsawg-pcapng):
 *
 * pcap: file header (24 bytes), then per packet a 16-byte record header.
 *   0 magic (0xA1B2C3D4 us / 0xA1B23C4D ns)  4 version 2.4  8 thiszone  12 sigfigs
 *   16 snaplen  20 linktype (1 = Ethernet)
 *   record: 0 ts_sec  4 ts_usec (or ns)  8 incl_len  12 orig_len  16 data
 *
 * pcapng: blocks, each  0 type  4 total length  ... body ...  total length again,
 * lengths multiples of 4.
 *   Section Header (0x0A0D0D0A): byte-order magic 0x1A2B3C4D, version 1.0, section length -1
 *   Interface Description (1): linktype u16, reserved, snaplen, options
 *     (if_tsresol = 9: one byte, MSB 0: 10^-n s, MSB 1: 2^-n s; default 10^-6)
 *   Enhanced Packet (6): interface, ts high, ts low, captured len, original len, data (padded)
 *   Simple Packet (3): original len, data; on interface 0  (read only)
 *   Each packet has the link type of its own interface; interfaces are
 *   numbered per section.
 */

/** Link type of Ethernet frames. */
export const LINKTYPE_ETHERNET = 1;
/** Largest packet a capture may hold (bounds allocation against hostile files). */
export const MAX_CAPTURED_PACKET = 262_144;

/** A captured packet. */
export interface CapturedPacket {
  /** The captured bytes (a view into the file when read). */
  readonly data: Uint8Array;
  /** Link type of the packet's interface (pcap: the file's). */
  readonly linkType: number;
  /** Interface the packet was captured on (pcapng's interface ID; 0 in pcap). */
  readonly interfaceId: number;
  /** Length on the wire (at least data.length). */
  readonly originalLength: number;
  /** Capture time: whole seconds since 1970 and nanoseconds within the second. */
  readonly seconds: number;
  readonly nanoseconds: number;
}

/** Where a capture stops short: its last record is cut (a capture killed mid-write). */
export interface CaptureTruncation {
  /** Byte offset of the record or block that is cut. */
  readonly offset: number;
  readonly detail: string;
}

/** A capture file's contents. */
export interface Capture {
  readonly format: "pcap" | "pcapng";
  /** The link type of the file (pcap) or of its first interface (pcapng). */
  readonly linkType: number;
  /** Largest snapshot length of the file or any of its interfaces (0: none given). */
  readonly snaplen: number;
  readonly packets: readonly CapturedPacket[];
  /** Set when the last record is cut short: every packet before it is read. */
  readonly truncated: CaptureTruncation | null;
}

/** An interface of a pcapng capture being written. */
export interface InterfaceToWrite {
  readonly linkType: number;
  /** if_tsresol byte: 9 for 10^-9 s (default), 0x94 for 2^-20 s, ... */
  readonly tsresol?: number;
}

/** Options for writing a capture. */
export interface WriteOptions {
  readonly format: "pcap" | "pcapng";
  readonly snaplen?: number;
  /** pcap: the file's link type (default Ethernet). */
  readonly linkType?: number;
  /** pcapng: its interfaces (default one Ethernet interface, nanoseconds). */
  readonly interfaces?: readonly InterfaceToWrite[];
  /** pcap only: nanosecond timestamps (magic 0xA1B23C4D). Default true. */
  readonly nanoseconds?: boolean;
}

/** Packet input to the writers: bytes and a time (defaults to 0). */
export interface PacketToWrite {
  readonly data: Uint8Array;
  readonly seconds?: number;
  readonly nanoseconds?: number;
  readonly originalLength?: number;
  /** pcapng: the interface it was captured on (default 0). */
  readonly interfaceId?: number;
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}

/** Writes packets as a pcap or pcapng file (Ethernet frames unless told otherwise). */
export function writeCapture(packets: readonly PacketToWrite[], options: WriteOptions): Uint8Array {
  const snaplen = options.snaplen ?? MAX_CAPTURED_PACKET;
  if (!isUint32(snaplen)) {
    throw new RangeError(`the snapshot length must be 0 to 2^32 - 1 bytes, not ${snaplen}`);
  }
  for (const [i, p] of packets.entries()) {
    if (p.data.length > snaplen) {
      throw new RangeError(
        `a packet of ${p.data.length} bytes is over the snapshot length ${snaplen}`,
      );
    }
    checkPacketFields(p, i, options.format);
  }
  if (options.format === "pcap") {
    if (!isUint32(options.linkType ?? LINKTYPE_ETHERNET))
      throw new RangeError(`a pcap link type is 0 to 2^32 - 1, not ${options.linkType}`);
    return writePcap(
      packets,
      snaplen,
      options.nanoseconds !== false,
      options.linkType ?? LINKTYPE_ETHERNET,
    );
  }
  const interfaces = options.interfaces ?? [{ linkType: LINKTYPE_ETHERNET }];
  for (const [i, iface] of interfaces.entries()) {
    // pcapng's LinkType field is 16 bits, if_tsresol one byte (draft-ietf-opsawg-pcapng 4.2).
    if (!Number.isSafeInteger(iface.linkType) || iface.linkType < 0 || iface.linkType > 0xffff)
      throw new RangeError(`interface ${i}: a link type is 0 to 65535, not ${iface.linkType}`);
    const tsresol = iface.tsresol ?? 9;
    if (!Number.isSafeInteger(tsresol) || tsresol < 0 || tsresol > 0xff)
      throw new RangeError(`interface ${i}: if_tsresol is one byte, not ${iface.tsresol}`);
  }
  for (const [i, p] of packets.entries()) {
    const id = p.interfaceId ?? 0;
    if (!Number.isSafeInteger(id) || id < 0 || id >= interfaces.length)
      throw new RangeError(
        `packet ${i} names interface ${p.interfaceId}, not one of the ${interfaces.length} described`,
      );
  }
  return writePcapng(packets, snaplen, interfaces);
}

function isUint32(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 0 && n <= 0xffff_ffff;
}

/**
 * Checks what a packet's record stores in fixed-width fields, so that a
 * value is never cut to its field's width on the way out: a file written is
 * a file read back with the same times and lengths. pcap keeps whole seconds
 * in 32 bits (ts_sec, draft-ietf-opsawg-pcap section 5); nanoseconds of a
 * second or more carry into the seconds, as pcapng's 64-bit tick count
 * takes them.
 */
function checkPacketFields(p: PacketToWrite, index: number, format: WriteOptions["format"]): void {
  const seconds = p.seconds ?? 0;
  const nanos = p.nanoseconds ?? 0;
  if (!Number.isSafeInteger(seconds) || seconds < 0)
    throw new RangeError(`packet ${index}: seconds must be a whole number from 0, not ${seconds}`);
  if (!Number.isSafeInteger(nanos) || nanos < 0)
    throw new RangeError(
      `packet ${index}: nanoseconds must be a whole number from 0, not ${nanos}`,
    );
  if (format === "pcap" && seconds + Math.floor(nanos / 1e9) > 0xffff_ffff) {
    throw new RangeError(
      `packet ${index}: a pcap record holds seconds up to 2^32 - 1 (the year 2106), not ${seconds + Math.floor(nanos / 1e9)}`,
    );
  }
  if (p.originalLength !== undefined && !isUint32(p.originalLength)) {
    throw new RangeError(
      `packet ${index}: the original length must be 0 to 2^32 - 1 bytes, not ${p.originalLength}`,
    );
  }
}

function writePcap(
  packets: readonly PacketToWrite[],
  snaplen: number,
  ns: boolean,
  linkType: number,
): Uint8Array {
  let size = 24;
  for (const p of packets) size += 16 + p.data.length;
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(0, ns ? 0xa1b23c4d : 0xa1b2c3d4, true);
  v.setUint16(4, 2, true);
  v.setUint16(6, 4, true);
  v.setUint32(16, snaplen, true);
  v.setUint32(20, linkType, true);
  let at = 24;
  for (const p of packets) {
    // Whole seconds carried out of the nanoseconds (checked to fit 32 bits).
    const nanos = (p.nanoseconds ?? 0) % 1e9;
    v.setUint32(at, (p.seconds ?? 0) + Math.floor((p.nanoseconds ?? 0) / 1e9), true);
    v.setUint32(at + 4, ns ? nanos : Math.floor(nanos / 1000), true);
    v.setUint32(at + 8, p.data.length, true);
    v.setUint32(at + 12, p.originalLength ?? p.data.length, true);
    out.set(p.data, at + 16);
    at += 16 + p.data.length;
  }
  return out;
}

/** Ticks of an interface's clock since 1970 for a packet's time. */
function ticks(p: PacketToWrite, tsresol: number): bigint {
  const ns = BigInt(p.seconds ?? 0) * 1_000_000_000n + BigInt(p.nanoseconds ?? 0);
  const exp = BigInt(tsresol & 0x7f);
  const perSecond = tsresol & 0x80 ? 2n ** exp : 10n ** exp;
  return (ns * perSecond) / 1_000_000_000n;
}

function writePcapng(
  packets: readonly PacketToWrite[],
  snaplen: number,
  interfaces: readonly InterfaceToWrite[],
): Uint8Array {
  const shb = 28;
  const idb = 20 + 8 + 4; // body + if_tsresol option (4 + 4 padded) + opt_endofopt
  let size = shb + idb * interfaces.length;
  for (const p of packets) size += 32 + pad4(p.data.length);
  const out = new Uint8Array(size);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0x0a0d0d0a, true);
  v.setUint32(4, shb, true);
  v.setUint32(8, 0x1a2b3c4d, true);
  v.setUint16(12, 1, true);
  v.setUint16(14, 0, true);
  v.setBigInt64(16, -1n, true);
  v.setUint32(24, shb, true);
  let at = shb;
  for (const iface of interfaces) {
    v.setUint32(at, 1, true);
    v.setUint32(at + 4, idb, true);
    v.setUint16(at + 8, iface.linkType, true);
    v.setUint32(at + 12, snaplen, true);
    v.setUint16(at + 16, 9, true); // if_tsresol
    v.setUint16(at + 18, 1, true);
    out[at + 20] = iface.tsresol ?? 9;
    v.setUint32(at + 24, 0, true); // opt_endofopt
    v.setUint32(at + 28, idb, true);
    at += idb;
  }
  for (const p of packets) {
    const total = 32 + pad4(p.data.length);
    const id = p.interfaceId ?? 0;
    const ts = ticks(p, interfaces[id]?.tsresol ?? 9);
    if (ts >= 1n << 64n) {
      throw new RangeError(
        `a packet's time is over the 64-bit tick count of interface ${id} (if_tsresol ${interfaces[id]?.tsresol ?? 9})`,
      );
    }
    v.setUint32(at, 6, true);
    v.setUint32(at + 4, total, true);
    v.setUint32(at + 8, id, true);
    v.setUint32(at + 12, Number(ts >> 32n), true);
    v.setUint32(at + 16, Number(ts & 0xffffffffn), true);
    v.setUint32(at + 20, p.data.length, true);
    v.setUint32(at + 24, p.originalLength ?? p.data.length, true);
    out.set(p.data, at + 28);
    v.setUint32(at + total - 4, total, true);
    at += total;
  }
  return out;
}

/**
 * Reads a pcap (either byte order, us or ns) or pcapng file. Every length is
 * checked against the bytes that remain before anything is read or kept. A
 * file whose last record is cut short (a capture stopped mid-write) gives
 * every packet before the cut, with the cut in `truncated`, as tshark does.
 *
 * @throws CaptureError saying what is corrupt and at which byte (pcapng: the
 *   offset of the block that is corrupt).
 */
export function readCapture(bytes: Uint8Array): Capture {
  if (bytes.length < 4)
    throw new CaptureError("truncated", 0, "file is shorter than any capture header");
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint32(0, true) === 0x0a0d0d0a) return readPcapng(bytes, v);
  return readPcap(bytes, v);
}

function readPcap(bytes: Uint8Array, v: DataView): Capture {
  const magicLE = v.getUint32(0, true);
  const magicBE = v.getUint32(0, false);
  let le: boolean;
  let ns: boolean;
  if (magicLE === 0xa1b2c3d4 || magicLE === 0xa1b23c4d) {
    le = true;
    ns = magicLE === 0xa1b23c4d;
  } else if (magicBE === 0xa1b2c3d4 || magicBE === 0xa1b23c4d) {
    le = false;
    ns = magicBE === 0xa1b23c4d;
  } else {
    throw new CaptureError(
      "bad-magic",
      0,
      `magic 0x${magicBE.toString(16).padStart(8, "0")} is neither pcap nor pcapng`,
    );
  }
  if (bytes.length < 24) throw new CaptureError("truncated", 0, "pcap header needs 24 bytes");
  const major = v.getUint16(4, le);
  if (major !== 2)
    throw new CaptureError(
      "bad-version",
      4,
      `pcap version ${major}.${v.getUint16(6, le)} (expected 2.4)`,
    );
  const snaplen = v.getUint32(16, le);
  const linkType = v.getUint32(20, le) & 0x0fffffff;
  const packets: CapturedPacket[] = [];
  let truncated: CaptureTruncation | null = null;
  let at = 24;
  while (at < bytes.length) {
    if (at + 16 > bytes.length) {
      truncated = { offset: at, detail: "packet record header runs past the end of the file" };
      break;
    }
    const sec = v.getUint32(at, le);
    const frac = v.getUint32(at + 4, le);
    const incl = v.getUint32(at + 8, le);
    const orig = v.getUint32(at + 12, le);
    // A SnapLen of 0 sets no limit of its own; hvlab's bound still holds.
    const limit =
      snaplen > 0 ? Math.min(MAX_CAPTURED_PACKET, Math.max(snaplen, 65_535)) : MAX_CAPTURED_PACKET;
    if (incl > limit) {
      throw new CaptureError(
        "too-large",
        at + 8,
        `captured length ${incl} is over the limit (${limit})`,
      );
    }
    if (at + 16 + incl > bytes.length) {
      truncated = {
        offset: at,
        detail: `packet of ${incl} bytes runs past the end of the file (${bytes.length - at - 16} bytes left)`,
      };
      break;
    }
    if (ns ? frac >= 1e9 : frac >= 1e6)
      throw new CaptureError("bad-length", at + 4, `sub-second timestamp ${frac} is out of range`);
    packets.push({
      data: bytes.subarray(at + 16, at + 16 + incl),
      linkType,
      interfaceId: 0,
      originalLength: Math.max(orig, incl),
      seconds: sec,
      nanoseconds: ns ? frac : frac * 1000,
    });
    at += 16 + incl;
  }
  return { format: "pcap", linkType, snaplen, packets, truncated };
}

/** An interface of a pcapng section: its link type and clock ticks per second. */
interface PcapngInterface {
  readonly linkType: number;
  readonly snaplen: number;
  readonly ticksPerSecond: bigint;
}

/** Reads an Interface Description Block's body. */
function readInterface(
  bytes: Uint8Array,
  v: DataView,
  le: boolean,
  at: number,
  body: number,
  bodyEnd: number,
): PcapngInterface {
  if (body + 8 > bodyEnd)
    throw new CaptureError("bad-block", at, "interface description block is too short");
  let ticksPerSecond = 1_000_000n;
  // Options: code u16, length u16, value padded to 4.
  let o = body + 8;
  while (o + 4 <= bodyEnd) {
    const code = v.getUint16(o, le);
    const len = v.getUint16(o + 2, le);
    if (code === 0) break;
    if (o + 4 + len > bodyEnd)
      throw new CaptureError(
        "bad-block",
        at,
        `interface option ${code} at byte ${o} runs past its block`,
      );
    if (code === 9 && len >= 1) {
      // if_tsresol: any exponent the specification allows (0 to 127) is a
      // valid clock; BigInt keeps 10^127 exact.
      const r = bytes[o + 4] ?? 6;
      const exp = BigInt(r & 0x7f);
      ticksPerSecond = r & 0x80 ? 2n ** exp : 10n ** exp;
    }
    o += 4 + pad4(len);
  }
  return {
    linkType: v.getUint16(body, le),
    snaplen: v.getUint32(body + 4, le),
    ticksPerSecond,
  };
}

function readPcapng(bytes: Uint8Array, v: DataView): Capture {
  let le = true;
  const interfaces: PcapngInterface[] = [];
  const packets: CapturedPacket[] = [];
  let firstLinkType: number | undefined;
  let snaplen = 0;
  let truncated: CaptureTruncation | null = null;
  let at = 0;
  let sawSection = false;
  while (at < bytes.length) {
    if (at + 12 > bytes.length) {
      truncated = { offset: at, detail: "block header runs past the end of the file" };
      break;
    }
    const type = v.getUint32(at, le);
    if (type === 0x0a0d0d0a) {
      if (at + 28 > bytes.length) {
        truncated = { offset: at, detail: "section header block runs past the end of the file" };
        break;
      }
      const bom = v.getUint32(at + 8, true);
      if (bom === 0x1a2b3c4d) le = true;
      else if (bom === 0x4d3c2b1a) le = false;
      else
        throw new CaptureError(
          "bad-magic",
          at,
          `section header's byte-order magic 0x${bom.toString(16)} is not 0x1A2B3C4D`,
        );
      const major = v.getUint16(at + 12, le);
      if (major !== 1)
        throw new CaptureError(
          "bad-version",
          at,
          `section header gives pcapng version ${major} (expected 1.0)`,
        );
      // A new section numbers its interfaces afresh.
      interfaces.length = 0;
      sawSection = true;
    } else if (!sawSection) {
      throw new CaptureError("bad-block", at, "file does not start with a section header block");
    }
    const total = v.getUint32(at + 4, le);
    if (total < 12 || total % 4 !== 0)
      throw new CaptureError(
        "bad-length",
        at,
        `block length ${total} is not a multiple of 4 of at least 12`,
      );
    if (at + total > bytes.length) {
      truncated = {
        offset: at,
        detail: `block of ${total} bytes runs past the end of the file (${bytes.length - at} bytes left)`,
      };
      break;
    }
    if (v.getUint32(at + total - 4, le) !== total) {
      throw new CaptureError(
        "bad-length",
        at,
        "block's trailing length does not repeat its leading length",
      );
    }
    const body = at + 8;
    const bodyEnd = at + total - 4;
    if (type === 1) {
      const iface = readInterface(bytes, v, le, at, body, bodyEnd);
      interfaces.push(iface);
      firstLinkType ??= iface.linkType;
      snaplen = Math.max(snaplen, iface.snaplen);
    } else if (type === 6 || type === 3) {
      const header = type === 6 ? 20 : 4;
      if (body + header > bodyEnd)
        throw new CaptureError("bad-block", at, "packet block is too short");
      const interfaceId = type === 6 ? v.getUint32(body, le) : 0;
      const iface = interfaces[interfaceId];
      if (!iface)
        throw new CaptureError(
          "bad-block",
          at,
          `packet block names interface ${interfaceId}, which was not described`,
        );
      const captured =
        type === 6
          ? v.getUint32(body + 12, le)
          : Math.min(v.getUint32(body, le), bodyEnd - body - 4);
      const original = type === 6 ? v.getUint32(body + 16, le) : v.getUint32(body, le);
      if (captured > MAX_CAPTURED_PACKET)
        throw new CaptureError(
          "too-large",
          at,
          `packet block's captured length ${captured} is over ${MAX_CAPTURED_PACKET}`,
        );
      const data = body + header;
      if (data + captured > bodyEnd)
        throw new CaptureError(
          "bad-length",
          at,
          `packet block's ${captured} captured bytes run past its block`,
        );
      let seconds = 0;
      let nanoseconds = 0;
      if (type === 6) {
        const ticks =
          (BigInt(v.getUint32(body + 4, le)) << 32n) | BigInt(v.getUint32(body + 8, le));
        seconds = Number(ticks / iface.ticksPerSecond);
        nanoseconds = Number(
          ((ticks % iface.ticksPerSecond) * 1_000_000_000n) / iface.ticksPerSecond,
        );
      }
      packets.push({
        data: bytes.subarray(data, data + captured),
        linkType: iface.linkType,
        interfaceId,
        originalLength: Math.max(original, captured),
        seconds,
        nanoseconds,
      });
    }
    at += total;
  }
  if (!sawSection) throw new CaptureError("bad-block", 0, "no section header block");
  return {
    format: "pcapng",
    linkType: firstLinkType ?? LINKTYPE_ETHERNET,
    snaplen,
    packets,
    truncated,
  };
}
