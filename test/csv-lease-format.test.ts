import { describe, expect, it } from "vitest";
import { crc32c } from "../src/csv/checksum.js";
import { VolumeFormatError } from "../src/csv/errors.js";
import {
  CoordinatorLease,
  encodeLease,
  LEASE_MAGIC,
  LEASE_VERSION,
  type Lease,
  LeaseWatch,
  parseLease,
  TermUnprovenError,
} from "../src/csv/lease.js";
import { type Spoil, spoiledSector } from "./support/csv-sector.js";

// The lease sector's format (docs/csv.md, "The coordinator's lease"): each
// field at its offset, each refusal naming the field, its offset on the LUN
// and what was wrong, and the watch's use of the period the holder wrote.

const AT = 0x4_0000;
const lease: Lease = { node: 3, key: 0x7cb0_0000_0000_0003n, epoch: 9, renewal: 41, leaseMs: 500 };

/** A lease sector with `edit` applied to its bytes and its CRC-32C made right again. */
function edited(edit: Spoil): Uint8Array {
  return spoiledSector(encodeLease, lease, 508, edit);
}

/** The error parseLease throws for `bytes`, which must be a VolumeFormatError. */
function refusal(bytes: Uint8Array, offset = AT): VolumeFormatError {
  try {
    parseLease(bytes, offset);
  } catch (error) {
    expect(error).toBeInstanceOf(VolumeFormatError);
    return error as VolumeFormatError;
  }
  throw new Error("the sector was taken");
}

const at = (offset: number) => `at offset ${offset} (0x${offset.toString(16)})`;

describe("the lease sector, field by field", () => {
  it("lays each field at its offset, little-endian, and reads back what it wrote", () => {
    const bytes = encodeLease(lease);
    const view = new DataView(bytes.buffer);
    expect(new TextDecoder().decode(bytes.subarray(0, 8))).toBe(LEASE_MAGIC);
    expect(view.getUint32(8, true)).toBe(LEASE_VERSION);
    expect(view.getUint32(12, true)).toBe(3);
    expect(view.getBigUint64(16, true)).toBe(lease.key);
    expect(view.getBigUint64(24, true)).toBe(9n);
    expect(view.getBigUint64(32, true)).toBe(41n);
    expect(view.getUint32(40, true)).toBe(500);
    expect(bytes.subarray(44, 508).every((b) => b === 0)).toBe(true);
    expect(view.getUint32(508, true)).toBe(crc32c(bytes.subarray(0, 508)));
    expect(parseLease(bytes, AT)).toEqual(lease);
  });

  it("takes every field at both ends of its range", () => {
    for (const l of [
      { node: 1, key: 0n, epoch: 1, renewal: 1, leaseMs: 1 },
      {
        node: 16,
        key: 2n ** 64n - 1n,
        epoch: Number.MAX_SAFE_INTEGER,
        renewal: Number.MAX_SAFE_INTEGER,
        leaseMs: 0xffff_ffff,
      },
    ])
      expect(parseLease(encodeLease(l), AT)).toEqual(l);
  });

  it("reads a sector of zeros as no lease, and refuses one of another length", () => {
    expect(parseLease(new Uint8Array(512), AT)).toBeUndefined();
    const short = refusal(new Uint8Array(511), AT);
    expect(short.message).toBe(`lease ${at(AT)}: 511 bytes, not one sector`);
  });

  it("refuses each damaged field, naming it, its offset on the LUN and the value", () => {
    const torn = encodeLease(lease);
    torn[100] = 1;
    const crc = crc32c(torn.subarray(0, 508)).toString(16);
    const stored = new DataView(torn.buffer).getUint32(508, true).toString(16);
    expect(refusal(torn).message).toBe(`lease CRC-32C ${at(AT + 508)}: 0x${stored}, not 0x${crc}`);
    const cases: [(v: DataView, b: Uint8Array) => void, string][] = [
      [
        (_, b) => b.set(new TextEncoder().encode("HVCSLEAZ"), 0),
        `lease magic ${at(AT)}: not ${LEASE_MAGIC}`,
      ],
      [
        (v) => v.setUint32(8, 0x0102_0304, true),
        `lease version ${at(AT + 8)}: 16909060, not ${LEASE_VERSION}`,
      ],
      [
        (v) => v.setUint32(12, 0, true),
        `lease node ${at(AT + 12)}: 0 is not a node number 1 to 16`,
      ],
      [
        (v) => v.setUint32(12, 17, true),
        `lease node ${at(AT + 12)}: 17 is not a node number 1 to 16`,
      ],
      [
        (v) => v.setBigUint64(24, 0n, true),
        `lease epoch ${at(AT + 24)}: 0 is not an epoch from 1 to 2^53 - 1`,
      ],
      [
        (v) => v.setBigUint64(24, 2n ** 53n, true),
        `lease epoch ${at(AT + 24)}: 9007199254740992 is not an epoch from 1 to 2^53 - 1`,
      ],
      [
        (v) => v.setBigUint64(32, 0n, true),
        `lease renewal ${at(AT + 32)}: 0 is not a count from 1 to 2^53 - 1`,
      ],
      [
        (v) => v.setBigUint64(32, 2n ** 53n, true),
        `lease renewal ${at(AT + 32)}: 9007199254740992 is not a count from 1 to 2^53 - 1`,
      ],
      [
        (v) => v.setUint32(40, 0, true),
        `lease lease ms ${at(AT + 40)}: 0: a lease lasts at least 1 ms`,
      ],
      [(v) => v.setUint32(44, 1, true), `lease reserved ${at(AT + 44)}: must be 0`],
      [(_, b) => b.set([1], 507), `lease padding ${at(AT + 48)}: must be zeros`],
    ];
    for (const [edit, message] of cases) expect(refusal(edited(edit)).message).toBe(message);
  });
});

describe("the lease watch: a taker's view of the sector", () => {
  it("waits out the longer of its own period and the one the holder wrote", () => {
    const watch = new LeaseWatch();
    expect(watch.bytes).toBeUndefined();
    expect(watch.periodMs(200)).toBe(200);
    expect(watch.lapsed(1e9, 200)).toBe(false);
    const held = encodeLease({ ...lease, leaseMs: 900 });
    watch.observe(held, 1000);
    expect(watch.bytes).toEqual(held);
    expect(watch.periodMs(200)).toBe(900);
    expect(watch.periodMs(1200)).toBe(1200);
    expect(watch.lapsed(1899, 200)).toBe(false);
    expect(watch.lapsed(1900, 200)).toBe(true);
    // Bytes that do not parse as a lease give no period of their own.
    const torn = held.slice();
    torn[200] = 7;
    expect(watch.periodMs(200, torn)).toBe(200);
    expect(watch.periodMs(200, new Uint8Array(512))).toBe(200);
  });

  it("counts the period from the first read of the bytes it still sees, and starts again when they change", () => {
    const watch = new LeaseWatch();
    const first = encodeLease({ ...lease, renewal: 1 });
    expect(watch.unchanged(first)).toBe(false);
    watch.observe(first, 100);
    expect(watch.unchanged(first)).toBe(true);
    watch.observe(first.slice(), 400);
    expect(watch.lapsed(600, 500)).toBe(true);
    const next = encodeLease({ ...lease, renewal: 2 });
    expect(watch.unchanged(next)).toBe(false);
    // One byte shorter is not the same sector either.
    expect(watch.unchanged(first.subarray(0, 511))).toBe(false);
    watch.observe(next, 700);
    expect(watch.unchanged(next)).toBe(true);
    expect(watch.lapsed(1199, 500)).toBe(false);
    expect(watch.lapsed(1200, 500)).toBe(true);
    // A read cut short is not the sector that follows it either.
    const cut = new LeaseWatch();
    cut.observe(next.subarray(0, 511), 0);
    expect(cut.unchanged(next)).toBe(false);
  });
});

describe("the coordinator's lease", () => {
  it("names its error for what it is when the term cannot be proven", () => {
    const error = new TermUnprovenError("renewal refused");
    expect(error.name).toBe("TermUnprovenError");
    expect(String(error)).toBe("TermUnprovenError: renewal refused");
  });

  it("takes a period from 1 ms to 2^32 - 1 ms and refuses one past either end, saying what it needs", () => {
    const sector = { write: async () => {} };
    const holder = { node: 1, key: 1n, epoch: 1 };
    expect(new CoordinatorLease(sector, AT, holder, 1, 1).leaseMs).toBe(1);
    expect(new CoordinatorLease(sector, AT, holder, 0xffff_ffff, 100).leaseMs).toBe(0xffff_ffff);
    for (const bad of [0, 0x1_0000_0000, 1.5])
      expect(() => new CoordinatorLease(sector, AT, holder, bad, 100)).toThrow(
        `lease of ${bad} ms: must be a whole number of ms from 1 to 2^32 - 1`,
      );
  });
});
