import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { crc32c } from "../src/csv/checksum.js";
import {
  encodeFrame,
  type Frame,
  FrameReader,
  frameParts,
  HEADER_BYTES,
  MAX_PAYLOAD,
  Op,
  ProtocolError,
  REPLY,
  Status,
} from "../src/csv/protocol.js";
import { LunTarget } from "../src/csv/target.js";
import { MemoryFile } from "../src/storage/block-file.js";

// The block protocol on hostile input: the frame reader returns exactly the
// frames that were sent or throws a ProtocolError that names the frame's
// place in the stream; the target answers every well-framed request with a
// reply or a ProtocolError (which closes that connection only), never
// another exception, and keeps its LUN inside its bounds.

const RUNS = 100_000;

const frameArb = fc.record({
  type: fc.integer({ min: 0, max: 255 }),
  tag: fc.nat(),
  status: fc.integer({ min: 0, max: 255 }),
  payload: fc.uint8Array({ maxLength: 48 }),
});

describe("csv block protocol on hostile bytes", () => {
  it(`frame reader: ${RUNS} streams, cut anywhere and corrupted anywhere`, () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { maxLength: 4 }),
        fc.option(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { freq: 2 }),
        (frames, cuts, corruption) => {
          const encoded = frames.map((f) => encodeFrame(f.type, f.tag, f.payload, f.status));
          const stream = Buffer.concat(encoded);
          if (corruption) {
            const at = corruption[0] % stream.length;
            stream[at] = (stream[at] ?? 0) ^ corruption[1];
          }
          const points = [...new Set(cuts.map((c) => c % stream.length))].sort((a, b) => a - b);
          const reader = new FrameReader();
          const got: Frame[] = [];
          let last = 0;
          try {
            for (const p of [...points, stream.length]) {
              got.push(...reader.push(stream.subarray(last, p)));
              last = p;
            }
          } catch (error) {
            expect(error).toBeInstanceOf(ProtocolError);
            expect((error as Error).message).toMatch(/^frame at stream byte \d+: /);
            expect(corruption).not.toBeNull();
            return;
          }
          // Without an error every frame read is one that was sent (a flipped bit the
          // checks cannot see would have to collide both CRCs).
          if (!corruption) expect(got.length).toBe(frames.length);
          for (const [i, f] of got.entries()) {
            expect(f.tag).toBe(frames[i]?.tag);
            expect(Buffer.from(f.payload).equals(Buffer.from(frames[i]?.payload ?? []))).toBe(true);
          }
          expect(reader.pending).toBeLessThan(HEADER_BYTES + MAX_PAYLOAD);
        },
      ),
      { numRuns: RUNS, seed: 21 },
    );
  });

  it("a frame sent in pieces is byte for byte the frame encoded whole, and reads back whole", () => {
    fc.assert(
      fc.property(
        frameArb,
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 8 }),
        (f, parts, cuts) => {
          const whole = Buffer.concat(parts);
          const pieces = Buffer.concat(frameParts(f.type, f.tag, parts, f.status));
          expect(pieces.equals(encodeFrame(f.type, f.tag, whole, f.status))).toBe(true);
          // Read back from a stream cut anywhere: the payload is whole, in whatever pieces it came.
          const points = [...new Set(cuts.map((c) => c % pieces.length))].sort((a, b) => a - b);
          const reader = new FrameReader();
          const got: Frame[] = [];
          let last = 0;
          for (const p of [...points, pieces.length]) {
            got.push(...reader.push(pieces.subarray(last, p)));
            last = p;
          }
          expect(got).toHaveLength(1);
          expect(Buffer.from(got[0]?.payload ?? []).equals(whole)).toBe(true);
          expect(Buffer.concat(got[0]?.pieces ?? []).equals(whole)).toBe(true);
        },
      ),
      { numRuns: 20_000, seed: 23 },
    );
  });

  it("frame reader refuses an oversized length before a payload byte arrives", () => {
    const frame = encodeFrame(Op.write, 1, new Uint8Array(0));
    const view = new DataView(frame.buffer);
    view.setUint32(12, MAX_PAYLOAD + 1, true);
    view.setUint32(16, crc32c(frame.subarray(0, 16)), true);
    expect(() => new FrameReader().push(frame)).toThrow(
      /payload length: 1048641 is more than 1048640/,
    );
  });

  it(`target: ${RUNS} requests of any type and payload from registered and unregistered initiators`, async () => {
    const lunBytes = 64 * 1024;
    const file = new MemoryFile("/fuzz/lun", new Uint8Array(lunBytes), lunBytes);
    const target = new LunTarget(file, { durable: false });
    const types = [
      Op.read,
      Op.write,
      Op.flush,
      Op.reserveOut,
      Op.reserveIn,
      Op.login,
      Op.metadata,
      0,
      200,
    ];
    const requestArb = fc.record({
      who: fc.constantFrom("node-1", "node-2", "node-3"),
      type: fc.constantFrom(...types),
      offset: fc.oneof(fc.nat(lunBytes + 1024), fc.constant(2 ** 53), fc.nat()),
      length: fc.oneof(fc.nat(1024), fc.constant(2 ** 32 - 1)),
      action: fc.integer({ min: 0, max: 9 }),
      prType: fc.constantFrom(0, 1, 3, 5, 6, 7),
      key: fc.constantFrom(0n, 1n, 2n, 3n, 2n ** 64n - 1n),
      serviceKey: fc.constantFrom(0n, 1n, 2n, 3n),
      junk: fc.uint8Array({ maxLength: 24 }),
      shape: fc.constantFrom("proper", "junk"),
    });
    await fc.assert(
      fc.asyncProperty(requestArb, async (r) => {
        let payload: Uint8Array = r.junk;
        if (r.shape === "proper") {
          if (r.type === Op.read || r.type === Op.write) {
            const n = r.type === Op.write ? Math.min(r.length, 256) : r.length;
            payload = new Uint8Array(12 + (r.type === Op.write ? n : 0));
            const v = new DataView(payload.buffer);
            v.setBigUint64(0, BigInt(r.offset), true);
            v.setUint32(8, n, true);
          } else if (r.type === Op.reserveOut) {
            payload = new Uint8Array(20);
            const v = new DataView(payload.buffer);
            payload[0] = r.action;
            payload[1] = r.prType;
            v.setBigUint64(4, r.key, true);
            v.setBigUint64(12, r.serviceKey, true);
          } else if (r.type === Op.reserveIn) payload = Uint8Array.of(r.action);
        }
        const frame: Frame = { type: r.type, status: 0, tag: 7, payload };
        try {
          const reply = new FrameReader().push(Buffer.concat(await target.execute(r.who, frame)));
          expect(reply).toHaveLength(1);
          expect(reply[0]?.type).toBe(r.type | REPLY);
          expect(reply[0]?.tag).toBe(7);
          expect([Status.good, Status.checkCondition, Status.reservationConflict]).toContain(
            reply[0]?.status,
          );
        } catch (error) {
          if (!(error instanceof ProtocolError)) throw error;
        }
        expect(file.size()).toBe(lunBytes);
      }),
      { numRuns: RUNS, seed: 22 },
    );
    // The target's state is still coherent: every registered key is one of the keys used.
    for (const k of target.reservations.registeredKeys()) expect([1n, 2n, 3n]).toContain(k);
    expect(target.counters.writes + target.counters.reads).toBeGreaterThan(1000);
  });
});
