/*
 * The destination host of a content-mode migration
 * (src/migration/destination.ts): a VM with no device state, the hash
 * slots it starts a run with, and the first page that differs.
 */
import { describe, expect, it } from "vitest";
import { Destination, firstMismatch } from "../src/migration/destination.js";
import { PACKET_BYTES } from "../src/migration/in-process-link.js";

const MiB = 1024 ** 2;

describe("a destination without device state", () => {
  // --device-state 0: nothing is laid out for it, an empty blob is received
  // as it is, and only an empty blob equals it.
  it("holds none, receives an empty blob, and equals only an empty one", () => {
    const d = new Destination(MiB, 12, PACKET_BYTES, 0);
    expect(d.deviceState).toBeUndefined();
    d.receiveDeviceState(new Uint8Array(0));
    expect(d.deviceStateEquals(new Uint8Array(0))).toBe(true);
    expect(d.deviceStateEquals(new Uint8Array([1]))).toBe(false);
  });

  it("with device state, equals the blob it received and no other", () => {
    const d = new Destination(MiB, 12, PACKET_BYTES, 4);
    d.receiveDeviceState(new Uint8Array([1, 2, 3, 4]));
    expect(d.deviceStateEquals(new Uint8Array([1, 2, 3, 4]))).toBe(true);
    expect(d.deviceStateEquals(new Uint8Array([1, 2, 3, 5]))).toBe(false);
  });
});

describe("the hash slots", () => {
  // Cleared, every slot is all ones where the source's table starts all
  // zeros: a page the decoder never wrote cannot compare equal.
  it("clearing sets every page's slot to all ones", () => {
    const d = new Destination(MiB, 12, PACKET_BYTES, 0);
    d.clearHashes();
    const slots = d.recordedHashes();
    expect(slots.length).toBe(MiB / 4096);
    expect(slots.every((h) => h === 0xffff_ffff_ffff_ffffn)).toBe(true);
  });
});

describe("the first mismatch", () => {
  // The report names the first differing page and both sides' hashes.
  it("names the first page that differs with both hashes, and null for equal tables", () => {
    const source = BigUint64Array.of(5n, 6n, 7n, 8n);
    const destination = BigUint64Array.of(5n, 6n, 9n, 10n);
    expect(firstMismatch(source, destination)).toEqual({
      page: 2,
      sourceHash: 7n,
      destinationHash: 9n,
    });
    expect(firstMismatch(source, BigUint64Array.from(source))).toBeNull();
  });
});
