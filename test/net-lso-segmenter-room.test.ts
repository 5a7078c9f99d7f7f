import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { type BuiltHeaders, buildHeaders, type FrameSpec } from "../src/net/build.js";
import { SendError } from "../src/net/errors.js";
import {
  LSOV2_DEFAULT_MAX_SEND,
  MAX_SEGMENT_OUTPUT,
  Segmenter,
  type SendOptions,
} from "../src/net/lso.js";
import { segmentOracle } from "../src/oracle/segment.js";
import { expectSameFrames } from "./support/bytes.js";
import { frameSpec, TCP, V4, V6 } from "./support/net-frames.js";

/*
 * The Segmenter's room (NDIS LSO done over shared memory): a Segmenter for
 * sends of up to `maxSend` payload bytes lays out room for segments of 64
 * payload bytes or more with up to 256 bytes of headers each (maxSend/64 + 1
 * segments), its output starting 256 bytes past a 4 KiB boundary. A send
 * that fits that room, to the byte, uses it as laid out; a send of more
 * segments or more header bytes (a small MSS, IPv6 extension headers, RFC
 * 8200 section 4.3) lays out a larger output or table, only the one it
 * needs, numbered by growth; one send's output is at most 64 MiB. Every
 * send that is taken is segmented into exactly the TypeScript oracle's frames.
 */

const MAX = 3200; // room: 51 segment entries (408 bytes), 3200 + 51 * 256 = 16,256 output bytes

function payloadOf(n: number): Uint8Array {
  const p = new Uint8Array(n);
  let s = n;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    p[i] = s >>> 24;
  }
  return p;
}

/**
 * IPv6 TCP headers of `frameBytes` bytes in all: Ethernet 14, IPv6 40, one
 * hop-by-hop options header (Pad1 options), TCP 20.
 */
function v6Headers(frameBytes: number, payloadLength: number): BuiltHeaders {
  const hopByHop = frameBytes - 74;
  const spec: FrameSpec = frameSpec({
    ip: { ...V6, extensions: [{ type: 0, options: new Uint8Array(hopByHop - 2) }] },
  });
  const built = buildHeaders(spec, payloadLength);
  expect(built.bytes.length).toBe(frameBytes);
  return built;
}

/** Segments `payload` under `headers` and checks the frames against the oracle. */
function segmentAndCheck(
  segmenter: Segmenter,
  headers: BuiltHeaders,
  payload: Uint8Array,
  options: SendOptions & { mss: number },
): number {
  const send = segmenter.segment(headers.bytes, payload, options);
  const frames = segmenter.copyFrames(send);
  const oracle = segmentOracle(headers.bytes, payload, {
    l3: headers.l3,
    l4: headers.l4,
    ipv6: (headers.bytes[12] ?? 0) === 0x86,
    udp: false,
    mss: options.mss,
    idMode: options.ipId ?? "increment",
    cwrOnAll: false,
  });
  expectSameFrames(frames, oracle);
  expect(send.plan.outputBytes).toBe(frames.reduce((n, f) => n + f.length, 0));
  return frames.length;
}

function thrownMessage(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
  throw new Error("nothing was thrown");
}

describe("the Segmenter's first layout", () => {
  it("names its regions after the engine and sizes them for 64-byte segments of 256 header bytes", () => {
    const layout = new MemoryLayout();
    const s = new Segmenter(layout, MAX);
    expect(s.maxSend).toBe(MAX);
    expect([s.template.name, s.payload.name, s.output.name, s.table.name]).toEqual([
      "net.lso.template",
      "net.lso.payload",
      "net.lso.output",
      "net.lso.table",
    ]);
    expect([s.template.byteLength, s.payload.byteLength]).toEqual([512, MAX]);
    expect(s.output.byteLength).toBe(MAX + (MAX / 64 + 1) * 256);
    expect(s.table.byteLength).toBe((MAX / 64 + 1) * 8);
    expect(s.payload.offset % 4096).toBe(0);
    // The output starts 256 bytes past the 4 KiB boundary its region is laid out on.
    const raw = layout.get("net.lso.output");
    expect(s.output.offset).toBe(raw.offset + 256);
    expect(s.output.offset % 4096).toBe(256);
    expect(s.output.offset + s.output.byteLength).toBe(raw.offset + raw.byteLength);
  });

  it("takes a name for its regions and 256 KiB as the default largest send", () => {
    const s = new Segmenter(new MemoryLayout(), 100, "nic7");
    expect([s.template.name, s.payload.name, s.output.name, s.table.name]).toEqual([
      "nic7.template",
      "nic7.payload",
      "nic7.output",
      "nic7.table",
    ]);
    expect(s.payload.byteLength).toBe(100);
    const d = new Segmenter(new MemoryLayout());
    expect(d.maxSend).toBe(LSOV2_DEFAULT_MAX_SEND);
    expect(d.payload.byteLength).toBe(LSOV2_DEFAULT_MAX_SEND);
    expect(d.output.name).toBe("net.lso.output");
  });

  it("refuses a payload or template larger than its regions, naming which", () => {
    const s = new Segmenter(new MemoryLayout(), MAX);
    expect(thrownMessage(() => s.loadPayload(new Uint8Array(MAX + 1)))).toBe(
      `region 'net.lso.payload': payload at [0, ${MAX + 1}) is past the end (${MAX} bytes)`,
    );
    const t = buildHeaders(frameSpec({}), MAX + 1).bytes;
    expect(thrownMessage(() => s.plan(t, MAX + 1, { offload: "lsov1", mtu: 1500 }))).toBe(
      `region 'net.lso.payload': payload at [0, ${MAX + 1}) is past the end (${MAX} bytes)`,
    );
    const big = v6Headers(594, 100).bytes;
    expect(thrownMessage(() => s.plan(big, 100, { offload: "lsov2", mtu: 1500 }))).toBe(
      "region 'net.lso.template': template at [0, 594) is past the end (512 bytes)",
    );
  });
});

describe("the Segmenter's room for many small segments", () => {
  it("fits a send that fills the output and the table to the byte, then grows the output only", () => {
    const s = new Segmenter(new MemoryLayout(), MAX);
    const { output, table } = s;
    // 51 segments of MSS 61 with 258 header bytes: 51 * 258 + 3098 = 16,256 bytes, 408 of table.
    const exact = v6Headers(258, 3098);
    const plan = s.plan(exact.bytes, 3098, { offload: "lsov2", mtu: 1500, mss: 61 });
    expect([plan.segments, plan.outputBytes]).toEqual([51, output.byteLength]);
    expect(plan.segments * 8).toBe(table.byteLength);
    expect(
      segmentAndCheck(s, exact, payloadOf(3098), { offload: "lsov2", mtu: 1500, mss: 61 }),
    ).toBe(51);
    expect(s.output).toBe(output);
    expect(s.table).toBe(table);
    // The same 51 segments with 266 header bytes: 16,664 bytes, more than the output holds.
    const wider = v6Headers(266, 3098);
    expect(
      segmentAndCheck(s, wider, payloadOf(3098), { offload: "lsov2", mtu: 1500, mss: 61 }),
    ).toBe(51);
    expect([s.output.name, s.output.byteLength]).toEqual(["net.lso.output.1", 51 * 266 + 3098]);
    expect(s.output.offset % 4096).toBe(256);
    expect(s.table).toBe(table);
    expect(s.table.name).toBe("net.lso.table");
  });

  it("fills the output to the byte with 271 segments: grows the table only", () => {
    const s = new Segmenter(new MemoryLayout(), MAX);
    const { output } = s;
    // 271 segments of MSS 6 with 54 header bytes: 271 * 54 + 1622 = 16,256 bytes.
    const h = buildHeaders(frameSpec({}), 1622);
    expect(segmentAndCheck(s, h, payloadOf(1622), { offload: "lsov1", mtu: 1500, mss: 6 })).toBe(
      271,
    );
    expect(s.output).toBe(output);
    expect([s.table.name, s.table.byteLength]).toEqual(["net.lso.table.1", 271 * 8]);
  });

  it("grows the table, then both, naming each growth: MSS 1 up to the largest payload", () => {
    const layout = new MemoryLayout();
    const s = new Segmenter(layout, MAX);
    const { output } = s;
    const opts = { offload: "lsov1", mtu: 1500, mss: 1 } as const;
    const h200 = buildHeaders(frameSpec({ ip: { ...V4, id: 9 } }), 200);
    expect(segmentAndCheck(s, h200, payloadOf(200), opts)).toBe(200);
    expect(s.output).toBe(output);
    expect([s.table.name, s.table.byteLength]).toEqual(["net.lso.table.1", 1600]);
    const h = buildHeaders(frameSpec({ l4: { ...TCP, seq: 0xffffff00 } }), MAX);
    expect(segmentAndCheck(s, h, payloadOf(MAX), opts)).toBe(MAX);
    expect([s.output.name, s.output.byteLength]).toEqual(["net.lso.output.2", MAX * 55]);
    expect([s.table.name, s.table.byteLength]).toEqual(["net.lso.table.1.2", MAX * 8]);
    expect(layout.get("net.lso.output.2").offset + 256).toBe(s.output.offset);
    // A smaller send after the growth uses the grown room.
    const grown = { output: s.output, table: s.table };
    expect(segmentAndCheck(s, h200, payloadOf(200), opts)).toBe(200);
    expect(s.output).toBe(grown.output);
    expect(s.table).toBe(grown.table);
  });

  it("lays out one send's output of 64 MiB and refuses a byte more (no-room)", () => {
    const s = new Segmenter(new MemoryLayout(), (1 << 20) + 64);
    // 126 header bytes: IPv4 with 40 bytes of options, TCP with 32. At MSS 2,
    // 2^19 segments of 128 bytes are exactly 64 MiB.
    const spec = frameSpec({
      ip: { ...V4, options: new Uint8Array(40) },
      l4: { ...TCP, options: new Uint8Array(32) },
    });
    const options: SendOptions = { offload: "lsov2", mtu: 1500, mss: 2, maxSend: 1 << 21 };
    const t = buildHeaders(spec, 1 << 20).bytes;
    expect(t.length).toBe(126);
    const plan = s.plan(t, 1 << 20, options);
    expect(plan.outputBytes).toBe(MAX_SEGMENT_OUTPUT);
    expect([s.output.name, s.output.byteLength]).toEqual(["net.lso.output.1", MAX_SEGMENT_OUTPUT]);
    expect([s.table.name, s.table.byteLength]).toEqual(["net.lso.table.1", (1 << 19) * 8]);
    const over = (1 << 20) + 1;
    let error: unknown;
    try {
      s.plan(buildHeaders(spec, over).bytes, over, options);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SendError);
    const e = error as SendError;
    expect(e.code).toBe("no-room");
    const bytes = 524_289 * 126 + over;
    expect(e.message).toBe(
      `large send: 524289 segments (${bytes} bytes) are over the 67108864-byte limit of one send's output (no-room)`,
    );
    expect(s.output.name, "a refused send lays out nothing").toBe("net.lso.output.1");
  });
});
