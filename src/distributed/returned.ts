/**
 * What a job returns through Redis: its result (as the codec carries it) and
 * the worker that computed it. BullMQ's completed event carries a job's
 * return value but not the worker that ran it (that is in the job's hash),
 * so the worker puts its name beside the result, and the submitter takes
 * both from the event without reading the job back.
 */
export interface JobReturn {
  readonly worker: string;
  readonly value: unknown;
}

/** Wraps a job's result (already in wire form) with the worker that computed it. */
export function jobReturn(worker: string, value: unknown): JobReturn {
  return { worker, value };
}

/**
 * Reads a job's return value, as a completed event or the job's hash holds it.
 *
 * @throws TypeError when it is not a worker's {@link JobReturn} (say, a job
 *   completed by something other than an hvlab worker).
 */
export function readJobReturn(returned: unknown, where: string): JobReturn {
  if (
    returned === null ||
    typeof returned !== "object" ||
    typeof (returned as { worker?: unknown }).worker !== "string" ||
    !("value" in returned)
  ) {
    throw new TypeError(`${where}: the job's result is not an hvlab worker's`);
  }
  return returned as JobReturn;
}
