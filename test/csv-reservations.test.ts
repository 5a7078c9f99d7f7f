import { describe, expect, it } from "vitest";
import { PersistentReservations, ReservationType, ServiceAction } from "../src/csv/reservations.js";

// SPC-3 section 5.6's persistent reservations, as CSV uses them: nodes
// register keys, the coordinator holds a Write Exclusive - Registrants Only
// reservation, and a survivor preempts a dead node's key.

const WERO = ReservationType.writeExclusiveRegistrantsOnly;
const out = (
  pr: PersistentReservations,
  who: string,
  action: number,
  key: bigint,
  serviceKey = 0n,
  type: number = WERO,
) => pr.out(who, { action, type, key, serviceKey }).status;

describe("persistent reservations", () => {
  it("everyone may write until a reservation is held; then only registrants under type 5", () => {
    const pr = new PersistentReservations();
    expect(pr.mayWrite("backup")).toBe(true);
    expect(out(pr, "node1", ServiceAction.register, 0n, 0x11n)).toBe("good");
    expect(out(pr, "node2", ServiceAction.register, 0n, 0x22n)).toBe("good");
    expect(pr.generation).toBe(2);
    expect(out(pr, "node1", ServiceAction.reserve, 0x11n)).toBe("good");
    expect(pr.generation).toBe(2); // RESERVE does not change PRgeneration
    expect(pr.mayWrite("node1")).toBe(true);
    expect(pr.mayWrite("node2")).toBe(true);
    expect(pr.mayWrite("backup")).toBe(false);
    expect(pr.mayRead("backup")).toBe(true); // Write Exclusive: reads stay open
    expect(pr.held()).toEqual({ holder: "node1", key: 0x11n, type: WERO });
  });

  it("refuses commands with the wrong key, a second holder, and an unsupported type", () => {
    const pr = new PersistentReservations();
    expect(out(pr, "node1", ServiceAction.register, 0x5n, 0x11n)).toBe("conflict"); // unregistered must give key 0
    expect(out(pr, "node1", ServiceAction.register, 0n, 0x11n)).toBe("good");
    expect(out(pr, "node1", ServiceAction.register, 0x99n, 0x12n)).toBe("conflict");
    expect(out(pr, "node2", ServiceAction.reserve, 0x22n)).toBe("conflict"); // not registered
    expect(out(pr, "node2", ServiceAction.register, 0n, 0x22n)).toBe("good");
    expect(out(pr, "node1", ServiceAction.reserve, 0x11n, 0n, 2)).toBe("check");
    expect(out(pr, "node1", ServiceAction.reserve, 0x11n)).toBe("good");
    expect(out(pr, "node1", ServiceAction.reserve, 0x11n)).toBe("good"); // same holder, same type
    expect(out(pr, "node2", ServiceAction.reserve, 0x22n)).toBe("conflict");
    expect(out(pr, "node2", ServiceAction.release, 0x22n)).toBe("good"); // not the holder: nothing happens
    expect(pr.held()?.holder).toBe("node1");
    expect(
      out(pr, "node1", ServiceAction.release, 0x11n, 0n, ReservationType.exclusiveAccess),
    ).toBe("check");
    expect(out(pr, "node1", ServiceAction.release, 0x11n)).toBe("good");
    expect(pr.held()).toBeUndefined();
    expect(out(pr, "node1", 9, 0x11n)).toBe("check");
  });

  it("PREEMPT of the holder's key moves the reservation and fences the holder's writes", () => {
    const pr = new PersistentReservations();
    for (const [who, key] of [
      ["node1", 1n],
      ["node2", 2n],
      ["node3", 3n],
    ] as const)
      out(pr, who, ServiceAction.register, 0n, key);
    out(pr, "node1", ServiceAction.reserve, 1n);
    const before = pr.generation;
    expect(out(pr, "node2", ServiceAction.preempt, 2n, 1n)).toBe("good");
    expect(pr.generation).toBe(before + 1);
    expect(pr.held()).toEqual({ holder: "node2", key: 2n, type: WERO });
    expect(pr.mayWrite("node1")).toBe(false);
    expect(pr.mayWrite("node3")).toBe(true);
    // The fenced node cannot undo it: its key is gone.
    expect(out(pr, "node1", ServiceAction.reserve, 1n)).toBe("conflict");
    expect(out(pr, "node1", ServiceAction.preempt, 1n, 2n)).toBe("conflict");
    // It may register again (a new key) and write as a registrant, once it knows it was fenced.
    expect(out(pr, "node1", ServiceAction.register, 0n, 0x101n)).toBe("good");
    expect(pr.mayWrite("node1")).toBe(true);
    expect(pr.held()?.holder).toBe("node2");
  });

  it("PREEMPT of a key that is not the holder's removes only that registration", () => {
    const pr = new PersistentReservations();
    for (const [who, key] of [
      ["node1", 1n],
      ["node2", 2n],
      ["node3", 3n],
    ] as const)
      out(pr, who, ServiceAction.register, 0n, key);
    out(pr, "node1", ServiceAction.reserve, 1n);
    expect(out(pr, "node1", ServiceAction.preempt, 1n, 3n)).toBe("good");
    expect(pr.registeredKeys()).toEqual([1n, 2n]);
    expect(pr.held()?.holder).toBe("node1");
    expect(out(pr, "node1", ServiceAction.preempt, 1n, 7n)).toBe("conflict"); // nobody holds 7
    expect(out(pr, "node1", ServiceAction.preempt, 1n, 0n)).toBe("check");
  });

  it("unregistering the holder releases the reservation; CLEAR removes everything", () => {
    const pr = new PersistentReservations();
    out(pr, "node1", ServiceAction.register, 0n, 1n);
    out(pr, "node2", ServiceAction.register, 0n, 2n);
    out(pr, "node1", ServiceAction.reserve, 1n);
    expect(out(pr, "node1", ServiceAction.register, 1n, 0n)).toBe("good");
    expect(pr.held()).toBeUndefined();
    out(pr, "node2", ServiceAction.reserve, 2n);
    expect(out(pr, "node2", ServiceAction.clear, 2n)).toBe("good");
    expect(pr.registeredKeys()).toEqual([]);
    expect(pr.held()).toBeUndefined();
  });
});
