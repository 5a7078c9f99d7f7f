import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { parseIp } from "../src/net/address.js";
import { buildFrame, buildHeaders, type FrameSpec } from "../src/net/build.js";
import { type PacketToWrite, readCapture, writeCapture } from "../src/net/capture.js";
import { CaptureError, SendError } from "../src/net/errors.js";
import {
  type ReplayOptions,
  replayCapture,
  type VmqExperimentOptions,
} from "../src/net/experiment.js";
import { parseFrame, TCP_FLAGS } from "../src/net/frame.js";
import { planSend, Segmenter } from "../src/net/lso.js";
import { ReceivePath } from "../src/net/receive.js";
import { hashInput, MICROSOFT_RSS_KEY, ToeplitzHasher } from "../src/net/rss.js";
import { largeSendFrameSpec, runLargeSend } from "../src/net/send.js";
import { rssHash } from "../src/net/vmq.js";
import { onesAdd, onesSumOracle } from "../src/oracle/checksum.js";
import { toeplitzOracle } from "../src/oracle/toeplitz.js";
import { hvlab, requireTool } from "./support/cli.js";

const A = "00:15:5d:00:00:0a";
const B = "00:15:5d:00:00:0b";

const REPLAY: VmqExperimentOptions = {
  vms: 1,
  mode: "vmq",
  queues: 8,
  processors: 1,
  rss: false,
  mtu: 1500,
  coalesce: true,
  rebalance: false,
  frames: 1,
  rounds: 1,
  skew: 1,
  ipVersion: 4,
  corruptFraction: 0,
  broadcastEvery: 0,
  seed: 1,
};

function tcp(seq: number, payload: number, extra: Partial<{ flags: number; dst: string }> = {}) {
  const spec: FrameSpec = {
    ethernet: { dst: extra.dst ?? B, src: A },
    ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2" },
    l4: {
      kind: "tcp",
      srcPort: 40000,
      dstPort: 80,
      seq,
      flags: extra.flags ?? TCP_FLAGS.ACK | TCP_FLAGS.PSH,
    },
  };
  return buildFrame(spec, new Uint8Array(payload).fill(seq & 0xff));
}

function udp(payload: number, srcPort = 5000, dstPort = 6000): Uint8Array {
  return buildFrame(
    {
      ethernet: { dst: B, src: A },
      ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2", id: 77, dontFragment: false },
      l4: { kind: "udp", srcPort, dstPort },
    },
    Uint8Array.from({ length: payload }, (_, i) => i & 0xff),
  );
}

/** Recomputes an IPv4 header checksum (the oracle: tests only). */
function fixIpv4(f: Uint8Array): void {
  const v = new DataView(f.buffer, f.byteOffset);
  v.setUint16(24, 0);
  v.setUint16(24, ~onesSumOracle(f, 14, 20) & 0xffff);
}

/** Cuts an IPv4 frame into fragments of at most `mtu` bytes of IP datagram (RFC 791). */
function fragment(frame: Uint8Array, mtu: number): Uint8Array[] {
  const data = frame.subarray(34);
  const chunk = Math.floor((mtu - 20) / 8) * 8;
  const out: Uint8Array[] = [];
  for (let at = 0; at < data.length; at += chunk) {
    const piece = data.subarray(at, at + chunk);
    const f = new Uint8Array(34 + piece.length);
    f.set(frame.subarray(0, 34));
    f.set(piece, 34);
    const v = new DataView(f.buffer);
    v.setUint16(16, 20 + piece.length);
    v.setUint16(20, (at + chunk < data.length ? 0x2000 : 0) | (at / 8));
    fixIpv4(f);
    out.push(f);
  }
  return out;
}

/** An ICMP echo request (type 8) with a good IPv4 header and ICMP checksum. */
function icmpEcho(seq: number): Uint8Array {
  const f = new Uint8Array(14 + 20 + 8 + 32);
  f.set(parseMacBytes(B), 0);
  f.set(parseMacBytes(A), 6);
  f[12] = 0x08;
  const v = new DataView(f.buffer);
  f[14] = 0x45;
  v.setUint16(16, 60);
  f[22] = 64;
  f[23] = 1;
  f.set(parseIp("10.0.0.1"), 26);
  f.set(parseIp("10.0.0.2"), 30);
  fixIpv4(f);
  f[34] = 8;
  v.setUint16(40, seq);
  v.setUint16(36, ~onesSumOracle(f, 34, 40) & 0xffff);
  return f;
}

function parseMacBytes(mac: string): Uint8Array {
  return Uint8Array.from(mac.split(":").map((h) => Number.parseInt(h, 16)));
}

async function replay(packets: PacketToWrite[] | Uint8Array, o: Partial<ReplayOptions> = {}) {
  const file =
    packets instanceof Uint8Array ? packets : writeCapture(packets, { format: "pcapng" });
  return replayCapture(file, { ...REPLAY, ...o });
}

describe("1. fragments and IP that is neither TCP nor UDP pass checksum validation", () => {
  it("delivers ICMP and every IPv4 fragment, and still drops a bad IPv4 header", async () => {
    const frags = fragment(udp(4000), 1500);
    expect(frags.length).toBe(3);
    const pings = [icmpEcho(1), icmpEcho(2)];
    const bad = icmpEcho(3);
    bad[22] = 1; // TTL changed, header checksum not updated
    const path = new ReceivePath(
      new MemoryLayout(),
      {
        mode: "vmq",
        queues: 2,
        processors: 1,
        rss: false,
        jumboPacket: 1514,
        coalesce: true,
        rebalance: false,
        ringSlots: 16,
        bufferBytes: 64 * 1024,
      },
      [{ name: "vm0", mac: B }],
    );
    path.load([...frags, ...pings, bad]);
    const r = await path.round();
    expect(r.badChecksum).toBe(1);
    expect(r.delivered).toBe(frags.length + pings.length);
  });
});

describe("2. a replay never drops for want of ring slots", () => {
  it("delivers 1,000 frames that do not coalesce into one VM", async () => {
    const frames = Array.from({ length: 1000 }, (_, i) => ({ data: tcp(1 + i * 100, 100) }));
    const r = await replay(frames);
    expect(r.summary.frames).toBe(1000);
    expect(r.summary.delivered).toBe(1000);
    expect(r.rounds[0]?.ringFull).toBe(0);
  });
});

describe("3. captures of frames under 60 bytes", () => {
  it("replays 600 unpadded 42-byte frames", async () => {
    const arp = new Uint8Array(42);
    arp.set(parseMacBytes(B), 0);
    arp.set(parseMacBytes(A), 6);
    arp[12] = 0x08;
    arp[13] = 0x06;
    const r = await replay(Array.from({ length: 600 }, () => ({ data: arp })));
    expect(r.summary.frames).toBe(600);
    expect(r.summary.delivered).toBe(600);
  });

  it("says which limit a load passes, without contradicting itself", () => {
    const path = new ReceivePath(
      new MemoryLayout(),
      {
        mode: "single",
        queues: 1,
        processors: 1,
        rss: false,
        jumboPacket: 1514,
        coalesce: false,
        rebalance: false,
        ringSlots: 4,
        bufferBytes: 4096,
        maxFrames: 10,
      },
      [{ name: "vm0", mac: B }],
    );
    expect(() => path.load(Array.from({ length: 11 }, () => new Uint8Array(42)))).toThrow(
      /11 frames are more than the receive buffer's table holds \(10\)/,
    );
    expect(() => path.load([new Uint8Array(5000)])).toThrow(/5000 bytes do not fit .* 4096/);
  });
});

describe("4. a capture whose last record is cut short", () => {
  const packets = Array.from({ length: 5 }, (_, i) => ({ data: tcp(1 + i * 10, 10) }));
  for (const format of ["pcap", "pcapng"] as const) {
    it(`${format}: reads every packet before the cut and reports where it is`, async () => {
      const whole = writeCapture(packets, { format });
      const cut = whole.subarray(0, whole.length - 3);
      const c = readCapture(cut);
      expect(c.packets.length).toBe(4);
      const last = packets[4]?.data.length ?? 0;
      // The last record: pcap's 16-byte header, or pcapng's 28-byte block header and padding.
      const lastRecord = whole.length - (format === "pcap" ? 16 + last : 32 + ((last + 3) & ~3));
      expect(c.truncated?.offset).toBe(lastRecord);
      const r = await replay(cut.slice());
      expect(r.capture.frames).toBe(4);
      expect(r.capture.truncated?.offset).toBe(lastRecord);
    });
  }
});

describe("5. pcapng: each packet has its interface's link type", () => {
  const ethernet = tcp(1, 20);
  const ip = ethernet.subarray(14);
  const sll = new Uint8Array(16 + ip.length);
  sll.set([0, 0, 0, 1, 0, 6, ...parseMacBytes(A), 0, 0, 0x08, 0x00]);
  sll.set(ip, 16);
  const sll2 = new Uint8Array(20 + ip.length);
  sll2.set([0x08, 0x00, 0, 0, 0, 0, 0, 7, 0, 1, 0, 6, ...parseMacBytes(A), 0, 0]);
  sll2.set(ip, 20);
  const interfaces = [
    { linkType: 1 },
    { linkType: 113 },
    { linkType: 101, tsresol: 0x94 },
    { linkType: 147 },
    { linkType: 276 },
  ];
  const packets: PacketToWrite[] = [
    { data: ethernet, interfaceId: 0 },
    { data: sll, interfaceId: 1 },
    { data: ip, interfaceId: 2, seconds: 1000, nanoseconds: 500_000_000 },
    { data: ethernet, interfaceId: 3 },
    { data: sll2, interfaceId: 4 },
  ];
  const file = writeCapture(packets, { format: "pcapng", interfaces });

  it("reads link types and a binary (2^-20 s) timestamp resolution per interface", () => {
    const c = readCapture(file);
    expect(c.packets.map((p) => p.linkType)).toEqual([1, 113, 101, 147, 276]);
    expect(c.packets[2]).toMatchObject({ seconds: 1000, nanoseconds: 500_000_000 });
  });

  it("gives Linux cooked and raw IP packets an Ethernet header, skips the rest with a count", async () => {
    const r = await replay(file.slice());
    expect(r.capture.frames).toBe(5);
    expect(r.capture.skippedLinkTypes).toEqual({ "147": 1 });
    // Ethernet to B; SLL on interface 1; raw IP on interface 2; SLL2 on ifindex 7.
    expect(r.vms.map((vm) => vm.mac)).toEqual([
      B,
      "02:00:00:00:00:01",
      "02:00:00:00:00:02",
      "02:00:00:00:00:07",
    ]);
    expect(r.summary.delivered).toBe(4);
    expect(r.summary.badChecksum).toBe(0);
  });

  it("names the offset of the block that is corrupt", () => {
    const broken = file.slice();
    // The third block after the section header: interface 2's description.
    const blockAt = 28 + 32 * 2;
    new DataView(broken.buffer).setUint32(blockAt + 32 - 4, 36, true);
    try {
      readCapture(broken);
      expect.unreachable("a corrupt block was read");
    } catch (error) {
      expect(error).toBeInstanceOf(CaptureError);
      expect((error as CaptureError).offset).toBe(blockAt);
    }
  });
});

describe("6. checksums left partial by offload on the capturing host", () => {
  /** A TCP frame whose checksum holds the pseudo-header sum alone, as Linux leaves it for offload. */
  function partial(seq: number): Uint8Array {
    const f = tcp(seq, 64);
    const p = parseFrame(f);
    const length = p.ipEnd - p.l4;
    const pseudo = onesAdd(
      onesSumOracle(f, p.dstAddress, 4, onesSumOracle(f, p.srcAddress, 4, 6)),
      length,
    );
    new DataView(f.buffer).setUint16(p.l4 + 16, pseudo);
    return f;
  }
  const packets = Array.from({ length: 10 }, (_, i) => ({ data: partial(1 + i * 64) }));
  packets.push({ data: tcp(5000, 10) });

  it("validate: drops them, and says they are partial, not corrupt", async () => {
    const r = await replay(packets);
    expect(r.checksums).toMatchObject({ notValid: 10, partial: 10, valid: 1 });
    expect(r.summary.badChecksum).toBe(10);
  });

  it("trust and recompute deliver them, reporting how many were not valid", async () => {
    for (const checksums of ["trust", "recompute"] as const) {
      const r = await replay(packets, { checksums, coalesce: false });
      expect(r.checksums).toMatchObject({ notValid: 10, partial: 10, policy: checksums });
      expect(r.summary.badChecksum).toBe(0);
      expect(r.summary.delivered).toBe(11);
    }
  });
});

describe("7. frames over 65,535 bytes", () => {
  it("takes a 65,549-byte loopback frame, as the capture holds it", async () => {
    const big = tcp(1, 65_535 - 40);
    expect(big.length).toBe(65_549);
    const r = await replay([{ data: big }]);
    expect(r.summary.oversize).toBe(0);
    expect(r.summary.delivered).toBe(1);
  });
});

describe("8. RSS hashes UDP on its addresses (NDIS 6.20 has no UDP hash type)", () => {
  it("ignores UDP ports by default and hashes them when asked (NDIS 6.80)", () => {
    const hasher = new ToeplitzHasher(new MemoryLayout());
    const a = udp(10, 1111, 2222);
    const b = udp(10, 3333, 4444);
    const addresses = toeplitzOracle(
      MICROSOFT_RSS_KEY,
      hashInput(parseIp("10.0.0.1"), parseIp("10.0.0.2")),
    );
    expect(rssHash(hasher, a)).toBe(addresses);
    expect(rssHash(hasher, b)).toBe(addresses);
    expect(rssHash(hasher, a, true)).toBe(
      toeplitzOracle(
        MICROSOFT_RSS_KEY,
        hashInput(parseIp("10.0.0.1"), parseIp("10.0.0.2"), { src: 1111, dst: 2222 }),
      ),
    );
    // TCP keeps its ports.
    expect(rssHash(hasher, tcp(1, 10))).toBe(
      toeplitzOracle(
        MICROSOFT_RSS_KEY,
        hashInput(parseIp("10.0.0.1"), parseIp("10.0.0.2"), { src: 40000, dst: 80 }),
      ),
    );
  });
});

describe("9. conversations, and frames per queue and processor", () => {
  it("counts TCP and UDP conversations as tshark does, a fragmented datagram once", async () => {
    const reply = buildFrame(
      {
        ethernet: { dst: A, src: B },
        ip: { version: 4, src: "10.0.0.2", dst: "10.0.0.1" },
        l4: { kind: "tcp", srcPort: 80, dstPort: 40000, seq: 9, flags: TCP_FLAGS.ACK },
      },
      new Uint8Array(0),
    );
    const frags = fragment(udp(3000), 1500);
    const frames = [tcp(1, 100), reply, tcp(101, 50), udp(10), ...frags, udp(20, 7, 8)];
    const r = await replay(frames.map((data) => ({ data })));
    expect(r.conversations.tcp).toEqual([
      {
        protocol: "tcp",
        a: "10.0.0.1",
        aPort: 40000,
        b: "10.0.0.2",
        bPort: 80,
        framesAtoB: 2,
        bytesAtoB: 154 + 104,
        framesBtoA: 1,
        bytesBtoA: 54,
      },
    ]);
    expect(r.conversations.udp.map((c) => [c.aPort, c.bPort, c.framesAtoB, c.bytesAtoB])).toEqual([
      [5000, 6000, 2, 52 + (frags.at(-1)?.length ?? 0)],
      [7, 8, 1, 62],
    ]);
    const queues = r.rounds[0]?.queues ?? [];
    expect(queues.reduce((a, q) => a + q.frames, 0)).toBe(frames.length);
    expect(queues.reduce((a, q) => a + q.bytes, 0)).toBe(frames.reduce((a, f) => a + f.length, 0));
  });
});

describe("10. large sends as the NIC takes them", () => {
  const segmenter = new Segmenter(new MemoryLayout(), 70_000);
  const spec = (extra: Partial<Parameters<typeof largeSendFrameSpec>[0]> = {}) => ({
    ipVersion: 4 as const,
    transport: "tcp" as const,
    offload: "lsov2" as const,
    mtu: 1500,
    bytes: 300,
    seed: 1,
    ...extra,
  });

  it("refuses SYN and RST, which a large send cannot carry", () => {
    for (const flag of [TCP_FLAGS.SYN, TCP_FLAGS.RST]) {
      const { bytes } = buildHeaders(
        largeSendFrameSpec(spec({ tcpFlags: flag | TCP_FLAGS.ACK })),
        300,
      );
      expect(() => planSend(bytes, 300, { offload: "lsov2", mtu: 1500 })).toThrow(SendError);
    }
  });

  it("segments small but valid sends: MSS 1, MTU 68, MSS 63 for 64 KiB", () => {
    expect(runLargeSend(segmenter, spec({ mss: 1 })).frames.length).toBe(300);
    expect(runLargeSend(segmenter, spec({ mtu: 68, bytes: 500 })).frames.length).toBe(18);
    expect(runLargeSend(segmenter, spec({ mss: 63, bytes: 65_000 })).frames.length).toBe(1032);
  });

  it("net lso honours --max-send", () => {
    const over = hvlab(["net", "lso", "--bytes", "300000", "--json"]);
    expect(over.status).not.toBe(0);
    expect(over.stderr).toMatch(/limit of 262144/);
    const raised = hvlab(["net", "lso", "--bytes", "300000", "--max-send", "400000", "--json"]);
    expect(raised.status).toBe(0);
    const lowered = hvlab(["net", "lso", "--bytes", "100000", "--max-send", "90000", "--json"]);
    expect(lowered.stderr).toMatch(/limit of 90000/);
  });

  it.skipIf(!requireTool("tshark"))("USO datagrams decode as plain UDP data in Wireshark", () => {
    const dir = mkdtempSync(join(tmpdir(), "hvlab-uso-"));
    try {
      const { frames } = runLargeSend(
        segmenter,
        spec({ transport: "udp", offload: "uso", bytes: 5000 }),
      );
      const file = join(dir, "uso.pcap");
      writeFileSync(
        file,
        writeCapture(
          frames.map((data) => ({ data })),
          { format: "pcap" },
        ),
      );
      const protocols = execFileSync(
        "tshark",
        ["-r", file, "-T", "fields", "-e", "frame.protocols"],
        {
          encoding: "utf8",
          stdio: ["ignore", "pipe", "ignore"],
        },
      )
        .trim()
        .split("\n");
      expect(new Set(protocols)).toEqual(new Set(["eth:ethertype:ip:udp:data"]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
