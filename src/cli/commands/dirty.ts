import type { Command } from "commander";
import { type DirtyProfile, profileDirtyRate } from "../../dirty/profile.js";
import { MAX_CONTENT_GUEST_BYTES, MAX_GUEST_BYTES } from "../../guest/guest.js";
import { recordsToTable, toCsv } from "../../report/csv.js";
import { formatTable } from "../../report/table.js";
import { formatBytes, formatSize } from "../../util/units.js";
import { WORKLOAD_KINDS, type WorkloadKind } from "../../workload/spec.js";
import {
  addGuestOption,
  addOutputOptions,
  addSeedOption,
  addVcpusOption,
  addWorkloadOptions,
  checkOutputFlags,
  checkWorkloadKind,
  integerOption,
  numberOption,
  sizeOptionOf,
  UsageError,
} from "../options.js";
import { startProgress } from "../progress.js";

interface DirtyFlags {
  guest: number;
  pageSize: number;
  workload: string;
  rate: number;
  period: number;
  periods: number;
  vcpus: number;
  hotSet?: number;
  hotFraction: number;
  zipf: number;
  content?: boolean;
  ring?: number;
  threads: number;
  seed: number;
  json?: boolean;
  csv?: boolean;
}

/** The period table of a profile, for the terminal and CSV. */
export function profileTable(profile: DirtyProfile) {
  return recordsToTable(profile.periods.map((p) => ({ ...p })));
}

/** `hvlab dirty`: a dirty-rate profile of a guest workload. */
export function registerDirty(program: Command): void {
  const dirty = program
    .command("dirty")
    .description(
      "profile a guest workload's dirty rate period by period (like QEMU's calc-dirty-rate)",
    );
  addGuestOption(dirty, { min: 1024 ** 2, max: MAX_GUEST_BYTES, fallback: 64 * 1024 ** 3 });
  dirty.addOption(
    sizeOptionOf("--page-size <size>", "guest page size: 4KiB or 2MiB", 4096, 2 * 1024 ** 2, 4096),
  );
  addWorkloadOptions(dirty, { kinds: WORKLOAD_KINDS, maxHotSet: MAX_GUEST_BYTES, zipf: true });
  dirty
    .option(
      "--rate <writes/s>",
      "guest writes per second of virtual time",
      numberOption(0, 1e12),
      2_000_000,
    )
    .option("--period <ms>", "measuring period in virtual ms", numberOption(1, 3_600_000), 100)
    .option("--periods <n>", "periods to run", integerOption(1, 100_000), 20);
  addVcpusOption(dirty, 256);
  dirty
    .option(
      "--content",
      "hold the guest's bytes and write them (at most 3GiB); default metadata mode",
    )
    .option(
      "--ring <entries>",
      "log to per-vCPU dirty rings of this many entries instead of the bitmap",
      integerOption(1, 65_536),
    )
    .option(
      "--threads <n>",
      "pool workers for the vCPUs (0: this thread)",
      integerOption(0, 256),
      0,
    );
  addSeedOption(dirty, "seed of the workload generators");
  addOutputOptions(dirty, { json: "print the profile as JSON", csv: "print the periods as CSV" });
  dirty.action(async (flags: DirtyFlags) => {
    checkOutputFlags(flags);
    checkWorkloadKind(flags.workload, WORKLOAD_KINDS);
    if (flags.pageSize !== 4096 && flags.pageSize !== 2 * 1024 ** 2) {
      throw new UsageError("--page-size must be 4KiB or 2MiB");
    }
    const pageShift = flags.pageSize === 4096 ? 12 : 21;
    // Refused here rather than by the engine, so that they exit 2 like every usage error.
    if (flags.guest % flags.pageSize !== 0) {
      throw new UsageError(
        `--guest ${formatSize(flags.guest)} is not a whole number of ${formatBytes(flags.pageSize)} pages`,
      );
    }
    if (flags.content && flags.guest > MAX_CONTENT_GUEST_BYTES) {
      throw new UsageError(
        `--guest ${formatSize(flags.guest)} cannot be held in content mode (at most ${formatSize(MAX_CONTENT_GUEST_BYTES)})`,
      );
    }
    if (flags.hotSet !== undefined && flags.hotSet % flags.pageSize !== 0) {
      throw new UsageError("--hot-set must be a whole number of pages");
    }
    const progress = startProgress("dirty", flags.periods);
    const profile = await profileDirtyRate({
      onPeriod: (record) => progress.update(record.period, `${record.dirtyPages} dirty`),
      bytes: flags.guest,
      pageShift,
      content: flags.content === true,
      vcpus: flags.vcpus,
      workload: {
        kind: flags.workload as WorkloadKind,
        hotFraction: flags.hotFraction,
        zipfExponent: flags.zipf,
        ...(flags.hotSet !== undefined ? { hotPages: flags.hotSet / flags.pageSize } : {}),
      },
      ...(flags.ring !== undefined ? { tracking: "ring" as const, ringEntries: flags.ring } : {}),
      seed: flags.seed,
      writesPerSecond: flags.rate,
      periodMs: flags.period,
      periods: flags.periods,
      threads: flags.threads,
    }).finally(() => progress.stop());
    if (flags.json) {
      console.log(JSON.stringify(profile, null, 2));
      return;
    }
    if (flags.csv) {
      process.stdout.write(toCsv(profileTable(profile)));
      return;
    }
    const s = profile.summary;
    console.log(
      `guest ${formatBytes(s.guestBytes)} (${s.guestPages.toLocaleString("en-US")} pages of ${formatBytes(s.pageBytes)}), ${s.mode} mode`,
    );
    console.log(formatTable(profileTable(profile)));
    console.log(
      `distinct pages dirtied: ${s.distinctPages.toLocaleString("en-US")}` +
        (s.expectedDistinctPages === null
          ? ""
          : ` (uniform model N(1-exp(-wt/N)): ${Math.round(s.expectedDistinctPages).toLocaleString("en-US")})`),
    );
    console.log(
      `dirty-pages-rate: mean ${Math.round(s.meanDirtyPagesRate).toLocaleString("en-US")}/s, peak ${Math.round(s.peakDirtyPagesRate).toLocaleString("en-US")}/s`,
    );
  });
}
