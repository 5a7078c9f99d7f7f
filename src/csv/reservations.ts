/*
 * SCSI-3 persistent reservations (SPC-3 section 5.6; the commands PERSISTENT
 * RESERVE IN 0x5E and OUT 0x5F, sections 6.11 and 6.12) as the target
 * enforces them.
 *
 * Registrations belong to an initiator (the name a node logs in with,
 * standing for SPC's I_T nexus), so a node that reconnects keeps its key.
 * The reservation type CSV uses is 5, Write Exclusive - Registrants Only:
 * every registered node may write (CSV nodes all do direct I/O to their
 * files' clusters), an unregistered initiator may only read, and one node,
 * the coordinator, holds the reservation. Preempting a node's key removes
 * its registration, and from that moment its writes end in RESERVATION
 * CONFLICT: that is the fence. Exclusive Access - Registrants Only (6)
 * would also refuse reads to unregistered initiators, which protects
 * nothing here (a fenced node reading is harmless) and would stop a backup
 * host from reading the LUN; the plain types 1 and 3 would let only the
 * holder write, which is the single-owner model CSV exists to get away from.
 */

/** PERSISTENT RESERVE OUT service actions (SPC-3 6.12). */
export const ServiceAction = {
  register: 0,
  reserve: 1,
  release: 2,
  clear: 3,
  preempt: 4,
} as const;

/** PERSISTENT RESERVE IN service actions (SPC-3 6.11). */
export const InAction = {
  readKeys: 0,
  readReservation: 1,
} as const;

/** Reservation types (SPC-3 6.12). */
export const ReservationType = {
  writeExclusive: 1,
  exclusiveAccess: 3,
  writeExclusiveRegistrantsOnly: 5,
  exclusiveAccessRegistrantsOnly: 6,
} as const;

/** The outcome of a command: GOOD, RESERVATION CONFLICT, or CHECK CONDITION with the reason. */
export type PrOutcome =
  | { readonly status: "good" }
  | { readonly status: "conflict"; readonly reason: string }
  | { readonly status: "check"; readonly reason: string };

const good: PrOutcome = { status: "good" };
const conflict = (reason: string): PrOutcome => ({ status: "conflict", reason });
const check = (reason: string): PrOutcome => ({ status: "check", reason });

/** A PERSISTENT RESERVE OUT command. */
export interface ReserveOut {
  readonly action: number;
  readonly type: number;
  /** RESERVATION KEY: the key the initiator is registered with (0 when registering). */
  readonly key: bigint;
  /** SERVICE ACTION RESERVATION KEY: the new key (REGISTER) or the key to preempt (PREEMPT). */
  readonly serviceKey: bigint;
}

/** The reservation, when one is held. */
export interface Reservation {
  readonly holder: string;
  readonly key: bigint;
  readonly type: number;
}

/** The persistent-reservation state of one LUN. */
export class PersistentReservations {
  private readonly keys = new Map<string, bigint>();
  private reservation: Reservation | undefined;
  /** PRgeneration: rises on every registration change, not on RESERVE or RELEASE (SPC-3 6.11). */
  private prGeneration = 0;

  get generation(): number {
    return this.prGeneration;
  }

  /** Registered keys, one per registered initiator, in registration order. */
  registeredKeys(): bigint[] {
    return [...this.keys.values()];
  }

  /** The reservation held, if any. */
  held(): Reservation | undefined {
    return this.reservation;
  }

  /** The key `initiator` is registered with. */
  keyOf(initiator: string): bigint | undefined {
    return this.keys.get(initiator);
  }

  /**
   * Whether `initiator` may write (SPC-3 5.6's rules for the types this
   * target supports): anyone when nothing is reserved, registrants
   * under a registrants-only type, the holder alone under the plain types.
   */
  mayWrite(initiator: string): boolean {
    const r = this.reservation;
    if (!r) return true;
    if (
      r.type === ReservationType.writeExclusiveRegistrantsOnly ||
      r.type === ReservationType.exclusiveAccessRegistrantsOnly
    )
      return this.keys.has(initiator);
    return r.holder === initiator;
  }

  /** Whether `initiator` may read. */
  mayRead(initiator: string): boolean {
    const r = this.reservation;
    if (!r) return true;
    if (r.type === ReservationType.exclusiveAccessRegistrantsOnly) return this.keys.has(initiator);
    if (r.type === ReservationType.exclusiveAccess) return r.holder === initiator;
    return true;
  }

  /** Runs a PERSISTENT RESERVE OUT command from `initiator`. */
  out(initiator: string, command: ReserveOut): PrOutcome {
    const mine = this.keys.get(initiator);
    switch (command.action) {
      case ServiceAction.register: {
        if (mine === undefined) {
          // An unregistered initiator registers with RESERVATION KEY zero.
          if (command.key !== 0n)
            return conflict("REGISTER from an unregistered initiator must give reservation key 0");
          if (command.serviceKey === 0n) return good;
          this.keys.set(initiator, command.serviceKey);
          this.prGeneration++;
          return good;
        }
        if (command.key !== mine)
          return conflict(
            `REGISTER with key ${hex(command.key)}; the initiator is registered with another`,
          );
        if (command.serviceKey === 0n) {
          this.unregister(initiator);
        } else {
          this.keys.set(initiator, command.serviceKey);
          if (this.reservation?.holder === initiator)
            this.reservation = { ...this.reservation, key: command.serviceKey };
        }
        this.prGeneration++;
        return good;
      }
      case ServiceAction.reserve: {
        if (mine === undefined || command.key !== mine)
          return conflict("RESERVE from an initiator not registered with this key");
        if (!isSupportedType(command.type))
          return check(`reservation type ${command.type} is not supported (1, 3, 5 or 6)`);
        const r = this.reservation;
        if (!r) {
          this.reservation = { holder: initiator, key: mine, type: command.type };
          return good;
        }
        if (r.holder === initiator && r.type === command.type) return good;
        return conflict(`the LUN is reserved (type ${r.type}) by another initiator`);
      }
      case ServiceAction.release: {
        if (mine === undefined || command.key !== mine)
          return conflict("RELEASE from an initiator not registered with this key");
        const r = this.reservation;
        if (!r || r.holder !== initiator) return good;
        if (r.type !== command.type)
          return check(`RELEASE of type ${command.type}; the reservation is type ${r.type}`);
        this.reservation = undefined;
        return good;
      }
      case ServiceAction.clear: {
        if (mine === undefined || command.key !== mine)
          return conflict("CLEAR from an initiator not registered with this key");
        this.keys.clear();
        this.reservation = undefined;
        this.prGeneration++;
        return good;
      }
      case ServiceAction.preempt: {
        if (mine === undefined || command.key !== mine)
          return conflict("PREEMPT from an initiator not registered with this key");
        const victim = command.serviceKey;
        const r = this.reservation;
        if (r && r.key === victim) {
          // Preempting the holder: its registrations go and the preemptor holds the reservation.
          if (!isSupportedType(command.type))
            return check(`reservation type ${command.type} is not supported (1, 3, 5 or 6)`);
          this.removeKey(victim, initiator);
          this.reservation = { holder: initiator, key: mine, type: command.type };
          this.prGeneration++;
          return good;
        }
        if (victim === 0n)
          return check("PREEMPT of key 0 while the reservation is not held by key 0");
        const removed = this.removeKey(victim, undefined);
        if (removed === 0)
          return conflict(`PREEMPT of key ${hex(victim)}: no initiator is registered with it`);
        this.prGeneration++;
        return good;
      }
      default:
        return check(`service action ${command.action} is not supported`);
    }
  }

  private unregister(initiator: string): void {
    this.keys.delete(initiator);
    // A holder that unregisters releases the reservation.
    if (this.reservation?.holder === initiator) this.reservation = undefined;
  }

  /** Removes every registration with `key` (except `keep`'s); returns how many went. */
  private removeKey(key: bigint, keep: string | undefined): number {
    let n = 0;
    for (const [initiator, k] of [...this.keys]) {
      if (k === key && initiator !== keep) {
        this.keys.delete(initiator);
        n++;
      }
    }
    return n;
  }
}

function isSupportedType(type: number): boolean {
  return type === 1 || type === 3 || type === 5 || type === 6;
}

function hex(key: bigint): string {
  return `0x${key.toString(16)}`;
}
