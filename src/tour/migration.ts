import { runMigration } from "../migration/engine.js";
import { geometricModel } from "../migration/model.js";
import { convergenceCharts, roundsTable, sweepHeatMaps, sweepTable } from "../migration/report.js";
import { runSweep } from "../migration/sweep.js";
import type { ReportChart } from "../report/chart.js";
import { formatNumber } from "../report/format.js";
import type { ReportSection, ReportTable } from "../report/section.js";
import { formatBytes } from "../util/units.js";
import type { TourOptions, TourSection } from "./section.js";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

/** What a further part of the migration tour adds to the section. */
export interface MigrationTourPart {
  readonly summary: readonly string[];
  readonly tables: readonly ReportTable[];
  readonly charts: readonly ReportChart[];
  readonly data: unknown;
}

/**
 * Further parts of the migration section, run after the profile and the
 * sweep, in order. The live-over-TCP against quick-migration comparison
 * registers itself here (`MIGRATION_TOUR_PARTS.push(...)`).
 */
export const MIGRATION_TOUR_PARTS: ((options: TourOptions) => Promise<MigrationTourPart>)[] = [];

/** The tour's migration section: one convergence profile and a small sweep. */
export const migrationTourSection: TourSection = {
  id: "migration",
  title: "Live migration",
  async run(options): Promise<ReportSection> {
    const { quick, seed, log } = options;
    const guestBytes = quick ? 64 * MiB : 1 * GiB;
    const bandwidth = quick ? 100e6 / 8 : 1e9 / 8;
    const link = quick ? "100 Mbit/s" : "1 Gbit/s";
    const writesPerSecond = quick ? 20_000 : 150_000;
    log(
      `  migrating a ${formatBytes(guestBytes)} guest in content mode over ${link} (qemu, XBZRLE)...`,
    );
    const profile = await runMigration({
      guestBytes,
      content: true,
      workload: { kind: "hotset", hotFraction: 0.9 },
      writesPerSecond,
      maxBandwidth: bandwidth,
      xbzrle: true,
      seed,
    });
    const s = profile.summary;
    const lambda = (writesPerSecond * 4096) / bandwidth;
    const model = geometricModel(
      guestBytes,
      writesPerSecond * 4096,
      bandwidth,
      bandwidth * 0.3,
      50,
    );

    const sweepGuest = quick ? 1 * GiB : 8 * GiB;
    log(`  sweeping bandwidth x dirty rate x policy on a ${formatBytes(sweepGuest)} guest...`);
    const sweep = await runSweep(
      { guestBytes: sweepGuest, content: false, workload: { kind: "hotset" }, seed },
      {
        // Three values on each axis even when quick: the heat maps must sort them as numbers.
        bandwidths: [1e9 / 8, 2.5e9 / 8, 10e9 / 8],
        writeRates: [20_000, 100_000, 400_000],
        downtimeLimitsMs: [300],
        policies: ["qemu", "hyperv", "xen"],
      },
      { workers: 2 },
    );
    const extra: MigrationTourPart[] = [];
    for (const part of MIGRATION_TOUR_PARTS) extra.push(await part(options));

    const xbz = s["xbzrle-cache"];
    // QEMU's stop rule aims for the downtime limit; the fixed switchover is paid on top.
    const downtimeTarget = 300 + 50;
    const converged = sweep.points.filter((p) => p.summary.status === "completed").length;
    return {
      id: "migration",
      title: "Live migration",
      summary: [
        `A ${formatBytes(guestBytes)} guest (content mode: its bytes really copied to a destination with its own memory) writing ${formatNumber(writesPerSecond)} pages a second, 90 % into a hot set, migrated over a ${link} link with QEMU's stop rule (pending bytes < bandwidth x 300 ms).`,
        `Result: ${s.status} after ${s.rounds} rounds in ${formatNumber(s["total-time"] / 1000)} s of virtual time, downtime ${formatNumber(s.downtime)} ms (${formatBytes(s["downtime-bytes"])} in stop-and-copy, the 50 ms switchover included), ${formatBytes(s.transferred)} sent; ${formatNumber(s.duplicate)} zero pages went as a header and a byte${xbz ? `, ${formatNumber(xbz.pages)} pages as XBZRLE deltas (encoding rate ${formatNumber(xbz["encoding-rate"])})` : ""}. Every destination page matched the source by XXH3-64: ${s.verified ? "yes" : "no"}.`,
        model.stopRound === null
          ? `Were every write to land on a fresh page, the geometric pre-copy model (Clark et al., NSDI 2005; docs/references.md) with lambda = D / R = ${formatNumber(lambda)} >= 1 says this would never converge; it does because 90 % of the writes fall into a hot set whose distinct pages saturate.`
          : `The geometric pre-copy model (Clark et al., NSDI 2005; docs/references.md) with lambda = D / R = ${formatNumber(lambda)} predicts ${model.stopRound} rounds for uniform writes; the hot set saturates and changes that.`,
        `The sweep ran ${sweep.points.length} migrations (metadata mode) on 2 pool workers in ${formatNumber(sweep.wallMs / 1000)} s; ${converged} completed. qemu gives up (not-converged) where the hot set outruns the link, hyperv and xen suspend anyway after 10 passes or 30 rounds and pay for it in downtime.`,
        ...extra.flatMap((part) => part.summary),
      ],
      headline: {
        figure: `${s.status} in ${s.rounds} rounds, downtime ${formatNumber(s.downtime)} ms, ${formatBytes(s.transferred)} sent for ${formatBytes(guestBytes)}`,
        target: `converges with downtime under ${downtimeTarget} ms (300 ms limit + 50 ms switchover)`,
        met: s.status === "completed" && s.downtime <= downtimeTarget,
      },
      charts: [
        ...convergenceCharts(profile, 4096),
        ...sweepHeatMaps(sweep),
        ...extra.flatMap((part) => part.charts),
      ],
      tables: [
        { ...roundsTable(profile), title: "Rounds of the profile" },
        sweepTable(sweep),
        ...extra.flatMap((part) => part.tables),
      ],
      data: { profile, sweep, extra: extra.map((part) => part.data) },
    };
  },
};
