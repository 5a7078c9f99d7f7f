import { describe, expect, it } from "vitest";
import { buildFrame, type FrameSpec } from "../src/net/build.js";
import { auditChecksums, recomputeChecksums } from "../src/net/checksum-audit.js";
import { parseFrame } from "../src/net/frame.js";

/*
 * A TCP checksum that computes to zero is sent as zero: RFC 793 section 3.1
 * defines no substitute for it (zero is one of one's complement's two
 * zeros, and a receiver's sum verifies either way). Only UDP writes all
 * ones instead (RFC 768), because its zero means "no checksum".
 */

const spec = (ip: 4 | 6): FrameSpec => ({
  ethernet: { dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01" },
  ip:
    ip === 4
      ? { version: 4, src: "10.0.0.1", dst: "10.0.0.2", id: 3 }
      : { version: 6, src: "fd00::1", dst: "fd00::2" },
  l4: { kind: "tcp", srcPort: 1000, dstPort: 2000, seq: 5, ack: 6 },
});

function field(f: Uint8Array): number {
  const at = parseFrame(f).l4 + 16;
  return ((f[at] ?? 0) << 8) | (f[at + 1] ?? 0);
}

describe("a TCP checksum that computes to zero", () => {
  it("is written as 0x0000, not 0xFFFF, and verifies", () => {
    for (const ip of [4, 6] as const) {
      const data = new Uint8Array(40).map((_, i) => (i * 13 + 1) & 0xff);
      data[38] = 0;
      data[39] = 0;
      // With the last word zero the sum is S (the checksum ~S); a last word of
      // 0xFFFF - S makes the sum 0xFFFF and the checksum 0.
      const sum = ~field(buildFrame(spec(ip), data)) & 0xffff;
      const word = 0xffff - sum;
      data[38] = word >>> 8;
      data[39] = word & 0xff;
      const f = buildFrame(spec(ip), data);
      expect(field(f), `IPv${ip}: the builder`).toBe(0);
      const wrong = f.slice();
      const at = parseFrame(f).l4 + 16;
      wrong[at] = 0x12;
      const fixed = recomputeChecksums(wrong);
      expect(field(fixed), `IPv${ip}`).toBe(0);
      expect(Buffer.compare(fixed, f)).toBe(0);
      expect(auditChecksums([fixed])).toEqual({ valid: 1, notValid: 0, partial: 0 });
    }
  });
});
