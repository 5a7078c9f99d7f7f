import { readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, expectTypeOf, it } from "vitest";
import type { HarvestPagesResult, HarvestPagesTask } from "../src/bench/task-types.js";
import type { MarkResult } from "../src/dirty/task-types.js";
import { DirtyBitmap } from "../src/memory/dirty-bitmap.js";
import { MemoryLayout } from "../src/memory/layout.js";
import type { ChannelResult, ChannelTask } from "../src/migration/task-types.js";
import { checkDomains, HandlerTable } from "../src/pool/domains.js";
import { KernelPool } from "../src/pool/pool.js";
import type { MisregisteredTask, PoolTask, ResultOf, TaskType } from "../src/pool/registry.js";
import { packageRoot } from "../src/util/package-root.js";

/*
 * The pool knows no domain: each domain registers its task types (by
 * declaration merging into TaskRegistry) and its handlers (its tasks.js,
 * loaded by the workers of a pool that names it).
 */

const layout = new MemoryLayout();
const pool = new KernelPool(layout, { threads: 1, domains: ["dirty"] });
afterAll(() => pool.close());

/** Every folder of src/ that holds a tasks.ts: the domains a pool can load. */
const domainsWithTasks = readdirSync(join(packageRoot(), "src"), { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .filter((entry) => readdirSync(join(packageRoot(), "src", entry.name)).includes("tasks.ts"))
  .map((entry) => entry.name);

describe("task types registered by the domains", () => {
  it("keeps every message's type equal to the name it is registered under", () => {
    expectTypeOf<MisregisteredTask>().toEqualTypeOf<never>();
  });

  it("gives each task message its own result type", () => {
    expectTypeOf<ResultOf<HarvestPagesTask>>().toEqualTypeOf<HarvestPagesResult>();
    expectTypeOf<ResultOf<ChannelTask>>().toEqualTypeOf<ChannelResult>();
    expectTypeOf<
      ResultOf<Extract<PoolTask, { type: "dirty.mark-pages" }>>
    >().toEqualTypeOf<MarkResult>();
    expectTypeOf<"dirty.mark-pages">().toMatchTypeOf<TaskType>();
  });
});

describe("handlers loaded from the domains a pool names", () => {
  it("finds every domain's handler table, with no task type claimed twice", async () => {
    expect(domainsWithTasks.length).toBeGreaterThan(0);
    const table = await HandlerTable.load(domainsWithTasks);
    expect(table.types).toContain("dirty.mark-pages");
    expect(table.types).toContain("workload.run");
    expect(new Set(table.types).size).toBe(table.types.length);
  });

  it("runs a task of a domain the pool loaded", async () => {
    const bitmap = DirtyBitmap.allocate(layout, "registry-bitmap", 64);
    const result = await pool.run({
      type: "dirty.mark-pages",
      bitmap: bitmap.toDescriptor(),
      first: 3,
      count: 5,
      step: 7,
    });
    expect(result.newlyDirty).toBe(5);
    const dirty: number[] = [];
    bitmap.region.bytes(layout.memory).forEach((byte, i) => {
      for (let bit = 0; bit < 8; bit++) if (byte & (1 << bit)) dirty.push(i * 8 + bit);
    });
    expect(dirty).toEqual([3, 10, 17, 24, 31]);
  });

  it("refuses a task of a domain the pool did not load, naming the pool's domains", async () => {
    const bitmap = DirtyBitmap.allocate(layout, "registry-other", 64);
    await expect(
      pool.run({
        type: "workload.run",
        descriptor: bitmap.region.toDescriptor(),
        bitmap: bitmap.toDescriptor(),
        count: 1,
      }),
    ).rejects.toThrow(
      `unknown task type "workload.run": no domain of this pool (dirty) registers it`,
    );
  });

  it("refuses domain lists of the wrong shape before starting a worker", () => {
    expect(() => checkDomains([])).toThrow("pool domains must be a list of 1 to 64");
    expect(() => checkDomains("dirty")).toThrow("pool domains must be a list");
    expect(() => checkDomains(["../pool"])).toThrow(
      `pool domain "../pool" is not a domain folder name`,
    );
    expect(() => checkDomains(["Dirty"])).toThrow("is not a domain folder name");
    expect(() => checkDomains(["dirty", "dirty"])).toThrow("pool domain 'dirty' is named twice");
    expect(() => checkDomains(["no-such-domain"])).toThrow(
      "pool domain 'no-such-domain' has no built tasks (dist/src/no-such-domain/tasks.js)",
    );
    expect(() => new KernelPool(layout, { threads: 1, domains: ["memory"] })).toThrow(
      "pool domain 'memory' has no built tasks",
    );
  });
});
