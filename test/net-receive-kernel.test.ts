import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { Region } from "../src/memory/region.js";
import { buildFrame, buildHeaders, type FrameSpec, timestampOption } from "../src/net/build.js";
import { TCP_FLAGS } from "../src/net/frame.js";
import { Segmenter } from "../src/net/lso.js";
import { ReceiveRing } from "../src/net/ring.js";
import { macNumber } from "../src/net/vmq.js";
import { internetChecksumOracle, onesSumOracle } from "../src/oracle/checksum.js";
import { receiveBatchOracle } from "../src/oracle/receive.js";
import { RECEIVE_SWITCH_LOOKUP, ReceiveKernel, type SwitchTable } from "../src/wasm/receive.js";

/*
 * The receive kernel (assembly/receive.ts) against its oracle
 * (src/oracle/receive.ts, the frame-at-a-time receive path): on random
 * traffic of segmented TCP and UDP sends, IPv4 and IPv6 (with options and
 * extension headers), VLAN tags, fragments, ICMP, non-IP frames, padding,
 * truncated and corrupted frames, broadcasts and unknown MACs, laid at
 * unaligned offsets, both write the same bytes into every ring and count
 * the same.
 */

const layout = new MemoryLayout();
const memory = layout.memory;
const kernel = ReceiveKernel.on(memory);
const segmenter = new Segmenter(new MemoryLayout(), 16 * 1024);
const FRAMES_BYTES = 192 * 1024;
const frames = layout.allocate("test.rx.frames", FRAMES_BYTES);
const MAX_FRAMES = 512;
const table = layout.allocate("test.rx.table", MAX_FRAMES * 8);
const work = layout.allocate("test.rx.work", MAX_FRAMES * 2 * 8);
const scratch = layout.allocate(
  "test.rx.scratch",
  64 +
    ReceiveKernel.scratchBytes(MAX_FRAMES * 2, 4, [
      [1, -1, 0],
      [1, -1, 1],
      [1, -1, 2],
      [1, -1, 3],
      [2, -1, 3],
      [2, -1, 3],
    ]),
);
const RINGS = 4;
const RING_BYTES = 2 * 1024 * 1024;
const kernelRings = Array.from({ length: RINGS }, (_, i) =>
  layout.allocate(`test.rx.kernel${i}`, RING_BYTES),
);
const oracleRings = Array.from({ length: RINGS }, (_, i) =>
  layout.allocate(`test.rx.oracle${i}`, RING_BYTES),
);

const VM_MACS = ["00:15:5d:00:01:00", "00:15:5d:00:01:01", "00:15:5d:00:01:02"];
const DESTINATIONS = [...VM_MACS, "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:fb", "00:15:5d:00:09:09"];

function be16(b: Uint8Array, at: number): number {
  return ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);
}

/** Rewrites an IPv4 header's checksum after an edit (a valid frame, edited on purpose). */
function fixIpv4(frame: Uint8Array, l3: number): void {
  const ihl = ((frame[l3] ?? 0) & 0x0f) * 4;
  frame[l3 + 10] = 0;
  frame[l3 + 11] = 0;
  const sum = internetChecksumOracle(frame, l3, ihl);
  frame[l3 + 10] = sum >>> 8;
  frame[l3 + 11] = sum & 0xff;
}

/** Inserts an IPv6 fragment header (RFC 8200 section 4.5) after the fixed header. */
function ipv6Fragment(frame: Uint8Array, l3: number, offsetField: number): Uint8Array {
  if (frame.length < l3 + 40) return frame;
  const out = new Uint8Array(frame.length + 8);
  out.set(frame.subarray(0, l3 + 40));
  out.set(frame.subarray(l3 + 40), l3 + 48);
  const next = frame[l3 + 6] ?? 0;
  out[l3 + 6] = 44;
  const payloadLength = be16(frame, l3 + 4) + 8;
  out[l3 + 4] = payloadLength >>> 8;
  out[l3 + 5] = payloadLength & 0xff;
  out.set([next, 0, offsetField >>> 8, offsetField & 0xff, 0, 0, 0x12, 0x34], l3 + 40);
  return out;
}

/**
 * Inserts an IPv6 routing header of type 2 (RFC 6275 section 6.4: one
 * address, segments left 1) after the fixed header and rewrites the
 * transport checksum for the pseudo-header's final destination (RFC 8200
 * section 8.1), the routing header's address.
 */
function ipv6Routing(frame: Uint8Array, l3: number, seed: number): Uint8Array {
  if (frame.length < l3 + 40) return frame;
  const out = new Uint8Array(frame.length + 24);
  out.set(frame.subarray(0, l3 + 40));
  out.set(frame.subarray(l3 + 40), l3 + 64);
  const next = frame[l3 + 6] ?? 0;
  out[l3 + 6] = 43;
  const payloadLength = be16(frame, l3 + 4) + 24;
  out[l3 + 4] = payloadLength >>> 8;
  out[l3 + 5] = payloadLength & 0xff;
  const final = Uint8Array.from({ length: 16 }, (_, i) => (seed * 7 + i * 13) & 0xff);
  out.set([next, 2, 2, 1, 0, 0, 0, 0], l3 + 40);
  out.set(final, l3 + 48);
  const l4 = l3 + 64;
  const end = l3 + 40 + payloadLength;
  const at = next === 6 ? l4 + 16 : next === 17 ? l4 + 6 : -1;
  if (at < 0 || end > out.length) return out;
  out[at] = 0;
  out[at + 1] = 0;
  const length = end - l4;
  let sum = onesSumOracle(out, l3 + 8, 16, 0);
  sum = onesSumOracle(out, l3 + 48, 16, sum);
  sum = onesSumOracle(Uint8Array.of(0, next, length >>> 8, length & 0xff), 0, 4, sum);
  const checksum = ~onesSumOracle(out, l4, length, sum) & 0xffff || 0xffff;
  out[at] = checksum >>> 8;
  out[at + 1] = checksum & 0xff;
  return out;
}

const flowArb = fc.record({
  ipVersion: fc.constantFrom(4 as const, 6 as const),
  udp: fc.boolean(),
  vlan: fc.option(fc.integer({ min: 1, max: 4094 }), { nil: undefined }),
  dst: fc.integer({ min: 0, max: DESTINATIONS.length - 1 }),
  port: fc.integer({ min: 1, max: 65_535 }),
  options: fc.boolean(),
  mss: fc.integer({ min: 64, max: 1400 }),
  // Whole segments and a remainder (0: the last segment is full too).
  segments: fc.integer({ min: 0, max: 4 }),
  remainder: fc.constantFrom(0, 0, 1, 37, 500),
  sends: fc.integer({ min: 1, max: 3 }),
  seq: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  id: fc.integer({ min: 0, max: 0xffff }),
  ipId: fc.constantFrom("increment" as const, "fixed" as const, "wrap15" as const),
  fin: fc.boolean(),
  cwr: fc.boolean(),
});

type Flow = typeof flowArb extends fc.Arbitrary<infer T> ? T : never;

function flowFrames(flow: Flow): Uint8Array[] {
  const payloadLength = Math.min(flow.segments * flow.mss + flow.remainder, 6000);
  const payload = Uint8Array.from({ length: payloadLength }, (_, i) => (i * 31 + flow.port) & 0xff);
  const out: Uint8Array[] = [];
  let seq = flow.seq;
  for (let send = 0; send < flow.sends; send++) {
    const last = send === flow.sends - 1;
    const spec: FrameSpec = {
      ethernet: {
        dst: DESTINATIONS[flow.dst] ?? "ff:ff:ff:ff:ff:ff",
        src: "00:15:5d:ff:00:01",
        ...(flow.vlan !== undefined ? { vlan: flow.vlan } : {}),
      },
      ip:
        flow.ipVersion === 4
          ? {
              version: 4,
              src: "10.1.2.3",
              dst: "10.9.8.7",
              id: (flow.id + send * 97) & (flow.ipId === "wrap15" ? 0x7fff : 0xffff),
              ...(flow.options ? { options: Uint8Array.of(1, 1, 1, 0) } : {}),
            }
          : {
              version: 6,
              src: "fd00::1",
              dst: "fd00::2",
              ...(flow.options ? { extensions: [{ type: 0, options: new Uint8Array(6) }] } : {}),
            },
      l4: flow.udp
        ? { kind: "udp", srcPort: flow.port, dstPort: 4000 }
        : {
            kind: "tcp",
            srcPort: flow.port,
            dstPort: 445,
            seq,
            flags:
              TCP_FLAGS.ACK |
              TCP_FLAGS.PSH |
              (flow.fin && last ? TCP_FLAGS.FIN : 0) |
              (flow.cwr && send === 0 ? TCP_FLAGS.CWR : 0),
            ...(flow.options ? { options: timestampOption(7, 9) } : {}),
          },
    };
    if (payloadLength === 0 || flow.udp) out.push(buildFrame(spec, payload));
    else {
      const { bytes: template } = buildHeaders(spec, payload.length);
      const segmented = segmenter.segment(template, payload, {
        offload: "lsov2",
        mtu: 1500,
        mss: flow.mss,
        ipId: flow.ipId,
      });
      out.push(...segmenter.copyFrames(segmented));
    }
    seq = (seq + payloadLength) >>> 0;
  }
  return out;
}

const editArb = fc.record({
  at: fc.nat(),
  kind: fc.constantFrom(
    "none",
    "none",
    "none",
    "flip",
    "truncate",
    "pad",
    "fragment",
    "icmp",
    "not-ip",
    "duplicate",
    "udp-zero",
    "swap",
    "routing",
    "scramble",
  ),
  value: fc.integer({ min: 0, max: 0xffff }),
});

/** Applies an edit to frame `i` of the list (in place). */
function edit(list: Uint8Array[], e: { at: number; kind: string; value: number }): void {
  if (list.length === 0) return;
  const i = e.at % list.length;
  const f = list[i] as Uint8Array;
  const tagged = be16(f, 12) === 0x8100;
  const l3 = tagged ? 18 : 14;
  const etherType = be16(f, l3 - 2);
  switch (e.kind) {
    case "flip": {
      const copy = f.slice();
      const at = e.value % copy.length;
      copy[at] = (copy[at] ?? 0) ^ (1 << (e.value % 8));
      list[i] = copy;
      break;
    }
    case "truncate":
      list[i] = f.slice(0, e.value % f.length);
      break;
    case "pad": {
      const copy = new Uint8Array(f.length + 1 + (e.value % 40));
      copy.set(f);
      list[i] = copy;
      break;
    }
    case "fragment": {
      if (etherType === 0x0800) {
        const copy = f.slice();
        // MF, or a non-zero offset: a fragment whose transport checksum is not checked.
        copy[l3 + 6] = e.value & 1 ? 0x20 : 0x00;
        copy[l3 + 7] = e.value & 1 ? 0 : 0x10;
        fixIpv4(copy, l3);
        list[i] = copy;
      } else if (etherType === 0x86dd) list[i] = ipv6Fragment(f, l3, e.value & 0xfff9);
      break;
    }
    case "icmp": {
      if (etherType === 0x0800) {
        const copy = f.slice();
        copy[l3 + 9] = 1;
        fixIpv4(copy, l3);
        list[i] = copy;
      } else if (etherType === 0x86dd) {
        const copy = f.slice();
        copy[l3 + 6] = 58;
        list[i] = copy;
      }
      break;
    }
    case "not-ip": {
      const copy = f.slice();
      copy[l3 - 2] = 0x08;
      copy[l3 - 1] = 0x06;
      list[i] = copy;
      break;
    }
    case "duplicate":
      list.splice(i, 0, f);
      break;
    case "bad-copy": {
      // A corrupted copy of the frame ahead of it: when it cannot follow on,
      // it ends the group before it, which without it would take the frame.
      const copy = f.slice();
      const at = e.value % copy.length;
      copy[at] = (copy[at] ?? 0) ^ (1 << (e.value % 8));
      list.splice(i, 0, copy);
      break;
    }
    case "udp-zero": {
      // RFC 768: an IPv4 UDP checksum of zero means none was computed.
      if (etherType === 0x0800 && f[l3 + 9] === 17) {
        const copy = f.slice();
        const l4 = l3 + ((copy[l3] ?? 0) & 0x0f) * 4;
        copy[l4 + 6] = 0;
        copy[l4 + 7] = 0;
        list[i] = copy;
      }
      break;
    }
    case "routing":
      if (etherType === 0x86dd) list[i] = ipv6Routing(f, l3, e.value);
      break;
    case "scramble": {
      // Eight bytes of the headers overwritten: lengths, versions, IHL,
      // data offsets and extension chains that do not hold together.
      const copy = f.slice();
      for (let k = 0; k < 8; k++) {
        const at = 12 + ((e.value + k * 11) % 70);
        if (at < copy.length) copy[at] = (e.value * (k + 3)) & 0xff;
      }
      list[i] = copy;
      break;
    }
    case "swap":
      if (i + 1 < list.length) {
        list[i] = list[i + 1] as Uint8Array;
        list[i + 1] = f;
      }
      break;
  }
}

const caseArb = fc.record({
  flows: fc.array(flowArb, { minLength: 1, maxLength: 8 }),
  picks: fc.array(fc.nat(), { minLength: 0, maxLength: 60 }),
  edits: fc.array(editArb, { maxLength: 12 }),
  gaps: fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 16 }),
  routing: fc.constantFrom("queues", "lookup", "mixed"),
  coalesce: fc.boolean(),
  deliverBad: fc.boolean(),
  trust: fc.boolean(),
  maxCoalesce: fc.constantFrom(65_535, 3000, 70_000),
  slots: fc.constantFrom(1, 3, 64, 512),
  slotBytes: fc.constantFrom(64, 1024, 8192, 65_560),
  first: fc.integer({ min: 0, max: 5 }),
  junk: fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 3 }),
  duplicateMac: fc.boolean(),
  sameEntryTwice: fc.boolean(),
  vlanVm: fc.option(fc.integer({ min: 1, max: 4094 }), { nil: undefined }),
});

/** A case: caseArb's, or a targeted one with edits of its own kinds (see edit()). */
type Case = Omit<typeof caseArb extends fc.Arbitrary<infer T> ? T : never, "edits"> & {
  edits: readonly { at: number; kind: string; value: number }[];
};

/** Lays the case's traffic out in the receive buffer, its table and a work list. */
function layOut(c: Case): { count: number; switchTable: SwitchTable } {
  // Each flow's frames in order; picks interleave the flows' frames.
  const queues = c.flows.map(flowFrames);
  const list: Uint8Array[] = [];
  const next = queues.map(() => 0);
  for (const pick of c.picks) {
    const q = pick % queues.length;
    const n = next[q] ?? 0;
    const frame = queues[q]?.[n];
    if (frame) {
      list.push(frame);
      next[q] = n + 1;
    }
  }
  for (const [q, rest] of queues.entries()) list.push(...rest.slice(next[q] ?? 0));
  for (const e of c.edits) edit(list, e);
  const bytes = frames.bytes(memory);
  bytes.fill(0xee);
  const tableWords = new Uint32Array(memory.buffer, table.offset, MAX_FRAMES * 2);
  let at = 0;
  let n = 0;
  for (const f of list) {
    const gap = c.gaps[n % c.gaps.length] ?? 0;
    if (n >= MAX_FRAMES - 8 || at + gap + f.length > FRAMES_BYTES) break;
    at += gap;
    bytes.set(f, at);
    tableWords[n * 2] = at;
    tableWords[n * 2 + 1] = f.length;
    at += f.length;
    n++;
  }
  // A few entries that lie outside the buffer.
  for (const [offset, length] of c.junk) {
    tableWords[n * 2] = offset % (2 * FRAMES_BYTES);
    tableWords[n * 2 + 1] = length % 70_000;
    n++;
  }
  const tableEntries = n;
  const vlanOf = (vm: number) => (vm === 1 && c.vlanVm !== undefined ? c.vlanVm : -1);
  const switchTable: [number, number, number][] = VM_MACS.map((mac, vm) => [
    macNumber(mac),
    vlanOf(vm),
    vm,
  ]);
  // One MAC reaching a second ring, or the same ring twice (its frames twice).
  if (c.duplicateMac) switchTable.push([macNumber(VM_MACS[0] as string), -1, 3]);
  if (c.sameEntryTwice) switchTable.push([macNumber(VM_MACS[2] as string), -1, 2]);
  const workWords = new Uint32Array(memory.buffer, work.offset, MAX_FRAMES * 2 * 2);
  for (let i = 0; i < c.first; i++) {
    workWords[i * 2] = 0;
    workWords[i * 2 + 1] = 2;
  }
  let count = 0;
  const put = (index: number, target: number) => {
    workWords[(c.first + count) * 2] = index;
    workWords[(c.first + count) * 2 + 1] = target;
    count++;
  };
  for (let i = 0; i < tableEntries; i++) {
    const dst = DESTINATIONS.findIndex((d) => macNumber(d) === macNumberAt(bytes, tableWords, i));
    const queue = dst >= 0 && dst < VM_MACS.length ? dst : -1;
    const lookup = c.routing === "lookup" || (c.routing === "mixed" && i % 3 === 0) || queue < 0;
    put(i, lookup ? RECEIVE_SWITCH_LOOKUP : queue);
  }
  // An index past the table and a ring that does not exist.
  put(tableEntries + 7, 0);
  put(0, RINGS + 2);
  return { count, switchTable };
}

function macNumberAt(bytes: Uint8Array, tableWords: Uint32Array, i: number): number {
  const offset = tableWords[i * 2] ?? 0;
  if (offset + 6 > bytes.length) return -1;
  let mac = 0;
  for (let k = 0; k < 6; k++) mac = mac * 256 + (bytes[offset + k] ?? 0);
  return mac;
}

function ringsOf(regions: readonly Region[], asked: number, slotBytes: number): ReceiveRing[] {
  const slots = Math.min(asked, Math.floor((RING_BYTES - 64) / slotBytes));
  return regions.map((region) => {
    const ring = new ReceiveRing(memory, region, slots, slotBytes);
    region.bytes(memory).fill(0);
    ring.reset();
    return ring;
  });
}

function runBoth(c: Case) {
  const { count, switchTable } = layOut(c);
  const options = {
    frames,
    table,
    work,
    first: c.first,
    count,
    switchTable,
    coalesce: c.coalesce,
    maxCoalesce: c.maxCoalesce,
    deliverBad: c.deliverBad,
    trustChecksums: c.trust,
  };
  // The scratch exactly as large as the job needs, a canary after it: the
  // kernel writes nothing past what its wrapper checked.
  const need = ReceiveKernel.scratchBytes(count, RINGS, switchTable);
  const exact = new Region({ name: "test.rx.exact", offset: scratch.offset, byteLength: need });
  const canary = new Uint8Array(memory.buffer, scratch.offset + need, 64);
  canary.fill(0xa5);
  const ours = kernel.receive({
    ...options,
    rings: ringsOf(kernelRings, c.slots, c.slotBytes),
    scratch: exact,
  });
  expect(canary.every((b) => b === 0xa5)).toBe(true);
  const theirs = receiveBatchOracle(memory, {
    ...options,
    rings: ringsOf(oracleRings, c.slots, c.slotBytes),
  });
  return { ours, theirs };
}

function expectRingsEqual(): void {
  for (let r = 0; r < RINGS; r++) {
    const a = (kernelRings[r] as Region).bytes(memory);
    const b = (oracleRings[r] as Region).bytes(memory);
    if (Buffer.compare(a, b) !== 0) {
      const at = a.findIndex((x, i) => x !== b[i]);
      expect.fail(`ring ${r} differs from the oracle's at byte ${at}`);
    }
  }
}

describe("receive kernel against the frame-at-a-time oracle", () => {
  it("writes the same rings and counts the same on random traffic", () => {
    let coalesced = 0;
    let lookups = 0;
    let bad = 0;
    let malformed = 0;
    fc.assert(
      fc.property(caseArb, (c) => {
        const { ours, theirs } = runBoth(c);
        expect(ours).toEqual(theirs);
        expectRingsEqual();
        coalesced += ours.coalescedSegments;
        lookups += ours.lookups;
        bad += ours.badChecksum;
        malformed += ours.malformed;
      }),
      { numRuns: 250, seed: 15 },
    );
    // The cases reached what they are for.
    expect(coalesced).toBeGreaterThan(0);
    expect(lookups).toBeGreaterThan(0);
    expect(bad).toBeGreaterThan(0);
    expect(malformed).toBeGreaterThan(0);
  });
});

/*
 * A frame that fails validation must neither join a group nor end one: the
 * oracle validates before it coalesces. These cases aim bit flips at what
 * decides a group, in TCP flows of full segments sent to the VMs' queues at
 * odd offsets: the sequence number and the IPv4 ID (a bad segment that does
 * not follow on, which would close the group before it) and the payload (a
 * bad piece inside a group), on a frame or on a corrupted copy put ahead of
 * it (without the copy, the group before it takes the frame).
 */
const groupEndArb = fc.record({
  flows: fc.array(
    flowArb.map((f) => ({
      ...f,
      ipVersion: 4 as const,
      udp: false,
      vlan: undefined,
      options: false,
      dst: f.dst % VM_MACS.length,
      segments: Math.max(f.segments, 3),
      remainder: 0 as const,
    })),
    { minLength: 1, maxLength: 3 },
  ),
  picks: fc.array(fc.nat(), { maxLength: 40 }),
  // Frame offsets: 14 Ethernet, 18 IPv4 ID, 38 TCP sequence, 54 payload.
  edits: fc.array(
    fc.record({
      at: fc.nat(),
      kind: fc.constantFrom("flip", "bad-copy"),
      value: fc.constantFrom(18, 19, 38, 39, 40, 41, 60, 101),
    }),
    { minLength: 1, maxLength: 3 },
  ),
  gaps: fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 4 }),
  routing: fc.constant("queues"),
  coalesce: fc.constant(true),
  deliverBad: fc.boolean(),
  trust: fc.constant(false),
  maxCoalesce: fc.constantFrom(65_535, 3000),
  slots: fc.constantFrom(3, 512),
  slotBytes: fc.constant(65_560),
  first: fc.integer({ min: 0, max: 5 }),
  junk: fc.constant([] as [number, number][]),
  duplicateMac: fc.constant(false),
  sameEntryTwice: fc.constant(false),
  vlanVm: fc.constant(undefined),
});

describe("receive kernel: a bad frame found just before its group is written", () => {
  it("writes the same rings as the oracle when the bad frame ends a group or sits inside one", () => {
    let bad = 0;
    let coalesced = 0;
    fc.assert(
      fc.property(groupEndArb, (c) => {
        const { ours, theirs } = runBoth(c);
        expect(ours).toEqual(theirs);
        expectRingsEqual();
        bad += ours.badChecksum;
        coalesced += ours.coalescedSegments;
      }),
      { numRuns: 300, seed: 15 },
    );
    expect(bad).toBeGreaterThan(0);
    expect(coalesced).toBeGreaterThan(0);
  });
});

describe("receive kernel wrapper: what lies outside its regions is refused before wasm runs", () => {
  const ring = { region: kernelRings[0] as Region, slots: 4, slotBytes: 1024 };
  const job = {
    frames,
    table,
    work,
    first: 0,
    count: 4,
    rings: [ring],
    switchTable: [] as SwitchTable,
    coalesce: true,
    maxCoalesce: 65_535,
    deliverBad: false,
    trustChecksums: false,
    scratch,
  };

  it("a work span past its region, a scratch too small or overlapping, a ring too small", () => {
    expect(() => kernel.receive({ ...job, first: MAX_FRAMES * 2 })).toThrow("work list");
    const small = layout.allocate("test.rx.small", 256);
    expect(() => kernel.receive({ ...job, scratch: small })).toThrow("receive scratch");
    expect(() => kernel.receive({ ...job, scratch: frames })).toThrow("overlaps");
    expect(() =>
      kernel.receive({ ...job, rings: [{ ...ring, slots: RING_BYTES / 1024 }] }),
    ).toThrow("receive ring");
    expect(() => kernel.receive({ ...job, rings: [{ ...ring, slotBytes: 100 }] })).toThrow(
      "multiple of 8",
    );
  });

  it("a switch entry naming a ring that does not exist, or a MAC or VLAN out of range", () => {
    expect(() => kernel.receive({ ...job, switchTable: [[1, -1, 1]] })).toThrow("ring 1");
    expect(() => kernel.receive({ ...job, switchTable: [[2 ** 48, -1, 0]] })).toThrow("48 bits");
    expect(() => kernel.receive({ ...job, switchTable: [[1, 4096, 0]] })).toThrow("VLAN");
  });
});
