import { execFileSync, spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import {
  AddressSpaceError,
  checkAddressSpace,
  parseAddressSpace,
  SHARED_MEMORY_RESERVATION_BYTES,
} from "../src/memory/address-space.js";

const GiB = 1024 ** 3;
const BIN = new URL("../bin/hvlab.js", import.meta.url).pathname;
const MAIN = new URL("../dist/src/cli/main.js", import.meta.url).href;

/** Runs hvlab under an address-space limit (KiB, as `ulimit -v` takes it). */
function underLimit(kib: number, args: string[]) {
  return spawnSync(
    "sh",
    ["-c", `ulimit -v ${kib} && exec "$0" "$@"`, process.execPath, BIN, ...args],
    {
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, HVLAB_DEBUG: "" },
    },
  );
}

describe("address space is checked before it is reserved", () => {
  it("reads Linux's limit and use, and says what is needed when it does not fit", () => {
    const space = parseAddressSpace(
      "Limit                     Soft Limit           Hard Limit           Units\nMax address space         12884901888          unlimited            bytes\n",
      "Name:\tnode\nVmPeak:\t 11000000 kB\nVmSize:\t 11534336 kB\n",
    );
    expect(space).toEqual({ limit: 12 * GiB, used: 11 * GiB });
    expect(() => checkAddressSpace(GiB / 2, "a worker", space)).not.toThrow();
    expect(() => checkAddressSpace(2 * GiB, "2 workers", space)).toThrowError(
      new AddressSpaceError(
        "2 workers needs 2.0 GiB of address space, and only 1.0 GiB is left under this process's limit of 12.0 GiB (ulimit -v): raise the limit to at least 13.0 GiB",
      ),
    );
    // Unlimited, or no /proc: nothing to check.
    expect(
      parseAddressSpace(
        "Max address space         unlimited            unlimited            bytes",
        "",
      ),
    ).toEqual({ limit: null, used: null });
    expect(() => checkAddressSpace(100 * GiB, "x", { limit: null, used: 0 })).not.toThrow();
  });

  it("a shared memory that cannot be reserved is one line saying how much, not V8's words alone", () => {
    const run = underLimit(6 * 1024 ** 2, [
      "migrate-live",
      "--to",
      "127.0.0.1:1",
      "--guest",
      "2GiB",
    ]);
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(
      /^hvlab: a shared wasm32 memory \(its 4 GiB and guard regions, reserved up front\) needs 10\.0 GiB of address space, and only [0-9.]+ [GM]iB is left under this process's limit of 6\.0 GiB \(ulimit -v\): raise the limit to at least [0-9.]+ GiB\n$/,
    );
  });

  it("pool workers that would not fit are refused before they start, instead of V8's fatal OOM abort", () => {
    // This Node's own footprint with hvlab loaded, then room for the guest's memory and a bit.
    const base = Number(
      execFileSync(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          `await import(${JSON.stringify(MAIN)}); const s = (await import("node:fs")).readFileSync("/proc/self/status", "utf8"); console.log(/VmSize:\\s+(\\d+)/.exec(s)[1]);`,
        ],
        { encoding: "utf8" },
      ).trim(),
    );
    const limit = base + SHARED_MEMORY_RESERVATION_BYTES / 1024 + 400 * 1024;
    const args = ["migrate-live", "--to", "127.0.0.1:1", "--guest", "64MiB", "--threads", "1"];
    const refused = underLimit(limit, args);
    expect(refused.stderr).not.toMatch(/Fatal process OOM/);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(
      /^hvlab: 1 pool worker thread \(fewer threads need less\) needs 1\.0 GiB of address space, and only [0-9.]+ MiB is left under this process's limit of [0-9.]+ GiB \(ulimit -v\): raise the limit to at least [0-9.]+ GiB\n$/,
    );
    // Without a worker the same run fits, and goes as far as the (absent) destination.
    const fits = underLimit(limit, [...args.slice(0, -1), "0"]);
    expect(fits.stderr).toMatch(/cannot migrate to 127\.0\.0\.1:1: connection refused/);
  });
});
