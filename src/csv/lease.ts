import { crc32c } from "./checksum.js";
import { VolumeFormatError } from "./errors.js";
import { EPOCH_LOG_SECTORS, SECTOR, type VolumeLayout } from "./layout.js";

/*
 * The coordinator's lease: the sector between the epoch log and the file
 * table, which the coordinator rewrites every heartbeat interval through
 * the target (a delta lease, as sanlock keeps on shared storage:
 * sanlock(8), "delta leases"). Little-endian:
 *
 *   0          8         12       16            24          32             40         44         48     508     512
 *   +----------+---------+--------+-------------+-----------+--------------+----------+----------+------+-------+
 *   | magic    | version | node   | holder key  | epoch u64 | renewal u64  | lease ms | reserved | zeros| CRC-  |
 *   | HVCSLEAS | u32 = 1 | u32    | u64         |           | (1, 2, ...)  | u32      | u32 = 0  |      | 32C   |
 *   +----------+---------+--------+-------------+-----------+--------------+----------+----------+------+-------+
 *
 * A volume never coordinated holds 512 zero bytes there.
 *
 * Why it is sound. The holder sends a renewal at time s (its own monotonic
 * clock, read before the WRITE goes out) and, once the target answers GOOD,
 * trusts its term until s + lease ms - margin: while trusted it may answer
 * an open from its volume in memory without asking the target. A node
 * that wants the role PREEMPTs the holder's key only after it has read the
 * same sector bytes for a whole lease period, counted from the completion
 * of the first read that returned them; that read ran at the target after
 * the renewal landed, so after s. After the PREEMPT no renewal of the old
 * key can land: SPC-4's PREEMPT removes the preempted key's registration,
 * so under type 5 its WRITEs end in RESERVATION CONFLICT, and hvlab's
 * target runs commands one at a time and checks each where its bytes meet
 * the LUN (a SCSI array lets a command it accepted before the PREEMPT
 * finish, which PREEMPT AND ABORT would cut short). So the taker reads
 * the sector once more: unchanged, the holder's trust ended before the
 * PREEMPT; changed (a renewal landed between the taker's last read and the
 * PREEMPT), the taker waits a whole lease period from the PREEMPT's
 * completion, which is after that renewal was sent, before it writes.
 * Both clocks only measure intervals, so they need not agree on the time,
 * only tick at nearly the same rate; the margin covers the difference.
 */

/** Magic of a lease sector: "HVCSLEAS". */
export const LEASE_MAGIC = "HVCSLEAS";
/** Format version of the lease sector. */
export const LEASE_VERSION = 1;

/** The lease as the coordinator last wrote it. */
export interface Lease {
  /** The node that holds the coordinator role. */
  readonly node: number;
  /** Its reservation key at the target. */
  readonly key: bigint;
  /** Its term. */
  readonly epoch: number;
  /** Counts the renewals of this term: every renewal changes the sector. */
  readonly renewal: number;
  /** How long a taker must see the sector unchanged before it may preempt. */
  readonly leaseMs: number;
}

/** The lease sector's byte offset on the LUN: the spare sector after the epoch log. */
export function leaseOffset(layout: VolumeLayout): number {
  return layout.epochLogOffset + EPOCH_LOG_SECTORS * SECTOR;
}

/** The 512 bytes of a lease sector. */
export function encodeLease(lease: Lease): Uint8Array {
  const out = new Uint8Array(SECTOR);
  const view = new DataView(out.buffer);
  out.set(new TextEncoder().encode(LEASE_MAGIC), 0);
  view.setUint32(8, LEASE_VERSION, true);
  view.setUint32(12, lease.node, true);
  view.setBigUint64(16, lease.key, true);
  view.setBigUint64(24, BigInt(lease.epoch), true);
  view.setBigUint64(32, BigInt(lease.renewal), true);
  view.setUint32(40, lease.leaseMs, true);
  view.setUint32(508, crc32c(out.subarray(0, 508)), true);
  return out;
}

/**
 * Parses a lease sector read at `offset` on the LUN: undefined for a
 * sector of zeros (no coordinator has held a lease), else the lease, or a
 * {@link VolumeFormatError} naming the field that is wrong.
 */
export function parseLease(bytes: Uint8Array, offset: number): Lease | undefined {
  if (bytes.length !== SECTOR)
    throw new VolumeFormatError("lease", offset, `${bytes.length} bytes, not one sector`);
  if (bytes.every((b) => b === 0)) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (field: string, at: number, detail: string): never => {
    throw new VolumeFormatError(`lease ${field}`, offset + at, detail);
  };
  const crc = crc32c(bytes.subarray(0, 508));
  if (view.getUint32(508, true) !== crc)
    fail("CRC-32C", 508, `0x${view.getUint32(508, true).toString(16)}, not 0x${crc.toString(16)}`);
  if (new TextDecoder().decode(bytes.subarray(0, 8)) !== LEASE_MAGIC)
    fail("magic", 0, `not ${LEASE_MAGIC}`);
  if (view.getUint32(8, true) !== LEASE_VERSION)
    fail("version", 8, `${view.getUint32(8, true)}, not ${LEASE_VERSION}`);
  const node = view.getUint32(12, true);
  if (node < 1 || node > 16) fail("node", 12, `${node} is not a node number 1 to 16`);
  const epoch = view.getBigUint64(24, true);
  if (epoch < 1n || epoch > BigInt(Number.MAX_SAFE_INTEGER))
    fail("epoch", 24, `${epoch} is not an epoch from 1 to 2^53 - 1`);
  const renewal = view.getBigUint64(32, true);
  if (renewal < 1n || renewal > BigInt(Number.MAX_SAFE_INTEGER))
    fail("renewal", 32, `${renewal} is not a count from 1 to 2^53 - 1`);
  const leaseMs = view.getUint32(40, true);
  if (leaseMs < 1) fail("lease ms", 40, "0: a lease lasts at least 1 ms");
  if (view.getUint32(44, true) !== 0) fail("reserved", 44, "must be 0");
  if (bytes.subarray(48, 508).some((b) => b !== 0)) fail("padding", 48, "must be zeros");
  return {
    node,
    key: view.getBigUint64(16, true),
    epoch: Number(epoch),
    renewal: Number(renewal),
    leaseMs,
  };
}

/** The sector's lease period when it parses, else undefined (zeros, or torn or foreign bytes). */
function leaseMsOf(bytes: Uint8Array): number | undefined {
  try {
    return parseLease(bytes, 0)?.leaseMs;
  } catch {
    return undefined;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * What a node that does not coordinate has seen of the lease sector: the
 * bytes of its last read and since when (the completion of the first read
 * that returned them) they have not changed.
 */
export class LeaseWatch {
  private seen: { readonly bytes: Uint8Array; readonly sinceMs: number } | undefined;

  /** Records one read of the sector, completed at `nowMs`. */
  observe(bytes: Uint8Array, nowMs: number): void {
    if (this.seen && sameBytes(this.seen.bytes, bytes)) return;
    this.seen = { bytes: bytes.slice(), sinceMs: nowMs };
  }

  /** The bytes of the last read, or undefined before the first. */
  get bytes(): Uint8Array | undefined {
    return this.seen?.bytes;
  }

  /**
   * How long a taker must see the sector unchanged: the longer of its own
   * period and the one the holder wrote (a holder with a longer threshold
   * trusts its term longer).
   */
  periodMs(ownMs: number, bytes: Uint8Array | undefined = this.seen?.bytes): number {
    return Math.max(ownMs, bytes ? (leaseMsOf(bytes) ?? 0) : 0);
  }

  /** True once the sector has read the same for a whole lease period (at least `ownMs`) up to `nowMs`. */
  lapsed(nowMs: number, ownMs: number): boolean {
    if (!this.seen) return false;
    return nowMs - this.seen.sinceMs >= this.periodMs(ownMs);
  }

  /** True when `bytes` are what the last read returned. */
  unchanged(bytes: Uint8Array): boolean {
    return this.seen !== undefined && sameBytes(this.seen.bytes, bytes);
  }
}

/** Where the holder writes its lease: the target path, whose WRITEs the reservation fences. */
export interface LeaseSector {
  write(offset: number, data: Uint8Array): Promise<void>;
}

/**
 * The coordinator's side of the lease: renewals, one at a time, and until
 * when its term is proven. A renewal refused with RESERVATION CONFLICT
 * (its key was preempted) rejects; the caller steps down.
 */
export class CoordinatorLease {
  private renewal = 0;
  private trustedUntilMs = Number.NEGATIVE_INFINITY;
  private inFlight: Promise<void> | undefined;
  /** How long before the lease's end the holder stops trusting it. */
  private readonly marginMs: number;

  /**
   * @param sector - the path the renewals are written through
   * @param offset - the lease sector's byte offset ({@link leaseOffset})
   * @param holder - node, key and epoch of the term
   * @param leaseMs - the lease period a taker waits out
   * @param renewEveryMs - how often the holder renews (its heartbeat interval)
   * @param now - the monotonic clock (performance.now)
   */
  constructor(
    private readonly sector: LeaseSector,
    private readonly offset: number,
    private readonly holder: {
      readonly node: number;
      readonly key: bigint;
      readonly epoch: number;
    },
    readonly leaseMs: number,
    renewEveryMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    if (!(Number.isInteger(leaseMs) && leaseMs >= 1 && leaseMs <= 0xffff_ffff))
      throw new RangeError(
        `lease of ${leaseMs} ms: must be a whole number of ms from 1 to 2^32 - 1`,
      );
    // One renewal interval of margin, so a term renewed on time never lapses
    // between renewals; half the lease when that leaves nothing.
    this.marginMs = Math.min(renewEveryMs, leaseMs / 2);
  }

  /** True while the last renewal the target accepted still proves the term. */
  trusted(): boolean {
    return this.now() < this.trustedUntilMs;
  }

  /** Writes the next renewal; a renewal already on its way is shared rather than doubled. */
  renew(): Promise<void> {
    if (!this.inFlight) {
      const sentAt = this.now();
      this.renewal++;
      const bytes = encodeLease({ ...this.holder, renewal: this.renewal, leaseMs: this.leaseMs });
      this.inFlight = this.sector.write(this.offset, bytes).then(
        () => {
          this.inFlight = undefined;
          this.trustedUntilMs = Math.max(
            this.trustedUntilMs,
            sentAt + this.leaseMs - this.marginMs,
          );
        },
        (error: unknown) => {
          this.inFlight = undefined;
          throw error;
        },
      );
    }
    return this.inFlight;
  }
}

/** A coordinator could not prove at the target that its term still holds: the caller retries where the role went. */
export class TermUnprovenError extends Error {
  override name = "TermUnprovenError";
}
