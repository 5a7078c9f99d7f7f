import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync, watch } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readCapture } from "../src/net/capture.js";
import { hasTool, hvlab } from "./support/cli.js";

// Real captures made here: two network namespaces joined by a veth pair
// (ICMP, a TCP connection, UDP datagrams, one of them over the MTU and so
// sent as IPv4 fragments), captured with tcpdump on one end; and a capture
// of a namespace's loopback. hvlab replays each, and must agree with
// tshark's own figures on the same file.

const TOOLS = ["ip", "tcpdump", "tshark", "ping"];

/** Why the test cannot run here, or null; in CI a reason is a failure. */
function unavailable(): string | null {
  const missing = TOOLS.filter((t) => !hasTool(t));
  let reason: string | null = null;
  if (missing.length > 0) reason = `${missing.join(", ")} not installed`;
  else if (process.getuid?.() !== 0) reason = "network namespaces need root";
  else {
    try {
      execFileSync("ip", ["netns", "list"], { stdio: "ignore" });
    } catch {
      reason = "ip netns is not permitted here";
    }
  }
  if (reason && process.env.CI === "true")
    throw new Error(`real captures are required in CI: ${reason}`);
  if (reason) console.warn(`skipping real captures: ${reason}`);
  return reason;
}

const skip = unavailable() !== null;
const tag = `hv${process.pid}`;
const nsA = `${tag}a`;
const nsB = `${tag}b`;
const PEER = join(import.meta.dirname, "support", "net-peer.mjs");
/** Deadline for any one outside process to start, or to finish its traffic. */
const DEADLINE_MS = 30_000;

let dir: string;

function ip(...args: string[]): void {
  execFileSync("ip", args, { stdio: "ignore" });
}

function inNs(ns: string, command: string[]): string {
  return execFileSync("ip", ["netns", "exec", ns, ...command], {
    encoding: "utf8",
    timeout: DEADLINE_MS,
  });
}

/** Resolves when `text` appears on a child's stream; rejects at the deadline or exit. */
async function waitFor(child: ChildProcess, stream: "stdout" | "stderr", text: string) {
  const source = child[stream];
  if (!source) throw new Error(`no ${stream} to wait on`);
  let seen = "";
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      new Promise<void>((resolve) => {
        source.on("data", (chunk: Buffer) => {
          seen += chunk.toString();
          if (seen.includes(text)) resolve();
        });
      }),
      once(child, "exit").then(() => {
        throw new Error(`exited before printing '${text}': ${seen}`);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no '${text}' within ${DEADLINE_MS} ms: ${seen}`)),
          DEADLINE_MS,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** ICMP payload of the ping that marks the end of a test's traffic. */
const MARKER_PAYLOAD = 1234;
/** Its frame: Ethernet, IPv4 and ICMP headers around the payload. */
const MARKER_FRAME = 14 + 20 + 8 + MARKER_PAYLOAD;

/** Whether the capture file holds a frame of this length yet. */
function holdsFrame(file: string, length: number): boolean {
  if (!existsSync(file)) return false;
  try {
    return readCapture(new Uint8Array(readFileSync(file))).packets.some(
      (p) => p.originalLength === length,
    );
  } catch {
    return false;
  }
}

/**
 * Starts tcpdump on an interface of a namespace; returns a function that
 * sends the end marker, waits until tcpdump has written it (every packet
 * before it is then in the file: tcpdump -U writes each as it comes), and
 * stops tcpdump. Stopping at once would lose what tcpdump had not yet read.
 */
async function capture(ns: string, device: string, file: string): Promise<() => Promise<void>> {
  const child = spawn(
    "ip",
    ["netns", "exec", ns, "tcpdump", "-i", device, "--immediate-mode", "-U", "-s", "0", "-w", file],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  await waitFor(child, "stderr", "listening on");
  return async () => {
    const target = device === "lo" ? "127.0.0.1" : "10.77.0.2";
    const watcher = watch(dir);
    let timer: NodeJS.Timeout | undefined;
    try {
      const written = new Promise<void>((resolve, reject) => {
        watcher.on("change", () => {
          if (holdsFrame(file, MARKER_FRAME)) resolve();
        });
        timer = setTimeout(
          () => reject(new Error(`tcpdump did not write the end marker within ${DEADLINE_MS} ms`)),
          DEADLINE_MS,
        );
      });
      inNs(ns, ["ping", "-c", "1", "-s", String(MARKER_PAYLOAD), target]);
      if (!holdsFrame(file, MARKER_FRAME)) await written;
    } finally {
      clearTimeout(timer);
      watcher.close();
      const exited = once(child, "exit");
      child.kill("SIGINT");
      await exited;
    }
  };
}

function tshark(args: string[]): string {
  return execFileSync("tshark", args, {
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
    stdio: ["ignore", "pipe", "ignore"],
  });
}

interface TsharkConversation {
  a: string;
  b: string;
  framesBtoA: number;
  bytesBtoA: string;
  framesAtoB: number;
  bytesAtoB: string;
}

/** The rows of `tshark -q -z conv,<proto>`. */
function tsharkConversations(file: string, proto: "tcp" | "udp"): TsharkConversation[] {
  const rows: TsharkConversation[] = [];
  for (const line of tshark(["-r", file, "-q", "-z", `conv,${proto}`]).split("\n")) {
    const m =
      /^(\S+)\s+<->\s+(\S+)\s+(\d+)\s+([\d,]+ \S*bytes|[\d,]+ [kMG]B)\s+(\d+)\s+([\d,]+ \S*bytes|[\d,]+ [kMG]B)/.exec(
        line,
      );
    if (m)
      rows.push({
        a: m[1] ?? "",
        b: m[2] ?? "",
        framesBtoA: Number(m[3]),
        bytesBtoA: m[4] ?? "",
        framesAtoB: Number(m[5]),
        bytesAtoB: m[6] ?? "",
      });
  }
  return rows;
}

/** Whether tshark's size text ("1466 bytes", "201 kB") shows this byte count. */
function sameSize(shown: string, bytes: number): boolean {
  const [number = "", unit = ""] = shown.split(" ");
  const value = Number(number.replaceAll(",", ""));
  if (unit === "bytes") return value === bytes;
  const scale = { kB: 1e3, MB: 1e6, GB: 1e9 }[unit];
  return scale !== undefined && Math.abs(bytes / scale - value) < 1;
}

/** `tshark -z follow,tcp,raw,N`: each direction's bytes, node 0 to node 1 first. */
function tsharkFollow(file: string, stream: number): { aToB: string; bToA: string } {
  let aToB = "";
  let bToA = "";
  let inData = false;
  for (const line of tshark(["-r", file, "-q", "-z", `follow,tcp,raw,${stream}`]).split("\n")) {
    if (line.startsWith("Node 1:")) {
      inData = true;
      continue;
    }
    if (!inData || line.startsWith("=") || line.trim() === "") continue;
    if (line.startsWith("\t")) bToA += line.trim();
    else aToB += line.trim();
  }
  return { aToB, bToA };
}

interface Replay {
  capture: { frames: number; bytes: number; truncated: unknown };
  checksums: { valid: number; notValid: number; partial: number };
  summary: { frames: number; oversize: number; badChecksum: number };
  rounds: {
    malformed: number;
    ringFull: number;
    oversize: number;
    queues: { frames: number; bytes: number }[];
  }[];
  conversations: {
    tcp: {
      a: string;
      aPort: number;
      b: string;
      bPort: number;
      framesAtoB: number;
      bytesAtoB: number;
      framesBtoA: number;
      bytesBtoA: number;
    }[];
    udp: Replay["conversations"]["tcp"];
  };
  streams?: { aToB: string; bToA: string }[];
}

function replay(file: string, ...args: string[]): Replay {
  const run = hvlab(["net", "replay", file, "--json", ...args], 300_000);
  if (run.status !== 0) throw new Error(`replay failed: ${run.stderr}`);
  return JSON.parse(run.stdout) as Replay;
}

/** Frames and bytes as tshark counts them: every frame's length on the wire. */
function tsharkTotals(file: string): { frames: number; bytes: number } {
  const lengths = tshark(["-r", file, "-T", "fields", "-e", "frame.len"])
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map(Number);
  return { frames: lengths.length, bytes: lengths.reduce((a, b) => a + b, 0) };
}

/** Everything hvlab reports about a capture agrees with tshark. */
function agreesWithTshark(file: string): Replay {
  const r = replay(file, "--checksums", "recompute", "--follow");
  const totals = tsharkTotals(file);
  expect(r.capture).toMatchObject({ ...totals, truncated: null });
  expect(r.summary.frames).toBe(totals.frames);
  // Every frame reached the NIC's queues, and none was lost on the way.
  const queued = r.rounds[0]?.queues.reduce((a, q) => a + q.frames, 0);
  expect(queued).toBe(totals.frames);
  expect(r.rounds[0]).toMatchObject({ malformed: 0, ringFull: 0, oversize: 0 });
  expect(r.summary.badChecksum).toBe(0);
  for (const proto of ["tcp", "udp"] as const) {
    const theirs = tsharkConversations(file, proto);
    const ours = r.conversations[proto];
    expect(ours.length).toBe(theirs.length);
    for (const t of theirs) {
      const o = ours.find((c) => `${c.a}:${c.aPort}` === t.a && `${c.b}:${c.bPort}` === t.b);
      expect(o, `${proto} ${t.a} <-> ${t.b}`).toBeDefined();
      if (!o) continue;
      expect([o.framesAtoB, o.framesBtoA]).toEqual([t.framesAtoB, t.framesBtoA]);
      expect(sameSize(t.bytesAtoB, o.bytesAtoB), `${t.bytesAtoB} against ${o.bytesAtoB}`).toBe(
        true,
      );
      expect(sameSize(t.bytesBtoA, o.bytesBtoA), `${t.bytesBtoA} against ${o.bytesBtoA}`).toBe(
        true,
      );
    }
  }
  // The TCP streams the VMs received, after coalescing, byte for byte.
  expect(r.streams?.length).toBe(r.conversations.tcp.length);
  for (const [i, s] of (r.streams ?? []).entries()) {
    const t = tsharkFollow(file, i);
    expect(t.aToB.length).toBeGreaterThan(0);
    expect(s.aToB).toBe(t.aToB);
    expect(s.bToA).toBe(t.bToA);
  }
  return r;
}

describe.skipIf(skip)("real captures: hvlab net replay agrees with tshark", () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "hvlab-capture-"));
    ip("netns", "add", nsA);
    ip("netns", "add", nsB);
    ip(
      "link",
      "add",
      `${tag}v0`,
      "netns",
      nsA,
      "type",
      "veth",
      "peer",
      "name",
      `${tag}v1`,
      "netns",
      nsB,
    );
    ip("-n", nsA, "addr", "add", "10.77.0.1/24", "dev", `${tag}v0`);
    ip("-n", nsB, "addr", "add", "10.77.0.2/24", "dev", `${tag}v1`);
    for (const [ns, dev] of [
      [nsA, `${tag}v0`],
      [nsB, `${tag}v1`],
      [nsA, "lo"],
      [nsB, "lo"],
    ] as const)
      ip("-n", ns, "link", "set", dev, "up");
  });
  afterAll(() => {
    for (const ns of [nsA, nsB]) {
      try {
        ip("netns", "del", ns);
      } catch {
        // Already gone: the veth pair goes with its namespaces.
      }
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(
    "two namespaces over veth: ICMP, IPv4 fragments, TCP and UDP",
    async () => {
      const file = join(dir, "veth.pcap");
      const stop = await capture(nsA, `${tag}v0`, file);
      const server = spawn(
        "ip",
        ["netns", "exec", nsB, process.execPath, PEER, "server", "10.77.0.2"],
        {
          stdio: ["pipe", "pipe", "inherit"],
        },
      );
      try {
        await waitFor(server, "stdout", "ready");
        inNs(nsA, ["ping", "-c", "4", "-i", "0.2", "10.77.0.2"]);
        inNs(nsA, [process.execPath, PEER, "client", "10.77.0.2", "200000", "50000"]);
      } finally {
        const exited = once(server, "exit");
        server.stdin?.end();
        await exited;
        await stop();
      }
      // What the capture must hold for the test to mean anything.
      const protocols = tshark(["-r", file, "-T", "fields", "-e", "frame.protocols"]);
      expect(protocols).toMatch(/icmp/);
      expect(
        tshark(["-r", file, "-Y", "ip.flags.mf == 1", "-T", "fields", "-e", "frame.number"]).trim(),
      ).not.toBe("");
      const r = agreesWithTshark(file);
      expect(r.conversations.tcp.length).toBe(1);
      expect(r.conversations.udp.length).toBe(1);
      expect(r.streams?.[0]?.aToB.length).toBe(200_000 * 2);
      expect(r.streams?.[0]?.bToA.length).toBe(50_000 * 2);
      // Validating as captured: what fails is what offload left partial.
      const validated = replay(file);
      expect(validated.checksums.notValid).toBe(validated.checksums.partial);
      expect(validated.summary.badChecksum).toBeLessThanOrEqual(validated.checksums.notValid);
    },
    DEADLINE_MS * 4,
  );

  it(
    "a capture of loopback: partial checksums, frames over 1514 bytes",
    async () => {
      const file = join(dir, "lo.pcap");
      const stop = await capture(nsA, "lo", file);
      try {
        inNs(nsA, ["ping", "-c", "4", "-i", "0.2", "127.0.0.1"]);
        inNs(nsA, [process.execPath, PEER, "loopback", "127.0.0.1", "300000", "80000"]);
      } finally {
        await stop();
      }
      const r = agreesWithTshark(file);
      expect(r.streams?.[0]?.aToB.length).toBe(300_000 * 2);
      // Loopback never fills the checksums the stack left to offload.
      const validated = replay(file);
      expect(validated.checksums.partial).toBeGreaterThan(0);
      expect(validated.checksums.notValid).toBe(validated.checksums.partial);
      expect(validated.summary.badChecksum).toBe(validated.checksums.notValid);
      const trusted = replay(file, "--checksums", "trust");
      expect(trusted.summary.badChecksum).toBe(0);
      expect(trusted.checksums.notValid).toBe(validated.checksums.notValid);
    },
    DEADLINE_MS * 4,
  );
});
