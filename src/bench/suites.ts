import type { BenchSuite } from "./harness.js";

/**
 * The benchmark suites `hvlab bench` knows, loaded on demand (each module in
 * bench/ exports `suite`). Compiled, they live in dist/bench/.
 */
export const BENCH_SUITES: Readonly<Record<string, () => Promise<{ suite: BenchSuite }>>> = {
  csv: () => import("../../bench/csv.js"),
  dirty: () => import("../../bench/dirty.js"),
  distributed: () => import("../../bench/distributed.js"),
  migrate: () => import("../../bench/migrate.js"),
  "migrate-live": () => import("../../bench/migrate-live.js"),
  net: () => import("../../bench/net.js"),
  paging: () => import("../../bench/paging.js"),
  power: () => import("../../bench/power.js"),
  storage: () => import("../../bench/storage.js"),
};

/** Loads a suite by name. */
export async function loadSuite(name: string): Promise<BenchSuite> {
  const load = BENCH_SUITES[name];
  if (!load) throw new RangeError(`unknown bench suite '${name}'`);
  return (await load()).suite;
}
