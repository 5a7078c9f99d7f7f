import { parseMac } from "./address.js";
import { MAX_CAPTURED_PACKET } from "./capture.js";
import {
  destinationMac,
  ETHERNET_HEADER,
  ETHERTYPE_VLAN,
  isGroupMac,
  PROTO_TCP,
  PROTO_UDP,
  parseFrame,
  VLAN_TAG,
} from "./frame.js";
import { hashInput, type ToeplitzHasher } from "./rss.js";

/** Windows' jumbo packet settings: MTU plus the 14-byte Ethernet header. */
export const JUMBO_PACKET_DEFAULT = 1514;
/** The 9014-byte jumbo packet setting (9000 MTU). */
export const JUMBO_PACKET_9014 = 9014;
/** Entries of the RSS indirection table (a power of two; NDIS allows up to 128). */
export const RSS_INDIRECTION_ENTRIES = 128;

/** A receive filter: all its tests must match (AND). */
export interface QueueFilter {
  /** Destination MAC as a 48-bit number. */
  readonly mac: number;
  /** VLAN ID the frame must carry; absent: any (or none). */
  readonly vlan?: number;
}

/** A virtual machine's network adapter as the NIC sees it. */
export interface VmPort {
  readonly name: string;
  readonly mac: string;
  readonly vlan?: number;
}

/** A receive queue: its filters (any may match: OR), its VM and its processor. */
export interface ReceiveQueue {
  readonly index: number;
  readonly filters: QueueFilter[];
  /** Ring index of the VM the queue was handed to; -1 for the default queue. */
  vm: number;
  /** The processor (pool worker) its interrupts go to. */
  processor: number;
}

/** Where the NIC sends a received frame. */
export interface Classification {
  readonly queue: number;
  readonly processor: number;
  /** Dropped in the NIC: over the jumbo packet size, or shorter than an Ethernet header. */
  readonly drop: "oversize" | "runt" | null;
}

/** How a virtual NIC is set up. */
export interface VirtualNicOptions {
  /** Receive queues including the default queue (1 = no VMQ). */
  readonly queues: number;
  /** Processors the queues' interrupts can go to. */
  readonly processors: number;
  /** Jumbo packet setting: largest frame accepted, Ethernet header included (1514 or 9014). */
  readonly jumboPacket: number;
  /** Spread the default queue's flows over every processor by Toeplitz hash (RSS). */
  readonly rss?: boolean;
  readonly hasher?: ToeplitzHasher;
  /**
   * Hash UDP ports too (NDIS 6.80's NDIS_HASH_UDP_IPV4 and NDIS_HASH_UDP_IPV6
   * hash types). NDIS 6.20 has no UDP hash type, so by default UDP is hashed
   * on its addresses only, as IPv4 or IPv6 without ports.
   */
  readonly hashUdpPorts?: boolean;
}

/**
 * A virtual machine queue NIC (NDIS 6.20 VMQ): frames are sorted into queues
 * by destination MAC and optional VLAN; unmatched, broadcast and multicast
 * frames go to the default queue (queue 0), which always exists. Queues are
 * handed to VMs first come, first served.
 */
export class VirtualNic {
  readonly queues: ReceiveQueue[];
  readonly vms: VmPort[] = [];
  /** RSS indirection table: hash bucket to processor. */
  readonly indirection: Uint8Array;
  private readonly byMac = new Map<number, ReceiveQueue[]>();

  constructor(readonly options: VirtualNicOptions) {
    const { queues, processors, jumboPacket } = options;
    if (!Number.isSafeInteger(queues) || queues < 1 || queues > 64) {
      throw new RangeError(`a VMQ NIC has 1 to 64 queues, not ${queues}`);
    }
    if (!Number.isSafeInteger(processors) || processors < 1 || processors > 64) {
      throw new RangeError(`processors must be 1 to 64, not ${processors}`);
    }
    if (
      !Number.isSafeInteger(jumboPacket) ||
      jumboPacket < 64 ||
      jumboPacket > MAX_CAPTURED_PACKET
    ) {
      throw new RangeError(
        `jumbo packet size must be 64 to ${MAX_CAPTURED_PACKET} bytes, not ${jumboPacket}`,
      );
    }
    if (options.rss && !options.hasher) throw new RangeError("RSS needs a Toeplitz hasher");
    this.queues = [];
    for (let i = 0; i < queues; i++) {
      // Initial interrupt affinity: round robin over processors.
      this.queues.push({ index: i, filters: [], vm: -1, processor: i % processors });
    }
    this.indirection = new Uint8Array(RSS_INDIRECTION_ENTRIES);
    for (let i = 0; i < RSS_INDIRECTION_ENTRIES; i++) this.indirection[i] = i % processors;
  }

  /**
   * Connects a VM: it gets the first queue not yet handed out (first come,
   * first served) with a filter on its MAC (and VLAN), or shares the default
   * queue when none is left. Returns its queue.
   */
  attach(vm: VmPort): ReceiveQueue {
    const index = this.vms.length;
    this.vms.push(vm);
    const free = this.queues.find((q) => q.index > 0 && q.vm < 0);
    const mac = macNumber(vm.mac);
    if (!free) return this.queues[0] as ReceiveQueue;
    free.vm = index;
    this.addFilter(free, { mac, ...(vm.vlan !== undefined ? { vlan: vm.vlan } : {}) });
    return free;
  }

  /** Adds a filter to a queue (a queue's filters are ORed). */
  addFilter(queue: ReceiveQueue, filter: QueueFilter): void {
    queue.filters.push(filter);
    const list = this.byMac.get(filter.mac) ?? [];
    list.push(queue);
    this.byMac.set(filter.mac, list);
  }

  /** The queue a VM's frames land in (0: the default queue, shared through the switch). */
  queueOf(vm: number): ReceiveQueue {
    return this.queues.find((q) => q.vm === vm) ?? (this.queues[0] as ReceiveQueue);
  }

  /** Largest frame accepted: the jumbo packet size, plus 4 bytes when 802.1Q-tagged. */
  maxFrame(tagged: boolean): number {
    return this.options.jumboPacket + (tagged ? VLAN_TAG : 0);
  }

  /** Sorts one frame into a queue and processor, as the NIC's classifier does. */
  classify(frame: Uint8Array): Classification {
    if (frame.length < ETHERNET_HEADER) return { queue: 0, processor: 0, drop: "runt" };
    const tagged = (((frame[12] ?? 0) << 8) | (frame[13] ?? 0)) === ETHERTYPE_VLAN;
    if (frame.length > this.maxFrame(tagged)) return { queue: 0, processor: 0, drop: "oversize" };
    const mac = destinationMac(frame);
    let queue = this.queues[0] as ReceiveQueue;
    if (!isGroupMac(mac)) {
      const vlan =
        tagged && frame.length >= 18 ? (((frame[14] ?? 0) << 8) | (frame[15] ?? 0)) & 0x0fff : -1;
      for (const q of this.byMac.get(mac) ?? []) {
        if (q.filters.some((f) => f.mac === mac && (f.vlan === undefined || f.vlan === vlan))) {
          queue = q;
          break;
        }
      }
    }
    let processor = queue.processor;
    if (queue.index === 0 && this.options.rss && this.options.hasher) {
      processor =
        this.indirection[
          rssHash(this.options.hasher, frame, this.options.hashUdpPorts === true) &
            (RSS_INDIRECTION_ENTRIES - 1)
        ] ?? 0;
    }
    return { queue: queue.index, processor, drop: null };
  }
}

/** A MAC address string as a 48-bit number. */
export function macNumber(mac: string): number {
  return destinationMac(parseMac(mac));
}

/**
 * The RSS hash of a frame: addresses, and ports for TCP (and for UDP when
 * `udpPorts`: NDIS 6.80's UDP hash types); 0 for non-IP. Fragments are
 * hashed on their addresses: only the first carries the ports.
 */
export function rssHash(hasher: ToeplitzHasher, frame: Uint8Array, udpPorts = false): number {
  try {
    const p = parseFrame(frame);
    if (p.ipVersion === 0) return 0;
    const n = p.ipVersion === 4 ? 4 : 16;
    const src = frame.subarray(p.srcAddress, p.srcAddress + n);
    const dst = frame.subarray(
      p.l3 + (p.ipVersion === 4 ? 16 : 24),
      p.l3 + (p.ipVersion === 4 ? 20 : 40),
    );
    const ports =
      p.l4 >= 0 && (p.protocol === PROTO_TCP || (udpPorts && p.protocol === PROTO_UDP))
        ? {
            src: ((frame[p.l4] ?? 0) << 8) | (frame[p.l4 + 1] ?? 0),
            dst: ((frame[p.l4 + 2] ?? 0) << 8) | (frame[p.l4 + 3] ?? 0),
          }
        : undefined;
    return hasher.hash(hashInput(src, dst, ports));
  } catch {
    return 0;
  }
}

/** Imbalance (as a fraction of the busiest processor's load) below which no queue moves. */
export const REBALANCE_THRESHOLD = 0.25;

/** One queue's load in a round, for rebalancing. */
export interface QueueLoad {
  readonly queue: number;
  readonly busyNs: number;
}

/**
 * Dynamic VMQ: moves one queue from the busiest processor to the least busy
 * when that narrows the gap, as Windows Server 2012's Dynamic VMQ rebalances
 * queues by load. Returns the move made, or null.
 *
 * @param loads - each queue's own busy time
 * @param processorBusyNs - each processor's measured busy time; without it a
 *   processor's load is the sum of its queues'. Under RSS a processor also
 *   takes default-queue frames spread to it by hash, which no queue bound to
 *   it accounts for, so the receive path passes what each one measured.
 */
export function rebalance(
  nic: VirtualNic,
  loads: readonly QueueLoad[],
  processorBusyNs?: readonly number[],
): { queue: number; from: number; to: number } | null {
  const processors = nic.options.processors;
  const perProcessor = new Array<number>(processors).fill(0);
  const byQueue = new Map<number, number>();
  for (const l of loads) byQueue.set(l.queue, (byQueue.get(l.queue) ?? 0) + l.busyNs);
  if (processorBusyNs) {
    for (let p = 0; p < processors; p++) perProcessor[p] = processorBusyNs[p] ?? 0;
  } else {
    for (const q of nic.queues)
      perProcessor[q.processor] = (perProcessor[q.processor] ?? 0) + (byQueue.get(q.index) ?? 0);
  }
  let busiest = 0;
  let idlest = 0;
  for (let p = 0; p < processors; p++) {
    if ((perProcessor[p] ?? 0) > (perProcessor[busiest] ?? 0)) busiest = p;
    if ((perProcessor[p] ?? 0) < (perProcessor[idlest] ?? 0)) idlest = p;
  }
  const gap = (perProcessor[busiest] ?? 0) - (perProcessor[idlest] ?? 0);
  // Hysteresis, as Dynamic VMQ's thresholds give: leave loads within a
  // quarter of the busiest processor's alone, and move only for a clear gain.
  if (gap <= REBALANCE_THRESHOLD * (perProcessor[busiest] ?? 0)) return null;
  let best: ReceiveQueue | null = null;
  let bestGap = gap;
  // The default queue stays put when RSS spreads it already.
  for (const q of nic.queues) {
    if (q.processor !== busiest || (q.index === 0 && nic.options.rss)) continue;
    const load = byQueue.get(q.index) ?? 0;
    const newGap = Math.abs(gap - 2 * load);
    if (load > 0 && newGap < bestGap && newGap < 0.8 * gap) {
      best = q;
      bestGap = newGap;
    }
  }
  if (!best) return null;
  best.processor = idlest;
  return { queue: best.index, from: busiest, to: idlest };
}
