/** fio's rw modes. */
export const IO_MODES = ["read", "write", "randread", "randwrite", "randrw", "rw"] as const;
export type IoMode = (typeof IO_MODES)[number];

/** A guest I/O workload on one disk, in fio's terms. */
export interface IoSpec {
  readonly rw: IoMode;
  /** Reads in percent of a mixed workload (fio's rwmixread). */
  readonly rwmixread: number;
  /** Block size in bytes: 512 B to 1 MiB, a multiple of 512. */
  readonly bs: number;
  /** Requests submitted together per disk (fio's iodepth). */
  readonly iodepth: number;
  /** Offsets: uniform, or Zipf with exponent s (fio's random_distribution=zipf:s). */
  readonly zipf?: number;
  /** Run time in milliseconds. */
  readonly runtimeMs: number;
  readonly seed: number;
  /** Every block written carries a header; every read is checked against it. */
  readonly verify: boolean;
  /** Direct I/O, around the host's page cache (fio's direct=1; O_DIRECT). */
  readonly direct?: boolean;
}

/** Checks a workload spec. @throws RangeError naming the field. */
export function checkIoSpec(spec: IoSpec): IoSpec {
  if (!IO_MODES.includes(spec.rw))
    throw new RangeError(`rw must be one of ${IO_MODES.join(", ")}, not ${spec.rw}`);
  if (!Number.isInteger(spec.bs) || spec.bs < 512 || spec.bs > 1 << 20 || spec.bs % 512 !== 0) {
    throw new RangeError(`bs must be a multiple of 512 from 512 to 1048576 bytes, not ${spec.bs}`);
  }
  if (!Number.isInteger(spec.iodepth) || spec.iodepth < 1 || spec.iodepth > 1024) {
    throw new RangeError(`iodepth must be 1 to 1024, not ${spec.iodepth}`);
  }
  if (!(spec.rwmixread >= 0 && spec.rwmixread <= 100))
    throw new RangeError(`rwmixread must be 0 to 100, not ${spec.rwmixread}`);
  if (spec.zipf !== undefined && !(spec.zipf > 0 && spec.zipf <= 10))
    throw new RangeError(`zipf exponent must be in (0, 10], not ${spec.zipf}`);
  if (!(spec.runtimeMs > 0 && spec.runtimeMs <= 3_600_000))
    throw new RangeError(`runtime must be 1 ms to 1 hour, not ${spec.runtimeMs} ms`);
  return spec;
}

/** Share of reads of a mode (0 to 1). */
export function readShare(spec: IoSpec): number {
  if (spec.rw === "read" || spec.rw === "randread") return 1;
  if (spec.rw === "write" || spec.rw === "randwrite") return 0;
  return spec.rwmixread / 100;
}

/** Whether the mode picks offsets at random. */
export function isRandom(spec: IoSpec): boolean {
  return spec.rw.startsWith("rand");
}
