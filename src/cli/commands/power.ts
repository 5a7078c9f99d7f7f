import { readFile, writeFile } from "node:fs/promises";
import type { Command } from "commander";
import { type PointFailure, powerSweepJobs, powerSweepResult } from "../../distributed/studies.js";
import { type Comparison, compareToBaseline } from "../../power/compare.js";
import { PowerConfigError, TraceError } from "../../power/errors.js";
import {
  DEFAULT_LOAD,
  LOAD_PATTERNS,
  type LoadPattern,
  type PinnedLoad,
} from "../../power/load.js";
import {
  DEFAULT_PARKING,
  PARKING_PARAMETERS,
  type ParkingParameters,
} from "../../power/parking.js";
import { namedPolicy, POLICY_NAMES } from "../../power/policies.js";
import {
  PROCESSOR_PRESETS,
  type ProcessorModel,
  parseProcessorModel,
} from "../../power/processors.js";
import { recordUtilization } from "../../power/record.js";
import { DEFAULT_TIMING, type SimulationSpec } from "../../power/simulate.js";
import { type PowerSweepResult, runPowerSweep, sweepParameter } from "../../power/sweep.js";
import { formatTrace, MAX_TRACE_BYTES, parseTrace } from "../../power/trace.js";
import type { VmqSteering } from "../../power/vmq.js";
import { recordsToTable, toCsv } from "../../report/csv.js";
import { formatTable } from "../../report/table.js";
import { checkOutputFlags, integerOption, numberOption, UsageError } from "../options.js";
import { startProgress } from "../progress.js";
import {
  addQueueOptions,
  newSweepId,
  type QueueFlags,
  reportFailures,
  submitWithProgress,
} from "../queue-options.js";

/** Microsoft's published figure the parking policies are printed beside. */
export const MICROSOFT_CLAIM =
  "Microsoft claimed 10-18 % less power for Windows Server 2008 R2 (core parking) than for Windows Server 2003 SP2";

/** Engine refusals of what the user typed or supplied become usage errors (exit code 2). */
async function asUsage<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (error instanceof PowerConfigError || error instanceof TraceError) {
      throw new UsageError(error.message);
    }
    throw error;
  }
}

const percent = numberOption(0, 100);

/** The option of a parking parameter, e.g. CPMinCores -> --cp-min-cores. */
function parkingFlag(name: keyof ParkingParameters): string {
  return `cp${name.slice(2).replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}
function flagKey(name: keyof ParkingParameters): string {
  return parkingFlag(name).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

interface MachineFlags {
  processor: string;
  processorFile?: string;
  policy: string;
  pstate: number;
  load: string;
  utilization: number;
  low: number;
  period: number;
  duty: number;
  serviceUs: number;
  pinned?: string;
  trace?: string;
  vmqQueues?: number;
  vmqRate: number;
  vmqServiceUs: number;
  vmqSteering: string;
  duration: number;
  tickUs: number;
  checkMs: number;
  timerUs: number;
  seed: number;
  json?: boolean;
  csv?: boolean;
  [parking: string]: unknown;
}

function addMachineOptions(command: Command): Command {
  command
    .option(
      "--processor <preset>",
      `processor preset: ${Object.keys(PROCESSOR_PRESETS).join(", ")}`,
      "nehalem-ep",
    )
    .option(
      "--processor-file <json>",
      "your own processor table (JSON: topology, C-states, P-states, watts)",
    )
    .option("--policy <name>", `power policy: ${POLICY_NAMES.join(", ")}`, "parking")
    .option(
      "--pstate <n>",
      "P-state running work uses (0: fastest, race-to-idle)",
      integerOption(0, 15),
      0,
    )
    .option("--load <pattern>", `load pattern: ${LOAD_PATTERNS.join(", ")}`, DEFAULT_LOAD.pattern)
    .option(
      "--utilization <%>",
      "unaffinitized load, % of all processors (mean; peak for diurnal; on level for bursty)",
      percent,
      DEFAULT_LOAD.utilization * 100,
    )
    .option(
      "--low <%>",
      "diurnal trough or bursty off level, % of all processors",
      percent,
      DEFAULT_LOAD.low * 100,
    )
    .option(
      "--period <s>",
      "diurnal day or bursty cycle, s",
      numberOption(1e-6, 1e7),
      DEFAULT_LOAD.periodS,
    )
    .option("--duty <%>", "bursty: % of each cycle on", percent, DEFAULT_LOAD.duty * 100)
    .option(
      "--service-us <us>",
      "processor time of one thread at P0, us",
      numberOption(1, 1e7),
      DEFAULT_LOAD.serviceUs,
    )
    .option("--pinned <list>", "affinitized threads: processor:%,... (e.g. 3:20,5:10)")
    .option(
      "--trace <csv>",
      "replay a utilization trace (time,cpu0,... or time,total; as power record writes)",
    )
    .option(
      "--vmq-queues <n>",
      "a VMQ NIC with this many queues interrupting the processors",
      integerOption(1, 64),
    )
    .option("--vmq-rate <n/s>", "interrupts per second per VMQ queue", numberOption(0, 1e7), 2000)
    .option(
      "--vmq-service-us <us>",
      "processor time per VMQ interrupt, us",
      numberOption(0.001, 1e6),
      20,
    )
    .option(
      "--vmq-steering <how>",
      "VMQ interrupts: spread (every processor) or unparked",
      "spread",
    )
    .option(
      "--duration <s>",
      "virtual seconds to simulate (default: 2, or the trace's length)",
      numberOption(1e-6, 1e6),
    )
    .option(
      "--tick-us <us>",
      "virtual time of one tick, us",
      numberOption(-1e9, 1e9),
      DEFAULT_TIMING.tickUs,
    )
    .option(
      "--check-ms <ms>",
      "parking engine check interval, ms",
      numberOption(-1e9, 1e9),
      DEFAULT_TIMING.checkMs,
    )
    .option(
      "--timer-us <us>",
      "menu governor: the next timer an idle processor knows of, us",
      numberOption(0, 1e9),
      DEFAULT_TIMING.timerUs,
    )
    .option(
      "--seed <n>",
      "seed of the load's arrivals",
      integerOption(0, 2 ** 32 - 1),
      DEFAULT_TIMING.seed,
    );
  for (const name of PARKING_PARAMETERS) {
    const times = name === "CPIncreaseTime" || name === "CPDecreaseTime";
    command.option(
      `--${parkingFlag(name)} <${times ? "checks" : "%"}>`,
      `${name} (${times ? "check intervals" : "%"})`,
      times ? integerOption(-1e9, 1e9) : numberOption(-1e9, 1e9),
      DEFAULT_PARKING[name],
    );
  }
  return command
    .option("--json", "print the results as JSON")
    .option("--csv", "print the results as CSV");
}

async function loadModel(flags: MachineFlags): Promise<ProcessorModel> {
  if (flags.processorFile !== undefined) {
    let text: string;
    try {
      text = await readFile(flags.processorFile, "utf8");
    } catch (error) {
      throw new UsageError(
        `cannot read --processor-file ${flags.processorFile}: ${(error as Error).message}`,
      );
    }
    return parseProcessorModel(text, flags.processorFile);
  }
  const model = PROCESSOR_PRESETS[flags.processor];
  if (!model) {
    throw new UsageError(
      `unknown processor '${flags.processor}' (${Object.keys(PROCESSOR_PRESETS).join(", ")}, or --processor-file)`,
    );
  }
  return model;
}

function parsePinned(text: string): PinnedLoad[] {
  return text.split(",").map((item) => {
    const match = /^\s*(\d+)\s*:\s*(\d+(?:\.\d+)?)\s*$/.exec(item);
    if (!match) throw new UsageError(`--pinned: '${item}' is not processor:percent`);
    const utilization = Number(match[2]);
    if (utilization > 100) throw new UsageError(`--pinned: ${utilization} % is above 100`);
    return { processor: Number(match[1]), utilization: utilization / 100 };
  });
}

/** Builds the simulation the flags describe, reading the files they name. */
async function machineSpec(flags: MachineFlags): Promise<SimulationSpec> {
  checkOutputFlags(flags);
  const model = await loadModel(flags);
  if (!LOAD_PATTERNS.includes(flags.load as LoadPattern)) {
    throw new UsageError(`unknown load pattern '${flags.load}' (${LOAD_PATTERNS.join(", ")})`);
  }
  if (flags.vmqSteering !== "spread" && flags.vmqSteering !== "unparked") {
    throw new UsageError(`--vmq-steering must be spread or unparked, not '${flags.vmqSteering}'`);
  }
  if ((flags.trace !== undefined) !== (flags.load === "trace")) {
    throw new UsageError("--trace and --load trace go together");
  }
  let trace: ReturnType<typeof parseTrace> | undefined;
  if (flags.trace !== undefined) {
    let text: string;
    try {
      const bytes = await readFile(flags.trace);
      if (bytes.length > MAX_TRACE_BYTES) {
        throw new UsageError(
          `--trace ${flags.trace}: ${bytes.length} bytes (at most ${MAX_TRACE_BYTES})`,
        );
      }
      text = bytes.toString("utf8");
    } catch (error) {
      if (error instanceof UsageError) throw error;
      throw new UsageError(`cannot read --trace ${flags.trace}: ${(error as Error).message}`);
    }
    try {
      trace = parseTrace(text);
    } catch (error) {
      if (error instanceof TraceError) throw new UsageError(`${flags.trace}: ${error.message}`);
      throw error;
    }
  }
  const parking = Object.fromEntries(
    PARKING_PARAMETERS.map((name) => [name, flags[flagKey(name)] as number]),
  ) as unknown as ParkingParameters;
  const durationS =
    flags.duration ??
    (trace ? (trace.times[trace.times.length - 1] ?? 1) : DEFAULT_TIMING.durationS);
  return {
    model,
    load: {
      ...DEFAULT_LOAD,
      pattern: flags.load as LoadPattern,
      utilization: flags.utilization / 100,
      low: flags.low / 100,
      periodS: flags.period,
      duty: flags.duty / 100,
      serviceUs: flags.serviceUs,
      pinned: flags.pinned !== undefined ? parsePinned(flags.pinned) : [],
      ...(trace ? { trace } : {}),
    },
    policy: namedPolicy(flags.policy, parking, flags.pstate),
    ...(flags.vmqQueues !== undefined
      ? {
          vmq: {
            queues: flags.vmqQueues,
            interruptsPerSecond: flags.vmqRate,
            serviceUs: flags.vmqServiceUs,
            steering: flags.vmqSteering as VmqSteering,
          },
        }
      : {}),
    durationS,
    tickUs: flags.tickUs,
    checkMs: flags.checkMs,
    timerUs: flags.timerUs,
    seed: flags.seed,
  };
}

/** The comparison as rows: the baseline and the policy. */
export function comparisonRecords(c: Comparison) {
  return [c.baseline, c.result].map((r) => ({
    policy: r.policy,
    "energy (J)": Number(r.energyJ.toFixed(3)),
    "mean power (W)": Number(r.meanWatts.toFixed(2)),
    "savings (%)": r === c.baseline ? 0 : Number(c.savingsPercent.toFixed(2)),
    "mean load (processors)": Number(r.meanLoad.toFixed(3)),
    "mean unparked": Number(r.meanUnparked.toFixed(2)),
    "added latency p50 (us)": r.latency.p50Us,
    "p99 (us)": r.latency.p99Us,
    "p99.9 (us)": r.latency.p999Us,
    wakeups: r.latency.wakeups,
    "parked wakeups": r.latency.parkedWakeups,
  }));
}

/** Prints a power sweep (local or distributed) as JSON, CSV or a table: the one printer of both. */
function printPowerSweep(sweep: PowerSweepResult, flags: { json?: boolean; csv?: boolean }): void {
  if (flags.json) {
    console.log(
      JSON.stringify({ ...sweep, baseline: { ...sweep.baseline, timeline: [] } }, null, 2),
    );
    return;
  }
  const table = recordsToTable(
    sweep.points.map((p) => ({
      [sweep.x]: p.x,
      [sweep.y]: p.y,
      "savings (%)": Number(p.savingsPercent.toFixed(2)),
      "added p99 (us)": p.addedP99Us,
      "mean power (W)": Number(p.meanWatts.toFixed(2)),
      "mean unparked": Number(p.meanUnparked.toFixed(2)),
    })),
  );
  if (flags.csv) {
    process.stdout.write(toCsv(table));
    return;
  }
  console.log(formatTable(table));
  console.log(
    `baseline (no parking): ${sweep.baseline.meanWatts.toFixed(2)} W, p99 ${sweep.baseline.latency.p99Us} us; ${sweep.points.length} points on ${sweep.workers} workers in ${(sweep.wallMs / 1000).toFixed(1)} s`,
  );
  console.log(sweep.baseline.wattsSource);
}

/** `hvlab power`: core parking, C-states and P-states, energy against latency. */
export function registerPower(program: Command): void {
  const power = program
    .command("power")
    .description("core parking and processor power states: energy against wake-up latency");

  addMachineOptions(
    power
      .command("simulate")
      .description(
        "simulate a policy on a load and compare it with no parking (the 2003 baseline)",
      ),
  ).action(async (flags: MachineFlags) =>
    asUsage(async () => {
      const spec = await machineSpec(flags);
      const comparison = compareToBaseline(spec);
      const { result } = comparison;
      if (flags.json) {
        console.log(JSON.stringify({ ...comparison, claim: MICROSOFT_CLAIM }, null, 2));
        return;
      }
      const table = recordsToTable(comparisonRecords(comparison));
      if (flags.csv) {
        process.stdout.write(toCsv(table));
        return;
      }
      console.log(
        `${spec.model.description}; ${spec.load.pattern} load, ${result.seconds} s of virtual time, tick ${spec.tickUs} us`,
      );
      console.log(formatTable(table));
      console.log("\nC-state residency and energy of the policy:");
      console.log(
        formatTable(
          recordsToTable(
            result.residency.map((r) => ({
              state: r.state,
              "processor-seconds": Number(r.seconds.toFixed(4)),
              "share (%)": Number((r.share * 100).toFixed(2)),
              "watts (preset)": r.watts,
              "energy (J)": Number(r.joules.toFixed(3)),
            })),
          ),
        ),
      );
      if (spec.policy.parking) {
        console.log(
          `\nsavings ${comparison.savingsPercent.toFixed(1)} % against no parking; ${MICROSOFT_CLAIM}.`,
        );
        console.log(
          "assumed: the 2003 baseline runs no parking and halts idle processors in C-state 0.",
        );
      }
      console.log(result.wattsSource);
    }),
  );

  addQueueOptions(
    addMachineOptions(
      power
        .command("sweep")
        .description("sweep two parking parameters on the pool: savings against p99 added latency")
        .option("--x <param>", `first parameter: ${PARKING_PARAMETERS.join(", ")}`, "CPMinCores")
        .option("--x-values <list>", "its values, comma-separated", "0,25,50,75,100")
        .option("--y <param>", "second parameter", "CPHeadroom")
        .option("--y-values <list>", "its values, comma-separated", "10,30,50,70,90")
        .option("--workers <n>", "pool workers", integerOption(1, 256), 2),
    ),
  ).action(
    async (
      flags: MachineFlags &
        QueueFlags & {
          x: string;
          xValues: string;
          y: string;
          yValues: string;
          workers: number;
        },
    ) =>
      asUsage(async () => {
        const spec = await machineSpec(flags);
        const values = (text: string, option: string) =>
          text.split(",").map((v) => {
            const n = Number(v.trim());
            if (v.trim() === "" || !Number.isFinite(n)) {
              throw new UsageError(`${option}: '${v.trim()}' is not a number`);
            }
            return n;
          });
        const x = {
          parameter: sweepParameter(flags.x),
          values: values(flags.xValues, "--x-values"),
        };
        const y = {
          parameter: sweepParameter(flags.y),
          values: values(flags.yValues, "--y-values"),
        };
        let sweep: PowerSweepResult;
        let failed: readonly PointFailure[] = [];
        if (flags.queue !== undefined) {
          const sweepId = flags.sweepId ?? newSweepId();
          const jobs = powerSweepJobs(sweepId, spec, x, y);
          const submission = await submitWithProgress(
            "power sweep",
            { ...flags, queue: flags.queue },
            sweepId,
            jobs,
          );
          const distributed = powerSweepResult(x, y, submission);
          sweep = distributed;
          failed = distributed.distributed.failed;
        } else {
          const progress = startProgress("power sweep", x.values.length * y.values.length + 1);
          sweep = await runPowerSweep(spec, x, y, {
            workers: flags.workers,
            onPoint: (done) => progress.update(done),
          }).finally(() => progress.stop());
        }
        printPowerSweep(sweep, flags);
        reportFailures(failed);
      }),
  );

  power
    .command("record")
    .description(
      "sample this machine's per-processor utilization from /proc/stat into a trace (CSV)",
    )
    .option("--seconds <s>", "how long to record", numberOption(0.01, 86_400), 5)
    .option("--interval-ms <ms>", "sampling interval", numberOption(10, 60_000), 100)
    .option("--out <file>", "write the trace here (default: standard output)")
    .action(async (flags: { seconds: number; intervalMs: number; out?: string }) =>
      asUsage(async () => {
        const samples = Math.max(1, Math.round((flags.seconds * 1000) / flags.intervalMs));
        const progress = startProgress("power record", samples);
        const trace = await recordUtilization(samples, flags.intervalMs, (done) =>
          progress.update(done),
        ).finally(() => progress.stop());
        const text = formatTrace(trace);
        if (flags.out === undefined) {
          process.stdout.write(text);
          return;
        }
        await writeFile(flags.out, text);
        console.error(`recorded ${samples} samples of ${trace.columns} processors to ${flags.out}`);
      }),
    );
}
