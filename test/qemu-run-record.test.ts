import { describe, expect, it } from "vitest";
import { runMigration } from "../src/migration/engine.js";
import type { QemuMigrationRun } from "../src/qemu/migrate.js";
import type { MigrateSample } from "../src/qemu/rounds.js";
import { qemuRunRecord } from "../src/qemu/run-record.js";

const MiB = 2 ** 20;

describe("the qemu record of a real run (`--json`)", async () => {
  // A small migration of the model stands in for the run's result: the
  // record reads none of it, only what QEMU measured beside it.
  const result = await runMigration({
    guestBytes: 16 * MiB,
    content: false,
    vcpus: 1,
    workload: { kind: "uniform" },
    writesPerSecond: 0,
    seed: 1,
    policy: "qemu",
    maxBandwidth: 100 * MiB,
    downtimeLimitMs: 30,
    giveUp: "never",
    timeoutMs: 5000,
  });
  const samples: MigrateSample[] = [
    { atMs: 0, info: { status: "active", ram: { transferred: 0, "dirty-sync-count": 1 } } },
    { atMs: 50, info: { status: "active", ram: { transferred: 5 * MiB, "dirty-sync-count": 1 } } },
    { atMs: 100, info: { status: "completed", ram: { transferred: 9 * MiB } } },
  ];
  const run: QemuMigrationRun = {
    result,
    samples,
    rateBefore: {
      writesPerSecond: 10_000,
      writesPerGuestSecond: 10_050,
      writes: 10_000,
      wallMs: 1000,
    },
    rateDuring: 9000,
    rateFirstSecond: 9100,
    destinationRuns: true,
    qemuVersion: "7.2.22",
    pids: { source: 101, destination: 102 },
  };

  it("carries the number of samples, and without --samples not the samples", () => {
    const record = qemuRunRecord(run, false);
    expect(record["sample-count"]).toBe(3);
    expect(record.samples).toBeUndefined();
    expect(JSON.parse(JSON.stringify(record))).not.toHaveProperty("samples");
    expect(record["write-rate-during"]).toBe(9000);
    expect(record.pids).toEqual({ source: 101, destination: 102 });
  });

  it("with --samples carries every query-migrate answer as QEMU gave it, in order", () => {
    const printed = JSON.parse(JSON.stringify(qemuRunRecord(run, true))) as {
      "sample-count": number;
      samples: MigrateSample[];
    };
    expect(printed["sample-count"]).toBe(3);
    expect(printed.samples).toEqual(samples);
    expect(printed.samples.map((s) => s.info.ram?.transferred)).toEqual([0, 5 * MiB, 9 * MiB]);
  });
});
