import { type CapturedPacket, LINKTYPE_ETHERNET } from "./capture.js";
import { ETHERNET_HEADER, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from "./frame.js";

/*
 * Link types a capture's packets arrive with (tcpdump.org's LINKTYPE_ list):
 *
 *   1    Ethernet                      14-byte header, as the receive path takes it
 *   101  raw IP (LINKTYPE_RAW)         no header: version nibble says IPv4 or IPv6
 *   228  raw IPv4, 229 raw IPv6        no header
 *   113  Linux cooked capture (SLL)    16 bytes:
 *          0 packet type  2 ARPHRD type  4 address length  6 address (8)  14 protocol
 *   276  Linux cooked capture v2 (SLL2) 20 bytes:
 *          0 protocol  2 reserved  4 interface index  8 ARPHRD type
 *          10 packet type  11 address length  12 address (8)
 *
 * `tcpdump -i any` writes SLL or SLL2, tunnels raw IP. The receive path takes
 * Ethernet frames, so the others get an Ethernet header made from what their
 * own header says: broadcast and multicast packets keep a group address;
 * a unicast packet is addressed to its interface, one locally administered
 * MAC per interface (02:00:00:00:hi:lo), so each interface is one VM.
 */

/** Raw IP, IPv4 or IPv6 by the version nibble. */
export const LINKTYPE_RAW = 101;
/** Linux cooked capture. */
export const LINKTYPE_LINUX_SLL = 113;
/** Raw IPv4. */
export const LINKTYPE_IPV4 = 228;
/** Raw IPv6. */
export const LINKTYPE_IPV6 = 229;
/** Linux cooked capture version 2. */
export const LINKTYPE_LINUX_SLL2 = 276;

/** SLL packet types (the kernel's PACKET_ constants). */
const PACKET_BROADCAST = 1;
const PACKET_MULTICAST = 2;

/** Whether the receive path can take packets of this link type. */
export function linkTypeSupported(linkType: number): boolean {
  return (
    linkType === LINKTYPE_ETHERNET ||
    linkType === LINKTYPE_RAW ||
    linkType === LINKTYPE_IPV4 ||
    linkType === LINKTYPE_IPV6 ||
    linkType === LINKTYPE_LINUX_SLL ||
    linkType === LINKTYPE_LINUX_SLL2
  );
}

function withEthernet(
  payload: Uint8Array,
  etherType: number,
  packetType: number,
  iface: number,
  source: Uint8Array | null,
): Uint8Array {
  const frame = new Uint8Array(ETHERNET_HEADER + payload.length);
  if (packetType === PACKET_BROADCAST) frame.fill(0xff, 0, 6);
  else if (packetType === PACKET_MULTICAST) frame.set([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01], 0);
  else frame.set([0x02, 0, 0, 0, (iface >>> 8) & 0xff, iface & 0xff], 0);
  if (source && source.length === 6) frame.set(source, 6);
  else frame.set([0x02, 0, 0, 0, 0xff, 0xff], 6);
  frame[12] = etherType >>> 8;
  frame[13] = etherType & 0xff;
  frame.set(payload, ETHERNET_HEADER);
  return frame;
}

/**
 * The packet as an Ethernet frame: as captured for Ethernet, with a header
 * made from its own for the other supported link types; null for a link type
 * the receive path does not take, or a header too short or carrying a
 * protocol that is not an EtherType (SLL's 802.2 and CAN packets).
 */
export function toEthernet(packet: CapturedPacket): Uint8Array | null {
  const d = packet.data;
  const be16 = (at: number) => ((d[at] ?? 0) << 8) | (d[at + 1] ?? 0);
  switch (packet.linkType) {
    case LINKTYPE_ETHERNET:
      return d;
    case LINKTYPE_RAW:
    case LINKTYPE_IPV4:
    case LINKTYPE_IPV6: {
      const version = d.length > 0 ? (d[0] ?? 0) >>> 4 : 0;
      if (version !== 4 && version !== 6) return null;
      const etherType = version === 4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6;
      return withEthernet(d, etherType, 0, packet.interfaceId, null);
    }
    case LINKTYPE_LINUX_SLL: {
      if (d.length < 16) return null;
      const protocol = be16(14);
      if (protocol < 0x0600) return null;
      const addressLength = Math.min(be16(4), 8);
      return withEthernet(
        d.subarray(16),
        protocol,
        be16(0),
        packet.interfaceId,
        d.subarray(6, 6 + addressLength),
      );
    }
    case LINKTYPE_LINUX_SLL2: {
      if (d.length < 20) return null;
      const protocol = be16(0);
      if (protocol < 0x0600) return null;
      const ifindex = ((d[4] ?? 0) << 24) | ((d[5] ?? 0) << 16) | ((d[6] ?? 0) << 8) | (d[7] ?? 0);
      const addressLength = Math.min(d[11] ?? 0, 8);
      return withEthernet(
        d.subarray(20),
        protocol,
        d[10] ?? 0,
        ifindex >>> 0,
        d.subarray(12, 12 + addressLength),
      );
    }
    default:
      return null;
  }
}
