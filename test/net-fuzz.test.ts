import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { buildFrame, buildHeaders, type FrameSpec, timestampOption } from "../src/net/build.js";
import { readCapture, writeCapture } from "../src/net/capture.js";
import { auditChecksums } from "../src/net/checksum-audit.js";
import { coalesce } from "../src/net/coalesce.js";
import { countConversations } from "../src/net/conversations.js";
import { CaptureError, FrameError, SendError } from "../src/net/errors.js";
import { parseFrame } from "../src/net/frame.js";
import { toEthernet } from "../src/net/link.js";
import { planSend, Segmenter } from "../src/net/lso.js";
import { checksumsGood } from "../src/net/receive-batch.js";
import { VirtualNic } from "../src/net/vmq.js";
import { ChecksumKernel } from "../src/wasm/checksum.js";
import { SegmentKernel } from "../src/wasm/segment.js";

/**
 * An assertion inside a fuzz loop: a plain test, failing through vitest with
 * the iteration and what broke. `expect` costs microseconds a call, which
 * over a loop's hundreds of thousands of checks was most of its time.
 */
function check(ok: boolean, iteration: number, what: string): void {
  if (!ok) expect.fail(`iteration ${iteration}: ${what}`);
}

/** xorshift32: a seeded source of mutations, so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

function specs(): FrameSpec[] {
  const eth = { dst: "00:15:5d:00:00:02", src: "00:15:5d:00:00:01" };
  return [
    {
      ethernet: eth,
      ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2", options: Uint8Array.from([1, 1, 1, 0]) },
      l4: { kind: "tcp", srcPort: 1, dstPort: 2, seq: 3, options: timestampOption(1, 2) },
    },
    {
      ethernet: { ...eth, vlan: 12 },
      ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2" },
      l4: { kind: "udp", srcPort: 1, dstPort: 2 },
    },
    {
      ethernet: eth,
      ip: {
        version: 6,
        src: "fd00::1",
        dst: "fd00::2",
        extensions: [
          { type: 0, options: new Uint8Array(6) },
          { type: 60, options: new Uint8Array(14) },
        ],
      },
      l4: { kind: "tcp", srcPort: 1, dstPort: 2, seq: 3 },
    },
    {
      ethernet: { ...eth, vlan: 4 },
      ip: { version: 6, src: "fd00::1", dst: "fd00::2" },
      l4: { kind: "udp", srcPort: 1, dstPort: 2 },
    },
  ];
}

function mutate(src: Uint8Array, next: () => number): Uint8Array {
  let f = src.slice();
  const kind = next() % 6;
  if (kind === 0) {
    // Truncate anywhere.
    f = f.slice(0, next() % (f.length + 1));
  } else if (kind === 1) {
    // Overwrite a length-bearing field with anything (IHL, total length, data offset, ext length).
    for (const at of [14, 16, 17, 18, 19, 20, 21, 54, 58, 59, 66])
      if (next() % 3 === 0 && at < f.length) f[at] = next() & 0xff;
  } else if (kind === 2) {
    // Flip random bytes in the headers.
    for (let i = 0, n = 1 + (next() % 4); i < n; i++) {
      const at = next() % Math.min(f.length, 96);
      f[at] = (f[at] ?? 0) ^ (1 << (next() % 8));
    }
  } else if (kind === 3) {
    // Random bytes anywhere.
    for (let i = 0, n = 1 + (next() % 8); i < n; i++) f[next() % f.length] = next() & 0xff;
  } else if (kind === 4) {
    // Extend with junk.
    const g = new Uint8Array(f.length + (next() % 40));
    g.set(f);
    for (let i = f.length; i < g.length; i++) g[i] = next() & 0xff;
    f = g;
  } else {
    // Entirely random prefix of the right EtherType.
    for (let i = 14; i < Math.min(f.length, 80); i++) if (next() % 4 === 0) f[i] = next() & 0xff;
  }
  return f;
}

describe("fuzz: mutated frames and captures never crash or read outside their buffer", () => {
  it("parses 70,000 mutated frames into a FrameError or offsets inside the frame, and the kernel validates them in bounds", () => {
    const next = rng(0xc0ffee);
    const layout = new MemoryLayout();
    const region = layout.allocate("fuzz", 4096);
    const k = {
      memory: layout.memory,
      segment: SegmentKernel.on(layout.memory),
      checksum: ChecksumKernel.on(layout.memory),
    };
    const nic = new VirtualNic({ queues: 2, processors: 1, jumboPacket: 1514 });
    const bases = specs().map((s, i) => buildFrame(s, new Uint8Array(100 + i * 37).fill(i + 1)));
    let parsed = 0;
    let rejected = 0;
    const batch: Uint8Array[] = [];
    for (let i = 0; i < 70_000; i++) {
      const f = mutate(bases[i % bases.length] as Uint8Array, next);
      nic.classify(f);
      try {
        const p = parseFrame(f);
        parsed++;
        check(p.length === f.length, i, "the parsed length is the frame's");
        if (p.ipVersion !== 0) {
          check(
            0 <= p.l3 && p.l3 <= p.ipEnd && p.ipEnd <= f.length,
            i,
            "the IP datagram lies inside the frame",
          );
          const n = p.ipVersion === 4 ? 4 : 16;
          check(
            p.srcAddress + n <= p.ipEnd && p.dstAddress + n <= p.ipEnd,
            i,
            "the addresses lie inside the datagram",
          );
          if (p.l4 >= 0) {
            check(
              p.l3 < p.l4 && p.l4 + p.l4HeaderLength === p.payload && p.payload <= p.ipEnd,
              i,
              "the transport header lies inside the datagram",
            );
          }
          // The offsets just proven inside the frame are all the kernel is given.
          const at = region.byteLength - f.length;
          region.bytes(layout.memory).set(f, at);
          checksumsGood(k, region, at, p);
        }
        batch.push(f);
        if (batch.length === 64) coalesce(batch.splice(0), { udp: true });
      } catch (error) {
        if (!(error instanceof FrameError)) throw error;
        rejected++;
      }
    }
    expect(parsed).toBeGreaterThan(10_000);
    expect(rejected).toBeGreaterThan(10_000);
  });

  it("reads 30,000 mutated pcap and pcapng files into a CaptureError or packets inside the file", () => {
    const next = rng(0xbadcab);
    const frames = specs().map((s, i) => buildFrame(s, new Uint8Array(50 + i * 13).fill(7)));
    const packets = frames.map((data, i) => ({ data, seconds: 1000 + i, nanoseconds: i * 999 }));
    // Several interfaces of several link types, one with a binary clock:
    // every packet read must keep its interface's link type.
    const interfaces = [
      { linkType: 1 },
      { linkType: 113 },
      { linkType: 101, tsresol: 0x94 },
      { linkType: 276 },
      { linkType: 147, tsresol: 3 },
    ];
    const multi = writeCapture(
      packets.map((p, i) => ({
        ...p,
        interfaceId: i % interfaces.length,
        data: i % interfaces.length === 2 ? p.data.subarray(14) : p.data,
      })),
      { format: "pcapng", interfaces },
    );
    const files = [
      writeCapture(packets, { format: "pcap" }),
      writeCapture(packets, { format: "pcap", nanoseconds: false }),
      writeCapture(packets, { format: "pcapng" }),
      multi,
    ];
    expect(readCapture(multi).packets.map((p) => p.linkType)).toEqual(
      packets.map((_, i) => interfaces[i % interfaces.length]?.linkType),
    );
    let read = 0;
    let rejected = 0;
    let multiRead = 0;
    for (let i = 0; i < 30_000; i++) {
      const base = files[i % files.length] as Uint8Array;
      let f = base.slice();
      const kind = next() % 4;
      if (kind === 0) f = f.slice(0, next() % (f.length + 1));
      else if (kind === 1) {
        // Overwrite a 32-bit field at a 4-byte boundary (lengths, magics, block types).
        const at = (next() % (f.length >>> 2)) * 4;
        new DataView(f.buffer).setUint32(at, next() % 3 === 0 ? 0xffffffff : next() % 2000, true);
      } else {
        for (let j = 0, n = 1 + (next() % 6); j < n; j++) f[next() % f.length] = next() & 0xff;
      }
      try {
        const c = readCapture(f);
        read++;
        if (base === multi) {
          // What a replay does with the packets before the receive path.
          const frames = c.packets.flatMap((p) => toEthernet(p) ?? []);
          const audit = auditChecksums(frames);
          check(audit.valid + audit.notValid <= frames.length, i, "audited frames <= frames");
          check(audit.partial <= audit.notValid, i, "partial <= not valid");
          const conversations = countConversations(
            frames.map((frame) => ({ frame, wireLength: frame.length })),
          );
          const counted = conversations.reduce((a, v) => a + v.framesAtoB + v.framesBtoA, 0);
          check(counted <= frames.length, i, "counted frames <= frames");
          multiRead++;
        }
        for (const p of c.packets) {
          // Whatever the link type claims, turning it into a frame never throws.
          const frame = toEthernet(p);
          // Ethernet passes as captured (a runt is the NIC's to count); any
          // other link type gains a whole Ethernet header.
          if (frame && p.linkType !== 1) check(frame.length >= 14, i, "a whole Ethernet header");
          if (p.linkType === 1) check(frame === p.data, i, "Ethernet passed as captured");
          check(p.data.buffer === f.buffer, i, "the packet is a view into the file");
          check(
            p.data.byteOffset + p.data.length <= f.length,
            i,
            "the packet lies inside the file",
          );
          check(
            p.originalLength >= p.data.length,
            i,
            "the wire length is at least the captured one",
          );
        }
      } catch (error) {
        if (!(error instanceof CaptureError)) throw error;
        rejected++;
      }
    }
    expect(read).toBeGreaterThan(1000);
    expect(rejected).toBeGreaterThan(1000);
    expect(multiRead).toBeGreaterThan(500);
  });

  it("plans 10,000 mutated large sends into a SendError, a FrameError or a send that segments", () => {
    const next = rng(0x5eed);
    const segmenter = new Segmenter(new MemoryLayout(), 70_000);
    const payload = new Uint8Array(6000).fill(3);
    const templates = specs().map((s) => buildHeaders(s, payload.length).bytes);
    let segmented = 0;
    for (let i = 0; i < 10_000; i++) {
      const t = mutate(templates[i % templates.length] as Uint8Array, next);
      const mss = [0, 1, 536, 1460, 9000, 70_000][next() % 6] as number;
      const options = {
        offload: (["lsov1", "lsov2", "uso"] as const)[next() % 3] as "lsov1",
        mtu: 1500,
        mss,
      };
      try {
        planSend(t, payload.length, options);
        const send = segmenter.segment(t, payload, options);
        check(
          send.frames.length === Math.ceil(payload.length / send.plan.mss),
          i,
          "one frame per MSS of payload",
        );
        segmented++;
      } catch (error) {
        if (!(error instanceof SendError || error instanceof FrameError)) throw error;
      }
    }
    expect(segmented).toBeGreaterThan(100);
  });
});
