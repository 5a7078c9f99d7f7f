import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { readCapture, writeCapture } from "../src/net/capture.js";
import { Segmenter } from "../src/net/lso.js";
import { type LargeSendSpec, runLargeSend } from "../src/net/send.js";
import { requireTool } from "./support/cli.js";

// The outside tool: Wireshark's tshark reads hvlab's captures with checksum
// checking on (Wireshark's ip/tcp/udp check_checksum preferences).
const hasTshark = requireTool("tshark");

const CHECKS = [
  "-o",
  "ip.check_checksum:TRUE",
  "-o",
  "tcp.check_checksum:TRUE",
  "-o",
  "udp.check_checksum:TRUE",
];

function tshark(args: string[]): string {
  return execFileSync("tshark", args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });
}

let dir: string;
let segmenter: Segmenter;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-tshark-"));
  segmenter = new Segmenter(new MemoryLayout(), 300_000);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CASES: (LargeSendSpec & { format: "pcap" | "pcapng" })[] = [
  {
    offload: "lsov1",
    ipVersion: 4,
    transport: "tcp",
    mtu: 1500,
    bytes: 65_495,
    seed: 1,
    format: "pcap",
  },
  {
    offload: "lsov1",
    ipVersion: 4,
    transport: "tcp",
    mtu: 9000,
    bytes: 65_483,
    seed: 2,
    timestamps: true,
    format: "pcapng",
  },
  {
    offload: "lsov2",
    ipVersion: 4,
    transport: "tcp",
    mtu: 1500,
    bytes: 200_000,
    seed: 3,
    vlan: 42,
    format: "pcapng",
  },
  {
    offload: "lsov2",
    ipVersion: 4,
    transport: "tcp",
    mtu: 9000,
    bytes: 200_001,
    seed: 4,
    format: "pcap",
  },
  {
    offload: "lsov2",
    ipVersion: 6,
    transport: "tcp",
    mtu: 1500,
    bytes: 150_003,
    seed: 5,
    timestamps: true,
    format: "pcap",
  },
  {
    offload: "lsov2",
    ipVersion: 6,
    transport: "tcp",
    mtu: 9000,
    bytes: 200_000,
    seed: 6,
    vlan: 7,
    format: "pcapng",
  },
  {
    offload: "uso",
    ipVersion: 4,
    transport: "udp",
    mtu: 1500,
    bytes: 30_001,
    seed: 7,
    format: "pcapng",
  },
  {
    offload: "uso",
    ipVersion: 6,
    transport: "udp",
    mtu: 9000,
    bytes: 60_000,
    seed: 8,
    format: "pcap",
  },
];

describe.skipIf(!hasTshark)("tshark reads hvlab's segmented sends", () => {
  for (const c of CASES) {
    const name = `${c.offload} IPv${c.ipVersion} ${c.transport} MTU ${c.mtu}${c.vlan ? " VLAN" : ""}${c.timestamps ? " timestamps" : ""} (${c.format})`;
    it(`${name}: every checksum good and the stream equals the bytes sent`, () => {
      const { frames, payload } = runLargeSend(segmenter, c);
      expect(frames.length).toBeGreaterThan(1);
      const file = join(dir, `${c.offload}-${c.ipVersion}-${c.mtu}.${c.format}`);
      const bytes = writeCapture(
        frames.map((data, i) => ({ data, seconds: 1_700_000_000, nanoseconds: i * 1200 })),
        { format: c.format },
      );
      writeFileSync(file, bytes);
      // Our reader gives back exactly what was written.
      expect(readCapture(bytes).packets.map((p) => p.data)).toEqual(frames);

      const l4 = c.transport === "tcp" ? "tcp" : "udp";
      const rows = tshark([
        "-r",
        file,
        ...CHECKS,
        "-T",
        "fields",
        "-E",
        "separator=,",
        "-e",
        "ip.checksum.status",
        "-e",
        `${l4}.checksum.status`,
        "-e",
        "frame.len",
      ])
        .trim()
        .split("\n");
      expect(rows.length).toBe(frames.length);
      for (const [i, row] of rows.entries()) {
        const [ipStatus, l4Status, len] = row.split(",");
        // tshark's checksum status: 1 = Good (0 Bad, 2 Unverified).
        expect(ipStatus).toBe(c.ipVersion === 4 ? "1" : "");
        expect(l4Status).toBe("1");
        expect(Number(len)).toBe(frames[i]?.length);
        expect(Number(len)).toBeLessThanOrEqual(c.mtu + 14 + (c.vlan ? 4 : 0));
      }

      let stream: string;
      if (c.transport === "tcp") {
        const out = tshark(["-r", file, "-q", "-z", "follow,tcp,raw,0"]);
        stream = out
          .split("\n")
          .filter((line) => /^[0-9a-f]+$/.test(line))
          .join("");
      } else {
        stream = tshark(["-r", file, "-T", "fields", "-e", "udp.payload"]).split("\n").join("");
      }
      expect(stream.length).toBe(payload.length * 2);
      expect(stream === Buffer.from(payload).toString("hex")).toBe(true);
    });
  }
});
