import { describe, expect, it, vi } from "vitest";

/*
 * What a pool worker finds when it imports the guest's tasks module
 * (src/pool/domains.ts, HandlerTable.load): a `handlers` table with one
 * handler per task type the guest registers in task-types.ts. The module
 * is imported inside the test, as a worker imports it at start-up, so that
 * the table is the one built by this import.
 */

describe("the guest's handler table", () => {
  it("holds a handler for its one task type", async () => {
    vi.resetModules();
    const { handlers } = await import("../src/guest/tasks.js");
    expect(Object.keys(handlers)).toEqual(["workload.run"]);
    expect(handlers["workload.run"]).toBeTypeOf("function");
  });
});
