import { describe, expect, it } from "vitest";
import {
  PersistentReservations,
  type PrOutcome,
  ReservationType,
  ServiceAction,
} from "../src/csv/reservations.js";

// SPC-3 section 5.6 (persistent reservations) one rule at a time: who may
// read and write under each reservation type the target supports, what
// changes PRgeneration (6.11), and each refusal with its status and words.

const { register, reserve, release, clear, preempt } = ServiceAction;
const WE = ReservationType.writeExclusive;
const EA = ReservationType.exclusiveAccess;
const WERO = ReservationType.writeExclusiveRegistrantsOnly;
const EARO = ReservationType.exclusiveAccessRegistrantsOnly;

/** One PERSISTENT RESERVE OUT from `who`. */
function out(
  pr: PersistentReservations,
  who: string,
  action: number,
  key: bigint,
  serviceKey = 0n,
  type: number = WERO,
): PrOutcome {
  return pr.out(who, { action, type, key, serviceKey });
}

/** node1 (key 1, the holder of a reservation of `type`) and node2 (key 2) registered; "backup" not. */
function reservedBy1(type: number): PersistentReservations {
  const pr = new PersistentReservations();
  expect(out(pr, "node1", register, 0n, 1n).status).toBe("good");
  expect(out(pr, "node2", register, 0n, 2n).status).toBe("good");
  expect(out(pr, "node1", reserve, 1n, 0n, type)).toEqual({ status: "good" });
  return pr;
}

describe("persistent reservations: access by reservation type (SPC-3 5.6)", () => {
  it("Write Exclusive (1): only the holder writes; everyone reads", () => {
    const pr = reservedBy1(WE);
    expect([pr.mayWrite("node1"), pr.mayWrite("node2"), pr.mayWrite("backup")]).toEqual([
      true,
      false,
      false,
    ]);
    expect([pr.mayRead("node1"), pr.mayRead("node2"), pr.mayRead("backup")]).toEqual([
      true,
      true,
      true,
    ]);
  });

  it("Exclusive Access (3): only the holder reads or writes", () => {
    const pr = reservedBy1(EA);
    expect([pr.mayWrite("node1"), pr.mayWrite("node2"), pr.mayWrite("backup")]).toEqual([
      true,
      false,
      false,
    ]);
    expect([pr.mayRead("node1"), pr.mayRead("node2"), pr.mayRead("backup")]).toEqual([
      true,
      false,
      false,
    ]);
  });

  it("Write Exclusive - Registrants Only (5): registrants write; everyone reads", () => {
    const pr = reservedBy1(WERO);
    expect([pr.mayWrite("node1"), pr.mayWrite("node2"), pr.mayWrite("backup")]).toEqual([
      true,
      true,
      false,
    ]);
    expect([pr.mayRead("node1"), pr.mayRead("node2"), pr.mayRead("backup")]).toEqual([
      true,
      true,
      true,
    ]);
  });

  it("Exclusive Access - Registrants Only (6): registrants read and write; others neither", () => {
    const pr = reservedBy1(EARO);
    expect([pr.mayWrite("node1"), pr.mayWrite("node2"), pr.mayWrite("backup")]).toEqual([
      true,
      true,
      false,
    ]);
    expect([pr.mayRead("node1"), pr.mayRead("node2"), pr.mayRead("backup")]).toEqual([
      true,
      true,
      false,
    ]);
  });

  it("with nothing reserved, registered or not, everyone reads and writes", () => {
    const pr = new PersistentReservations();
    out(pr, "node1", register, 0n, 1n);
    expect([pr.mayWrite("node1"), pr.mayWrite("backup")]).toEqual([true, true]);
    expect([pr.mayRead("node1"), pr.mayRead("backup")]).toEqual([true, true]);
  });

  it("reserves with every supported type (1, 3, 5, 6) and refuses the others with CHECK CONDITION", () => {
    for (const type of [WE, EA, WERO, EARO]) {
      const pr = new PersistentReservations();
      out(pr, "node1", register, 0n, 1n);
      expect(out(pr, "node1", reserve, 1n, 0n, type)).toEqual({ status: "good" });
      expect(pr.held()).toEqual({ holder: "node1", key: 1n, type });
    }
    for (const type of [0, 2, 4, 7, 8]) {
      const pr = new PersistentReservations();
      out(pr, "node1", register, 0n, 1n);
      expect(out(pr, "node1", reserve, 1n, 0n, type)).toEqual({
        status: "check",
        reason: `reservation type ${type} is not supported (1, 3, 5 or 6)`,
      });
      expect(pr.held()).toBeUndefined();
    }
  });

  it("the holder reserving again with another type is a conflict naming the type held", () => {
    const pr = reservedBy1(WERO);
    expect(out(pr, "node1", reserve, 1n, 0n, EARO)).toEqual({
      status: "conflict",
      reason: "the LUN is reserved (type 5) by another initiator",
    });
    expect(pr.held()).toEqual({ holder: "node1", key: 1n, type: WERO });
  });
});

describe("persistent reservations: REGISTER and PRgeneration (SPC-3 6.11, 6.12)", () => {
  it("an unregistered initiator registering key 0 changes nothing", () => {
    const pr = new PersistentReservations();
    expect(out(pr, "node1", register, 0n, 0n)).toEqual({ status: "good" });
    expect(pr.generation).toBe(0);
    expect(pr.registeredKeys()).toEqual([]);
    expect(pr.keyOf("node1")).toBeUndefined();
  });

  it("an unregistered initiator giving a reservation key is refused, naming the rule", () => {
    const pr = new PersistentReservations();
    expect(out(pr, "node1", register, 5n, 0x11n)).toEqual({
      status: "conflict",
      reason: "REGISTER from an unregistered initiator must give reservation key 0",
    });
    expect(pr.generation).toBe(0);
    expect(pr.keyOf("node1")).toBeUndefined();
  });

  it("a registered initiator with the wrong key is refused, the key given in hex", () => {
    const pr = new PersistentReservations();
    out(pr, "node1", register, 0n, 0x11n);
    expect(out(pr, "node1", register, 0xabn, 0x12n)).toEqual({
      status: "conflict",
      reason: "REGISTER with key 0xab; the initiator is registered with another",
    });
    expect(pr.keyOf("node1")).toBe(0x11n);
    expect(pr.generation).toBe(1);
  });

  it("re-registering changes the key, the held reservation's key with it, and PRgeneration", () => {
    const pr = reservedBy1(WERO);
    expect(pr.generation).toBe(2);
    expect(out(pr, "node1", register, 1n, 0x101n)).toEqual({ status: "good" });
    expect(pr.keyOf("node1")).toBe(0x101n);
    expect(pr.held()).toEqual({ holder: "node1", key: 0x101n, type: WERO });
    expect(pr.generation).toBe(3);
    // A registrant that does not hold the reservation leaves it as it is.
    expect(out(pr, "node2", register, 2n, 0x202n)).toEqual({ status: "good" });
    expect(pr.keyOf("node2")).toBe(0x202n);
    expect(pr.held()).toEqual({ holder: "node1", key: 0x101n, type: WERO });
    expect(pr.registeredKeys()).toEqual([0x101n, 0x202n]);
    expect(pr.generation).toBe(4);
  });

  it("unregistering (service key 0) removes the key and raises PRgeneration; a non-holder leaves the reservation", () => {
    const pr = reservedBy1(WERO);
    expect(out(pr, "node2", register, 2n, 0n)).toEqual({ status: "good" });
    expect(pr.keyOf("node2")).toBeUndefined();
    expect(pr.registeredKeys()).toEqual([1n]);
    expect(pr.generation).toBe(3);
    expect(pr.held()).toEqual({ holder: "node1", key: 1n, type: WERO });
    expect(pr.mayWrite("node2")).toBe(false);
  });

  it("RESERVE and RELEASE leave PRgeneration; CLEAR raises it", () => {
    const pr = reservedBy1(WERO);
    expect(pr.generation).toBe(2);
    expect(out(pr, "node1", release, 1n).status).toBe("good");
    expect(pr.generation).toBe(2);
    expect(out(pr, "node2", clear, 2n)).toEqual({ status: "good" });
    expect(pr.generation).toBe(3);
    expect(pr.keyOf("node1")).toBeUndefined();
    expect(pr.keyOf("node2")).toBeUndefined();
  });
});

describe("persistent reservations: RESERVE, RELEASE, CLEAR and PREEMPT refusals", () => {
  it("each action from an unregistered initiator, or with a key it is not registered with, is a conflict naming the action", () => {
    const pr = reservedBy1(WERO);
    const cases: [number, string][] = [
      [reserve, "RESERVE from an initiator not registered with this key"],
      [release, "RELEASE from an initiator not registered with this key"],
      [clear, "CLEAR from an initiator not registered with this key"],
      [preempt, "PREEMPT from an initiator not registered with this key"],
    ];
    for (const [action, reason] of cases) {
      expect(out(pr, "backup", action, 0n, 2n)).toEqual({ status: "conflict", reason });
      expect(out(pr, "node2", action, 7n, 1n)).toEqual({ status: "conflict", reason });
    }
    // Nothing of it changed the state.
    expect(pr.registeredKeys()).toEqual([1n, 2n]);
    expect(pr.held()).toEqual({ holder: "node1", key: 1n, type: WERO });
    expect(pr.generation).toBe(2);
  });

  it("RELEASE by the holder with another type is CHECK CONDITION naming both types, and keeps the reservation", () => {
    const pr = reservedBy1(WERO);
    expect(out(pr, "node1", release, 1n, 0n, EA)).toEqual({
      status: "check",
      reason: "RELEASE of type 3; the reservation is type 5",
    });
    expect(pr.held()?.holder).toBe("node1");
  });

  it("RELEASE with nothing reserved is GOOD and changes nothing", () => {
    const pr = new PersistentReservations();
    out(pr, "node1", register, 0n, 1n);
    expect(out(pr, "node1", release, 1n, 0n, EA)).toEqual({ status: "good" });
    expect(pr.held()).toBeUndefined();
    expect(pr.registeredKeys()).toEqual([1n]);
  });

  it("an unknown service action is CHECK CONDITION naming it", () => {
    const pr = reservedBy1(WERO);
    expect(out(pr, "node1", 5, 1n)).toEqual({
      status: "check",
      reason: "service action 5 is not supported",
    });
  });

  it("PREEMPT of the holder with an unsupported type is CHECK CONDITION and changes nothing", () => {
    const pr = reservedBy1(WERO);
    expect(out(pr, "node2", preempt, 2n, 1n, 2)).toEqual({
      status: "check",
      reason: "reservation type 2 is not supported (1, 3, 5 or 6)",
    });
    expect(pr.held()).toEqual({ holder: "node1", key: 1n, type: WERO });
    expect(pr.registeredKeys()).toEqual([1n, 2n]);
    expect(pr.generation).toBe(2);
  });

  it("PREEMPT of the holder takes the reservation with the type the preemptor gives", () => {
    const pr = reservedBy1(WERO);
    expect(out(pr, "node2", preempt, 2n, 1n, EARO)).toEqual({ status: "good" });
    expect(pr.held()).toEqual({ holder: "node2", key: 2n, type: EARO });
    expect(pr.mayRead("node1")).toBe(false);
  });

  it("PREEMPT of a key several initiators share removes each of them, and never the preemptor's own", () => {
    const pr = new PersistentReservations();
    out(pr, "node1", register, 0n, 1n);
    out(pr, "node2", register, 0n, 9n);
    out(pr, "node3", register, 0n, 9n);
    out(pr, "node4", register, 0n, 4n);
    out(pr, "node1", reserve, 1n);
    expect(out(pr, "node4", preempt, 4n, 9n)).toEqual({ status: "good" });
    expect(pr.registeredKeys()).toEqual([1n, 4n]);
    expect(pr.generation).toBe(5);
    // The holder preempting its own key keeps its registration and the reservation.
    out(pr, "node5", register, 0n, 1n);
    expect(out(pr, "node1", preempt, 1n, 1n)).toEqual({ status: "good" });
    expect(pr.keyOf("node1")).toBe(1n);
    expect(pr.keyOf("node5")).toBeUndefined();
    expect(pr.held()).toEqual({ holder: "node1", key: 1n, type: WERO });
  });

  it("PREEMPT of a key nobody holds is a conflict naming the key in hex; of key 0, CHECK CONDITION", () => {
    const pr = reservedBy1(WERO);
    expect(out(pr, "node1", preempt, 1n, 0xfen)).toEqual({
      status: "conflict",
      reason: "PREEMPT of key 0xfe: no initiator is registered with it",
    });
    expect(out(pr, "node1", preempt, 1n, 0n)).toEqual({
      status: "check",
      reason: "PREEMPT of key 0 while the reservation is not held by key 0",
    });
    expect(pr.generation).toBe(2);
  });

  it("PREEMPT with nothing reserved removes the key it names", () => {
    const pr = new PersistentReservations();
    out(pr, "node1", register, 0n, 1n);
    out(pr, "node2", register, 0n, 2n);
    expect(out(pr, "node1", preempt, 1n, 2n)).toEqual({ status: "good" });
    expect(pr.registeredKeys()).toEqual([1n]);
    expect(pr.held()).toBeUndefined();
    expect(pr.generation).toBe(3);
  });
});
