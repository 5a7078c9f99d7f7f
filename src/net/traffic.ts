import { buildFrame, buildHeaders, type FrameSpec } from "./build.js";
import { TCP_FLAGS } from "./frame.js";
import type { Segmenter } from "./lso.js";
import { payloadBytes } from "./send.js";
import type { VmPort } from "./vmq.js";

/** Traffic arriving at a host for its VMs. */
export interface TrafficSpec {
  readonly vms: readonly (VmPort & { readonly weight?: number; readonly ip?: string })[];
  /** TCP flows into each VM. */
  readonly flowsPerVm: number;
  /** Frames to generate in all. */
  readonly frames: number;
  /** Link MTU the senders segment for. */
  readonly mtu: number;
  readonly ipVersion: 4 | 6;
  /** Bytes of each large send the remote senders cut into segments. */
  readonly sendBytes: number;
  /** Segments of one flow in a row before another flow's (interrupt moderation batches). */
  readonly burst: number;
  /** One broadcast (ARP-sized) frame every this many frames; 0: none. */
  readonly broadcastEvery: number;
  /** Fraction of frames whose TCP checksum is corrupted on the wire. */
  readonly corruptFraction: number;
  readonly seed: number;
}

function ipOf(vm: number, host: number, v: 4 | 6): string {
  return v === 4
    ? `10.${vm >> 8}.${vm & 0xff}.${host}`
    : `fd00:${vm.toString(16)}::${host.toString(16)}`;
}

/**
 * Generates received traffic: for each VM, TCP flows from remote senders
 * whose large sends were segmented at the MTU (real LSO output, every
 * checksum filled), interleaved in bursts weighted by each VM's share,
 * plus broadcasts and a fraction of corrupted frames.
 */
export function generateTraffic(segmenter: Segmenter, spec: TrafficSpec): Uint8Array[] {
  const flows: { vm: number; frames: Uint8Array[]; next: number; seq: number; spec: FrameSpec }[] =
    [];
  for (const [v, vm] of spec.vms.entries()) {
    for (let f = 0; f < spec.flowsPerVm; f++) {
      const frameSpec: FrameSpec = {
        ethernet: {
          dst: vm.mac,
          src: "00:15:5d:ff:00:01",
          ...(vm.vlan !== undefined ? { vlan: vm.vlan } : {}),
        },
        ip:
          spec.ipVersion === 4
            ? {
                version: 4,
                src: ipOf(v, 100 + f, 4),
                dst: vm.ip ?? ipOf(v, 1, 4),
                id: (f * 977) & 0x7fff,
              }
            : { version: 6, src: ipOf(v, 100 + f, 6), dst: vm.ip ?? ipOf(v, 1, 6) },
        l4: {
          kind: "tcp",
          srcPort: 40_000 + f,
          dstPort: 445,
          seq: 1000 * (f + 1),
          ack: 1,
          flags: TCP_FLAGS.ACK,
        },
      };
      flows.push({ vm: v, frames: [], next: 0, seq: 1000 * (f + 1), spec: frameSpec });
    }
  }
  const payload = payloadBytes(spec.sendBytes, spec.seed);
  const refill = (flow: (typeof flows)[number]) => {
    const l4 = flow.spec.l4;
    if (l4.kind !== "tcp") return;
    const s: FrameSpec = {
      ...flow.spec,
      l4: { ...l4, seq: flow.seq, flags: TCP_FLAGS.ACK | TCP_FLAGS.PSH },
    };
    const { bytes: template } = buildHeaders(s, payload.length);
    const send = segmenter.segment(template, payload, {
      offload: spec.ipVersion === 4 && payload.length < 65_000 ? "lsov1" : "lsov2",
      mtu: spec.mtu,
    });
    flow.frames = segmenter.copyFrames(send);
    flow.next = 0;
    flow.seq = (flow.seq + payload.length) >>> 0;
  };
  const weights = spec.vms.map((vm) => vm.weight ?? 1);
  const total = weights.reduce((a, b) => a + b, 0);
  const out: Uint8Array[] = [];
  let state = spec.seed >>> 0 || 1;
  const random = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
  const broadcast = buildFrame(
    {
      ethernet: { dst: "ff:ff:ff:ff:ff:ff", src: "00:15:5d:ff:00:01" },
      ip:
        spec.ipVersion === 4
          ? { version: 4, src: "10.255.0.1", dst: "10.255.255.255" }
          : { version: 6, src: "fd00:ff::1", dst: "fd00:ff::ff" },
      l4: { kind: "udp", srcPort: 137, dstPort: 137 },
    },
    payloadBytes(18, 9),
  );
  let sinceBroadcast = 0;
  while (out.length < spec.frames) {
    // Pick a VM by weight, then one of its flows, and take a burst.
    let pick = random() * total;
    let vm = 0;
    while (vm < weights.length - 1 && pick >= (weights[vm] ?? 0)) pick -= weights[vm++] ?? 0;
    const flow = flows[vm * spec.flowsPerVm + Math.floor(random() * spec.flowsPerVm)];
    if (!flow) break;
    for (let b = 0; b < spec.burst && out.length < spec.frames; b++) {
      if (flow.next >= flow.frames.length) refill(flow);
      const frame = flow.frames[flow.next++];
      if (!frame) break;
      if (random() < spec.corruptFraction) {
        const bad = frame.slice();
        const last = bad.length - 1;
        bad[last] = (bad[last] ?? 0) ^ 0x5a;
        out.push(bad);
      } else out.push(frame);
      if (
        spec.broadcastEvery > 0 &&
        ++sinceBroadcast >= spec.broadcastEvery &&
        out.length < spec.frames
      ) {
        sinceBroadcast = 0;
        out.push(broadcast);
      }
    }
  }
  return out;
}
