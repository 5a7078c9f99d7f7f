/*
 * The failover timeline: a node's cumulative I/O counters, sampled while
 * the cluster runs, cut into fixed intervals (100 ms by default) so that
 * a chart shows each node's I/O per interval and the gap a failover leaves.
 */

/** One reading of a node's counters, at `ms` from the run's start. */
export interface CounterSample {
  readonly node: number;
  readonly ms: number;
  readonly writes: number;
  readonly metadataOps: number;
  /** Of `writes`, those sent through the coordinator (redirected access); 0 when not sampled. */
  readonly redirectedWrites?: number;
}

/** I/O one node completed in one interval. */
export interface TimelinePoint {
  readonly node: number;
  /** Start of the interval, ms from the run's start. */
  readonly ms: number;
  readonly writes: number;
  readonly metadataOps: number;
  /** Of `writes`, those that went through the coordinator (the node was redirected). */
  readonly redirectedWrites: number;
  /** writes + metadataOps. */
  readonly ios: number;
}

/**
 * Cuts each node's samples into intervals of `intervalMs` from 0 to
 * `endMs`: an interval holds what the counters rose by between the last
 * sample before it and the last sample in it. Intervals after a node's
 * last sample (it was killed) are left out, not drawn as zero.
 */
export function timelineOf(
  samples: readonly CounterSample[],
  intervalMs: number,
  endMs: number,
): TimelinePoint[] {
  if (!(intervalMs > 0)) throw new RangeError(`interval ${intervalMs} ms is not above 0`);
  const byNode = new Map<number, CounterSample[]>();
  for (const s of samples) {
    const list = byNode.get(s.node) ?? [];
    list.push(s);
    byNode.set(s.node, list);
  }
  const points: TimelinePoint[] = [];
  for (const [node, list] of [...byNode].sort((a, b) => a[0] - b[0])) {
    list.sort((a, b) => a.ms - b.ms);
    const lastMs = list[list.length - 1]?.ms ?? 0;
    let prev = { writes: 0, metadataOps: 0, redirectedWrites: 0 };
    let i = 0;
    for (let start = 0; start < endMs && start <= lastMs; start += intervalMs) {
      let cur = prev;
      while (i < list.length && (list[i]?.ms ?? 0) < start + intervalMs) {
        const s = list[i] as CounterSample;
        cur = {
          writes: s.writes,
          metadataOps: s.metadataOps,
          redirectedWrites: s.redirectedWrites ?? 0,
        };
        i++;
      }
      const writes = cur.writes - prev.writes;
      const metadataOps = cur.metadataOps - prev.metadataOps;
      const redirectedWrites = cur.redirectedWrites - prev.redirectedWrites;
      points.push({
        node,
        ms: start,
        writes,
        metadataOps,
        redirectedWrites,
        ios: writes + metadataOps,
      });
      prev = cur;
    }
  }
  return points;
}

/**
 * The first time, after `afterMs`, that any of `nodes` completed a metadata
 * operation it had not completed at its first sample after `afterMs`: when
 * the cluster's metadata path works again after a failover. Undefined when
 * it never did within the samples.
 */
export function metadataResumedAt(
  samples: readonly CounterSample[],
  nodes: readonly number[],
  afterMs: number,
): number | undefined {
  let first: number | undefined;
  for (const node of nodes) {
    const list = samples
      .filter((s) => s.node === node && s.ms > afterMs)
      .sort((a, b) => a.ms - b.ms);
    const base = list[0]?.metadataOps;
    const rise = list.find((s) => s.metadataOps > (base ?? Number.POSITIVE_INFINITY));
    if (rise && (first === undefined || rise.ms < first)) first = rise.ms;
  }
  return first;
}
