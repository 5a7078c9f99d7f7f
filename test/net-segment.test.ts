import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { buildHeaders, type FrameSpec, timestampOption } from "../src/net/build.js";
import { coalesce, coalescedBytes } from "../src/net/coalesce.js";
import { SendError } from "../src/net/errors.js";
import { parseFrame, TCP_FLAGS } from "../src/net/frame.js";
import { type OffloadKind, Segmenter } from "../src/net/lso.js";
import { internetChecksumOracle, onesAdd, onesSumOracle } from "../src/oracle/checksum.js";
import { segmentOracle } from "../src/oracle/segment.js";
import { expectSameBytes, expectSameFrames } from "./support/bytes.js";

let segmenter: Segmenter;

beforeAll(() => {
  segmenter = new Segmenter(new MemoryLayout(), 300_000);
});

function tcpSpec(
  ipVersion: 4 | 6,
  extra: Partial<{ ts: boolean; flags: number; id: number; vlan: number }> = {},
): FrameSpec {
  return {
    ethernet: {
      dst: "02:00:00:00:00:02",
      src: "02:00:00:00:00:01",
      ...(extra.vlan !== undefined ? { vlan: extra.vlan } : {}),
    },
    ip:
      ipVersion === 4
        ? { version: 4, src: "10.0.0.1", dst: "10.0.0.2", id: extra.id ?? 0x1234 }
        : { version: 6, src: "fd00::1", dst: "fd00::2" },
    l4: {
      kind: "tcp",
      srcPort: 40000,
      dstPort: 5201,
      seq: 0xfffff000,
      ack: 77,
      flags: extra.flags ?? TCP_FLAGS.ACK | TCP_FLAGS.PSH,
      ...(extra.ts ? { options: timestampOption(1000, 2000) } : {}),
    },
  };
}

function payloadOf(n: number, seed = 1): Uint8Array {
  const p = new Uint8Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    p[i] = s >>> 24;
  }
  return p;
}

function be16(b: Uint8Array, at: number): number {
  return ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);
}

/** The transport checksum of a frame verifies (sum with pseudo-header is 0xFFFF). */
function l4ChecksumGood(f: Uint8Array): boolean {
  const p = parseFrame(f);
  const n = p.ipVersion === 4 ? 4 : 16;
  const len = p.ipEnd - p.l4;
  const pseudo = onesAdd(
    onesSumOracle(f, p.dstAddress, n, onesSumOracle(f, p.srcAddress, n, p.protocol)),
    len,
  );
  return onesSumOracle(f, p.l4, len, pseudo) === 0xffff;
}

describe("large send offload: per-segment rules (NDIS LSO, Linux tcp_gso_segment)", () => {
  it("cuts a 64 KiB IPv4 send at MTU 1500 into 1460-byte segments with every field right", () => {
    const payload = payloadOf(65_535 - 40);
    const { bytes: template } = buildHeaders(
      tcpSpec(4, { flags: TCP_FLAGS.ACK | TCP_FLAGS.PSH | TCP_FLAGS.FIN | TCP_FLAGS.CWR }),
      payload.length,
    );
    const send = segmenter.segment(template, payload, { offload: "lsov1", mtu: 1500 });
    expect(send.plan.mss).toBe(1460);
    const frames = segmenter.copyFrames(send);
    expect(frames.length).toBe(Math.ceil(payload.length / 1460));
    let offset = 0;
    for (const [i, f] of frames.entries()) {
      const p = parseFrame(f);
      const n = Math.min(1460, payload.length - offset);
      expect(p.payloadLength).toBe(n);
      expect(be16(f, p.l3 + 2)).toBe(40 + n);
      expect(be16(f, p.l3 + 4)).toBe((0x1234 + i) & 0xffff);
      expect(be16(f, p.l3 + 6)).toBe(0x4000);
      expect(internetChecksumOracle(f, p.l3, 20)).toBe(0);
      expect(l4ChecksumGood(f)).toBe(true);
      const seq = new DataView(f.buffer).getUint32(p.l4 + 4);
      expect(seq).toBe((0xfffff000 + offset) >>> 0);
      const flags = f[p.l4 + 13] ?? 0;
      const last = i === frames.length - 1;
      expect((flags & TCP_FLAGS.FIN) !== 0).toBe(last);
      expect((flags & TCP_FLAGS.PSH) !== 0).toBe(last);
      expect((flags & TCP_FLAGS.CWR) !== 0).toBe(i === 0);
      expect(f.subarray(p.payload)).toEqual(payload.subarray(offset, offset + n));
      offset += n;
    }
  });

  it("derives MSS 1440/1448/8960/8940/8948 from the MTU (RFC 791, RFC 8200, RFC 7323)", () => {
    const cases: [4 | 6, boolean, number, number][] = [
      [4, false, 1500, 1460],
      [6, false, 1500, 1440],
      [4, true, 1500, 1448],
      [4, false, 9000, 8960],
      [6, false, 9000, 8940],
      [4, true, 9000, 8948],
    ];
    for (const [v, ts, mtu, mss] of cases) {
      const { bytes } = buildHeaders(tcpSpec(v, { ts }), 20_000);
      const send = segmenter.segment(bytes, payloadOf(20_000), { offload: "lsov2", mtu });
      expect(send.plan.mss).toBe(mss);
    }
  });

  it("wraps LSOv2 IPv4 IDs inside 15 bits: 0x7FFE, 0x7FFF, 0x0000", () => {
    const { bytes } = buildHeaders(tcpSpec(4, { id: 0x7ffe }), 4000);
    const frames = segmenter.copyFrames(
      segmenter.segment(bytes, payloadOf(4000), { offload: "lsov2", mtu: 1500 }),
    );
    expect(frames.map((f) => be16(f, 18))).toEqual([0x7ffe, 0x7fff, 0x0000]);
    const fixed = segmenter.copyFrames(
      segmenter.segment(bytes, payloadOf(4000), { offload: "lsov2", mtu: 1500, ipId: "fixed" }),
    );
    expect(fixed.map((f) => be16(f, 18))).toEqual([0x7ffe, 0x7ffe, 0x7ffe]);
  });

  it("copies TCP timestamps and IPv4 options unaltered into every segment", () => {
    const spec = tcpSpec(4, { ts: true });
    const withOptions: FrameSpec = {
      ...spec,
      ip: {
        ...spec.ip,
        version: 4,
        src: "10.0.0.1",
        dst: "10.0.0.2",
        options: Uint8Array.from([1, 1, 1, 0]),
      },
    };
    const { bytes } = buildHeaders(withOptions, 5000);
    const frames = segmenter.copyFrames(
      segmenter.segment(bytes, payloadOf(5000), { offload: "lsov1", mtu: 1500 }),
    );
    for (const f of frames) {
      expect(f.subarray(14 + 20, 14 + 24)).toEqual(bytes.subarray(34, 38));
      expect(f.subarray(38 + 20, 38 + 32)).toEqual(bytes.subarray(58, 70));
      expect(internetChecksumOracle(f, 14, 24)).toBe(0);
      expect(l4ChecksumGood(f)).toBe(true);
    }
  });

  it("segments UDP into datagrams with their own lengths and checksums", () => {
    const spec: FrameSpec = { ...tcpSpec(6), l4: { kind: "udp", srcPort: 53, dstPort: 5353 } };
    const { bytes } = buildHeaders(spec, 10_000);
    const frames = segmenter.copyFrames(
      segmenter.segment(bytes, payloadOf(10_000), { offload: "uso", mtu: 1500, mss: 1200 }),
    );
    expect(frames.length).toBe(9);
    for (const f of frames) {
      const p = parseFrame(f);
      expect(be16(f, p.l4 + 4)).toBe(p.ipEnd - p.l4);
      expect(l4ChecksumGood(f)).toBe(true);
    }
  });
});

describe("large send offload: bad sends give typed errors", () => {
  const { bytes: v4 } = buildHeaders(tcpSpec(4), 3000);
  it("refuses an MSS of 0 or over what the MTU allows", () => {
    expect(() =>
      segmenter.segment(v4, payloadOf(3000), { offload: "lsov1", mtu: 1500, mss: 0 }),
    ).toThrow(SendError);
    expect(() =>
      segmenter.segment(v4, payloadOf(3000), { offload: "lsov1", mtu: 1500, mss: 1461 }),
    ).toThrow(/larger than MTU 1500/);
  });
  it("refuses a send larger than the LSO version allows, and IPv6 on LSOv1", () => {
    const big = buildHeaders(tcpSpec(4), 70_000).bytes;
    expect(() =>
      segmenter.segment(big, payloadOf(70_000), { offload: "lsov1", mtu: 1500 }),
    ).toThrow(/over lsov1's limit/);
    expect(
      segmenter.segment(big, payloadOf(70_000), { offload: "lsov2", mtu: 1500 }).frames.length,
    ).toBe(48);
    const v6 = buildHeaders(tcpSpec(6), 3000).bytes;
    expect(() => segmenter.segment(v6, payloadOf(3000), { offload: "lsov1", mtu: 1500 })).toThrow(
      /IPv4 only/,
    );
  });
  it("refuses a template whose total length disagrees with the send", () => {
    expect(() => segmenter.segment(v4, payloadOf(2999), { offload: "lsov1", mtu: 1500 })).toThrow(
      /total length/,
    );
  });
});

const offloads: OffloadKind[] = ["lsov1", "lsov2"];

describe("segmentation kernel against the oracle, and coalescing as its inverse", () => {
  it("equals the oracle and coalesce(segment(x)) = x on random sends (property)", () => {
    fc.assert(
      fc.property(
        fc.record({
          v: fc.constantFrom<4 | 6>(4, 6),
          udp: fc.boolean(),
          ts: fc.boolean(),
          vlan: fc.option(fc.integer({ min: 1, max: 4094 }), { nil: undefined }),
          length: fc.integer({ min: 0, max: 70_000 }),
          mss: fc.integer({ min: 1, max: 1400 }),
          mtu: fc.constantFrom(1500, 9000),
          flags: fc
            .integer({ min: 0, max: 255 })
            .map((f) => (f & ~(TCP_FLAGS.SYN | TCP_FLAGS.RST)) | TCP_FLAGS.ACK),
          id: fc.integer({ min: 0, max: 0x7fff }),
          idMode: fc.constantFrom("increment" as const, "fixed" as const, "wrap15" as const),
          seed: fc.nat(),
        }),
        (c) => {
          const base = tcpSpec(c.v, {
            ts: c.ts,
            flags: c.flags,
            id: c.id,
            ...(c.vlan !== undefined ? { vlan: c.vlan } : {}),
          });
          const spec: FrameSpec = c.udp
            ? { ...base, l4: { kind: "udp", srcPort: 1, dstPort: 2 } }
            : base;
          // At most 200 segments per send keeps the run short.
          const payload = payloadOf(Math.min(c.length, c.mss * 200), c.seed);
          const { bytes: template, l3, l4 } = buildHeaders(spec, payload.length);
          const offload: OffloadKind = c.udp
            ? "uso"
            : c.v === 6 || payload.length > 60_000
              ? "lsov2"
              : (offloads[c.seed % 2] ?? "lsov2");
          const send = segmenter.segment(template, payload, {
            offload,
            mtu: c.mtu,
            mss: c.mss,
            ipId: c.idMode,
          });
          const frames = segmenter.copyFrames(send);
          const oracle = segmentOracle(template, payload, {
            l3,
            l4,
            ipv6: c.v === 6,
            udp: c.udp,
            mss: c.mss,
            idMode: c.idMode,
            cwrOnAll: false,
          });
          expectSameFrames(frames, oracle);
          const merged = coalesce(frames, { maxBytes: 1 << 20, udp: true });
          expect(merged.length).toBe(1);
          const [only] = merged;
          if (!only) throw new Error("nothing coalesced");
          const x = new Uint8Array(template.length + payload.length);
          x.set(template);
          x.set(payload, template.length);
          expectSameBytes(coalescedBytes(only), x, "coalesced send");
          expect(only.segments).toBe(frames.length);
        },
      ),
      { numRuns: 100 },
    );
  });

  it("does not merge segments of two flows or a gap in sequence numbers", () => {
    const payload = payloadOf(5000);
    const a = segmenter.copyFrames(
      segmenter.segment(buildHeaders(tcpSpec(4), 5000).bytes, payload, {
        offload: "lsov1",
        mtu: 1500,
      }),
    );
    const other = tcpSpec(4);
    const b = segmenter.copyFrames(
      segmenter.segment(
        buildHeaders(
          { ...other, l4: { ...other.l4, kind: "tcp", srcPort: 40001, dstPort: 5201, seq: 5 } },
          5000,
        ).bytes,
        payload,
        { offload: "lsov1", mtu: 1500 },
      ),
    );
    const interleaved = [a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3]].filter(
      (f): f is Uint8Array => f !== undefined,
    );
    const merged = coalesce(interleaved);
    expect(merged.map((m) => m.segments)).toEqual([4, 4]);
    const gap = coalesce([a[0], a[2], a[3]].filter((f): f is Uint8Array => f !== undefined));
    expect(gap.map((m) => m.segments)).toEqual([1, 2]);
  });
});
