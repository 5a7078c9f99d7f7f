import { describe, expect, it } from "vitest";
import { buildFrame } from "../src/net/build.js";
import { macNumber, VirtualNic } from "../src/net/vmq.js";

/*
 * NDIS 6.20 VMQ receive filters, one rule at a time: within a filter the
 * destination MAC and the VLAN ID must both match (AND), any filter of a
 * queue may take a frame (OR), a group address (broadcast or multicast)
 * goes to the default queue whatever a filter names, and the VLAN ID is the
 * low 12 bits of the 802.1Q tag's TCI (IEEE 802.1Q 9.6: priority and DEI
 * above it take no part).
 */
const VM_MAC = "00:15:5d:00:00:20";

function tagged(dst: string, tci?: number): Uint8Array {
  const frame = buildFrame(
    {
      ethernet: { dst, src: "00:15:5d:ff:ff:ff", ...(tci !== undefined ? { vlan: 1 } : {}) },
      ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2" },
      l4: { kind: "udp", srcPort: 1, dstPort: 2 },
    },
    new Uint8Array(20),
  );
  // The whole TCI, priority bits included, as a switch may send it.
  if (tci !== undefined) frame.set([tci >> 8, tci & 0xff], 14);
  return frame;
}

function nicWithVm(vlan?: number) {
  const nic = new VirtualNic({ queues: 3, processors: 3, jumboPacket: 1514 });
  const queue = nic.attach({ name: "a", mac: VM_MAC, ...(vlan !== undefined ? { vlan } : {}) });
  return { nic, queue };
}

describe("VMQ receive filters", () => {
  it("takes a frame only when both the MAC and the VLAN of one filter match", () => {
    const { nic, queue } = nicWithVm(7);
    expect(nic.classify(tagged(VM_MAC, 7)).queue).toBe(queue.index);
    expect(nic.classify(tagged(VM_MAC, 8)).queue, "another VLAN").toBe(0);
    expect(nic.classify(tagged(VM_MAC)).queue, "no tag").toBe(0);
    expect(nic.classify(tagged("00:15:5d:00:00:21", 7)).queue, "another MAC").toBe(0);
  });

  it("reads the VLAN ID from the TCI's low 12 bits, whatever its priority and DEI", () => {
    const { nic, queue } = nicWithVm(7);
    expect(nic.classify(tagged(VM_MAC, (5 << 13) | 7)).queue).toBe(queue.index);
    expect(nic.classify(tagged(VM_MAC, (1 << 12) | 7)).queue).toBe(queue.index);
    expect(nic.classify(tagged(VM_MAC, 0xf007)).queue).toBe(queue.index);
    // VLAN 7 + 4096 is not VLAN 7's neighbour: the 13th bit is DEI, so it is VLAN 7 again.
    expect(nic.classify(tagged(VM_MAC, 0x1007)).queue).toBe(queue.index);
    expect(nic.classify(tagged(VM_MAC, 0x0008)).queue).toBe(0);
  });

  it("lets a filter without a VLAN take a frame of any VLAN, or none", () => {
    const { nic, queue } = nicWithVm();
    expect(nic.classify(tagged(VM_MAC)).queue).toBe(queue.index);
    expect(nic.classify(tagged(VM_MAC, 7)).queue).toBe(queue.index);
    expect(nic.classify(tagged(VM_MAC, 4095)).queue).toBe(queue.index);
  });

  it("reads no VLAN from a tagged frame too short to hold its TCI", () => {
    const { nic, queue } = nicWithVm();
    const { nic: vlanNic } = nicWithVm(0);
    // 16 bytes: the TPID says 802.1Q, and a TCI of 0 would name VLAN 0.
    const short = tagged(VM_MAC, 0).subarray(0, 16);
    expect(nic.classify(short).queue).toBe(queue.index);
    expect(vlanNic.classify(short).queue, "no VLAN was read, so a VLAN 0 filter misses").toBe(0);
    expect(vlanNic.classify(tagged(VM_MAC, 0).subarray(0, 18)).queue).not.toBe(0);
  });

  it("ORs a queue's filters, and picks the queue whose filter matches among those of one MAC", () => {
    const nic = new VirtualNic({ queues: 3, processors: 3, jumboPacket: 1514 });
    const seven = nic.attach({ name: "a", mac: VM_MAC, vlan: 7 });
    const nine = nic.attach({ name: "b", mac: VM_MAC, vlan: 9 });
    expect([seven.index, nine.index]).toEqual([1, 2]);
    expect(nic.classify(tagged(VM_MAC, 9)).queue).toBe(2);
    expect(nic.classify(tagged(VM_MAC, 7)).queue).toBe(1);
    expect(nic.classify(tagged(VM_MAC, 5)).queue).toBe(0);
    nic.addFilter(seven, { mac: macNumber("00:15:5d:00:00:30") });
    nic.addFilter(seven, { mac: VM_MAC.length > 0 ? macNumber(VM_MAC) : 0, vlan: 5 });
    expect(nic.classify(tagged("00:15:5d:00:00:30", 9)).queue).toBe(1);
    expect(nic.classify(tagged(VM_MAC, 5)).queue).toBe(1);
    expect(nic.classify(tagged(VM_MAC, 9)).queue).toBe(2);
  });

  it("sends broadcast and multicast frames to the default queue, even one a filter names", () => {
    const nic = new VirtualNic({ queues: 3, processors: 3, jumboPacket: 1514 });
    const q = nic.attach({ name: "a", mac: VM_MAC });
    for (const group of ["ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "33:33:00:00:00:01"]) {
      nic.addFilter(q, { mac: macNumber(group) });
      expect(nic.classify(tagged(group)), group).toEqual({ queue: 0, processor: 0, drop: null });
    }
    // The group bit is the first octet's lowest bit: 02:... is a local unicast address.
    nic.addFilter(q, { mac: macNumber("02:00:00:00:00:01") });
    expect(nic.classify(tagged("02:00:00:00:00:01")).queue).toBe(q.index);
  });

  it("delivers on the queue's own processor, and the default queue's without RSS", () => {
    const { nic, queue } = nicWithVm();
    expect(queue.processor).toBe(1);
    expect(nic.classify(tagged(VM_MAC))).toEqual({ queue: 1, processor: 1, drop: null });
    queue.processor = 2;
    expect(nic.classify(tagged(VM_MAC)).processor).toBe(2);
    const q0 = nic.queues[0];
    if (!q0) throw new Error("no default queue");
    q0.processor = 2;
    expect(nic.classify(tagged("00:15:5d:00:00:99"))).toEqual({
      queue: 0,
      processor: 2,
      drop: null,
    });
  });
});
