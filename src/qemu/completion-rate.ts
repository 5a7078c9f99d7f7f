/**
 * (assumed) What a completion costs besides sending its pages, ms:
 * stopping the vCPUs (`vm_stop_force_state`), the last sync and the
 * handover of the write guest (`migration_completion`, migration/migration.c).
 * The model adds it to every completion on its own.
 */
export const QEMU_STOP_MS = 5;

/** Fewer bytes than this in a completion cannot give a rate. */
export const MIN_COMPLETION_BYTES = 1024 ** 2;
/** A completion's sending quicker than this is below the resolution of QEMU's downtime (whole ms). */
export const MIN_COMPLETION_MS = 2;

/**
 * Bytes per second QEMU sent with the guest stopped, from a completion's
 * `downtime-bytes` and `downtime`: over the downtime less
 * {@link QEMU_STOP_MS}, the part the model adds by itself, so that the
 * model fed this completion gives back its downtime (QEMU's downtime runs
 * from the stop to the destination's start and holds the fixed costs as
 * well as the pages: `migration_completion`, migration/migration.c; over
 * all of it the rate came out slower than QEMU sent and the fixed part
 * counted twice). `fallback` when the bytes or the time left are too few
 * to time.
 */
export function completionRate(bytes: number, downtimeMs: number, fallback: number): number {
  const sendingMs = downtimeMs - QEMU_STOP_MS;
  return sendingMs >= MIN_COMPLETION_MS && bytes >= MIN_COMPLETION_BYTES
    ? (bytes * 1000) / sendingMs
    : fallback;
}
