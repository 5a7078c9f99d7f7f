import type { ReceiveCounts } from "../wasm/receive.js";

/** A running sum of a processor's kernel counts over rounds. */
export function sumCounts(): { counts: ReceiveCounts; add(c: ReceiveCounts): void } {
  const counts = {
    frames: 0,
    delivered: 0,
    coalescedSegments: 0,
    badChecksum: 0,
    malformed: 0,
    unknownMac: 0,
    lookups: 0,
    ringFull: 0,
    bytes: 0,
  };
  return {
    counts,
    add(c) {
      counts.frames += c.frames;
      counts.delivered += c.delivered;
      counts.coalescedSegments += c.coalescedSegments;
      counts.badChecksum += c.badChecksum;
      counts.malformed += c.malformed;
      counts.unknownMac += c.unknownMac;
      counts.lookups += c.lookups;
      counts.ringFull += c.ringFull;
      counts.bytes += c.bytes;
    },
  };
}
