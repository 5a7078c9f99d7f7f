/*
 * The frame codec's own rules (src/migration/live/frame-codec.ts): what the
 * writer puts on the wire (the header check is the low 32 bits of XXH64 of
 * bytes 0 to 16, the digest XXH64 of the header and payload), its staging
 * slots and their limits, and what the reader counts, holds and refuses,
 * each refusal naming the frame, its type and the figure at fault.
 */
import { describe, expect, it } from "vitest";
import { MemoryLayout } from "../src/memory/layout.js";
import {
  FRAME_HEADER_BYTES,
  FrameError,
  FrameHeader,
  FrameType,
  MAX_FRAME_PAYLOAD,
} from "../src/migration/live/frame.js";
import { FrameReader, FrameWriter, stagingBytes } from "../src/migration/live/frame-codec.js";
import { xxh64Oracle } from "../src/oracle/stream.js";
import { TLS_PEER_OF_PLAIN } from "../src/transport/secure.js";
import { StreamKernel } from "../src/wasm/stream.js";

const MAX = 1024;

function setup() {
  const layout = new MemoryLayout();
  const kernel = StreamKernel.on(layout.memory, layout.allocate("scratch", 64));
  return { layout, kernel, memory: layout.memory };
}

/** The FrameError `push` throws. */
function refusal(push: () => void): FrameError {
  try {
    push();
  } catch (error) {
    if (error instanceof FrameError) return error;
    throw error;
  }
  throw new Error("not refused");
}

describe("the frame writer", () => {
  it("stages 24 header bytes, the payload and an 8-byte digest", () => {
    expect(stagingBytes(0)).toBe(32);
    expect(stagingBytes(100)).toBe(132);
    expect(stagingBytes()).toBe(24 + MAX_FRAME_PAYLOAD + 8);
  });

  it("seals a header whose check is XXH64's low 32 bits of bytes 0 to 16, and digests the frame", () => {
    const { layout, kernel, memory } = setup();
    const w = new FrameWriter(memory, kernel, layout.allocate("slot", stagingBytes(MAX)), MAX);
    const payload = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff);
    const wire = w.frame(FrameType.verify, payload);
    expect(wire.length).toBe(24 + 300 + 8);
    const view = new DataView(wire.buffer, wire.byteOffset, wire.length);
    const check = xxh64Oracle(wire.subarray(0, 16)) & 0xffff_ffffn;
    expect(view.getUint32(FrameHeader.check, true)).toBe(Number(check));
    expect(view.getBigUint64(24 + 300, true)).toBe(xxh64Oracle(wire.subarray(0, 24 + 300)));
    expect([...wire.subarray(24, 324)]).toEqual([...payload]);
    expect(view.getUint32(FrameHeader.sequence, true)).toBe(0);
    expect(view.getUint8(FrameHeader.type)).toBe(FrameType.verify);
    expect(view.getUint32(FrameHeader.length, true)).toBe(300);
  });

  it("numbers its frames from 0 and counts them", () => {
    const { layout, kernel, memory } = setup();
    const w = new FrameWriter(memory, kernel, layout.allocate("slot", stagingBytes(MAX)), MAX);
    expect(w.frames).toBe(0);
    const sequences = [0, 1, 2].map(() => {
      const wire = w.frame(FrameType.pages);
      return wire.readUInt32LE(FrameHeader.sequence);
    });
    expect(sequences).toEqual([0, 1, 2]);
    expect(w.frames).toBe(3);
    expect(w.payloadStart).toBe(FRAME_HEADER_BYTES);
  });

  it("takes a payload of exactly its limit and refuses one byte more, a negative or fractional length", () => {
    const { layout, kernel, memory } = setup();
    const w = new FrameWriter(memory, kernel, layout.allocate("slot", stagingBytes(MAX)), MAX);
    expect(w.seal(FrameType.pages, MAX).length).toBe(24 + MAX + 8);
    for (const length of [MAX + 1, -1, 1.5, Number.NaN]) {
      expect(() => w.seal(FrameType.pages, length)).toThrowError(
        new RangeError(`frame payload of ${length} bytes is over the ${MAX}-byte limit`),
      );
    }
    // A refused frame takes no sequence number.
    expect(w.frames).toBe(1);
  });

  it("needs a slot, and each slot big enough for its largest frame", () => {
    const { layout, kernel, memory } = setup();
    expect(() => new FrameWriter(memory, kernel, [], MAX)).toThrowError(
      new RangeError("a frame writer needs a staging slot"),
    );
    const small = layout.allocate("small", stagingBytes(MAX) - 1);
    const big = layout.allocate("big", stagingBytes(MAX));
    expect(() => new FrameWriter(memory, kernel, [big, small], MAX)).toThrowError(
      /region 'small': frame staging at \[0, 1056\) is past the end \(1055 bytes\)/,
    );
    expect(() => new FrameWriter(memory, kernel, small, MAX)).toThrowError(/region 'small'/);
  });

  it("gives the payload a view at the slot's payload start", () => {
    const { layout, kernel, memory } = setup();
    const slot = layout.allocate("slot", stagingBytes(MAX));
    const w = new FrameWriter(memory, kernel, slot, MAX);
    const view = w.payload(4);
    expect(view.byteOffset).toBe(slot.offset + 24);
    expect(view.byteLength).toBe(4);
    view.setUint32(0, 0xdeadbeef, true);
    expect(w.seal(FrameType.accept, 4).readUInt32LE(24)).toBe(0xdeadbeef);
    // The slot's bounds, not the frame limit, bound the view: its 8 digest bytes are in the slot too.
    expect(w.payload(MAX + 8).byteLength).toBe(MAX + 8);
    expect(() => w.payload(MAX + 9)).toThrowError(
      /region 'slot': frame payload at \[24, 1057\) is past the end \(1056 bytes\)/,
    );
  });

  it("seal hands back a copy; sealInPlace the slot itself, busy until sent, then the next slot", async () => {
    const { layout, kernel, memory } = setup();
    const a = layout.allocate("a", stagingBytes(MAX));
    const b = layout.allocate("b", stagingBytes(MAX));
    const w = new FrameWriter(memory, kernel, [a, b], MAX);
    const copy = w.frame(FrameType.pages, Uint8Array.of(1, 2, 3));
    expect(copy.buffer).not.toBe(memory.buffer);
    expect(w.staging).toBe(a);
    w.payload(1).setUint8(0, 9);
    const first = w.sealInPlace(FrameType.pages, 1);
    expect(first.wire.buffer).toBe(memory.buffer);
    expect(first.wire.byteOffset).toBe(a.offset);
    expect(first.wire.length).toBe(24 + 1 + 8);
    expect(first.wire.readUInt32LE(FrameHeader.sequence)).toBe(1);
    // The next frame goes in the other slot.
    expect(w.staging).toBe(b);
    const second = w.sealInPlace(FrameType.pages, 0);
    expect(second.wire.byteOffset).toBe(b.offset);
    // Back to the first slot, which is busy until its frame is sent.
    expect(w.staging).toBe(a);
    expect(() => w.payload(1)).toThrowError("frame staging slot still being sent: await ready()");
    expect(() => w.seal(FrameType.pages, 0)).toThrowError(
      "frame staging slot still being sent: await ready()",
    );
    first.sent();
    await w.ready();
    expect(() => w.payload(1)).not.toThrow();
    expect(w.seal(FrameType.pages, 0).readUInt32LE(FrameHeader.sequence)).toBe(3);
    second.sent();
  });

  it("ready() waits for the slot's frame to be sent", async () => {
    const { layout, kernel, memory } = setup();
    const w = new FrameWriter(memory, kernel, layout.allocate("slot", stagingBytes(MAX)), MAX);
    const { sent } = w.sealInPlace(FrameType.pages, 0);
    let ready = false;
    const waiting = w.ready().then(() => {
      ready = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(ready).toBe(false);
    sent();
    await waiting;
    expect(ready).toBe(true);
  });
});

describe("the frame reader", () => {
  function pair(readerMax = MAX, writerMax = MAX) {
    const { layout, kernel, memory } = setup();
    const w = new FrameWriter(
      memory,
      kernel,
      layout.allocate("send", stagingBytes(writerMax)),
      writerMax,
    );
    const seen: { type: number; sequence: number; length: number; start: number }[] = [];
    const staging = layout.allocate("receive", stagingBytes(readerMax));
    const r = new FrameReader(
      memory,
      kernel,
      staging,
      (f) => {
        expect(f.staging).toBe(staging);
        seen.push({
          type: f.type,
          sequence: f.sequence,
          length: f.length,
          start: f.payloadStart,
        });
        expect(f.payload.byteOffset).toBe(staging.offset + 24);
        expect(f.payload.byteLength).toBe(f.length);
      },
      readerMax,
    );
    return { w, r, seen, layout, kernel, memory };
  }

  it("needs a staging region for its largest frame", () => {
    const { layout, kernel, memory } = setup();
    const small = layout.allocate("small", stagingBytes(MAX) - 1);
    expect(() => new FrameReader(memory, kernel, small, () => undefined, MAX)).toThrowError(
      /region 'small': frame staging at \[0, 1056\) is past the end/,
    );
  });

  it("counts frames and payload bytes, and knows when it holds part of a frame", () => {
    const { w, r, seen } = pair();
    const a = w.frame(FrameType.pages, new Uint8Array(10));
    const b = w.frame(FrameType.verify, new Uint8Array(20));
    expect(r.frames).toBe(0);
    expect(r.midFrame).toBe(false);
    r.push(a.subarray(0, 1));
    expect(r.midFrame).toBe(true);
    r.push(a.subarray(1, 24));
    expect(r.midFrame).toBe(true);
    r.push(a.subarray(24, a.length - 1));
    expect(r.midFrame).toBe(true);
    expect(seen).toEqual([]);
    r.push(a.subarray(a.length - 1));
    expect(r.midFrame).toBe(false);
    expect(r.frames).toBe(1);
    expect(r.bytes).toBe(10);
    r.push(b);
    expect(r.frames).toBe(2);
    expect(r.bytes).toBe(30);
    expect(seen).toEqual([
      { type: FrameType.pages, sequence: 0, length: 10, start: 24 },
      { type: FrameType.verify, sequence: 1, length: 20, start: 24 },
    ]);
  });

  it("takes two frames and a part of a third in one chunk", () => {
    const { w, r, seen } = pair();
    const wire = Buffer.concat([
      w.frame(FrameType.pages, new Uint8Array(5).fill(1)),
      w.frame(FrameType.pages, new Uint8Array(0)),
      w.frame(FrameType.pages, new Uint8Array(7).fill(3)),
    ]);
    r.push(wire.subarray(0, wire.length - 3));
    expect(seen.map((s) => s.length)).toEqual([5, 0]);
    expect(r.midFrame).toBe(true);
    r.push(wire.subarray(wire.length - 3));
    expect(seen.map((s) => s.length)).toEqual([5, 0, 7]);
  });

  it("refuses a frame over its own limit, naming the frame's type and both figures", () => {
    const { w, r } = pair(100, MAX);
    const ok = w.frame(FrameType.records, new Uint8Array(100));
    r.push(ok);
    const big = w.frame(FrameType.records, new Uint8Array(101));
    const e = refusal(() => r.push(big.subarray(0, 24)));
    expect(e.kind).toBe("length");
    expect(e.message).toBe(
      "frame 1 (records): payload of 101 bytes is over this side's 100-byte limit",
    );
  });

  it("refuses a header whose check does not match, before its payload", () => {
    const { w, r } = pair();
    const wire = Uint8Array.from(w.frame(FrameType.pages, new Uint8Array(4)));
    wire[FrameHeader.check] = (wire[FrameHeader.check] ?? 0) ^ 1;
    const e = refusal(() => r.push(wire.subarray(0, 24)));
    expect(e.kind).toBe("header");
    expect(e.message).toBe("frame 0: header check failed, the header is corrupted");
  });

  it("refuses a payload whose digest does not match, naming the frame, its type and its length", () => {
    const { w, r, seen } = pair();
    r.push(w.frame(FrameType.pages, new Uint8Array(4)));
    const wire = Uint8Array.from(w.frame(FrameType.deviceState, new Uint8Array(40)));
    wire[30] = 1;
    const e = refusal(() => r.push(wire));
    expect(e.kind).toBe("digest");
    expect(e.message).toBe(
      "frame 1 (deviceState): digest mismatch, 40 payload bytes corrupted in transit",
    );
    expect(seen.length).toBe(1);
    expect(r.frames).toBe(1);
    expect(r.bytes).toBe(4);
  });

  it("a flipped digest byte, even its last, fails the frame", () => {
    const { w, r } = pair();
    const wire = Uint8Array.from(w.frame(FrameType.pages, new Uint8Array(4)));
    wire[wire.length - 1] = (wire[wire.length - 1] ?? 0) ^ 0x80;
    expect(refusal(() => r.push(wire)).kind).toBe("digest");
  });

  it("after a refusal, every push throws that same error, even an empty one", () => {
    const { r } = pair();
    const e = refusal(() => r.push(Uint8Array.of(0x47)));
    expect(refusal(() => r.push(new Uint8Array(0)))).toBe(e);
    expect(refusal(() => r.push(Uint8Array.of(0x48)))).toBe(e);
  });

  it("a handler's own error is not the reader's: the next frame is still taken", () => {
    const { layout, kernel, memory } = setup();
    const w = new FrameWriter(memory, kernel, layout.allocate("send", stagingBytes(MAX)), MAX);
    const seen: number[] = [];
    const r = new FrameReader(
      memory,
      kernel,
      layout.allocate("receive", stagingBytes(MAX)),
      (f) => {
        if (f.sequence === 0) throw new Error("the handler failed");
        seen.push(f.sequence);
      },
      MAX,
    );
    expect(() => r.push(w.frame(FrameType.pages))).toThrowError("the handler failed");
    r.push(w.frame(FrameType.pages));
    expect(seen).toEqual([1]);
    expect(r.frames).toBe(2);
  });

  it("a foreign first byte is refused at once, shown as sent; a TLS handshake is named as one", () => {
    const g = refusal(() => pair().r.push(Uint8Array.of(0x47)));
    expect(g.kind).toBe("foreign");
    expect(g.message).toBe(`the peer does not speak hvlab's migration protocol (it sent "G")`);
    // "HV" then a wrong third byte, pushed a byte at a time.
    const { r } = pair();
    r.push(Uint8Array.of(0x48));
    r.push(Uint8Array.of(0x56));
    const third = refusal(() => r.push(Uint8Array.of(0x21)));
    expect(third.message).toBe(
      `the peer does not speak hvlab's migration protocol (it sent "HV!")`,
    );
    // A TLS ClientHello's first bytes: handshake record (22), version 3.x.
    const tls = refusal(() => pair().r.push(Uint8Array.of(22, 3, 1, 0, 0xa5)));
    expect(tls.kind).toBe("foreign");
    expect(tls.message).toBe(TLS_PEER_OF_PLAIN);
  });

  it("a bad magic after the first frame is a corrupted stream, seen on its first wrong byte", () => {
    const { w, r } = pair();
    r.push(w.frame(FrameType.pages, new Uint8Array(4)));
    const e = refusal(() => r.push(Uint8Array.of(0x48, 0x56, 0x4c, 0x00)));
    expect(e.kind).toBe("header");
    expect(e.message).toBe("frame 1: bad magic, the stream is corrupted");
    // The magic is checked on each byte as it comes, before a whole header.
    const { r: r2, w: w2 } = pair();
    r2.push(w2.frame(FrameType.pages, new Uint8Array(0)));
    expect(refusal(() => r2.push(Uint8Array.of(0x00))).message).toBe(
      "frame 1: bad magic, the stream is corrupted",
    );
  });
});
