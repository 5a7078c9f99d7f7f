import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readCapture } from "../src/net/capture.js";
import { parseFrame } from "../src/net/frame.js";

// The commands run from dist/ (npm test builds first), as users run them.
const BIN = join(import.meta.dirname, "..", "bin", "hvlab.js");

function hvlab(args: string[]): string {
  return execFileSync("node", [BIN, ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-net-cli-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("hvlab net", () => {
  it("has --help for every subcommand", () => {
    for (const sub of ["lso", "send", "vmq", "replay"]) {
      const out = hvlab(["net", sub, "--help"]);
      expect(out).toContain(`Usage: hvlab net ${sub}`);
      expect(out).toContain("--json");
    }
  });

  it("lso --json lists every segment with its MSS, IDs and flags", () => {
    const out = JSON.parse(
      hvlab(["net", "lso", "--offload", "lsov2", "--bytes", "4000", "--json"]),
    ) as {
      summary: { mss: number; segments: number };
      segments: { payload: number; ipId: string; flags: string }[];
    };
    expect(out.summary).toMatchObject({ mss: 1460, segments: 3 });
    expect(out.segments.map((s) => s.payload)).toEqual([1460, 1460, 1080]);
    expect(out.segments.map((s) => s.ipId)).toEqual(["0x7ff0", "0x7ff1", "0x7ff2"]);
    expect(out.segments.map((s) => s.flags)).toEqual(["ACK", "ACK", "PSH,ACK"]);
  });

  it("send writes a capture that replay feeds through the receive path", () => {
    const file = join(dir, "send.pcapng");
    const sent = JSON.parse(
      hvlab([
        "net",
        "send",
        "--ip",
        "6",
        "--mtu",
        "9000",
        "--bytes",
        "100000",
        "--out",
        file,
        "--json",
      ]),
    ) as { frames: number };
    const capture = readCapture(new Uint8Array(readFileSync(file)));
    expect(capture.format).toBe("pcapng");
    expect(capture.packets.length).toBe(sent.frames);
    expect(parseFrame(capture.packets[0]?.data ?? new Uint8Array()).ipVersion).toBe(6);
    const replay = JSON.parse(hvlab(["net", "replay", file, "--mtu", "9000", "--json"])) as {
      summary: { frames: number; delivered: number; oversize: number; badChecksum: number };
    };
    // Coalescing rebuilds 64 KiB super-frames: 100,000 bytes in 2 deliveries.
    expect(replay.summary).toMatchObject({
      frames: sent.frames,
      oversize: 0,
      badChecksum: 0,
      delivered: 2,
    });
    // The NIC takes what the capture holds unless a jumbo packet setting is
    // given: at 1514, every 9014-byte frame is oversize.
    const small = JSON.parse(hvlab(["net", "replay", file, "--jumbo", "1514", "--json"])) as {
      summary: { oversize: number };
    };
    expect(small.summary.oversize).toBe(sent.frames);
    const held = JSON.parse(hvlab(["net", "replay", file, "--json"])) as {
      summary: { oversize: number; delivered: number };
    };
    expect(held.summary).toMatchObject({ oversize: 0, delivered: 2 });
  });

  it("vmq --json reports rounds and per-processor load", () => {
    const out = JSON.parse(
      hvlab([
        "net",
        "vmq",
        "--frames",
        "500",
        "--rounds",
        "2",
        "--vms",
        "3",
        "--queues",
        "4",
        "--corrupt",
        "0.05",
        "--json",
      ]),
    ) as {
      rounds: { frames: number; badChecksum: number; processors: unknown[] }[];
      summary: { frames: number; badChecksum: number; lookups: number };
    };
    expect(out.rounds.length).toBe(2);
    expect(out.summary.frames).toBe(1000);
    expect(out.summary.badChecksum).toBeGreaterThan(0);
    expect(out.rounds[0]?.processors.length).toBe(2);
  });

  it("gives one line and a non-zero exit for bad input", () => {
    const bad = join(dir, "bad.pcap");
    writeFileSync(bad, Buffer.from("not a capture at all"));
    for (const args of [
      ["net", "replay", bad],
      ["net", "lso", "--mss", "0"],
      ["net", "lso", "--offload", "lsov1", "--ip", "6"],
      ["net", "lso", "--offload", "lsov1", "--bytes", "70000"],
    ]) {
      const r = spawnSync("node", [BIN, ...args], { encoding: "utf8" });
      expect(r.status).not.toBe(0);
      expect(r.stderr.trim().split("\n").length).toBe(1);
      expect(r.stderr).toMatch(/^hvlab: /);
    }
  });
});

describe("tour section", () => {
  it("runs quick and writes the networking section into the report", () => {
    const out = join(dir, "tour");
    hvlab(["tour", "--quick", "--only", "net", "--out", out]);
    const json = JSON.parse(readFileSync(join(out, "tour.json"), "utf8")) as {
      sections: { id: string; tables: unknown[]; charts: unknown[] }[];
    };
    const net = json.sections.find((s) => s.id === "net");
    expect(net?.tables.length).toBe(2);
    expect(net?.charts.length).toBe(4);
    const html = readFileSync(join(out, "tour.html"), "utf8");
    expect(html).toContain("Networking offloads");
    expect(html).toContain("<svg");
  });
});
