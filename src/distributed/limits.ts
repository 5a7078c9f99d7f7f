/**
 * Bounds of a distributed run's settings, apart from the modules that load
 * BullMQ so that the command line can check options without loading it.
 */

/** Most attempts a point may be given. */
export const MAX_ATTEMPTS = 20;

/** How long finished jobs stay in Redis for a submitter to resume from, s. */
export const KEEP_FINISHED_S = 7 * 24 * 3600;

/** Bounds of a lock duration, ms: long enough to renew over a busy link, short enough to notice a death. */
export const LOCK_DURATION_RANGE = { min: 500, max: 24 * 3_600_000 } as const;

/** Most sweep points one job carries. */
export const MAX_POINTS_PER_JOB = 64;
