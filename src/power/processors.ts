import { z } from "zod";
import { PowerConfigError } from "./errors.js";

/** A processor idle state (C-state). */
export interface CState {
  readonly name: string;
  /** Time to leave the state, us (intel_idle's exit_latency). */
  readonly exitLatencyUs: number;
  /** Shortest idle period for which entering the state pays off, us (intel_idle's target_residency). */
  readonly targetResidencyUs: number;
  /** Power of one logical processor in the state, W (a preset, not a fact). */
  readonly watts: number;
}

/** A processor performance state (P-state). */
export interface PState {
  readonly name: string;
  readonly mhz: number;
  /** Power of one logical processor running at this P-state, W (a preset, not a fact). */
  readonly watts: number;
}

/** A machine's processors: topology, C-states, P-states and watts. */
export interface ProcessorModel {
  readonly name: string;
  readonly description: string;
  readonly sockets: number;
  readonly coresPerSocket: number;
  readonly threadsPerCore: number;
  readonly numaNodes: number;
  /** Shallowest first; C-state 0 is the halt state every processor can enter. */
  readonly cstates: readonly CState[];
  /** Fastest first: P-state 0 is the highest frequency. */
  readonly pstates: readonly PState[];
  /** Power drawn whatever the processors do (memory, disks, fans, supply losses), W. */
  readonly platformWatts: number;
  /** Where the C-state latencies come from (the watts are always presets). */
  readonly source: string;
}

const NAME = z.string().min(1).max(64);
const MICROSECONDS = z.number().finite().min(0).max(1_000_000);
const WATTS = z.number().finite().min(0).max(10_000);

/** The JSON form of a user's processor table (`--processor-file`). */
export const processorModelSchema = z
  .object({
    name: NAME,
    description: z.string().max(200).default("user-supplied processor table"),
    sockets: z.number().int().min(1).max(16),
    coresPerSocket: z.number().int().min(1).max(256),
    threadsPerCore: z.number().int().min(1).max(8),
    numaNodes: z.number().int().min(1).max(64),
    cstates: z
      .array(
        z
          .object({
            name: NAME,
            exitLatencyUs: MICROSECONDS,
            targetResidencyUs: MICROSECONDS,
            watts: WATTS,
          })
          .strict(),
      )
      .min(1)
      .max(8),
    pstates: z
      .array(
        z
          .object({ name: NAME, mhz: z.number().finite().min(1).max(20_000), watts: WATTS })
          .strict(),
      )
      .min(1)
      .max(16),
    platformWatts: WATTS,
    source: z.string().max(200).default("user-supplied"),
  })
  .strict();

/** Most logical processors a model may have. */
export const MAX_PROCESSORS = 1024;

/*
 * Presets. C-state exit latencies and target residencies: Linux
 * drivers/idle/intel_idle.c (nehalem_cstates, skx_cstates). Every wattage is
 * a preset chosen so that an idle machine draws roughly 60 % of its peak
 * (Barroso and Hoelzle, "The Case for Energy-Proportional Computing", IEEE
 * Computer 40(12), 2007), not a measurement.
 */

/** Two-socket Xeon X5570 (Nehalem-EP), the Windows Server 2008 R2 era: 16 logical processors. */
const nehalemEp: ProcessorModel = {
  name: "nehalem-ep",
  description: "2 x Xeon X5570 (Nehalem-EP, 2009): 2 sockets x 4 cores x 2 threads, 2 NUMA nodes",
  sockets: 2,
  coresPerSocket: 4,
  threadsPerCore: 2,
  numaNodes: 2,
  cstates: [
    { name: "C1", exitLatencyUs: 3, targetResidencyUs: 6, watts: 4 },
    { name: "C1E", exitLatencyUs: 10, targetResidencyUs: 20, watts: 3 },
    { name: "C3", exitLatencyUs: 20, targetResidencyUs: 80, watts: 1.5 },
    { name: "C6", exitLatencyUs: 200, targetResidencyUs: 800, watts: 0.5 },
  ],
  pstates: [
    { name: "P0", mhz: 2933, watts: 10 },
    { name: "P1", mhz: 2400, watts: 7.5 },
    { name: "P2", mhz: 2000, watts: 6 },
    { name: "P3", mhz: 1600, watts: 5 },
  ],
  platformWatts: 100,
  source: "C-states: Linux intel_idle nehalem_cstates; watts: hvlab preset",
};

/** Two-socket Xeon Gold 6148 (Skylake-SP): 80 logical processors. */
const skylakeSp: ProcessorModel = {
  name: "skylake-sp",
  description:
    "2 x Xeon Gold 6148 (Skylake-SP, 2017): 2 sockets x 20 cores x 2 threads, 2 NUMA nodes",
  sockets: 2,
  coresPerSocket: 20,
  threadsPerCore: 2,
  numaNodes: 2,
  cstates: [
    { name: "C1", exitLatencyUs: 2, targetResidencyUs: 2, watts: 1.2 },
    { name: "C1E", exitLatencyUs: 10, targetResidencyUs: 20, watts: 0.9 },
    { name: "C6", exitLatencyUs: 133, targetResidencyUs: 600, watts: 0.1 },
  ],
  pstates: [
    { name: "P0", mhz: 2400, watts: 3.5 },
    { name: "P1", mhz: 1800, watts: 2.4 },
    { name: "P2", mhz: 1000, watts: 1.5 },
  ],
  platformWatts: 150,
  source: "C-states: Linux intel_idle skx_cstates; watts: hvlab preset",
};

/** Two-socket EPYC 7763 (Zen 3): 256 logical processors. */
const epyc: ProcessorModel = {
  name: "epyc-7763",
  description: "2 x EPYC 7763 (Zen 3, 2021): 2 sockets x 64 cores x 2 threads, 2 NUMA nodes (NPS1)",
  sockets: 2,
  coresPerSocket: 64,
  threadsPerCore: 2,
  numaNodes: 2,
  cstates: [
    { name: "C1", exitLatencyUs: 1, targetResidencyUs: 2, watts: 0.8 },
    { name: "C2", exitLatencyUs: 400, targetResidencyUs: 800, watts: 0.1 },
  ],
  pstates: [
    { name: "P0", mhz: 2450, watts: 2 },
    { name: "P1", mhz: 2000, watts: 1.5 },
    { name: "P2", mhz: 1500, watts: 1.2 },
  ],
  platformWatts: 200,
  source:
    "C-states: assumed (AMD processors go through acpi_idle, whose table comes from each firmware's _CST); watts: hvlab preset",
};

/** The processor presets, by name. */
export const PROCESSOR_PRESETS: Readonly<Record<string, ProcessorModel>> = {
  "nehalem-ep": nehalemEp,
  "skylake-sp": skylakeSp,
  "epyc-7763": epyc,
};

/** Logical processors of a model. */
export function logicalProcessors(model: ProcessorModel): number {
  return model.sockets * model.coresPerSocket * model.threadsPerCore;
}

/** The NUMA node of logical processor `p` (processors numbered node by node). */
export function numaNodeOf(model: ProcessorModel, p: number): number {
  return Math.floor(p / (logicalProcessors(model) / model.numaNodes));
}

/**
 * Checks a model's consistency beyond its schema: the topology divides into
 * its NUMA nodes, C-states deepen, P-states slow.
 *
 * @throws PowerConfigError naming the field.
 */
export function checkProcessorModel(model: ProcessorModel): ProcessorModel {
  const n = logicalProcessors(model);
  if (n > MAX_PROCESSORS) {
    throw new PowerConfigError(
      `processor '${model.name}' has ${n} logical processors (at most ${MAX_PROCESSORS})`,
    );
  }
  if (n % model.numaNodes !== 0) {
    throw new PowerConfigError(
      `processor '${model.name}': ${n} logical processors do not split into ${model.numaNodes} NUMA nodes`,
    );
  }
  model.cstates.forEach((c, i) => {
    const prev = model.cstates[i - 1];
    if (
      prev &&
      (c.exitLatencyUs < prev.exitLatencyUs || c.targetResidencyUs < prev.targetResidencyUs)
    ) {
      throw new PowerConfigError(
        `processor '${model.name}': C-state ${c.name} is shallower than ${prev.name} before it (list them shallowest first)`,
      );
    }
  });
  model.pstates.forEach((p, i) => {
    const prev = model.pstates[i - 1];
    if (prev && p.mhz > prev.mhz) {
      throw new PowerConfigError(
        `processor '${model.name}': P-state ${p.name} is faster than ${prev.name} before it (list them fastest first)`,
      );
    }
  });
  return model;
}

/**
 * Reads a user's processor table from JSON text.
 *
 * @throws PowerConfigError naming the file and the first bad field.
 */
export function parseProcessorModel(text: string, where: string): ProcessorModel {
  if (text.length > 64 * 1024) {
    throw new PowerConfigError(`${where}: a processor table is at most 64 KiB`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new PowerConfigError(`${where}: not JSON (${(error as Error).message})`);
  }
  const parsed = processorModelSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.join(".") || "(top)";
    throw new PowerConfigError(`${where}: ${path}: ${issue?.message ?? "invalid"}`);
  }
  return checkProcessorModel(parsed.data);
}
