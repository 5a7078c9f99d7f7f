import type { PageShift } from "../memory/dirty-bitmap.js";
import { Descriptor, FLAG_CONTENT, FLAG_RING, WorkloadKindCode } from "../wasm/workload.js";
import { vcpuState } from "./splitmix.js";
import { zipfConstants } from "./zipf.js";

/** The guest write patterns hvlab generates. */
export const WORKLOAD_KINDS = ["uniform", "hotset", "sequential", "zipf"] as const;
/** One of {@link WORKLOAD_KINDS}. */
export type WorkloadKind = (typeof WORKLOAD_KINDS)[number];

/** How a vCPU writes guest memory. */
export interface WorkloadSpec {
  /** The pattern. */
  readonly kind: WorkloadKind;
  /** hotset: pages in the writable working set W (default: 1/64 of the guest). */
  readonly hotPages?: number;
  /** hotset: first page of the working set (default 0). */
  readonly hotBase?: number;
  /** hotset: fraction p of writes that go to the working set (default 0.9). */
  readonly hotFraction?: number;
  /** sequential: pages to step per write (default 1). */
  readonly stride?: number;
  /** zipf: exponent s > 0 (default 0.99, as YCSB). */
  readonly zipfExponent?: number;
}

/** Thrown for a workload that cannot run on the guest it was given. */
export class WorkloadError extends RangeError {
  override name = "WorkloadError";
}

/** The kernel's code of each workload kind (every kind has one, no other). */
const KIND_CODES: Readonly<Record<WorkloadKind, number>> = WorkloadKindCode;

/** Multiplier that scatters Zipf ranks over the guest (Knuth's 2654435761, a prime). */
const SCATTER_PRIME = 2_654_435_761;

/** A workload with every default filled in and checked against its guest. */
export interface ResolvedWorkload {
  readonly kind: WorkloadKind;
  readonly pages: number;
  readonly pageShift: PageShift;
  readonly hotPages: number;
  readonly hotBase: number;
  readonly hotFraction: number;
  readonly stride: number;
  readonly zipfExponent: number;
  readonly scatter: number;
}

function gcd(a: number, b: number): number {
  let x = a;
  let y = b;
  while (y !== 0) [x, y] = [y, x % y];
  return x;
}

/**
 * Fills in defaults and checks the workload against a guest of `pages` pages.
 *
 * @throws WorkloadError saying which field is wrong and why.
 */
export function resolveWorkload(
  spec: WorkloadSpec,
  pages: number,
  pageShift: PageShift = 12,
): ResolvedWorkload {
  if (!WORKLOAD_KINDS.includes(spec.kind)) {
    throw new WorkloadError(
      `unknown workload '${String(spec.kind)}' (one of ${WORKLOAD_KINDS.join(", ")})`,
    );
  }
  if (!Number.isSafeInteger(pages) || pages < 1 || pages > 2 ** 32) {
    throw new WorkloadError(`guest page count must be from 1 to 2^32, not ${pages}`);
  }
  const hotPages = spec.hotPages ?? Math.max(1, Math.floor(pages / 64));
  const hotBase = spec.hotBase ?? 0;
  const hotFraction = spec.hotFraction ?? 0.9;
  const stride = spec.stride ?? 1;
  const zipfExponent = spec.zipfExponent ?? 0.99;
  if (!Number.isSafeInteger(hotPages) || hotPages < 1 || hotPages >= 2 ** 32) {
    throw new WorkloadError(`hot set size must be a whole number of pages >= 1, not ${hotPages}`);
  }
  if (!Number.isSafeInteger(hotBase) || hotBase < 0 || hotBase + hotPages > pages) {
    throw new WorkloadError(
      `hot set [${hotBase}, ${hotBase + hotPages}) does not fit a guest of ${pages} pages`,
    );
  }
  if (!(hotFraction >= 0 && hotFraction <= 1)) {
    throw new WorkloadError(`hot fraction must be within [0, 1], not ${hotFraction}`);
  }
  if (!Number.isSafeInteger(stride) || stride < 1 || stride >= 2 ** 32) {
    throw new WorkloadError(`stride must be a whole number of pages >= 1, not ${stride}`);
  }
  if (!(zipfExponent > 0 && zipfExponent <= 10)) {
    throw new WorkloadError(`zipf exponent must be within (0, 10], not ${zipfExponent}`);
  }
  const scatter = gcd(SCATTER_PRIME % pages || pages, pages) === 1 ? SCATTER_PRIME % pages : 1;
  return {
    kind: spec.kind,
    pages,
    pageShift,
    hotPages,
    hotBase,
    hotFraction,
    stride,
    zipfExponent,
    scatter,
  };
}

/** Options for writing a vCPU's descriptor. */
export interface DescriptorOptions {
  readonly seed: number;
  readonly vcpu: number;
  readonly content: boolean;
  readonly ring: boolean;
}

/** Writes a vCPU's workload descriptor at `offset` of `view`. */
export function encodeDescriptor(
  view: DataView,
  offset: number,
  workload: ResolvedWorkload,
  options: DescriptorOptions,
): void {
  const zipf = zipfConstants(workload.pages, workload.zipfExponent);
  view.setBigUint64(offset + Descriptor.rng, vcpuState(options.seed, options.vcpu), true);
  view.setUint32(offset + Descriptor.kind, KIND_CODES[workload.kind], true);
  view.setUint32(
    offset + Descriptor.flags,
    (options.content ? FLAG_CONTENT : 0) | (options.ring ? FLAG_RING : 0),
    true,
  );
  view.setUint32(offset + Descriptor.lastPage, workload.pages - 1, true);
  view.setUint32(offset + Descriptor.hotBase, workload.hotBase, true);
  view.setUint32(offset + Descriptor.hotPages, workload.hotPages, true);
  view.setUint32(offset + Descriptor.pageShift, workload.pageShift, true);
  view.setBigUint64(
    offset + Descriptor.hotThreshold,
    BigInt(Math.round(workload.hotFraction * 2 ** 32)),
    true,
  );
  view.setUint32(offset + Descriptor.cursor, 0, true);
  view.setUint32(offset + Descriptor.stride, workload.stride % workload.pages || 1, true);
  view.setUint32(offset + Descriptor.scatter, workload.scatter, true);
  view.setFloat64(offset + Descriptor.zipfS, zipf.s, true);
  view.setFloat64(offset + Descriptor.zipfX1, zipf.hIntegralX1, true);
  view.setFloat64(offset + Descriptor.zipfN, zipf.hIntegralN, true);
  view.setFloat64(offset + Descriptor.zipfSDiv, zipf.sDiv, true);
  view.setBigUint64(offset + Descriptor.writes, 0n, true);
}
