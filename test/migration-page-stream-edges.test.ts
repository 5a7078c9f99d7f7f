import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import { ENCODE_STATS_BYTES, PAGE_SCRATCH_BYTES, PageKernel } from "../src/wasm/page.js";

/*
 * The page stream decoder at its exact edges (QEMU's migration/ram.c and
 * migration/xbzrle.c): a record for the page just past guest RAM is refused
 * before anything is written, and an XBZRLE encoding whose unchanged run
 * after the first is empty is malformed (xbzrle_decode_buffer refuses it).
 */

const PAGE = 4096;
const PAGES = 4;
const layout = new MemoryLayout();
const kernel = PageKernel.on(layout.memory, layout.allocate("scratch", PAGE_SCRATCH_BYTES));
const stream = layout.allocate("stream", 2 * PAGE);

function writeStream(bytes: number[]): number {
  new Uint8Array(layout.memory.buffer, stream.offset, bytes.length).set(bytes);
  return bytes.length;
}

function be64(value: number): number[] {
  const out = new Array<number>(8).fill(0);
  let v = BigInt(value);
  for (let i = 7; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

const FLAG_ZERO = 0x02;
const FLAG_XBZRLE = 0x40;

describe("page stream edges", () => {
  it("refuses a record for the page just past RAM, and writes nothing there", () => {
    const dst = layout.allocate("dst", PAGES * PAGE, 4096);
    // The bytes just past the destination's RAM: a write past its end lands there.
    const slack = new Uint8Array(layout.memory.buffer, dst.offset + PAGES * PAGE, 16);
    slack.fill(0xaa);
    // A ZERO record (fill byte 0x55) for page PAGES - 1 is taken, for page PAGES refused.
    const last = writeStream([...be64((PAGES - 1) * PAGE + FLAG_ZERO), 0x55]);
    expect(kernel.decodePages(stream, last, dst, 12)).toBe(1);
    const past = writeStream([...be64(PAGES * PAGE + FLAG_ZERO), 0x55]);
    expect(() => kernel.decodePages(stream, past, dst, 12)).toThrow();
    expect([...slack].every((b) => b === 0xaa)).toBe(true);
  });

  it("takes a PAGE record that exactly fills the packet, and not one more", () => {
    const ram = layout.allocate("ram-cap", PAGES * PAGE, 4096);
    new Uint8Array(layout.memory.buffer, ram.offset, PAGES * PAGE).fill(0x5a);
    const list = layout.allocate("list-cap", 16, 4);
    new Uint32Array(layout.memory.buffer, list.offset, 4).set([0, 1, 2, 3]);
    const stats = layout.allocate("stats-cap", ENCODE_STATS_BYTES, 8);
    // Two records (8-byte header and the page each) fill this packet exactly.
    for (const [bytes, want] of [
      [2 * (8 + PAGE), 2],
      [2 * (8 + PAGE) - 1, 1],
    ] as const) {
      const out = layout.allocate(`out-cap-${bytes}`, bytes, 8);
      const job = { ram, pageShift: 12, list, listStart: 0, count: 4, out, zeroPages: true, stats };
      expect(kernel.encodePages(job)).toBe(want);
    }
  });

  it("refuses an XBZRLE encoding whose second unchanged run is empty", () => {
    const dst = layout.allocate("dst-x", PAGES * PAGE, 4096);
    // runs: unchanged 1, changed 1 (byte 9), unchanged 0 (malformed), changed 1 (byte 9)
    const encoded = [1, 1, 9, 0, 1, 9];
    const good = [1, 1, 9];
    const record = (e: number[]) => [...be64(FLAG_XBZRLE), 1, 0, e.length, ...e];
    expect(kernel.decodePages(stream, writeStream(record(good)), dst, 12)).toBe(1);
    expect(() => kernel.decodePages(stream, writeStream(record(encoded)), dst, 12)).toThrow();
  });
});
