import { describe, expect, it } from "vitest";
import { checkVolume } from "../src/csv/check.js";
import { crc32c } from "../src/csv/checksum.js";
import { VolumeFormatError } from "../src/csv/errors.js";
import { computeLayout } from "../src/csv/layout.js";
import {
  CoordinatorLease,
  encodeLease,
  type Lease,
  LeaseWatch,
  leaseOffset,
  parseLease,
} from "../src/csv/lease.js";
import { ReservationConflictError } from "../src/csv/target-client.js";
import { Volume } from "../src/csv/volume.js";
import { memoryLun } from "./support/csv.js";

const LEASE: Lease = { node: 3, key: 0x3_0000_0002n, epoch: 7, renewal: 41, leaseMs: 5000 };

/** Rewrites a sector's CRC after a field was changed on purpose, so the field's own check is what refuses it. */
function resealed(bytes: Uint8Array): Uint8Array {
  new DataView(bytes.buffer).setUint32(508, crc32c(bytes.subarray(0, 508)), true);
  return bytes;
}

describe("the lease sector", () => {
  it("sits in the spare sector between the epoch log and the file table", () => {
    const layout = computeLayout({
      volumeBytes: 32 << 20,
      clusterBytes: 4096,
      fileSlots: 256,
      journalSectors: 64,
    });
    // 4 KiB superblock region + 64 journal sectors + 32 epoch-log sectors.
    expect(leaseOffset(layout)).toBe(4096 + 64 * 512 + 32 * 512);
    expect(leaseOffset(layout) + 512).toBe(layout.fileTableOffset);
  });

  it("round-trips, at the byte offsets docs/csv.md draws", () => {
    const bytes = encodeLease(LEASE);
    expect(bytes.length).toBe(512);
    expect(new TextDecoder().decode(bytes.subarray(0, 8))).toBe("HVCSLEAS");
    const view = new DataView(bytes.buffer);
    expect(view.getUint32(8, true)).toBe(1);
    expect(view.getUint32(12, true)).toBe(3);
    expect(view.getBigUint64(16, true)).toBe(0x3_0000_0002n);
    expect(view.getBigUint64(24, true)).toBe(7n);
    expect(view.getBigUint64(32, true)).toBe(41n);
    expect(view.getUint32(40, true)).toBe(5000);
    expect(view.getUint32(508, true)).toBe(crc32c(bytes.subarray(0, 508)));
    expect(parseLease(bytes, 0)).toEqual(LEASE);
  });

  it("reads a sector of zeros as no lease", () => {
    expect(parseLease(new Uint8Array(512), 0)).toBeUndefined();
  });

  it("refuses every single flipped byte, naming a field at the LUN offset", () => {
    const good = encodeLease(LEASE);
    for (let at = 0; at < 512; at++) {
      const bad = good.slice();
      bad[at] = (bad[at] ?? 0) ^ 0x5a;
      expect(() => parseLease(bad, 40_960), `byte ${at}`).toThrow(VolumeFormatError);
    }
    const bad = good.slice();
    bad[100] = 1;
    // 40,960 + 508: the CRC's own offset on the LUN.
    expect(() => parseLease(bad, 40_960)).toThrow(
      /^lease CRC-32C at offset 41468 \(0xa1fc\): 0x[0-9a-f]+, not 0x[0-9a-f]+$/,
    );
  });

  it("refuses each field out of its range even when the CRC matches", () => {
    const cases: [string, (v: DataView, b: Uint8Array) => void, RegExp][] = [
      [
        "magic",
        (_v, b) => b.set(new TextEncoder().encode("HVCSLEAX"), 0),
        /lease magic at offset 0/,
      ],
      ["version", (v) => v.setUint32(8, 2, true), /lease version at offset 8 .*2, not 1/],
      ["node 0", (v) => v.setUint32(12, 0, true), /lease node at offset 12/],
      ["node 17", (v) => v.setUint32(12, 17, true), /lease node at offset 12/],
      ["epoch 0", (v) => v.setBigUint64(24, 0n, true), /lease epoch at offset 24/],
      ["epoch 2^53", (v) => v.setBigUint64(24, 1n << 53n, true), /lease epoch at offset 24/],
      ["renewal 0", (v) => v.setBigUint64(32, 0n, true), /lease renewal at offset 32/],
      ["lease 0 ms", (v) => v.setUint32(40, 0, true), /lease lease ms at offset 40/],
      ["reserved", (v) => v.setUint32(44, 1, true), /lease reserved at offset 44/],
      ["padding", (_v, b) => b.set([1], 507), /lease padding at offset 48/],
    ];
    for (const [what, spoil, message] of cases) {
      const bytes = encodeLease(LEASE);
      spoil(new DataView(bytes.buffer), bytes);
      expect(() => parseLease(resealed(bytes), 0), what).toThrow(message);
    }
    expect(() => parseLease(new Uint8Array(511), 0)).toThrow(/511 bytes, not one sector/);
  });

  it("takes the extremes of every field", () => {
    const edge: Lease = {
      node: 16,
      key: 0xffff_ffff_ffff_ffffn,
      epoch: Number.MAX_SAFE_INTEGER,
      renewal: Number.MAX_SAFE_INTEGER,
      leaseMs: 0xffff_ffff,
    };
    expect(parseLease(encodeLease(edge), 0)).toEqual(edge);
    expect(
      parseLease(encodeLease({ ...edge, node: 1, epoch: 1, renewal: 1, leaseMs: 1 }), 0),
    ).toEqual({ ...edge, node: 1, epoch: 1, renewal: 1, leaseMs: 1 });
  });
});

describe("a taker's watch of the lease sector", () => {
  const a = encodeLease(LEASE);
  const b = encodeLease({ ...LEASE, renewal: 42 });

  it("has lapsed only after the same bytes were seen for a whole period, from their first read", () => {
    const watch = new LeaseWatch();
    expect(watch.lapsed(1e9, 100)).toBe(false);
    watch.observe(a, 1000);
    watch.observe(a, 1050);
    // The holder wrote 5000 ms into its lease: longer than the taker's own 100 ms.
    expect(watch.periodMs(100)).toBe(5000);
    expect(watch.lapsed(5999, 100)).toBe(false);
    expect(watch.lapsed(6000, 100)).toBe(true);
    // A renewal seen restarts the count.
    watch.observe(b, 6001);
    expect(watch.lapsed(6002, 100)).toBe(false);
    expect(watch.lapsed(11_000, 100)).toBe(false);
    expect(watch.lapsed(11_001, 100)).toBe(true);
    expect(watch.unchanged(b)).toBe(true);
    expect(watch.unchanged(a)).toBe(false);
  });

  it("keeps a copy of the bytes, not the caller's buffer", () => {
    const watch = new LeaseWatch();
    const buffer = a.slice();
    watch.observe(buffer, 0);
    buffer.set(b);
    expect(watch.unchanged(a)).toBe(true);
  });

  it("waits its own period for zeros or a sector that does not parse", () => {
    const watch = new LeaseWatch();
    watch.observe(new Uint8Array(512), 0);
    expect(watch.periodMs(250)).toBe(250);
    expect(watch.lapsed(249, 250)).toBe(false);
    expect(watch.lapsed(250, 250)).toBe(true);
    const torn = a.slice();
    torn[30] = 0xff;
    watch.observe(torn, 1000);
    expect(watch.periodMs(250)).toBe(250);
    // A holder's shorter lease never shortens the taker's own wait.
    expect(watch.periodMs(9000, a)).toBe(9000);
  });
});

describe("the coordinator's lease", () => {
  /** A sector the test answers by hand, so the order of landings is the test's to choose. */
  function sector() {
    const writes: { offset: number; bytes: Uint8Array; settle: (refuse?: Error) => void }[] = [];
    return {
      writes,
      write(offset: number, bytes: Uint8Array): Promise<void> {
        return new Promise((resolve, reject) => {
          writes.push({
            offset,
            bytes,
            settle: (refuse) => (refuse ? reject(refuse) : resolve()),
          });
        });
      },
    };
  }

  it("trusts its term from the renewal's sending, for the lease less one renewal interval", async () => {
    let now = 1000;
    const s = sector();
    const lease = new CoordinatorLease(
      s,
      40_960,
      { node: 3, key: 7n, epoch: 9 },
      500,
      100,
      () => now,
    );
    expect(lease.trusted()).toBe(false);
    const renewed = lease.renew();
    now = 1300; // the target answers late: the term counts from the sending
    s.writes[0]?.settle();
    await renewed;
    expect(s.writes[0]?.offset).toBe(40_960);
    expect(parseLease(s.writes[0]?.bytes ?? new Uint8Array(0), 0)).toEqual({
      node: 3,
      key: 7n,
      epoch: 9,
      renewal: 1,
      leaseMs: 500,
    });
    now = 1399;
    expect(lease.trusted()).toBe(true);
    now = 1400; // 1000 + 500 - 100
    expect(lease.trusted()).toBe(false);
  });

  it("sends one renewal for callers that overlap, and counts renewals up", async () => {
    let now = 0;
    const s = sector();
    const lease = new CoordinatorLease(s, 0, { node: 1, key: 1n, epoch: 1 }, 300, 100, () => now);
    const first = lease.renew();
    const second = lease.renew();
    expect(s.writes).toHaveLength(1);
    s.writes[0]?.settle();
    await Promise.all([first, second]);
    now = 50;
    const third = lease.renew();
    s.writes[1]?.settle();
    await third;
    expect(s.writes.map((w) => parseLease(w.bytes, 0)?.renewal)).toEqual([1, 2]);
    now = 249; // 50 + 300 - 100
    expect(lease.trusted()).toBe(true);
    now = 250;
    expect(lease.trusted()).toBe(false);
  });

  it("keeps no trust from a renewal the target refused", async () => {
    let now = 0;
    const s = sector();
    const lease = new CoordinatorLease(s, 0, { node: 1, key: 1n, epoch: 1 }, 300, 100, () => now);
    const refused = lease.renew();
    s.writes[0]?.settle(new ReservationConflictError("node-1 is not registered"));
    await expect(refused).rejects.toThrow(ReservationConflictError);
    expect(lease.trusted()).toBe(false);
    // The next renewal is a new write, not the refused one again.
    now = 10;
    const next = lease.renew();
    expect(s.writes).toHaveLength(2);
    s.writes[1]?.settle();
    await next;
    expect(lease.trusted()).toBe(true);
  });

  it("keeps half the lease as margin when a renewal interval would leave none", async () => {
    let now = 0;
    const s = sector();
    // One miss: lease and interval alike 100 ms.
    const lease = new CoordinatorLease(s, 0, { node: 1, key: 1n, epoch: 1 }, 100, 100, () => now);
    const renewed = lease.renew();
    s.writes[0]?.settle();
    await renewed;
    now = 49;
    expect(lease.trusted()).toBe(true);
    now = 50;
    expect(lease.trusted()).toBe(false);
  });

  it("refuses a lease period the sector cannot hold", () => {
    const s = sector();
    for (const ms of [0, 0.5, -1, 2 ** 32])
      expect(() => new CoordinatorLease(s, 0, { node: 1, key: 1n, epoch: 1 }, ms, 10)).toThrow(
        RangeError,
      );
  });
});

describe("hvlab csv check and the lease sector", () => {
  it("takes zeros or a lease of a term the volume opened, and reports a torn or newer one", async () => {
    const { lun } = memoryLun(4 << 20);
    const volume = await Volume.format(lun, { clusterBytes: 4096, fileSlots: 8 });
    const at = leaseOffset(volume.layout);
    expect((await checkVolume(lun)).problems).toEqual([]);
    const epoch = await volume.takeOver(2);
    await lun.write(at, encodeLease({ ...LEASE, node: 2, epoch }));
    expect((await checkVolume(lun)).problems).toEqual([]);
    await lun.write(at, encodeLease({ ...LEASE, node: 2, epoch: epoch + 1 }));
    expect((await checkVolume(lun)).problems).toEqual([
      {
        offset: at + 24,
        message: `the coordinator's lease names epoch ${epoch + 1} (node 2), newer than the volume's ${epoch}`,
      },
    ]);
    const torn = encodeLease({ ...LEASE, node: 2, epoch });
    torn[300] = 7;
    await lun.write(at, torn);
    const report = await checkVolume(lun);
    expect(report.ok).toBe(false);
    expect(report.problems).toHaveLength(1);
    expect(report.problems[0]?.offset).toBe(at + 508);
    expect(report.problems[0]?.message).toMatch(/^lease CRC-32C at offset/);
  });
});
