import { describe, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { buildHeaders, type FrameSpec } from "../src/net/build.js";
import { TCP_FLAGS } from "../src/net/frame.js";
import { type IpIdMode, Segmenter } from "../src/net/lso.js";
import { segmentInSoftware } from "../src/net/software-send.js";
import { segmentOracle } from "../src/oracle/segment.js";
import { ChecksumKernel } from "../src/wasm/checksum.js";
import { expectSameFrames } from "./support/bytes.js";

/*
 * The stack's own segmentation (offload off) in every IP ID mode and both
 * CWR rules the offload takes: IDs incremented per segment (Linux, RFC
 * 6864's non-atomic datagrams), the same ID on every segment, or
 * incremented inside 15 bits (NDIS LSOv2); CWR on the first segment only
 * (Linux tcp_gso_segment) or on all (DPDK). Each must write the frames the
 * oracle writes.
 */

const segmenter = new Segmenter(new MemoryLayout(), 70_000);
const checksum = ChecksumKernel.on(segmenter.layout.memory);

function software(
  spec: FrameSpec,
  payload: Uint8Array,
  mss: number,
  ipId: IpIdMode,
  cwr: "first" | "all",
): Uint8Array[] {
  const { bytes: template } = buildHeaders(spec, payload.length);
  segmenter.loadPayload(payload);
  const plan = segmenter.plan(template, payload.length, {
    offload: "lsov2",
    mtu: 1500,
    mss,
    ipId,
    cwr,
  });
  const count = segmentInSoftware(segmenter, plan, checksum);
  const table = new Uint32Array(segmenter.layout.memory.buffer, segmenter.table.offset, count * 2);
  const out = segmenter.output.bytes(segmenter.layout.memory);
  return Array.from({ length: count }, (_, i) =>
    out.slice(table[i * 2] ?? 0, (table[i * 2] ?? 0) + (table[i * 2 + 1] ?? 0)),
  );
}

describe("segmentation with offload off, in every IP ID mode and CWR rule", () => {
  it("writes the oracle's frames", () => {
    for (const ipId of ["increment", "fixed", "wrap15"] as const) {
      for (const cwr of ["first", "all"] as const) {
        for (const id of [0x1234, 0x7ffe]) {
          const spec: FrameSpec = {
            ethernet: { dst: "02:00:00:00:00:02", src: "02:00:00:00:00:01" },
            ip: { version: 4, src: "10.0.0.1", dst: "10.0.0.2", id },
            l4: {
              kind: "tcp",
              srcPort: 40000,
              dstPort: 5201,
              seq: 0xfffff000,
              flags: TCP_FLAGS.ACK | TCP_FLAGS.PSH | TCP_FLAGS.CWR | TCP_FLAGS.FIN,
            },
          };
          const payload = Uint8Array.from({ length: 5000 }, (_, i) => (i * 29 + id) & 0xff);
          const { bytes: template, l3, l4 } = buildHeaders(spec, payload.length);
          expectSameFrames(
            software(spec, payload, 1200, ipId, cwr),
            segmentOracle(template, payload, {
              l3,
              l4,
              ipv6: false,
              udp: false,
              mss: 1200,
              idMode: ipId,
              cwrOnAll: cwr === "all",
            }),
          );
        }
      }
    }
  });
});
