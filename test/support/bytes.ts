import { expect } from "vitest";

/*
 * Byte-for-byte equality for large buffers and lists of frames. vitest's
 * `toEqual` walks a typed array element by element through its generic
 * equality (about 100 ms for 200 frames of 1,500 bytes), which made it most
 * of a property test's time; `Buffer.compare` checks the same bytes at
 * memory speed, and a failure still names where the two first differ.
 */

/** Fails unless `actual` holds exactly the bytes of `expected`; says where they differ. */
export function expectSameBytes(actual: Uint8Array, expected: Uint8Array, what = "bytes"): void {
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength);
  const b = Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength);
  if (a.length !== b.length) {
    expect.fail(`${what}: ${a.length} bytes, expected ${b.length}`);
  }
  if (Buffer.compare(a, b) !== 0) {
    const at = a.findIndex((x, i) => x !== b[i]);
    expect.fail(`${what}: byte ${at} is ${a[at]}, expected ${b[at]}`);
  }
}

/** Fails unless both lists hold the same number of frames, each with the same bytes. */
export function expectSameFrames(
  actual: readonly Uint8Array[],
  expected: readonly Uint8Array[],
): void {
  if (actual.length !== expected.length) {
    expect.fail(`${actual.length} frames, expected ${expected.length}`);
  }
  for (const [i, frame] of actual.entries()) {
    expectSameBytes(frame, expected[i] ?? new Uint8Array(0), `frame ${i}`);
  }
}
