import { z } from "zod";
import { GIVE_UP_RULES, HYPERV_VERSIONS, STOP_POLICIES } from "../migration/options.js";
import { TRACE_FORMATS } from "../paging/trace.js";
import { parkingSchema } from "../power/parking.js";
import { processorModelSchema } from "../power/processors.js";
import { WORKLOAD_KINDS } from "../workload/spec.js";
import { fromWire } from "./codec.js";
import { MAX_POINTS_PER_JOB } from "./limits.js";

/**
 * The version of the job payload this hvlab writes and reads. A worker
 * refuses any other (a field renamed between versions would otherwise
 * run a different study than the one submitted); raise it whenever a
 * payload's or a result's shape or meaning changes (2: a job's result
 * names the worker beside the value, see returned.ts).
 */
export const PAYLOAD_VERSION = 2;

/** Thrown for a job hvlab does not run: another version, an unknown kind, a field out of shape. */
export class PayloadError extends TypeError {
  override name = "PayloadError";
}

const finite = z.number().finite();
const count = z
  .number()
  .int()
  .min(0)
  .max(2 ** 53);
const positiveOrInfinite = z.union([
  finite.positive(),
  z.custom<number>((v) => v === Number.POSITIVE_INFINITY, "expected a number or Infinity"),
]);
const text = (max: number) => z.string().max(max);

/** A sweep's id as the submitter chose it: also the prefix of its job ids. */
export const sweepIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9._-]{1,64}$/, "1-64 letters, digits, '.', '_' or '-'");

/** The part every payload shares: hvlab's payload version, the sweep, and the job's place in it (a migrate sweep's: its first point's hand-out position). */
const envelope = {
  hvlab: z.literal(PAYLOAD_VERSION),
  sweep: sweepIdSchema,
  index: z.number().int().min(0).max(1_000_000),
};

/** A migration's options without callbacks (`MigrationOptions` less `onRound` and `beforeVerify`). */
const migrationOptionsSchema = z
  .object({
    guestBytes: count,
    pageShift: z.union([z.literal(12), z.literal(21)]).optional(),
    content: z.boolean(),
    vcpus: count.optional(),
    workload: z
      .object({
        kind: z.enum(WORKLOAD_KINDS),
        hotPages: count.optional(),
        hotBase: count.optional(),
        hotFraction: finite.optional(),
        stride: count.optional(),
        zipfExponent: finite.optional(),
      })
      .strict(),
    writesPerSecond: finite.min(0),
    seed: count.optional(),
    zeroFraction: finite.optional(),
    policy: z.enum(STOP_POLICIES).optional(),
    hypervVersion: z.enum(HYPERV_VERSIONS).optional(),
    maxBandwidth: positiveOrInfinite.optional(),
    latencyMs: finite.optional(),
    downtimeLimitMs: finite.optional(),
    maxRounds: count.optional(),
    timeoutMs: finite.optional(),
    giveUp: z.enum(GIVE_UP_RULES).optional(),
    deviceStateBytes: count.optional(),
    switchoverMs: finite.optional(),
    zeroPages: z.boolean().optional(),
    xbzrle: z.boolean().optional(),
    xbzrleCacheBytes: count.optional(),
    autoConverge: z.boolean().optional(),
    throttleInitial: finite.optional(),
    throttleIncrement: finite.optional(),
    throttleMax: finite.optional(),
    throttleTriggerThreshold: finite.optional(),
    throttleTailslow: z.boolean().optional(),
    multifdChannels: count.optional(),
    postcopyAfterRounds: count.nullable().optional(),
    windowMs: finite.optional(),
  })
  .strict();

/** One point of `hvlab migrate sweep`: a whole migration on virtual time. */
export const migratePointSchema = z
  .object({ ...envelope, kind: z.literal("migrate-point"), options: migrationOptionsSchema })
  .strict();

/**
 * Several points of `hvlab migrate sweep` in one job (consecutive in the
 * order the sweep hands its points out, longest first, from position
 * `index` on; the submitter maps them back to the grid): the queue's cost
 * is paid once for all of them, and each point's result or error comes
 * back on its own.
 */
export const migratePointsSchema = z
  .object({
    ...envelope,
    kind: z.literal("migrate-points"),
    options: z.array(migrationOptionsSchema).min(2).max(MAX_POINTS_PER_JOB),
  })
  .strict();

const geometry = z.object({ entries: count, ways: count }).strict();
const costParameter = z.object({ value: finite, assumed: z.boolean(), source: text(300) }).strict();
const pageSize = z.enum(["4K", "2M", "1G"]);
const levelCaches = z
  .object({
    2: geometry.nullable(),
    3: geometry.nullable(),
    4: geometry.nullable(),
    5: geometry.nullable(),
  })
  .strict();

/**
 * One configuration of `hvlab paging compare` over one trace. The trace is
 * named (a path, a file: URL or an http(s) URL every worker can reach),
 * never carried; it is only ever read.
 */
export const pagingConfigSchema = z
  .object({
    ...envelope,
    kind: z.literal("paging-config"),
    trace: z
      .object({
        location: text(4096).min(1),
        format: z.enum(["auto", ...TRACE_FORMATS]),
        lenient: z.boolean(),
      })
      .strict(),
    config: z
      .object({
        label: text(64),
        mode: z.enum(["native", "shadow", "slat"]),
        guestPageSize: pageSize,
        hostBacking: pageSize,
        unsync: z.boolean(),
      })
      .strict(),
    cpu: text(64),
    caches: z
      .object({
        l1: z.object({ "4K": geometry, "2M": geometry, "1G": geometry.nullable() }).strict(),
        l1i: z.object({ "4K": geometry, "2M": geometry }).strict(),
        l2: geometry,
        l2Holds2M: z.boolean(),
        l2OneGig: geometry.nullable(),
        pwcGuest: levelCaches,
        pwcHost: levelCaches,
        nestedTlb: geometry.nullable(),
        nestedTlbAtLeafSize: z.boolean(),
        tagged: z.boolean(),
      })
      .strict(),
    cost: z
      .object({
        walkReferenceCycles: costParameter,
        referenceCyclesByLevel: z
          .object({ value: z.array(finite).max(5), assumed: z.boolean(), source: text(300) })
          .strict()
          .optional(),
        l2HitCycles: costParameter,
        vmExitCycles: costParameter,
        emulationCycles: costParameter,
        hiddenFaultCycles: costParameter,
        resyncCycles: costParameter,
        guestFaultCycles: costParameter,
        eptViolationCycles: costParameter,
      })
      .strict(),
    guestLevels: z.union([z.literal(4), z.literal(5)]),
    hostLevels: z.union([z.literal(4), z.literal(5)]),
    guestBytes: count,
    tableBytes: count.optional(),
    activity: z
      .object({
        processes: count,
        contextSwitchesPerSecond: finite,
        pageTableUpdatesPerSecond: finite,
        forkExecPerSecond: finite,
        munmapPerSecond: finite,
        accessesPerSecond: finite,
      })
      .strict(),
    seed: count,
    dirtyLogHarvestsPerSecond: finite.optional(),
  })
  .strict();

/** One simulation of `hvlab power sweep` (a grid point, or the baseline without parking). */
export const powerPointSchema = z
  .object({
    ...envelope,
    kind: z.literal("power-point"),
    spec: z
      .object({
        model: processorModelSchema,
        load: z
          .object({
            pattern: z.enum(["constant", "poisson", "diurnal", "bursty", "trace"]),
            utilization: finite,
            low: finite,
            periodS: finite,
            duty: finite,
            serviceUs: finite,
            pinned: z.array(z.object({ processor: count, utilization: finite }).strict()).max(4096),
            interrupts: z
              .array(
                z
                  .object({
                    processor: z.union([count, z.literal("unparked")]),
                    index: count,
                    ratePerSecond: finite,
                    serviceUs: finite,
                  })
                  .strict(),
              )
              .max(4096),
            trace: z
              .object({
                columns: z.union([z.literal("total"), count]),
                times: z.array(finite).max(4_000_000),
                values: z.array(finite).max(16_000_000),
              })
              .strict()
              .optional(),
          })
          .strict(),
        policy: z
          .object({
            name: text(64),
            parking: parkingSchema.nullable(),
            idle: text(16),
            pstate: count,
          })
          .strict(),
        vmq: z
          .object({
            queues: count,
            interruptsPerSecond: finite,
            serviceUs: finite,
            steering: z.enum(["spread", "unparked"]),
          })
          .strict()
          .optional(),
        durationS: finite,
        tickUs: finite,
        checkMs: finite,
        timerUs: finite,
        seed: count,
      })
      .strict(),
  })
  .strict();

/** An empty job: what the queue itself costs, for `hvlab bench distributed`. */
export const emptyJobSchema = z.object({ ...envelope, kind: z.literal("empty") }).strict();

/** Every job hvlab runs; a worker runs nothing else. */
export const payloadSchema = z.discriminatedUnion("kind", [
  migratePointSchema,
  migratePointsSchema,
  pagingConfigSchema,
  powerPointSchema,
  emptyJobSchema,
]);

/** A job's payload, checked. */
export type Payload = z.infer<typeof payloadSchema>;
/** The job kinds. */
export type PayloadKind = Payload["kind"];
/** The points a job carries: several for a batch of sweep points, else one. */
export function pointsIn(payload: Payload): number {
  return payload.kind === "migrate-points" ? payload.options.length : 1;
}

/** Most bytes of one job's data (a power trace is the largest thing a job carries). */
export const MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;

/**
 * Reads a job's data: its version first (so another hvlab's payload is
 * refused as such, not as a shape error), then its shape. Unknown fields are
 * refused, so a job can carry nothing a worker would not use (no file to
 * write, no command).
 *
 * @throws PayloadError saying which version, kind or field is wrong.
 */
export function parsePayload(data: unknown, where: string): Payload {
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new PayloadError(`${where}: the payload is not an object`);
  }
  const version = (data as { hvlab?: unknown }).hvlab;
  if (version !== PAYLOAD_VERSION) {
    throw new PayloadError(
      `${where}: payload version ${typeof version === "number" ? version : JSON.stringify(version ?? null)} is not this worker's version ${PAYLOAD_VERSION}: run the same hvlab release on the submitter and every worker`,
    );
  }
  let plain: unknown;
  try {
    plain = fromWire(data);
  } catch (error) {
    throw new PayloadError(`${where}: not an hvlab job: ${(error as Error).message}`);
  }
  const parsed = payloadSchema.safeParse(plain);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.join(".") ?? "";
    throw new PayloadError(
      `${where}: not an hvlab job: ${path === "" ? "" : `${path}: `}${issue?.message ?? "invalid"}`,
    );
  }
  return parsed.data;
}
