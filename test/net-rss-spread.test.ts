import { beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { buildFrame } from "../src/net/build.js";
import { hashInput, MICROSOFT_RSS_KEY, ToeplitzHasher } from "../src/net/rss.js";
import { JUMBO_PACKET_DEFAULT, RSS_INDIRECTION_ENTRIES, VirtualNic } from "../src/net/vmq.js";
import { toeplitzOracle } from "../src/oracle/toeplitz.js";

// 4,096 TCP flows with distinct, uniformly drawn 4-tuples: each of P
// processors expects 4096 / P of them; with the binomial spread
// sqrt(4096 p (1 - p)) (at most 32 flows), a 25 % tolerance is at least 8
// standard deviations, so the test cannot fail by chance, while RSS that
// leaves any processor idle or doubles one's share fails it.
const FLOWS = 4096;
const TOLERANCE = 0.25;

interface Flow {
  readonly frame: Uint8Array;
  /** The Toeplitz hash of the flow's 4-tuple, by the specification's bit loop. */
  readonly hash: number;
}

let hasher: ToeplitzHasher;
let flows: Flow[];

beforeAll(() => {
  hasher = new ToeplitzHasher(new MemoryLayout());
  let s = 0x9e3779b9;
  const next = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
  flows = [];
  const seen = new Set<string>();
  while (flows.length < FLOWS) {
    const src = [10, next() & 0xff, next() & 0xff, (next() & 0xfe) + 1];
    const dst = [192, 168, next() & 0xff, (next() & 0xfe) + 1];
    const srcPort = 1024 + (next() % 64_000);
    const dstPort = 1 + (next() % 65_535);
    const key = `${src}:${dst}:${srcPort}:${dstPort}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const frame = buildFrame(
      {
        // A unicast MAC no queue filters: the frame lands in the default queue.
        ethernet: { dst: "00:15:5d:99:99:99", src: "00:15:5d:00:00:01" },
        ip: { version: 4, src: src.join("."), dst: dst.join(".") },
        l4: { kind: "tcp", srcPort, dstPort, seq: 1 },
      },
      new Uint8Array(16),
    );
    const input = hashInput(Uint8Array.from(src), Uint8Array.from(dst), {
      src: srcPort,
      dst: dstPort,
    });
    flows.push({ frame, hash: toeplitzOracle(MICROSOFT_RSS_KEY, input) });
  }
});

describe("RSS spreads the default queue's flows over every processor", () => {
  for (const processors of [2, 3, 4, 8]) {
    it(`${processors} processors: each gets its share within ${TOLERANCE * 100} %, and every flow goes where its indirection entry says`, () => {
      const nic = new VirtualNic({
        queues: 1,
        processors,
        jumboPacket: JUMBO_PACKET_DEFAULT,
        rss: true,
        hasher,
      });
      const perProcessor = new Array<number>(processors).fill(0);
      const entriesHit = new Set<number>();
      for (const flow of flows) {
        const c = nic.classify(flow.frame);
        expect(c.drop).toBeNull();
        expect(c.queue).toBe(0);
        const entry = flow.hash % RSS_INDIRECTION_ENTRIES;
        entriesHit.add(entry);
        // Entry by entry: the processor is the one the table holds for the
        // hash's low bits (NDIS: hash masked by the table's size - 1).
        expect(c.processor).toBe(nic.indirection[entry]);
        perProcessor[c.processor] = (perProcessor[c.processor] ?? 0) + 1;
      }
      // 32 flows per entry on average: every entry of the table is used.
      expect(entriesHit.size).toBe(RSS_INDIRECTION_ENTRIES);
      const share = FLOWS / processors;
      for (const count of perProcessor) {
        expect(count).toBeGreaterThan(share * (1 - TOLERANCE));
        expect(count).toBeLessThan(share * (1 + TOLERANCE));
      }
    });
  }
});
