import { describe, expect, it } from "vitest";
import { formatMac } from "../src/net/address.js";
import type { CapturedPacket } from "../src/net/capture.js";
import { linkTypeSupported, toEthernet } from "../src/net/link.js";

/*
 * Captured packets of each link type the receive path takes, turned into
 * Ethernet frames. Header layouts from tcpdump.org's link-layer header types
 * list: LINKTYPE_LINUX_SLL (113) is packet type, ARPHRD type, address
 * length, 8 address bytes, protocol (16 bytes, big-endian); LINKTYPE_LINUX_SLL2
 * (276) is protocol, reserved, interface index (32 bits), ARPHRD type,
 * packet type, address length, 8 address bytes (20 bytes); raw IP (101, 228,
 * 229) has no header. A protocol below 0x0600 is an 802.3 length or a
 * Linux-internal value (ETH_P_802_2, CAN), not an EtherType (IEEE 802.3
 * clause 3.2.6). Packet types are Linux's PACKET_HOST 0, PACKET_BROADCAST 1,
 * PACKET_MULTICAST 2, PACKET_OTHERHOST 3, PACKET_OUTGOING 4.
 */

const ipv4 = Uint8Array.from([0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
const ipv6 = (() => {
  const b = new Uint8Array(40);
  b[0] = 0x60;
  b[6] = 59; // no next header
  b[7] = 64;
  return b;
})();

function packet(linkType: number, data: Uint8Array, interfaceId = 0): CapturedPacket {
  return {
    data,
    linkType,
    interfaceId,
    originalLength: data.length,
    seconds: 0,
    nanoseconds: 0,
  };
}

function sll(packetType: number, address: number[], protocol: number, payload: Uint8Array) {
  const h = new Uint8Array(16 + payload.length);
  h[0] = packetType >>> 8;
  h[1] = packetType & 0xff;
  h[2] = 0x00; // ARPHRD_ETHER
  h[3] = 0x01;
  h[4] = address.length >>> 8;
  h[5] = address.length & 0xff;
  h.set(address.slice(0, 8), 6);
  h[14] = protocol >>> 8;
  h[15] = protocol & 0xff;
  h.set(payload, 16);
  return h;
}

function sll2(
  packetType: number,
  ifindex: number,
  address: number[],
  protocol: number,
  payload: Uint8Array,
) {
  const h = new Uint8Array(20 + payload.length);
  h[0] = protocol >>> 8;
  h[1] = protocol & 0xff;
  h[4] = (ifindex >>> 24) & 0xff;
  h[5] = (ifindex >>> 16) & 0xff;
  h[6] = (ifindex >>> 8) & 0xff;
  h[7] = ifindex & 0xff;
  h[8] = 0x00;
  h[9] = 0x01;
  h[10] = packetType;
  h[11] = address.length;
  h.set(address.slice(0, 8), 12);
  h.set(payload, 20);
  return h;
}

/** dst, src, EtherType, and the bytes after the 14-byte header. */
function ethernet(frame: Uint8Array | null) {
  if (!frame) return null;
  return {
    dst: formatMac(frame, 0),
    src: formatMac(frame, 6),
    etherType: ((frame[12] ?? 0) << 8) | (frame[13] ?? 0),
    payload: Array.from(frame.subarray(14)),
  };
}

const mac = [0x00, 0x15, 0x5d, 0x0a, 0x0b, 0x0c];

describe("capture link types as Ethernet frames (tcpdump.org LINKTYPE_ values)", () => {
  it("takes exactly Ethernet, raw IP, raw IPv4, raw IPv6, SLL and SLL2", () => {
    for (const t of [1, 101, 113, 228, 229, 276]) expect(linkTypeSupported(t), `${t}`).toBe(true);
    for (const t of [0, 2, 100, 105, 127, 147, 192, 230, 275, 277]) {
      expect(linkTypeSupported(t), `${t}`).toBe(false);
      expect(toEthernet(packet(t, ipv4))).toBeNull();
    }
  });

  it("gives an Ethernet packet back as captured", () => {
    const data = new Uint8Array(60).fill(7);
    expect(toEthernet(packet(1, data))).toBe(data);
  });

  it("heads raw IP with the EtherType its version nibble says, addressed to its interface", () => {
    for (const t of [101, 228, 229]) {
      expect(ethernet(toEthernet(packet(t, ipv4, 0x0102))), `${t} IPv4`).toEqual({
        dst: "02:00:00:00:01:02",
        src: "02:00:00:00:ff:ff",
        etherType: 0x0800,
        payload: Array.from(ipv4),
      });
      expect(ethernet(toEthernet(packet(t, ipv6, 7))), `${t} IPv6`).toEqual({
        dst: "02:00:00:00:00:07",
        src: "02:00:00:00:ff:ff",
        etherType: 0x86dd,
        payload: Array.from(ipv6),
      });
      // Neither version 4 nor 6, or nothing at all.
      expect(toEthernet(packet(t, Uint8Array.from([0x55, 0, 0, 0])))).toBeNull();
      expect(toEthernet(packet(t, Uint8Array.from([0x05])))).toBeNull();
      expect(toEthernet(packet(t, new Uint8Array(0)))).toBeNull();
    }
  });

  it("SLL: broadcast, multicast and unicast destinations; the captured source when it is a MAC", () => {
    expect(ethernet(toEthernet(packet(113, sll(1, mac, 0x0800, ipv4), 3)))).toEqual({
      dst: "ff:ff:ff:ff:ff:ff",
      src: "00:15:5d:0a:0b:0c",
      etherType: 0x0800,
      payload: Array.from(ipv4),
    });
    expect(ethernet(toEthernet(packet(113, sll(2, mac, 0x86dd, ipv6), 3)))).toEqual({
      dst: "01:00:5e:00:00:01",
      src: "00:15:5d:0a:0b:0c",
      etherType: 0x86dd,
      payload: Array.from(ipv6),
    });
    for (const type of [0, 3, 4]) {
      expect(ethernet(toEthernet(packet(113, sll(type, mac, 0x0800, ipv4), 0x0203)))).toEqual({
        dst: "02:00:00:00:02:03",
        src: "00:15:5d:0a:0b:0c",
        etherType: 0x0800,
        payload: Array.from(ipv4),
      });
    }
    // An address that is not 6 bytes (none; an 8-byte hardware address) is not a MAC.
    for (const address of [[], [1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4]]) {
      expect(ethernet(toEthernet(packet(113, sll(0, address, 0x0800, ipv4))))?.src).toBe(
        "02:00:00:00:ff:ff",
      );
    }
  });

  it("SLL: refuses a header cut short and a protocol that is not an EtherType", () => {
    const whole = sll(0, mac, 0x0800, new Uint8Array(0));
    expect(ethernet(toEthernet(packet(113, whole)))).toEqual({
      dst: "02:00:00:00:00:00",
      src: "00:15:5d:0a:0b:0c",
      etherType: 0x0800,
      payload: [],
    });
    expect(toEthernet(packet(113, whole.subarray(0, 15)))).toBeNull();
    expect(toEthernet(packet(113, new Uint8Array(0)))).toBeNull();
    // ETH_P_802_2 (4), the largest 802.3 length and 0x0600, the first EtherType.
    expect(toEthernet(packet(113, sll(0, mac, 0x0004, ipv4)))).toBeNull();
    expect(toEthernet(packet(113, sll(0, mac, 0x05ff, ipv4)))).toBeNull();
    expect(ethernet(toEthernet(packet(113, sll(0, mac, 0x0600, ipv4))))?.etherType).toBe(0x0600);
  });

  it("SLL2: the interface index from its own header, big-endian, for a unicast destination", () => {
    expect(ethernet(toEthernet(packet(276, sll2(0, 0x01020304, mac, 0x0800, ipv4), 9)))).toEqual({
      dst: "02:00:00:00:03:04",
      src: "00:15:5d:0a:0b:0c",
      etherType: 0x0800,
      payload: Array.from(ipv4),
    });
    expect(ethernet(toEthernet(packet(276, sll2(4, 0xfffe0a0b, mac, 0x86dd, ipv6))))).toEqual({
      dst: "02:00:00:00:0a:0b",
      src: "00:15:5d:0a:0b:0c",
      etherType: 0x86dd,
      payload: Array.from(ipv6),
    });
    expect(ethernet(toEthernet(packet(276, sll2(1, 5, mac, 0x0800, ipv4))))?.dst).toBe(
      "ff:ff:ff:ff:ff:ff",
    );
    expect(ethernet(toEthernet(packet(276, sll2(2, 5, mac, 0x0800, ipv4))))?.dst).toBe(
      "01:00:5e:00:00:01",
    );
    for (const address of [[], [1, 2, 3, 4, 5, 6, 7, 8]]) {
      expect(ethernet(toEthernet(packet(276, sll2(0, 5, address, 0x0800, ipv4))))?.src).toBe(
        "02:00:00:00:ff:ff",
      );
    }
  });

  it("SLL2: refuses a header cut short and a protocol that is not an EtherType", () => {
    const whole = sll2(0, 1, mac, 0x86dd, new Uint8Array(0));
    expect(ethernet(toEthernet(packet(276, whole)))?.payload).toEqual([]);
    expect(toEthernet(packet(276, whole.subarray(0, 19)))).toBeNull();
    expect(toEthernet(packet(276, sll2(0, 1, mac, 0x05ff, ipv4)))).toBeNull();
    expect(toEthernet(packet(276, sll2(0, 1, mac, 0x000c, ipv4)))).toBeNull(); // CAN
    expect(ethernet(toEthernet(packet(276, sll2(0, 1, mac, 0x0600, ipv4))))?.etherType).toBe(
      0x0600,
    );
  });
});
