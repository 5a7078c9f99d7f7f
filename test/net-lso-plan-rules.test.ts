import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { buildHeaders, type FrameSpec } from "../src/net/build.js";
import { SendError } from "../src/net/errors.js";
import { TCP_FLAGS } from "../src/net/frame.js";
import {
  LSOV1_MAX_SEND,
  LSOV2_DEFAULT_MAX_SEND,
  mssForMtu,
  planSend,
  Segmenter,
  type SendOptions,
} from "../src/net/lso.js";
import { segmentOracle } from "../src/oracle/segment.js";
import { expectSameFrames } from "./support/bytes.js";
import { ETH, frameSpec, set16, TCP, UDP, V4, V6 } from "./support/net-frames.js";

/*
 * planSend's rules one by one, each refusal by its SendError code and words:
 * - the MTU is 68 to 65535 bytes (RFC 791 section 3.2: every IPv4 host
 *   takes a 68-byte datagram; the 16-bit total length caps it at 65535);
 * - the template is an IP header (RFC 791 / RFC 8200) that is not a
 *   fragment (RFC 791 section 3.2: MF or a fragment offset), carries TCP
 *   (RFC 9293) or UDP (RFC 768), and ends where its headers end;
 * - NDIS LSOv1 and LSOv2 cut TCP only, USO cuts UDP only, LSOv1 IPv4 only
 *   and at most 65,535 bytes of IP datagram; LSOv2 and USO up to the NIC's
 *   MaxOffLoadSize (a parameter, 256 KiB by default);
 * - a SYN or RST is never offloaded (RFC 9293 sections 3.5 and 3.10.7);
 * - the MSS is 1 to the MTU minus the IP and transport headers, that by default;
 * - IPv4 IDs: LSOv2 numbers segments inside 15 bits by default, so the
 *   template's ID must be 0x7fff or less; LSOv1 and USO increment all 16 bits.
 * Accepted sends are segmented and compared with the TypeScript oracle.
 */

interface Said {
  readonly code: string;
  readonly message: string;
}

/** The SendError `send` throws, as its code and message; fails when it is accepted. */
function sendRefusal(send: () => unknown): Said {
  try {
    send();
  } catch (e) {
    if (!(e instanceof SendError)) throw e;
    return { code: e.code, message: e.message };
  }
  throw new Error("the send was accepted");
}

/** What a SendError of `code` saying `detail` looks like. */
function said(code: string, detail: string): Said {
  return { code, message: `large send: ${detail} (${code})` };
}

/** The headers of a send of `payloadLength` bytes (ETH, V4 and TCP where the spec names none). */
function template(payloadLength: number, spec: Partial<FrameSpec> = {}): Uint8Array {
  return buildHeaders(frameSpec(spec), payloadLength).bytes;
}

function payloadOf(n: number): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = (i * 31 + 7) & 0xff;
  return p;
}

const u16 = (b: Uint8Array, at: number) => ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);

const tcp4: SendOptions = { offload: "lsov1", mtu: 1500 };

describe("planSend: the payload length and the MTU", () => {
  it("refuses a payload length that is not a byte count (too-large)", () => {
    const t = template(100);
    for (const n of [-1, 1.5, Number.NaN]) {
      expect(sendRefusal(() => planSend(t, n, tcp4))).toEqual(
        said("too-large", `payload length must be a byte count, not ${n}`),
      );
    }
  });

  it("takes an empty payload as one segment of headers alone", () => {
    const t = template(0);
    const plan = planSend(t, 0, tcp4);
    expect([plan.segments, plan.outputBytes, plan.payloadLength]).toEqual([1, 54, 0]);
  });

  it("takes MTUs 68 and 65535 and refuses 67, 65536 and a fraction (RFC 791 3.2)", () => {
    const t = template(100);
    expect(planSend(t, 100, { offload: "lsov1", mtu: 68 }).mss).toBe(28);
    expect(planSend(t, 100, { offload: "lsov2", mtu: 65_535 }).mss).toBe(65_495);
    for (const mtu of [67, 65_536, 1500.5, 0]) {
      expect(sendRefusal(() => planSend(t, 100, { offload: "lsov1", mtu }))).toEqual(
        said("bad-mss", `MTU must be 68 to 65535, not ${mtu}`),
      );
    }
  });

  it("segments a send at MTU 65535 into one frame of 65,495 payload bytes and the rest", () => {
    const payload = payloadOf(70_000);
    const t = template(payload.length, { ip: V6 });
    const segmenter = new Segmenter(new MemoryLayout(), 70_000);
    const send = segmenter.segment(t, payload, { offload: "lsov2", mtu: 65_535 });
    expect(send.plan.mss).toBe(65_535 - 60);
    const frames = segmenter.copyFrames(send);
    expect(frames.map((f) => f.length)).toEqual([14 + 65_535, 74 + 70_000 - 65_475]);
  });
});

describe("planSend: the template", () => {
  it("refuses a template that is not IP (an ARP frame's Ethernet header)", () => {
    const arp = new Uint8Array(14);
    set16(arp, 12, 0x0806);
    expect(sendRefusal(() => planSend(arp, 100, tcp4))).toEqual(
      said("bad-template", "the template is not IP"),
    );
  });

  it("refuses an IPv4 fragment: MF set, or a fragment offset (RFC 791 3.2)", () => {
    for (const field of [0x2000, 0x0001, 0x4000 | 0x0010]) {
      const t = template(100);
      set16(t, 14 + 6, field);
      expect(sendRefusal(() => planSend(t, 100, tcp4))).toEqual(
        said("not-offloadable", "the template is a fragment"),
      );
    }
  });

  it("refuses a transport that is neither TCP nor UDP (ICMP, protocol 1)", () => {
    const t = template(100);
    t[14 + 9] = 1;
    expect(sendRefusal(() => planSend(t, 100, tcp4))).toEqual(
      said("not-offloadable", "protocol 1 is neither TCP nor UDP"),
    );
    const headerOnly = t.slice(0, 34);
    set16(headerOnly, 14 + 2, 20 + 100);
    expect(sendRefusal(() => planSend(headerOnly, 100, tcp4))).toEqual(
      said("not-offloadable", "protocol 1 is neither TCP nor UDP"),
    );
  });

  it("refuses a template with bytes after its headers, saying how many", () => {
    for (const extra of [1, 4, 7]) {
      const headers = template(100 + extra);
      const t = new Uint8Array(headers.length + extra);
      t.set(headers);
      expect(sendRefusal(() => planSend(t, 100, tcp4))).toEqual(
        said("bad-template", `the template has ${extra} bytes after its headers`),
      );
    }
  });
});

describe("planSend: which offload cuts what", () => {
  it("USO cuts UDP only, LSOv1 and LSOv2 TCP only (NDIS)", () => {
    const tcp = template(3000);
    const udp = template(3000, { l4: UDP });
    expect(sendRefusal(() => planSend(tcp, 3000, { offload: "uso", mtu: 1500 }))).toEqual(
      said("not-offloadable", "UDP segmentation needs a UDP send"),
    );
    for (const offload of ["lsov1", "lsov2"] as const) {
      expect(sendRefusal(() => planSend(udp, 3000, { offload, mtu: 1500 }))).toEqual(
        said("not-offloadable", `${offload} segments TCP, not UDP`),
      );
    }
    const plan = planSend(udp, 3000, { offload: "uso", mtu: 1500 });
    expect([plan.mss, plan.segments]).toEqual([1472, 3]);
    expect(planSend(tcp, 3000, { offload: "lsov2", mtu: 1500 }).segments).toBe(3);
  });

  it("refuses SYN and RST, naming the flag, and takes every other flag (RFC 9293 3.5, 3.10.7)", () => {
    const cases: [number, string][] = [
      [TCP_FLAGS.SYN, "SYN"],
      [TCP_FLAGS.SYN | TCP_FLAGS.ACK, "SYN"],
      [TCP_FLAGS.RST, "RST"],
      [TCP_FLAGS.RST | TCP_FLAGS.ACK, "RST"],
      [TCP_FLAGS.SYN | TCP_FLAGS.RST, "SYN"],
    ];
    for (const [flags, name] of cases) {
      const t = template(3000, { l4: { ...TCP, flags } });
      expect(sendRefusal(() => planSend(t, 3000, tcp4))).toEqual(
        said(
          "not-offloadable",
          `a large send cannot carry ${name}: it is one control segment, not data to cut`,
        ),
      );
    }
    const others =
      TCP_FLAGS.FIN | TCP_FLAGS.PSH | TCP_FLAGS.ACK | TCP_FLAGS.CWR | TCP_FLAGS.ECE | 0x20;
    expect(planSend(template(3000, { l4: { ...TCP, flags: others } }), 3000, tcp4).segments).toBe(
      3,
    );
  });

  it("LSOv1 refuses IPv6; LSOv2 takes it", () => {
    const t = template(3000, { ip: V6 });
    expect(sendRefusal(() => planSend(t, 3000, tcp4))).toEqual(
      said("not-offloadable", "LSOv1 offloads IPv4 only (use lsov2 for IPv6)"),
    );
    expect(planSend(t, 3000, { offload: "lsov2", mtu: 1500 }).mss).toBe(1440);
  });
});

describe("planSend: the largest send", () => {
  it("LSOv1 takes an IP datagram of 65,535 bytes and refuses 65,536", () => {
    const most = LSOV1_MAX_SEND - 40;
    expect(planSend(template(most), most, tcp4).segments).toBe(Math.ceil(most / 1460));
    expect(sendRefusal(() => planSend(template(most + 1), most + 1, tcp4))).toEqual(
      said("too-large", "a send of 65536 bytes (IP datagram) is over lsov1's limit of 65535"),
    );
    // maxSend does not raise LSOv1's limit.
    expect(
      sendRefusal(() => planSend(template(most + 1), most + 1, { ...tcp4, maxSend: 1 << 20 })).code,
    ).toBe("too-large");
  });

  it("LSOv2 and USO take up to maxSend, 256 KiB by default", () => {
    const most = LSOV2_DEFAULT_MAX_SEND - 40;
    const lsov2: SendOptions = { offload: "lsov2", mtu: 9000 };
    expect(planSend(template(most), most, lsov2).mss).toBe(8960);
    expect(sendRefusal(() => planSend(template(most + 1), most + 1, lsov2))).toEqual(
      said("too-large", `a send of 262145 bytes (IP datagram) is over lsov2's limit of 262144`),
    );
    const uso: SendOptions = { offload: "uso", mtu: 1500, maxSend: 1000 };
    expect(planSend(template(972, { l4: UDP }), 972, uso).segments).toBe(1);
    expect(sendRefusal(() => planSend(template(973, { l4: UDP }), 973, uso))).toEqual(
      said("too-large", "a send of 1001 bytes (IP datagram) is over uso's limit of 1000"),
    );
  });
});

describe("planSend: the MSS", () => {
  it("defaults to the MTU less the IP and transport headers (mssForMtu)", () => {
    expect(mssForMtu(1500, 40)).toBe(1460);
    expect(mssForMtu(9000, 60)).toBe(8940);
    const ts = template(5000, { l4: { ...TCP, options: new Uint8Array(12) } });
    expect(planSend(ts, 5000, tcp4).mss).toBe(1448);
    expect(planSend(template(5000), 5000, tcp4).mss).toBe(1460);
  });

  it("takes MSS 1 and the MTU's maximum, refuses 0, negatives, fractions and one more", () => {
    const t = template(3000);
    expect(planSend(t, 3000, { ...tcp4, mss: 1 }).segments).toBe(3000);
    expect(planSend(t, 3000, { ...tcp4, mss: 1460 }).segments).toBe(3);
    for (const mss of [0, -1, 1.5, Number.NaN]) {
      expect(sendRefusal(() => planSend(t, 3000, { ...tcp4, mss }))).toEqual(
        said("bad-mss", `MSS must be at least 1, not ${mss}`),
      );
    }
    expect(sendRefusal(() => planSend(t, 3000, { ...tcp4, mss: 1461 }))).toEqual(
      said("bad-mss", "MSS 1461 is larger than MTU 1500 allows with 40 bytes of headers (1460)"),
    );
  });

  it("refuses a default MSS under 1: headers that fill a small MTU", () => {
    const full = { ...TCP, options: new Uint8Array(40) };
    const t = template(100, { ip: { ...V4, options: new Uint8Array(8) }, l4: full });
    // 28 bytes of IPv4 header and 60 of TCP leave 68 - 88 = -20.
    expect(sendRefusal(() => planSend(t, 100, { offload: "lsov1", mtu: 68 }))).toEqual(
      said("bad-mss", "MSS must be at least 1, not -20"),
    );
    expect(planSend(t, 100, { offload: "lsov1", mtu: 89 }).mss).toBe(1);
  });
});

describe("planSend: IPv4 ID modes", () => {
  it("LSOv2 numbers IDs in 15 bits by default: takes 0x7fff, refuses 0x8000 and 0x80ff", () => {
    const lsov2: SendOptions = { offload: "lsov2", mtu: 1500 };
    const ok = template(3000, { ip: { ...V4, id: 0x7fff } });
    expect(planSend(ok, 3000, lsov2).flags).toBe(2 << 2);
    for (const id of [0x8000, 0x80ff, 0xffff]) {
      const t = template(3000, { ip: { ...V4, id } });
      expect(sendRefusal(() => planSend(t, 3000, lsov2))).toEqual(
        said("bad-id", `IPv4 ID 0x${id.toString(16)} is outside LSOv2's 15-bit range`),
      );
      expect(sendRefusal(() => planSend(t, 3000, { ...lsov2, ipId: "wrap15" })).code).toBe(
        "bad-id",
      );
      expect(planSend(t, 3000, { ...lsov2, ipId: "increment" }).flags).toBe(0);
      expect(planSend(t, 3000, { ...lsov2, ipId: "fixed" }).flags).toBe(1 << 2);
    }
  });

  it("IPv6 has no ID: LSOv2 takes any template", () => {
    const t = template(3000, { ip: V6 });
    expect(planSend(t, 3000, { offload: "lsov2", mtu: 1500 }).flags).toBe(1 | (2 << 2));
    expect(planSend(t, 3000, { offload: "lsov2", mtu: 1500, cwr: "all" }).flags).toBe(
      1 | (2 << 2) | 16,
    );
  });

  it("LSOv1 and USO increment all 16 bits by default: 0x7ffe counts on to 0x8000 and wraps at 0xffff", () => {
    const segmenter = new Segmenter(new MemoryLayout(), 8000);
    const cases: [SendOptions, Partial<FrameSpec>, number, number[]][] = [
      [tcp4, {}, 0x7ffe, [0x7ffe, 0x7fff, 0x8000]],
      [tcp4, {}, 0xfffe, [0xfffe, 0xffff, 0x0000]],
      [{ offload: "uso", mtu: 1500 }, { l4: UDP }, 0x7fff, [0x7fff, 0x8000, 0x8001]],
    ];
    for (const [options, spec, id, ids] of cases) {
      const payload = payloadOf(3500);
      const udp = spec.l4 !== undefined;
      const full: FrameSpec = frameSpec({ ...spec, ip: { ...V4, id } });
      const headers = buildHeaders(full, payload.length);
      const send = segmenter.segment(headers.bytes, payload, options);
      expect(send.plan.flags).toBe(udp ? 2 : 0);
      const frames = segmenter.copyFrames(send);
      expect(frames.map((f) => u16(f, 14 + 4))).toEqual(ids);
      expectSameFrames(
        frames,
        segmentOracle(headers.bytes, payload, {
          l3: headers.l3,
          l4: headers.l4,
          ipv6: false,
          udp,
          mss: send.plan.mss,
          idMode: "increment",
          cwrOnAll: false,
        }),
      );
    }
  });

  it("an ID mode given explicitly is the one used (fixed on LSOv1, wrap15 on USO)", () => {
    const segmenter = new Segmenter(new MemoryLayout(), 8000);
    const payload = payloadOf(3500);
    const fixed = template(3500, { ip: { ...V4, id: 0x1234 }, ethernet: ETH });
    const f1 = segmenter.copyFrames(
      segmenter.segment(fixed, payload, { ...tcp4, ipId: "fixed", cwr: "all" }),
    );
    expect(f1.map((f) => u16(f, 18))).toEqual([0x1234, 0x1234, 0x1234]);
    const wrap = template(3500, { ip: { ...V4, id: 0x7fff }, l4: UDP });
    const f2 = segmenter.copyFrames(
      segmenter.segment(wrap, payload, { offload: "uso", mtu: 1500, ipId: "wrap15" }),
    );
    expect(f2.map((f) => u16(f, 18))).toEqual([0x7fff, 0x0000, 0x0001]);
    const refused = template(3500, { ip: { ...V4, id: 0x8000 }, l4: UDP });
    expect(
      sendRefusal(() => planSend(refused, 3500, { offload: "uso", mtu: 1500, ipId: "wrap15" })),
    ).toEqual(said("bad-id", "IPv4 ID 0x8000 is outside LSOv2's 15-bit range"));
  });
});
