import { describe, expect, it, vi } from "vitest";

/*
 * What a pool worker finds when it imports the dirty domain's tasks module
 * (src/pool/domains.ts, HandlerTable.load): a `handlers` table with one
 * handler per task type the domain registers in task-types.ts. The module
 * is imported inside the test, as a worker imports it at start-up, so that
 * the table is the one built by this import.
 */

describe("the dirty domain's handler table", () => {
  it("holds a handler for each of its two task types", async () => {
    vi.resetModules();
    const { handlers } = await import("../src/dirty/tasks.js");
    expect(Object.keys(handlers).sort()).toEqual(["dirty.mark-pages", "dirty.mark-pages-in-pair"]);
    for (const run of Object.values(handlers)) expect(run).toBeTypeOf("function");
  });
});
