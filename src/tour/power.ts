import { savingsPercent } from "../power/compare.js";
import { DEFAULT_LOAD, type LoadSpec } from "../power/load.js";
import { DEFAULT_PARKING } from "../power/parking.js";
import { namedPolicy } from "../power/policies.js";
import { PROCESSOR_PRESETS, type ProcessorModel } from "../power/processors.js";
import {
  DEFAULT_TIMING,
  type SimulationResult,
  type SimulationSpec,
  simulate,
} from "../power/simulate.js";
import { runPowerSweep } from "../power/sweep.js";
import { recordsToTable } from "../report/csv.js";
import type { ReportSection } from "../report/section.js";
import type { TourSection } from "./section.js";

const SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";
const CLAIM =
  "Microsoft claimed 10-18 % less power for Windows Server 2008 R2 than for Windows Server 2003 SP2.";

const round = (value: number, digits = 2) => Number(value.toFixed(digits));

function residencyRows(results: readonly SimulationResult[]) {
  return results.flatMap((r) =>
    r.residency
      .filter((s) => s.state !== "platform")
      .map((s) => ({ policy: r.policy, state: s.state, share: round(s.share * 100) })),
  );
}

/** The tour's power section: parking against no parking, idle governors, VMQ interrupts, a sweep. */
export const powerTourSection: TourSection = {
  id: "power",
  title: "Core parking and power: energy against wake-up latency",
  async run({ quick, seed, log }): Promise<ReportSection> {
    const model = PROCESSOR_PRESETS["nehalem-ep"] as ProcessorModel;
    const base = (load: Partial<LoadSpec>, policy: string, durationS: number): SimulationSpec => ({
      ...DEFAULT_TIMING,
      model,
      load: { ...DEFAULT_LOAD, ...load },
      policy: namedPolicy(policy),
      durationS,
      seed,
    });

    log("  a diurnal day (10-50 % utilization) with and without core parking...");
    const day: Partial<LoadSpec> = {
      pattern: "diurnal",
      utilization: 0.5,
      low: 0.1,
      periodS: quick ? 2 : 6,
    };
    const dayS = quick ? 2 : 6;
    const dayRuns = ["none", "parking", "menu", "menu-parking"].map((p) =>
      simulate(base(day, p, dayS)),
    );
    const [dayNone] = dayRuns;
    if (!dayNone) throw new Error("the baseline did not run");

    log("  Poisson loads of 10, 30 and 50 % against Microsoft's claim...");
    const levels = [0.1, 0.3, 0.5].map((u) => {
      const none = simulate(base({ utilization: u }, "none", quick ? 1 : 2));
      const parking = simulate(base({ utilization: u }, "parking", quick ? 1 : 2));
      return { utilization: u, none, parking, savings: savingsPercent(none, parking) };
    });
    const meanSavings = levels.reduce((a, l) => a + l.savings, 0) / levels.length;

    log("  VMQ interrupts spread over every processor, then steered to unparked ones...");
    const vmq = { queues: 16, interruptsPerSecond: 2000, serviceUs: 20 };
    const vmqBase = base({ utilization: 0.1 }, "parking", quick ? 1 : 2);
    const vmqNone = simulate({
      ...vmqBase,
      policy: namedPolicy("none"),
      vmq: { ...vmq, steering: "spread" },
    });
    const spread = simulate({ ...vmqBase, vmq: { ...vmq, steering: "spread" } });
    const steered = simulate({ ...vmqBase, vmq: { ...vmq, steering: "unparked" } });

    log("  race to idle: work at P0 against the slowest P-state, menu governor and parking...");
    const slowest = model.pstates.length - 1;
    const race = simulate(base({ utilization: 0.3 }, "menu-parking", quick ? 1 : 2));
    const slowSpec = base({ utilization: 0.3 }, "menu-parking", quick ? 1 : 2);
    const slow = simulate({
      ...slowSpec,
      policy: namedPolicy("menu-parking", DEFAULT_PARKING, slowest),
    });

    log("  sweeping CPMinCores x CPHeadroom on 2 pool workers...");
    const sweep = await runPowerSweep(
      base({ utilization: 0.3 }, "parking", quick ? 0.5 : 1.5),
      { parameter: "CPMinCores", values: quick ? [0, 50, 100] : [0, 25, 50, 75, 100] },
      { parameter: "CPHeadroom", values: quick ? [10, 50, 90] : [10, 30, 50, 70, 90] },
      { workers: 2 },
    );

    const timeline = dayRuns
      .filter((r) => r.policy.includes("parking"))
      .flatMap((r) =>
        r.timeline.map((t) => ({ policy: r.policy, s: round(t.timeS, 3), unparked: t.unparked })),
      );
    const loadLine = dayNone.timeline.map((t) => ({
      s: round(t.timeS, 3),
      load: round(t.load, 3),
    }));

    const policyTable = recordsToTable(
      dayRuns.map((r) => ({
        policy: r.policy,
        "mean power (W)": round(r.meanWatts),
        "savings (%)": round(savingsPercent(dayNone, r)),
        "mean unparked": round(r.meanUnparked),
        "added p50 (us)": r.latency.p50Us,
        "added p99 (us)": r.latency.p99Us,
        "added p99.9 (us)": r.latency.p999Us,
      })),
    );
    const claimTable = recordsToTable(
      levels.map((l) => ({
        "utilization (%)": l.utilization * 100,
        "no parking (W)": round(l.none.meanWatts),
        "parking (W)": round(l.parking.meanWatts),
        "savings (%)": round(l.savings),
        "Microsoft's claim (%)": "10-18",
      })),
    );
    const vmqTable = recordsToTable(
      [
        ["no parking, spread", vmqNone],
        ["parking, interrupts spread over every processor", spread],
        ["parking, interrupts steered to unparked processors", steered],
      ].map(([label, r]) => {
        const result = r as SimulationResult;
        return {
          case: label as string,
          "mean power (W)": round(result.meanWatts),
          "interrupts on parked processors": result.latency.interruptsOnParked,
          "parked wake-ups": result.latency.parkedWakeups,
          "mean unparked": round(result.meanUnparked),
          "added p99 (us)": result.latency.p99Us,
        };
      }),
    );
    const raceTable = recordsToTable(
      [race, slow].map((r, i) => ({
        "P-state": model.pstates[i === 0 ? 0 : slowest]?.name ?? "",
        "mean power (W)": round(r.meanWatts),
        "mean load (processors)": round(r.meanLoad),
        "added p99 (us)": r.latency.p99Us,
      })),
    );
    const heat = sweep.points.map((p) => ({
      CPMinCores: p.x,
      CPHeadroom: p.y,
      savings: round(p.savingsPercent),
      p99: p.addedP99Us,
    }));

    return {
      id: "power",
      title: this.title,
      headline: {
        figure: `core parking used ${round(meanSavings, 1)} % less energy than no parking at 10-50 % utilization (Nehalem-EP preset watts); VMQ interrupts steered to unparked processors woke parked ones ${steered.latency.parkedWakeups} times, spread ${spread.latency.parkedWakeups}`,
        target: "parking saves energy at 2008-era loads, in the direction of Microsoft's 10-18 %",
        met: levels.every((l) => l.savings > 0),
      },
      summary: [
        `${model.description}. ${dayRuns[1]?.wattsSource ?? ""}.`,
        `Over a diurnal day of 10-50 % utilization, core parking (Windows Server 2008 R2's parameters at hvlab's defaults) used ${round(savingsPercent(dayNone, dayRuns[1] as SimulationResult), 1)} % less energy than no parking; at steady 10, 30 and 50 % it saved ${levels.map((l) => round(l.savings, 1)).join(", ")} % (mean ${round(meanSavings, 1)} %). ${CLAIM} Assumed: the 2003 baseline runs no parking and halts idle processors in C1.`,
        `VMQ: ${vmq.queues} queues at ${vmq.interruptsPerSecond} interrupts/s each. Spread over every processor (the NIC's round-robin affinity), ${spread.latency.interruptsOnParked} interrupts landed on parked processors and woke them ${spread.latency.parkedWakeups} times; steered to the unparked processors, ${steered.latency.interruptsOnParked} did.`,
        `Race to idle: at ${model.pstates[0]?.name} the load drew ${round(race.meanWatts)} W, at ${model.pstates[slowest]?.name} ${round(slow.meanWatts)} W (with these preset watts).`,
        `The sweep ran ${sweep.points.length} points and the baseline on ${sweep.workers} workers in ${round(sweep.wallMs / 1000, 1)} s.`,
      ],
      charts: [
        {
          title: "Unparked processors over a diurnal day (lines) and the load in processors (area)",
          spec: {
            $schema: SCHEMA,
            width: 640,
            height: 240,
            layer: [
              {
                data: { values: loadLine },
                mark: { type: "area", opacity: 0.25, color: "gray" },
                encoding: {
                  x: { field: "s", type: "quantitative", title: "virtual time (s)" },
                  y: { field: "load", type: "quantitative", title: "processors" },
                },
              },
              {
                data: { values: timeline },
                mark: { type: "line", interpolate: "step-after" },
                encoding: {
                  x: { field: "s", type: "quantitative" },
                  y: { field: "unparked", type: "quantitative", scale: { domain: [0, 16] } },
                  color: { field: "policy", type: "nominal" },
                },
              },
            ],
          },
        },
        {
          title:
            "Where processor time went: running, waking and C-state residency (% of processor time)",
          spec: {
            $schema: SCHEMA,
            width: 640,
            height: 200,
            data: { values: residencyRows(dayRuns) },
            mark: "bar",
            encoding: {
              y: { field: "policy", type: "nominal", title: null },
              x: {
                field: "share",
                type: "quantitative",
                stack: "zero",
                scale: { domain: [0, 100] },
                title: "% of processor time",
              },
              color: { field: "state", type: "nominal", sort: null },
            },
          },
        },
        {
          title:
            "Sweep: energy savings (%) by CPMinCores x CPHeadroom, labelled with the added p99 latency (us)",
          spec: {
            $schema: SCHEMA,
            width: 400,
            height: 300,
            data: { values: heat },
            encoding: {
              x: { field: "CPMinCores", type: "ordinal", title: "CPMinCores (%)" },
              y: {
                field: "CPHeadroom",
                type: "ordinal",
                title: "CPHeadroom (%)",
                sort: "descending",
              },
            },
            layer: [
              {
                mark: "rect",
                encoding: {
                  color: { field: "savings", type: "quantitative", title: "savings (%)" },
                },
              },
              {
                mark: { type: "text", fontSize: 11 },
                encoding: { text: { field: "p99", type: "quantitative" } },
              },
            ],
          },
        },
      ],
      tables: [
        {
          title: "Policies over a diurnal day (added latency: waits for a waking processor)",
          ...policyTable,
        },
        {
          title: "Parking against no parking at 2008-era utilizations, beside Microsoft's claim",
          ...claimTable,
        },
        { title: "VMQ interrupts and parked processors", ...vmqTable },
        {
          title: "Race to idle: the P-state work runs at (menu governor and parking)",
          ...raceTable,
        },
      ],
      data: {
        day: dayRuns.map((r) => ({ ...r, timeline: r.timeline })),
        levels: levels.map((l) => ({ utilization: l.utilization, savingsPercent: l.savings })),
        vmq: { spread: spread.latency, steered: steered.latency },
        sweep: { ...sweep, baseline: { ...sweep.baseline, timeline: [] } },
      },
    };
  },
};
