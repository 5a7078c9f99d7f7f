import { describe, expect, it } from "vitest";
import { buildFrame, type FrameSpec } from "../src/net/build.js";
import { countConversations } from "../src/net/conversations.js";

/*
 * Conversations as `tshark -z conv,tcp` and `conv,udp` count them (the
 * Wireshark User's Guide, "Conversations"): one per pair of endpoints, A
 * the first frame's source, frames and wire bytes per direction. tshark
 * reassembles IPv4 fragments (RFC 791 section 3.2: fragments of one
 * datagram share source, destination, protocol and identification; the
 * fragment offset counts 8-byte units; MF is clear on the last), so a
 * fragmented datagram counts once, at the fragment that completes it.
 */

const eth = { dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01" };

function frame(
  ip: 4 | 6,
  l4: "tcp" | "udp",
  from: "a" | "b",
  payload = 10,
  ports: [number, number] = [40000, 80],
): Uint8Array {
  const [src, dst] = ip === 4 ? ["10.0.0.1", "10.0.0.2"] : ["fd00::1", "fd00::2"];
  const [s, d] = from === "a" ? [src, dst] : [dst, src];
  const [sp, dp] = from === "a" ? ports : [ports[1], ports[0]];
  const spec: FrameSpec = {
    ethernet: eth,
    ip:
      ip === 4
        ? { version: 4, src: s ?? "", dst: d ?? "", id: 0x4242 }
        : { version: 6, src: s ?? "", dst: d ?? "" },
    l4:
      l4 === "tcp"
        ? { kind: "tcp", srcPort: sp, dstPort: dp, seq: 1 }
        : { kind: "udp", srcPort: sp, dstPort: dp },
  };
  return buildFrame(spec, new Uint8Array(payload).fill(9));
}

/** IPv4 fragments of a frame's datagram, `chunk` bytes of IP payload each (a multiple of 8). */
function fragments(f: Uint8Array, chunk: number, id = 0x4242): Uint8Array[] {
  const data = f.subarray(34);
  const out: Uint8Array[] = [];
  for (let at = 0; at < data.length; at += chunk) {
    const piece = data.subarray(at, at + chunk);
    const g = new Uint8Array(34 + piece.length);
    g.set(f.subarray(0, 34));
    g.set(piece, 34);
    const v = new DataView(g.buffer);
    v.setUint16(16, 20 + piece.length);
    v.setUint16(18, id);
    v.setUint16(20, (at + chunk < data.length ? 0x2000 : 0) | (at / 8));
    out.push(g);
  }
  return out;
}

const wire = (frames: Uint8Array[]) => frames.map((f) => ({ frame: f, wireLength: f.length + 4 }));

describe("conversations as tshark counts them", () => {
  it("counts an IPv6 conversation by its addresses and ports, both ways", () => {
    const frames = [frame(6, "tcp", "a", 100), frame(6, "tcp", "b", 0), frame(6, "tcp", "a", 7)];
    expect(countConversations(wire(frames))).toEqual([
      {
        protocol: "tcp",
        a: "fd00:0:0:0:0:0:0:1",
        aPort: 40000,
        b: "fd00:0:0:0:0:0:0:2",
        bPort: 80,
        framesAtoB: 2,
        bytesAtoB: (frames[0]?.length ?? 0) + (frames[2]?.length ?? 0) + 8,
        framesBtoA: 1,
        bytesBtoA: (frames[1]?.length ?? 0) + 4,
      },
    ]);
  });

  it("leaves out frames that are neither TCP nor UDP, or not IP, or do not parse", () => {
    const icmp = frame(4, "udp", "a");
    icmp[23] = 1; // protocol ICMP
    const arp = new Uint8Array(60);
    arp.set([0x08, 0x06], 12);
    const cut = frame(4, "tcp", "a").subarray(0, 40);
    expect(countConversations(wire([icmp, arp, cut]))).toEqual([]);
    expect(countConversations(wire([icmp, frame(4, "udp", "b")]))).toHaveLength(1);
  });

  it("counts a fragmented IPv4 datagram once, at the fragment that completes it, in any order", () => {
    const whole = frame(4, "udp", "a", 3000, [5000, 6000]);
    const parts = fragments(whole, 1480);
    expect(parts).toHaveLength(3);
    const last = parts[2] as Uint8Array;
    for (const order of [
      [0, 1, 2],
      [2, 1, 0],
      [1, 2, 0],
    ]) {
      const list = order.map((i) => parts[i] as Uint8Array);
      const [c] = countConversations(wire(list));
      expect(c, `${order}`).toMatchObject({
        protocol: "udp",
        a: "10.0.0.1",
        aPort: 5000,
        b: "10.0.0.2",
        bPort: 6000,
        framesAtoB: 1,
        bytesAtoB: (list[2]?.length ?? 0) + 4,
        framesBtoA: 0,
      });
    }
    // Without its middle, or without its first (the ports), it never completes.
    expect(countConversations(wire([parts[0] as Uint8Array, last]))).toEqual([]);
    expect(countConversations(wire([parts[1] as Uint8Array, last]))).toEqual([]);
    expect(countConversations(wire([parts[0] as Uint8Array, parts[1] as Uint8Array]))).toEqual([]);
  });

  it("keeps datagrams of different identifications apart, and ignores IPv6 fragments", () => {
    const one = fragments(frame(4, "udp", "a", 2000, [1, 2]), 1008, 1);
    const two = fragments(frame(4, "udp", "a", 2000, [1, 2]), 1008, 2);
    // Interleaved: the first fragment of one with the last of the other completes nothing.
    const list = [one[0], two[1], two[0], one[1]] as Uint8Array[];
    const [c] = countConversations(wire(list));
    expect(c?.framesAtoB).toBe(2);
    expect(countConversations(wire([one[0], two[1]] as Uint8Array[]))).toEqual([]);

    const v6 = frame(6, "udp", "a", 100);
    // A fragment header (44) before UDP: tshark would reassemble it, hvlab leaves it out.
    const withFragment = new Uint8Array(v6.length + 8);
    withFragment.set(v6.subarray(0, 54));
    withFragment[20] = 44;
    withFragment.set([17, 0, 0, 0x08 | 1, 0, 0, 0, 7], 54);
    withFragment.set(v6.subarray(54), 62);
    new DataView(withFragment.buffer).setUint16(18, v6.length - 54 + 8);
    expect(countConversations(wire([withFragment]))).toEqual([]);
  });

  it("waits for every byte up to the last fragment's end, however large the last", () => {
    // 2,908 bytes of IP payload in pieces of 1,000, 1,000 and 908: the total is 2,000 + 908.
    const parts = fragments(frame(4, "udp", "a", 2900, [3, 4]), 1000);
    expect(parts.map((f) => f.length - 34)).toEqual([1000, 1000, 908]);
    expect(countConversations(wire([parts[0], parts[2]] as Uint8Array[]))).toEqual([]);
    expect(countConversations(wire([parts[2], parts[0]] as Uint8Array[]))).toEqual([]);
    expect(countConversations(wire(parts))[0]?.framesAtoB).toBe(1);
  });

  it("holds at most 65,536 datagrams in reassembly, and leaves out a new one past that", () => {
    const open = fragments(frame(4, "udp", "a", 2000, [1, 2]), 1008)[0] as Uint8Array;
    const pending = (n: number) =>
      Array.from({ length: n }, (_, i) => {
        const f = open.slice();
        new DataView(f.buffer).setUint32(26, 0x0b000000 + i); // a source of its own
        return f;
      });
    const complete = fragments(frame(4, "udp", "a", 2000, [5, 6]), 1008, 7);
    expect(countConversations(wire([...pending(65_535), ...complete]))).toHaveLength(1);
    expect(countConversations(wire([...pending(65_536), ...complete]))).toEqual([]);
  });

  it("takes a first fragment's ports only when it holds at least 4 bytes of them", () => {
    const whole = frame(4, "udp", "a", 60, [7, 9]);
    const parts = fragments(whole, 8);
    const [c] = countConversations(wire(parts));
    expect([c?.aPort, c?.bPort, c?.framesAtoB]).toEqual([7, 9, 1]);
    // Nine pieces of 8 bytes or fewer: the first and the last alone are 16 of 68.
    expect(parts).toHaveLength(9);
    expect(countConversations(wire([parts[0], parts[8]] as Uint8Array[]))).toEqual([]);
  });
});
