import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import type { CompareResult } from "../src/paging/compare.js";
import { requireTool } from "./support/cli.js";
import { fileTempDir } from "./support/temp.js";

const run = promisify(execFile);
const hvlab = join(import.meta.dirname, "..", "bin", "hvlab.js");
const fixture = join(import.meta.dirname, "fixtures", "touch.lackey.gz");
const dir = fileTempDir("paging-cli");

async function hvlabJson(args: string[]): Promise<CompareResult> {
  const { stdout } = await run("node", [hvlab, ...args], { maxBuffer: 64 * 2 ** 20 });
  return JSON.parse(stdout) as CompareResult;
}

async function hvlabFails(args: string[]): Promise<string> {
  try {
    await run("node", [hvlab, ...args]);
  } catch (error) {
    const e = error as { stderr: string; code: number };
    expect(e.code).not.toBe(0);
    return e.stderr;
  }
  throw new Error(`hvlab ${args.join(" ")} succeeded`);
}

function checkComparison(result: CompareResult, accesses: number): void {
  expect(result.rows.map((r) => r.label)).toEqual([
    "native",
    "shadow",
    "slat-4k",
    "slat-2m",
    "slat-large",
  ]);
  for (const row of result.rows) expect(row.accesses).toBe(accesses);
  const sum = (label: string) => result.rows.find((r) => r.label === label)?.checksum;
  // Same guest, 4 KiB guest pages: shadow and SLAT translate every access to the same host-physical address.
  expect(sum("shadow")).toBe(sum("slat-4k"));
  expect(sum("shadow")).toBe(sum("slat-2m"));
  const native = result.rows.find((r) => r.label === "native");
  expect(native?.ratioToNative).toBe(1);
  expect(native?.totalExits).toBe(0);
  expect(result.rows.find((r) => r.label === "shadow")?.exits["hidden-page-fault"]).toBeGreaterThan(
    0,
  );
  expect(result.rows.find((r) => r.label === "slat-4k")?.exits["ept-violation"]).toBeGreaterThan(0);
  for (const p of result.costModel) expect(["assumed", "published"]).toContain(p.kind);
}

describe("hvlab paging compare", () => {
  it("runs a lackey trace of a real program", async () => {
    const result = await hvlabJson(["paging", "compare", "--trace", fixture, "--json"]);
    expect(result.trace?.format).toBe("lackey");
    expect(result.trace?.gzip).toBe(true);
    expect(result.trace?.records).toBeGreaterThan(150_000);
    checkComparison(result, result.trace?.records ?? 0);
  });

  it("runs a synthetic workload with OS activity and writes CSV", async () => {
    const args = [
      "paging",
      "compare",
      "--accesses",
      "50000",
      "--working-set",
      "32MiB",
      "--processes",
      "2",
    ];
    const more = [
      "--switches",
      "20000",
      "--forks",
      "2000",
      "--pt-updates",
      "100000",
      "--munmaps",
      "50000",
    ];
    const result = await hvlabJson([...args, ...more, "--json"]);
    checkComparison(result, 50_000);
    const shadow = result.rows.find((r) => r.label === "shadow");
    expect(shadow?.exits["cr3-write"]).toBeGreaterThan(0);
    expect(shadow?.exits.invlpg).toBeGreaterThan(0);
    const { stdout } = await run("node", [hvlab, ...args, "--csv", "--threads", "0"]);
    const lines = stdout.trim().split("\r\n");
    expect(lines).toHaveLength(6);
    expect(lines[0]).toMatch(/^config,mode,guest page,host page,accesses,/);
  });

  it("gives the same results on this thread and on fewer workers than configurations, past the ring's size", async () => {
    // 600,000 records: more than the ring's 8 x 65,536, so the producer must wait for slow consumers.
    const args = ["paging", "compare", "--accesses", "600000", "--working-set", "8MiB", "--json"];
    const [local, pooled] = await Promise.all([
      hvlabJson([...args, "--threads", "0"]),
      hvlabJson([...args, "--threads", "2"]),
    ]);
    expect(pooled.rows).toEqual(local.rows);
  });

  it("counts dirty-logging exits under SLAT and shadow, none natively", async () => {
    const result = await hvlabJson([
      "paging",
      "compare",
      "--accesses",
      "60000",
      "--working-set",
      "16MiB",
      "--prefault",
      "--dirty-log",
      "50000",
      "--threads",
      "0",
      "--json",
    ]);
    const exits = (label: string) => result.rows.find((r) => r.label === label)?.exits["dirty-log"];
    expect(exits("native")).toBe(0);
    expect(exits("shadow")).toBeGreaterThan(0);
    expect(exits("slat-4k")).toBeGreaterThan(0);
    // Only the first write to each page after a harvest exits.
    expect(exits("slat-4k")).toBeLessThanOrEqual(4096 * 3);
  });

  it("prints a table with the cost model and its assumptions", async () => {
    const { stdout } = await run("node", [
      hvlab,
      "paging",
      "compare",
      "--accesses",
      "20000",
      "--threads",
      "0",
    ]);
    expect(stdout).toMatch(/slat-large/);
    expect(stdout).toMatch(/vmExitCycles\s+1,200\s+assumed/);
  });

  it("says what is wrong: unknown preset, impossible geometry, malformed trace line", async () => {
    expect(await hvlabFails(["paging", "compare", "--cpu", "pentium"])).toMatch(
      /unknown CPU preset 'pentium'/,
    );
    expect(await hvlabFails(["paging", "compare", "--l2", "100/12"])).toMatch(
      /impossible geometry/,
    );
    const bad = join(dir, "bad.lackey");
    writeFileSync(bad, "I  0400d7d4,8\n L 7ff000398,8\n L nothex,8\n");
    expect(await hvlabFails(["paging", "compare", "--trace", bad, "--format", "lackey"])).toMatch(
      /bad\.lackey:3: bad hex address/,
    );
    // A worker that fails (the guest runs out of memory) stops the whole run instead of hanging it.
    expect(
      await hvlabFails([
        "paging",
        "compare",
        "--working-set",
        "2GiB",
        "--guest",
        "1GiB",
        "--accesses",
        "600000",
      ]),
    ).toMatch(/guest memory \(1073741824 bytes\) is exhausted/);
    const lenient = await hvlabJson([
      "paging",
      "compare",
      "--trace",
      bad,
      "--format",
      "lackey",
      "--lenient",
      "--json",
    ]);
    expect(lenient.trace?.skipped).toBe(1);
    expect(lenient.trace?.records).toBe(2);
  });
});

describe("hvlab paging walk", () => {
  it("explains a cold 4x4 walk in 24 references", async () => {
    const { stdout } = await run("node", [hvlab, "paging", "walk", "0x7f0012345678", "--json"]);
    const w = JSON.parse(stdout) as { references: unknown[]; hpa: number };
    expect(w.references).toHaveLength(24);
    expect(w.hpa % 4096).toBe(0x678);
  });

  it("sets EPT accessed and dirty flags when EPTP bit 6 is on (Intel SDM 3C: A bit 8, D bit 9)", async () => {
    const { stdout } = await run("node", [
      hvlab,
      "paging",
      "walk",
      "0x7f0012345678",
      "--ept-ad",
      "--write",
      "--json",
    ]);
    const w = JSON.parse(stdout) as { references: { dimension: string; entry: string }[] };
    const leaf = BigInt(w.references.at(-1)?.entry ?? "0");
    expect(w.references.at(-1)?.dimension).toBe("host");
    expect(leaf & 0x300n).toBe(0x300n);
  });

  it("walks a 57-bit address with 5-level paging, and names --levels 5 when refusing it with 4", async () => {
    const { stdout } = await run("node", [
      hvlab,
      "paging",
      "walk",
      "0xf578d6eaf5f678",
      "--levels",
      "5",
      "--json",
    ]);
    const w = JSON.parse(stdout) as {
      address: string;
      references: { dimension: string }[];
      hpa: number;
    };
    expect(w.address).toBe("0xf578d6eaf5f678");
    // 5 guest levels over a 4-level EPT: (5 + 1)(4 + 1) - 1 references.
    expect(w.references).toHaveLength(29);
    expect(w.references.filter((r) => r.dimension === "guest")).toHaveLength(5);
    expect(w.hpa % 4096).toBe(0x678);
    expect(await hvlabFails(["paging", "walk", "0xf578d6eaf5f000"])).toMatch(
      /outside the 4-level user address space .*--levels 5/,
    );
  });

  it("refuses an address outside the address space", async () => {
    expect(await hvlabFails(["paging", "walk", "0x800000000000"])).toMatch(
      /outside the 4-level user address space/,
    );
  });
});

describe("a lackey trace recorded live with Valgrind", () => {
  // Skips naming valgrind when it is missing; in CI (CI=true) a missing valgrind fails here.
  const valgrind = requireTool("valgrind");
  it.skipIf(!valgrind)(
    "records /bin/true with valgrind and compares it (skipped without valgrind)",
    async () => {
      const trace = join(dir, "true.lackey");
      await run("valgrind", [
        "--tool=lackey",
        "--trace-mem=yes",
        `--log-file=${trace}`,
        "/bin/true",
      ]);
      const result = await hvlabJson([
        "paging",
        "compare",
        "--trace",
        trace,
        "--json",
        "--threads",
        "2",
      ]);
      expect(result.trace?.format).toBe("lackey");
      checkComparison(result, result.trace?.records ?? 0);
    },
  );
});
