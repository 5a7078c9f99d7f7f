import { describe, expect, it } from "vitest";
import { buildFrame, buildHeaders, type FrameSpec, timestampOption } from "../src/net/build.js";
import { coalesce, coalescedBytes } from "../src/net/coalesce.js";
import { TCP_FLAGS } from "../src/net/frame.js";
import { expectSameBytes } from "./support/bytes.js";
import { frameSpec, TCP, V4, V6 } from "./support/net-frames.js";

/*
 * Receive coalescing (Linux GRO, Windows RSC), rule by rule: which TCP
 * segment joins the group of the segment before it, with known answers
 * built here.
 * - Sequence: a segment joins only when its sequence number is the group's
 *   first plus the bytes so far, modulo 2^32 (RFC 9293 section 3.4).
 * - Flags: they must equal the first segment's except the edge flags FIN,
 *   PSH and CWR; PSH or FIN end the group and go into the super-frame; CWR
 *   may follow on only when the first segment had it (Linux tcp_gro_receive);
 *   a SYN or RST segment never starts one (RFC 9293 3.5, 3.10.7).
 * - IPv4 ID (RFC 791 section 3.1, RFC 6864): the IDs follow one of a large
 *   send's modes, increment (16 bits), fixed, or increment in 15 bits, the
 *   same mode for the whole group.
 * - Headers: every byte but lengths, ID, checksums, sequence and flags equals
 *   the first segment's: Ethernet addresses, TOS, DF, TTL, IP options, IPv6
 *   traffic class, flow label and hop limit (RFC 8200 section 3), TCP
 *   acknowledgment, window, urgent pointer and options (RFC 7323 timestamps).
 * - Sizes: every segment carries the first's payload size (the MSS) but the
 *   last, which may be shorter and ends the group; an empty or a larger one
 *   does not join; the super-frame's IP datagram stays within maxBytes
 *   (65,535 by default, RSC's limit).
 */

const MSS = 1000;

/** The byte at stream offset `k`: pieces of one stream join into known bytes. */
function streamAt(seq: number, n: number): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const k = (seq + i) >>> 0;
    p[i] = (k * 7 + (k >>> 8)) & 0xff;
  }
  return p;
}

interface Seg {
  readonly seq: number;
  readonly len?: number;
  readonly id?: number;
  readonly flags?: number;
  readonly spec?: Partial<FrameSpec>;
}

function specOf(s: Seg): FrameSpec {
  const base = frameSpec(s.spec ?? {});
  const ip = base.ip.version === 4 ? { ...base.ip, id: s.id ?? base.ip.id ?? 0 } : base.ip;
  const l4 =
    base.l4.kind === "tcp" ? { ...base.l4, seq: s.seq, flags: s.flags ?? TCP_FLAGS.ACK } : base.l4;
  return { ethernet: base.ethernet, ip, l4 };
}

/** A received TCP segment carrying the stream's bytes at `seq`, checksums filled in. */
function seg(s: Seg): Uint8Array {
  return buildFrame(specOf(s), streamAt(s.seq, s.len ?? MSS));
}

/** `n` full segments of one send from sequence 1, IDs counting from 100. */
function run(n: number, len = MSS): Uint8Array[] {
  return Array.from({ length: n }, (_, i) => seg({ seq: 1 + i * len, id: 100 + i, len }));
}

function counts(frames: readonly Uint8Array[], maxBytes?: number): number[] {
  return coalesce(frames, maxBytes === undefined ? {} : { maxBytes }).map((c) => c.segments);
}

/** A copy of `f` with byte `at` set to `value`. */
function patched(f: Uint8Array, at: number, value: number): Uint8Array {
  const c = f.slice();
  c[at] = value;
  return c;
}

/** The super-frame a send of `s` (its first segment) with `total` payload bytes was. */
function superFrame(s: Seg, total: number): Uint8Array {
  const h = buildHeaders(specOf(s), total).bytes;
  const out = new Uint8Array(h.length + total);
  out.set(h);
  out.set(streamAt(s.seq, total), h.length);
  return out;
}

function only(frames: readonly Uint8Array[]): Uint8Array {
  const merged = coalesce(frames);
  expect(merged).toHaveLength(1);
  const [m] = merged;
  if (!m) throw new Error("nothing coalesced");
  return coalescedBytes(m);
}

describe("coalescing: the send's own segments", () => {
  it("joins four segments that follow on into the send they were cut from", () => {
    const frames = run(4);
    expectSameBytes(only(frames), superFrame({ seq: 1, id: 100 }, 4000), "super-frame");
    const merged = coalesce(frames);
    expect(merged[0]?.pieces.map((p) => p.length)).toEqual([1000, 1000, 1000, 1000]);
    expect(merged[0]?.length).toBe(54 + 4000);
  });

  it("joins a shorter last segment and ends the group with it", () => {
    const frames = [...run(2), seg({ seq: 2001, id: 102, len: 400 }), seg({ seq: 2401, id: 103 })];
    expect(counts(frames)).toEqual([3, 1]);
    expectSameBytes(only(frames.slice(0, 3)), superFrame({ seq: 1, id: 100 }, 2400));
  });

  it("takes the first segment's payload size as the MSS", () => {
    const frames = [seg({ seq: 1, id: 1, len: 500 }), seg({ seq: 501, id: 2, len: 500 })];
    expect(counts(frames)).toEqual([2]);
    const frames2 = [seg({ seq: 1, id: 1, len: 500 }), seg({ seq: 501, id: 2, len: 501 })];
    expect(counts(frames2), "larger than the MSS").toEqual([1, 1]);
  });

  it("does not join an empty segment (a pure ACK) or one larger than the MSS", () => {
    expect(counts([seg({ seq: 1, id: 1 }), seg({ seq: 1001, id: 2, len: 0 })])).toEqual([1, 1]);
    expect(counts([seg({ seq: 1, id: 1 }), seg({ seq: 1001, id: 2, len: 1200 })])).toEqual([1, 1]);
    expect(counts([seg({ seq: 1, id: 1, len: 0 }), seg({ seq: 1, id: 2, len: 0 })])).toEqual([
      1, 1,
    ]);
    expect(counts([seg({ seq: 1, id: 1, len: 0 }), seg({ seq: 1, id: 2 })])).toEqual([1, 1]);
  });
});

describe("coalescing: TCP sequence numbers (RFC 9293 3.4)", () => {
  it("joins only the segment that starts where the group ends", () => {
    for (const seq of [1, 1000, 1002, 2001, 0]) {
      expect(counts([seg({ seq: 1, id: 1 }), seg({ seq, id: 2 })]), `seq ${seq}`).toEqual([1, 1]);
    }
    expect(counts([seg({ seq: 1, id: 1 }), seg({ seq: 1001, id: 2 })])).toEqual([2]);
  });

  it("follows the sequence number around 2^32", () => {
    const a = 0xffffff00;
    const frames = [
      seg({ seq: a, id: 1 }),
      seg({ seq: (a + 1000) >>> 0, id: 2 }),
      seg({ seq: (a + 2000) >>> 0, id: 3 }),
    ];
    expect((a + 1000) >>> 0).toBe(0x2e8);
    expectSameBytes(only(frames), superFrame({ seq: a, id: 1 }, 3000));
  });
});

describe("coalescing: TCP flags", () => {
  it("does not join a segment whose other flags differ (ECE, URG, no ACK)", () => {
    for (const flags of [
      TCP_FLAGS.ACK | TCP_FLAGS.ECE,
      TCP_FLAGS.ACK | 0x20,
      0,
      TCP_FLAGS.ACK | TCP_FLAGS.RST,
    ]) {
      expect(counts([seg({ seq: 1, id: 1 }), seg({ seq: 1001, id: 2, flags })])).toEqual([1, 1]);
    }
  });

  it("ends the group at PSH or FIN, which the super-frame then carries", () => {
    const ack = TCP_FLAGS.ACK;
    const psh = [
      seg({ seq: 1, id: 1 }),
      seg({ seq: 1001, id: 2, flags: ack | TCP_FLAGS.PSH }),
      seg({ seq: 2001, id: 3 }),
    ];
    expect(counts(psh)).toEqual([2, 1]);
    expectSameBytes(
      only(psh.slice(0, 2)),
      superFrame({ seq: 1, id: 1, flags: ack | TCP_FLAGS.PSH }, 2000),
    );
    const fin = [seg({ seq: 1, id: 1 }), seg({ seq: 1001, id: 2, flags: ack | TCP_FLAGS.FIN })];
    expectSameBytes(only(fin), superFrame({ seq: 1, id: 1, flags: ack | TCP_FLAGS.FIN }, 2000));
    const first = [seg({ seq: 1, id: 1, flags: ack | TCP_FLAGS.PSH }), seg({ seq: 1001, id: 2 })];
    expect(counts(first), "a first segment with PSH is a group of its own").toEqual([1, 1]);
  });

  it("keeps CWR from the first segment, on all or the first only, never from a later one", () => {
    const cwr = TCP_FLAGS.ACK | TCP_FLAGS.CWR;
    const firstOnly = [
      seg({ seq: 1, id: 1, flags: cwr }),
      seg({ seq: 1001, id: 2 }),
      seg({ seq: 2001, id: 3 }),
    ];
    expectSameBytes(only(firstOnly), superFrame({ seq: 1, id: 1, flags: cwr }, 3000));
    const onAll = [seg({ seq: 1, id: 1, flags: cwr }), seg({ seq: 1001, id: 2, flags: cwr })];
    expect(counts(onAll)).toEqual([2]);
    const later = [seg({ seq: 1, id: 1 }), seg({ seq: 1001, id: 2, flags: cwr })];
    expect(counts(later)).toEqual([1, 1]);
  });

  it("never groups a SYN or RST segment", () => {
    const syn = TCP_FLAGS.SYN | TCP_FLAGS.ACK;
    expect(
      counts([seg({ seq: 1, id: 1, flags: syn }), seg({ seq: 1001, id: 2, flags: syn })]),
    ).toEqual([1, 1]);
    const rst = TCP_FLAGS.RST | TCP_FLAGS.ACK;
    expect(
      counts([seg({ seq: 1, id: 1, flags: rst }), seg({ seq: 1001, id: 2, flags: rst })]),
    ).toEqual([1, 1]);
  });
});

describe("coalescing: IPv4 IDs (RFC 791 3.1, RFC 6864)", () => {
  const ids = (list: number[]) => counts(list.map((id, i) => seg({ seq: 1 + i * MSS, id })));

  it("joins IDs that increment in 16 bits, in 15 bits, or stay fixed, across their wraps", () => {
    expect(ids([0xfffe, 0xffff, 0x0000, 0x0001])).toEqual([4]);
    expect(ids([0x7ffe, 0x7fff, 0x0000, 0x0001])).toEqual([4]);
    expect(ids([0x7ffe, 0x7fff, 0x8000, 0x8001])).toEqual([4]);
    expect(ids([7, 7, 7])).toEqual([3]);
    expect(ids([0, 0])).toEqual([2]);
  });

  it("does not join IDs that follow no mode", () => {
    expect(ids([5, 9])).toEqual([1, 1]);
    expect(ids([5, 4])).toEqual([1, 1]);
    expect(ids([0x7fff, 0x0001])).toEqual([1, 1]);
    expect(ids([0x1234, 0x3412])).toEqual([1, 1]);
    expect(ids([0x0100, 0x0200])).toEqual([1, 1]);
  });

  it("holds the group to the one mode its IDs have followed", () => {
    expect(ids([10, 11, 10]), "increment, then fixed").toEqual([2, 1]);
    expect(ids([10, 10, 11]), "fixed, then increment").toEqual([2, 1]);
    expect(ids([0x7ffe, 0x7fff, 0x8000, 0x0001]), "16 bits, then 15").toEqual([3, 1]);
    expect(ids([0x7fff, 0x0000, 0x8001]), "15 bits, then 16").toEqual([2, 1]);
  });

  it("keeps the first segment's ID in the super-frame", () => {
    const frames = [0x7ffe, 0x7fff, 0].map((id, i) => seg({ seq: 1 + i * MSS, id }));
    expectSameBytes(only(frames), superFrame({ seq: 1, id: 0x7ffe }, 3000));
  });
});

describe("coalescing: header bytes every segment repeats", () => {
  const pair = (second: Uint8Array) => counts([seg({ seq: 1, id: 1 }), second]);

  it("joins a second segment that differs only in length, ID, checksums, sequence and edge flags", () => {
    expect(pair(seg({ seq: 1001, id: 2, len: 10, flags: TCP_FLAGS.ACK | TCP_FLAGS.FIN }))).toEqual([
      2,
    ]);
  });

  it("does not join one whose Ethernet, IPv4 or TCP header differs anywhere else", () => {
    const next = seg({ seq: 1001, id: 2 });
    // Bytes of the 54-byte header: Ethernet 0-13, IPv4 14-33, TCP 34-53.
    const cases: [number, number, string][] = [
      [0, 0x02, "destination MAC, first byte"],
      [11, 0x09, "source MAC, last byte"],
      [15, 0xb8, "TOS (RFC 791), before the total length"],
      [20, 0x00, "DF cleared, after the ID"],
      [22, 63, "TTL"],
      [26, 11, "source address, after the header checksum"],
      [33, 9, "destination address, last byte"],
      [42, 1, "acknowledgment, after the sequence number"],
      [45, 1, "acknowledgment, last byte"],
      [48, 0x7f, "window, after the flags"],
      [52, 1, "urgent pointer, after the checksum"],
      [53, 1, "urgent pointer, the header's last byte"],
    ];
    for (const [at, value, what] of cases) {
      expect(next[at], what).not.toBe(value);
      expect(pair(patched(next, at, value)), what).toEqual([1, 1]);
    }
  });

  it("does not join one with other TTL, TOS, acknowledgment or window, built so", () => {
    const differs: Partial<FrameSpec>[] = [
      { ip: { ...V4, ttl: 1 } },
      { ip: { ...V4, tos: 4 } },
      { ip: { ...V4, dontFragment: false } },
      { l4: { ...TCP, ack: 5 } },
      { l4: { ...TCP, window: 512 } },
      { ip: { ...V4, options: Uint8Array.of(1, 1, 1, 0) } },
      { l4: { ...TCP, options: timestampOption(1, 2) } },
    ];
    for (const spec of differs) {
      expect(pair(seg({ seq: 1001, id: 2, spec })), JSON.stringify(spec)).toEqual([1, 1]);
    }
  });

  it("compares TCP options (RFC 7323 timestamps) to their last byte", () => {
    const ts = (tsval: number, tsecr: number): Partial<FrameSpec> => ({
      l4: { ...TCP, options: timestampOption(tsval, tsecr) },
    });
    const a = seg({ seq: 1, id: 1, spec: ts(100, 200) });
    expect(counts([a, seg({ seq: 1001, id: 2, spec: ts(100, 200) })])).toEqual([2]);
    expect(counts([a, seg({ seq: 1001, id: 2, spec: ts(101, 200) })])).toEqual([1, 1]);
    expect(counts([a, seg({ seq: 1001, id: 2, spec: ts(100, 201) })])).toEqual([1, 1]);
    expect(counts([a, seg({ seq: 1001, id: 2 })]), "without the options").toEqual([1, 1]);
  });

  it("does not join IPv6 segments whose traffic class, flow label or hop limit differ (RFC 8200 3)", () => {
    const v6 = (extra: object): Partial<FrameSpec> => ({ ip: { ...V6, ...extra } });
    const first = seg({ seq: 1, spec: v6({ flowLabel: 0x12345 }) });
    expect(counts([first, seg({ seq: 1001, spec: v6({ flowLabel: 0x12345 }) })])).toEqual([2]);
    for (const extra of [
      { flowLabel: 0x12346 },
      { flowLabel: 0x12245 },
      { flowLabel: 0x02345 },
      { flowLabel: 0x12345, trafficClass: 8 },
      { flowLabel: 0x12345, hopLimit: 1 },
    ]) {
      expect(counts([first, seg({ seq: 1001, spec: v6(extra) })]), JSON.stringify(extra)).toEqual([
        1, 1,
      ]);
    }
  });
});

describe("coalescing: the super-frame's size", () => {
  it("joins up to maxBytes of IP datagram exactly, not one byte more", () => {
    const frames = run(3);
    expect(counts(frames, 40 + 3000)).toEqual([3]);
    expect(counts(frames, 40 + 3000 - 1)).toEqual([2, 1]);
    expect(counts(frames, 40 + 2000)).toEqual([2, 1]);
    expect(counts(frames, 40 + 1999)).toEqual([1, 1, 1]);
  });

  it("stops at 65,535 bytes by default: 44 segments of 1460", () => {
    const frames = run(46, 1460).map((f, i) => patched(patched(f, 18, 0), 19, i));
    expect(40 + 44 * 1460).toBeLessThanOrEqual(65_535);
    expect(40 + 45 * 1460).toBeGreaterThan(65_535);
    expect(counts(frames)).toEqual([44, 2]);
  });
});
