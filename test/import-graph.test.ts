import { describe, expect, it } from "vitest";
import { packageRoot } from "../src/util/package-root.js";
import {
  importCircles,
  importGraph,
  importGraphProblems,
  rawExportUses,
  readSourceTree,
} from "./support/import-graph.js";

/*
 * The layers stay layers: the checker is first shown to catch each kind of
 * break on small made-up trees, then run on the project's src/.
 */

const tree = (files: Record<string, string>) => new Map(Object.entries(files));

describe("the import-graph checker", () => {
  it("resolves relative imports of every form, type-only and augmentations included", () => {
    const graph = importGraph(
      tree({
        "src/a/x.ts": [
          'import type { T } from "../b/y.js";',
          'export * from "./z.js";',
          'const later = await import("../c/w.js");',
          'declare module "../pool/registry.js" { interface TaskRegistry {} }',
          'import { Piscina } from "piscina";',
        ].join("\n"),
        "src/b/y.ts": "",
        "src/a/z.ts": "",
        "src/c/w.ts": "",
        "src/pool/registry.ts": "",
      }),
    );
    expect(graph.get("src/a/x.ts")).toEqual([
      "src/a/z.ts",
      "src/b/y.ts",
      "src/c/w.ts",
      "src/pool/registry.ts",
    ]);
  });

  it("finds a circle through several files, and a file importing itself", () => {
    const graph = new Map([
      ["a", ["b"]],
      ["b", ["c"]],
      ["c", ["a", "d"]],
      ["d", []],
      ["e", ["e"]],
    ]);
    expect(importCircles(graph)).toEqual([["a", "b", "c"], ["e"]]);
  });

  it("reports each broken rule with the files that break it", () => {
    const problems = importGraphProblems(
      tree({
        "src/guest/guest.ts": 'import { KernelPool } from "../pool/pool.js";',
        "src/pool/pool.ts": 'import type { Task } from "../migration/task-types.js";',
        "src/migration/task-types.ts": 'import type { Guest } from "../guest/guest.js";',
        "src/net/build.ts": 'import { onesSumOracle } from "../oracle/checksum.js";',
        "src/oracle/checksum.ts": 'import { fold } from "./fold.js";',
        "src/oracle/fold.ts": "",
        "src/pool/worker.ts": 'import { KernelContext } from "../wasm/context.js";',
        "src/wasm/context.ts": 'import { Region } from "../memory/region.js";',
        "src/memory/region.ts": "",
      }),
    );
    expect(problems).toEqual([
      "circle of 3 files: src/guest/guest.ts -> src/migration/task-types.ts -> src/pool/pool.ts",
      "the pool imports a domain: src/pool/pool.ts -> src/migration/task-types.ts",
      "production code imports an oracle: src/net/build.ts -> src/oracle/checksum.ts",
    ]);
  });
});

describe("the raw-exports checker", () => {
  it("finds an Exports type, instantiateKernel or a namespace import taken from src/wasm/", () => {
    const files = tree({
      "src/net/lso.ts": 'import type { SegmentExports } from "../wasm/segment.js";',
      "src/net/rss.ts": 'import { compileKernel, instantiateKernel } from "../wasm/loader.js";',
      "src/paging/tasks.ts": 'import * as walk from "../wasm/walk.js";',
      "src/wasm/context.ts": 'import { type DirtyExports, DirtyKernel } from "./dirty.js";',
      "bench/net.ts": 'import { ChecksumKernel } from "../src/wasm/checksum.js";',
      "test/loader.test.ts": 'import { instantiateKernel } from "../src/wasm/loader.js";',
    });
    expect(rawExportUses(files)).toEqual([
      "raw kernel exports outside src/wasm/: src/net/lso.ts imports SegmentExports",
      "raw kernel exports outside src/wasm/: src/net/rss.ts imports instantiateKernel",
      "raw kernel exports outside src/wasm/: src/paging/tasks.ts imports * (a namespace import)",
      "raw kernel exports outside src/wasm/: test/loader.test.ts imports instantiateKernel",
    ]);
    expect(rawExportUses(files, false)).toEqual([
      "raw kernel exports outside src/wasm/: src/net/lso.ts imports SegmentExports",
      "raw kernel exports outside src/wasm/: src/paging/tasks.ts imports * (a namespace import)",
    ]);
  });
});

describe("kernels reached only through their wrappers", () => {
  it("no production or benchmark file outside src/wasm/ takes a raw export or instantiates a module", () => {
    expect(rawExportUses(readSourceTree(packageRoot(), ["src", "bench"]))).toEqual([]);
  });

  it("no test takes a module's raw exports", () => {
    expect(rawExportUses(readSourceTree(packageRoot(), ["test"]), false)).toEqual([]);
  });
});

describe("the project's import graph", () => {
  const problems = importGraphProblems(readSourceTree(packageRoot(), ["src"]));
  const of = (kind: string) => problems.filter((problem) => problem.startsWith(kind));

  it("has no import circle in src/", () => {
    expect(of("circle")).toEqual([]);
  });

  it("keeps src/pool/ below every domain", () => {
    expect(of("the pool imports")).toEqual([]);
  });

  it("keeps the oracles out of production code", () => {
    expect(of("production code imports an oracle")).toEqual([]);
  });

  it("breaks no rule the checks above do not name", () => {
    expect(problems).toEqual([
      ...of("circle"),
      ...of("the pool imports"),
      ...of("production code imports an oracle"),
    ]);
  });
});
