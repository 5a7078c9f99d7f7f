import { completionRate } from "./completion-rate.js";
import { GUEST_PAGE } from "./guest-image.js";
import { readGuestStatus } from "./guest-status.js";
import { FINAL_STATUSES, parseMigrationInfo, type QemuMigrationInfo } from "./migrate-info.js";
import { firstPassRate, zeroScanRate } from "./pass-rate.js";
import { freeLoopbackPort, type QemuLaunch, QemuProcess } from "./qemu-process.js";
import type { MigrateSample } from "./rounds.js";

/** A pass of pages a destination never held, the guest stopped ({@link probeFreshPages}). */
export interface FreshPages {
  /** The pass's normal pages, bytes (`ram.normal-bytes`). */
  readonly normalBytes: number;
  /** Bytes per second over its normal pages ({@link firstPassRate}). */
  readonly rate: number;
}

/** What a short migration with no rate limit showed about this host. */
export interface HostProbe {
  /**
   * Bytes per second QEMU's migration thread sent with no rate limit while
   * the guest ran: bytes over time from the first to the last sampling
   * interval of the first pass that carried mostly normal pages (an
   * interval through the zero pages outside the working set moves pages,
   * not bytes), the stalls between them included.
   */
  readonly hostRate: number;
  /**
   * Bytes per second of QEMU's completion, the last pages sent with the
   * guest stopped and no rate limit: the fastest of the probe migrations'
   * completions that could be timed, each its bytes over its `downtime`
   * less the fixed part the model adds itself ({@link completionRate});
   * `hostRate` when none could. Where the pass of pages the destination
   * never held (`fresh`) went faster, that: the same conditions timed over
   * the whole working set rather than on QEMU's millisecond clock, and
   * pages the destination already holds go no slower than those it must
   * first touch.
   */
  readonly completionRate: number;
  /**
   * How fast a destination took pages it never held, with the guest stopped
   * and no rate limit ({@link probeFreshPages}): the pass's normal bytes and
   * its rate, bytes/s; null where the pass was too quick to time.
   */
  readonly fresh: FreshPages | null;
  /** Each probe migration's completion: bytes and QEMU's downtime, ms. */
  readonly completions: readonly { readonly bytes: number; readonly downtimeMs: number }[];
  /**
   * How long after `migrate` the pages began to flow at the host's rate,
   * ms: QEMU's setup, starting the dirty log, and the first pass over the
   * low memory before the working set.
   */
  readonly startMs: number;
  /** Sampling intervals the host's rate spans. */
  readonly intervals: number;
  /**
   * Zero pages a second the probe's first pass scanned (the pages past the
   * working set, never written), or null when it saw too few intervals of
   * them to time.
   */
  readonly zeroScanRate: number | null;
  /** The guest's writes per second while the probe migrated it. */
  readonly writesPerSecondDuring: number;
  /**
   * Bytes per second QEMU sends with no rate limit, where `hostRate` was
   * taken from a pass max-bandwidth paced (the real run's first pass): the
   * probe's own first pass, or the paced rate if higher. Absent: `hostRate`
   * is that rate (the probe's, which ran with no rate limit).
   */
  readonly unthrottledRate?: number;
  /**
   * The rate of each 100 ms window, where it was measured under the run's
   * own max-bandwidth (the run's first pass; the probe's own windows, with
   * no rate limit, are not the run's).
   */
  readonly windowRates?: readonly number[];
}

/** The run a probe prepares for: what its completion should come to. */
export interface ProbeTarget {
  /** The run's max-bandwidth, bytes/s. */
  readonly maxBandwidth: number;
  /** The run's downtime-limit, ms. */
  readonly downtimeLimitMs: number;
  /** The working set the guest's dirty curve implies, pages (null: not fitted; every write a new page). */
  readonly workingSetPages: number | null;
}

/**
 * How long after `migrate` the guest, writing `writesPerSecond`, has
 * dirtied the run's threshold at its max-bandwidth (max-bandwidth x
 * downtime-limit, about what the run leaves for its completion) in
 * distinct pages: N (1 - exp(-w t / N)) for a working set of N pages.
 * Infinite when the working set is smaller than that, or nothing is written.
 */
export function gatherTimeMs(run: ProbeTarget, writesPerSecond: number): number {
  const targetPages = (run.maxBandwidth * run.downtimeLimitMs) / 1000 / GUEST_PAGE;
  if (!(writesPerSecond > 0)) return Number.POSITIVE_INFINITY;
  const n = run.workingSetPages;
  if (n === null) return (targetPages / writesPerSecond) * 1000;
  if (targetPages >= n) return Number.POSITIVE_INFINITY;
  return ((-n * Math.log1p(-targetPages / n)) / writesPerSecond) * 1000;
}

/** The probe saw no interval it could measure a rate over. */
export class HostProbeError extends Error {
  override name = "HostProbeError";
}

/** max-bandwidth for "no rate limit" (QEMU takes any uint64; 1 TiB/s is never reached). */
const UNLIMITED = 2 ** 40;
/** How long the source's monitor may take to answer while QEMU completes, ms. */
const COMPLETION_WAIT_MS = 60_000;
/** downtime-limit that makes QEMU complete at its next check (QEMU's largest is 2000 s). */
const COMPLETE_NOW_MS = 2_000_000;
/**
 * max-bandwidth that holds the first pass back while the pages the guest
 * dirties gather (1 MiB/s: 100 KB a 100 ms window, little against what
 * gathers).
 */
const TRICKLE = 2 ** 20;
/** The shortest trickle worth setting, and the longest the probe gathers, ms. */
const GATHER_MIN_MS = 50;
const GATHER_MAX_MS = 1000;
/** Probe migrations, each a completion timed; the fastest is QEMU's completion rate. */
const PROBES = 3;
/** How often the probe looks near the first pass's end, ms. */
const FINE_MS = 5;
/** Nearer the first pass's end than this, at its pace, the probe holds it back, ms. */
const NEAR_END_MS = 20;

interface Point {
  readonly at: number;
  readonly transferred: number;
  readonly normalBytes: number;
  /** Pages sent so far, normal and zero. */
  readonly pages: number;
}

/**
 * Probes the host ({@link probeMigration}) with the running guest `source`,
 * then {@link PROBES} - 1 times more, each from the destination the last
 * landed on (the guest runs on there): everything from the first
 * migration, QEMU's completion rate the fastest of all the completions
 * that could be timed. A completion's rate moved 3.5-fold between runs of
 * one guest here (25 MB in 14 to 50 ms): other work on the host's cores
 * can only slow a completion, never speed it, so the fastest is the
 * nearest to what QEMU's completion itself costs, and the run's own
 * completion came out near it. The median let a loaded host set the
 * downtime: probe completions of 11 to 13 MB in 12 to 27 ms gave 32 ms
 * predicted at a 128 MiB hot set, where the run sent 15 MB in 12 ms.
 * Last, the guest stopped, one more migration times the pages a
 * destination never held ({@link probeFreshPages}); where that pass went
 * faster than the fastest completion, it is the completion rate.
 * Every destination started is pushed to `started`; all are stopped
 * before it returns.
 */
export async function probeHost(
  source: QemuProcess,
  launch: Omit<QemuLaunch, "name" | "incoming">,
  started: QemuProcess[],
  probeMs: number,
  run: ProbeTarget | null,
  sampleMs = 50,
): Promise<HostProbe> {
  const first = await probeMigration(source, launch, started, probeMs, run, sampleMs);
  const completions = [...first.probe.completions];
  const rates: number[] = [];
  const timed = (c: { readonly bytes: number; readonly downtimeMs: number }) => {
    const rate = completionRate(c.bytes, c.downtimeMs, Number.NaN);
    if (!Number.isNaN(rate)) rates.push(rate);
  };
  completions.forEach(timed);
  let guest = first.destination;
  let fresh: FreshPages | null = null;
  try {
    for (let n = 1; n < PROBES; n++) {
      const next = await probeMigration(guest, launch, started, probeMs, run, sampleMs);
      await guest.stop();
      guest = next.destination;
      for (const c of next.probe.completions) {
        completions.push(c);
        timed(c);
      }
    }
    fresh = await probeFreshPages(guest, launch, started, probeMs);
  } finally {
    await guest.stop();
  }
  return {
    ...first.probe,
    completionRate: Math.max(
      rates.length > 0 ? Math.max(...rates) : first.probe.hostRate,
      fresh?.rate ?? 0,
    ),
    completions,
    fresh,
  };
}

/**
 * How fast a destination takes pages it never held, as a completion inside
 * the first pass sends them: stops the guest on `source` and migrates it
 * to a fresh destination with no rate limit, timing the pass over its
 * normal pages ({@link firstPassRate}) from query-migrate every
 * {@link FINE_MS}. With the vCPUs stopped the pass is the completion's
 * case, where the destination's first touch of each page (a fault and a
 * zeroed page, or a huge page where the kernel finds one free) can set the
 * pace: 15 MB of such pages took some 50 ms of a run's completion on one
 * day and some 10 on another, on the same host. Null when the pass was too
 * quick for two samples to bound it. The destination is pushed to
 * `started` and stopped before it returns.
 */
async function probeFreshPages(
  source: QemuProcess,
  launch: Omit<QemuLaunch, "name" | "incoming">,
  started: QemuProcess[],
  probeMs: number,
): Promise<FreshPages | null> {
  await source.qmp.execute("stop");
  const { destination, uri } = await probeDestination(source, launch, started);
  try {
    const samples: MigrateSample[] = [];
    const t0 = performance.now();
    await source.qmp.execute("migrate", { uri });
    for (;;) {
      await new Promise((r) => setTimeout(r, FINE_MS));
      const { info, at } = await lookAtProbe(source, t0, probeMs, "of the stopped guest ");
      if (info.status === "completed") {
        const pass = firstPassRate(samples);
        return pass ? { normalBytes: info.ram?.["normal-bytes"] ?? 0, rate: pass.rate } : null;
      }
      if (info.status === "active" && info.ram) samples.push({ atMs: at, info });
    }
  } finally {
    await destination.stop();
  }
}

/**
 * Starts a throw-away destination for the next probe migration of `source`
 * (pushed to `started`), waiting on a free loopback port, and sets `source`
 * to migrate with no rate limit and downtime-limit 0: the destination and
 * the URI to migrate to.
 */
async function probeDestination(
  source: QemuProcess,
  launch: Omit<QemuLaunch, "name" | "incoming">,
  started: QemuProcess[],
): Promise<{ readonly destination: QemuProcess; readonly uri: string }> {
  const destination = await QemuProcess.start({
    ...launch,
    name: `probe-destination-${started.length}`,
    incoming: true,
  });
  started.push(destination);
  const uri = `tcp:127.0.0.1:${await freeLoopbackPort()}`;
  await destination.qmp.execute("migrate-incoming", { uri });
  await source.qmp.execute("migrate-set-parameters", {
    "max-bandwidth": UNLIMITED,
    "downtime-limit": 0,
  });
  return { destination, uri };
}

/**
 * Asks `source` how its probe migration (`what`, as an error names it)
 * goes, `at` ms after `t0`: throws HostProbeError where it ended other than
 * completed, or has not completed within `probeMs` and the completion's
 * wait. While QEMU completes, its monitor waits for the completion to end.
 */
async function lookAtProbe(
  source: QemuProcess,
  t0: number,
  probeMs: number,
  what: string,
): Promise<{ readonly info: QemuMigrationInfo; readonly at: number }> {
  const info = parseMigrationInfo(
    await source.qmp.execute("query-migrate", undefined, COMPLETION_WAIT_MS),
  );
  const at = performance.now() - t0;
  if (FINAL_STATUSES.has(info.status) && info.status !== "completed")
    throw new HostProbeError(
      `the probe migration ${what}ended ${info.status}${info["error-desc"] ? `: ${info["error-desc"]}` : ""}`,
    );
  if (info.status !== "completed" && at > probeMs + COMPLETION_WAIT_MS)
    throw new HostProbeError(
      `the probe migration ${what}did not complete in ${probeMs + COMPLETION_WAIT_MS} ms`,
    );
  return { info, at };
}

/**
 * Migrates the running guest to a throw-away destination with no rate limit
 * and downtime-limit 0, sampling query-migrate every `sampleMs` while the
 * guest runs. With a threshold of 0 QEMU never syncs its dirty bitmap
 * before a pass's end (`ram_save_pending` syncs when pending falls below
 * it) and completes as soon as the first pass has sent every page
 * (`migration_iteration_run`, migration/migration.c: nothing pending):
 * with the guest stopped it syncs once more and sends, with no rate
 * limit, every page the guest dirtied during the pass, pages the
 * destination already holds, as it sends the last pages of any migration.
 * Near the pass's end (given the `run`) a trickle of max-bandwidth holds
 * the pass back until the guest has dirtied about the run's threshold, and
 * the pass ends at the run's max-bandwidth, so that the completion is
 * about the run's size and the destination has caught up when it starts.
 * So the first pass (up to the trickle) gives the host's sending rate and
 * the completion QEMU's rate for the last pages. (A probe that
 * ended its first pass with downtime-limit 1 ms and then set the run's
 * parameters lost a race: under 1 ms QEMU's passes after the first shrank
 * geometrically and it completed on its own, with 20 KB to 400 KB, within
 * 5 to 50 ms of the first pass's end, before the probe's next look; the
 * model then sent the last pages at the first pass's rate, and predicted
 * 56 to 78 ms of downtime at a 512 MiB hot set where QEMU, sending 26 MB at
 * some 2 GB/s, took 18 to 21. A completion of first-pass pages, as an
 * earlier probe made, went several times slower, 125 MiB/s against some
 * 870 MiB/s: the destination touching each page for the first time paces
 * it.) The rates QEMU reaches are the host's (under TCG the vCPU and the
 * migration thread share the cores); the write counter's rate meanwhile is
 * the guest's slowdown under migration. `probeMs` bounds the wait for the
 * first pass, after which QEMU completes at once with what is left. The
 * source ends migrated; the destination it starts, where the guest then
 * runs, is pushed to `started` and returned.
 */
async function probeMigration(
  source: QemuProcess,
  launch: Omit<QemuLaunch, "name" | "incoming">,
  started: QemuProcess[],
  probeMs: number,
  run: ProbeTarget | null,
  sampleMs: number,
): Promise<{ readonly probe: HostProbe; readonly destination: QemuProcess }> {
  const { destination, uri } = await probeDestination(source, launch, started);
  const active: Point[] = [];
  const samples: MigrateSample[] = [];
  // From when the probe made QEMU complete before its first pass was done.
  let completingAt = Number.POSITIVE_INFINITY;
  // Near the first pass's end: from when max-bandwidth trickled (the pages
  // the guest dirties gathering) and until when; done once it is lifted.
  let gathering: {
    readonly at: number;
    readonly until: number;
    readonly trickled: boolean;
    done: boolean;
  } | null = null;
  let waitMs = sampleMs;
  const before = await readGuestStatus(source.qmp);
  const t0 = performance.now();
  await source.qmp.execute("migrate", { uri });
  let final: QemuMigrationInfo | undefined;
  for (;;) {
    await new Promise((r) => setTimeout(r, waitMs));
    const { info, at } = await lookAtProbe(source, t0, probeMs, "");
    if (info.status === "completed") {
      final = info;
      break;
    }
    const ram = info.ram;
    if (!ram || info.status !== "active") continue;
    const last = active.at(-1);
    const now = {
      at,
      transferred: ram.transferred ?? 0,
      normalBytes: ram["normal-bytes"] ?? 0,
      pages: (ram.normal ?? 0) + (ram.duplicate ?? 0),
    };
    active.push(now);
    samples.push({ atMs: at, info });
    if (completingAt !== Number.POSITIVE_INFINITY) continue;
    if (at > probeMs) {
      // The first pass outlasted the probe: complete now, whatever is left.
      await source.qmp.execute("migrate-set-parameters", {
        "max-bandwidth": UNLIMITED,
        "downtime-limit": COMPLETE_NOW_MS,
      });
      completingAt = at;
      waitMs = sampleMs;
      continue;
    }
    if (gathering) {
      if (!gathering.done && at >= gathering.until) {
        // The rest of the first pass at the run's max-bandwidth, then the
        // completion.
        await source.qmp.execute("migrate-set-parameters", {
          "max-bandwidth": Math.round(run?.maxBandwidth ?? UNLIMITED),
        });
        gathering.done = true;
        waitMs = sampleMs;
      } else if (!gathering.done) waitMs = Math.max(1, Math.min(sampleMs, gathering.until - at));
      continue;
    }
    if (!run) continue;
    // How long the first pass has left at the last interval's pace; near
    // its end the probe looks every FINE_MS.
    // At the faster of the last interval's pace and the pass's so far: the
    // pace jumps (zero pages go many times faster than normal ones), and a
    // pass that ends between two looks completes small.
    const lastPerMs = last && at > last.at ? (now.pages - last.pages) / (at - last.at) : 0;
    const perMs = Math.max(lastPerMs, at > 0 ? now.pages / at : 0);
    const leftMs = perMs > 0 ? (ram.remaining ?? 0) / GUEST_PAGE / perMs : Number.POSITIVE_INFINITY;
    if (leftMs >= 4 * sampleMs) {
      waitMs = sampleMs;
      continue;
    }
    if (leftMs >= NEAR_END_MS) {
      waitMs = FINE_MS;
      continue;
    }
    // The completion sends what the guest dirtied during the pass. Where
    // that falls short of the run's threshold at its max-bandwidth (what
    // the run leaves for its completion), a trickle of max-bandwidth holds
    // the pass back while more gathers, so that the completion is large
    // enough for QEMU's millisecond clock to time. The pass ends at the
    // run's max-bandwidth, so that the destination has caught up with it
    // when QEMU completes, as in the run, whose last pass max-bandwidth
    // paces: a pass that ended with no rate limit left the destination
    // working through the pass's last pages, pages it touched for the
    // first time, while the completion went (540 MB/s timed at a 128 MiB
    // hot set whose run completed 15 MB in 9 ms).
    const gatherMs = Math.min(
      GATHER_MAX_MS,
      gatherTimeMs(run, await writesSince(source, before, t0)) - at,
    );
    const trickled = gatherMs >= GATHER_MIN_MS;
    await source.qmp.execute("migrate-set-parameters", {
      "max-bandwidth": trickled ? TRICKLE : Math.round(run.maxBandwidth),
    });
    gathering = { at, until: at + gatherMs, trickled, done: !trickled };
    waitMs = trickled ? Math.min(sampleMs, gatherMs) : sampleMs;
  }
  // The guest's writes up to the stop (QEMU's clock: total-time less downtime).
  const ranMs = (final["total-time"] ?? 0) - (final.downtime ?? 0);
  const after = await readGuestStatus(source.qmp);
  const writesDuring = ranMs > 0 ? ((after.writes - before.writes) * 1000) / ranMs : 0;
  // A first pass quicker than two samples (a quiet host with no rate
  // limit) has no interval to time: what went before the stop over
  // total-time less downtime (QEMU's own clock) is then its rate.
  const precopyBytes =
    final.ram?.["precopy-bytes"] ??
    (final.ram?.transferred ?? 0) - (final.ram?.["downtime-bytes"] ?? 0);
  // The rates are the first pass's with no rate limit: up to the trickle.
  const unlimitedUntil = gathering?.at ?? completingAt;
  const unlimited = samples.filter((x) => x.atMs <= unlimitedUntil);
  const lastUnlimited = active.filter((p) => p.at <= unlimitedUntil).at(-1);
  const pass =
    firstPassRate(samples, unlimitedUntil) ??
    (gathering && lastUnlimited && lastUnlimited.at > 0 && lastUnlimited.transferred > 0
      ? { rate: (lastUnlimited.transferred * 1000) / lastUnlimited.at, startMs: 0, intervals: 1 }
      : null) ??
    (ranMs > 0 && precopyBytes > 0
      ? { rate: (precopyBytes * 1000) / ranMs, startMs: 0, intervals: 0 }
      : null);
  if (!pass) {
    throw new HostProbeError(
      `the probe's first pass gave no rate: ${samples.length} samples while it ran, none of them ${sampleMs} ms apart over mostly normal pages; QEMU ${final.status} with ${precopyBytes} bytes before the stop in ${ranMs} ms`,
    );
  }
  const hostRate = pass.rate;
  const startMs = pass.startMs;
  // QEMU counts what it sent with the guest stopped (downtime-bytes, 7.1
  // and later); an older one leaves all that went after the last sample
  // before the stop (QEMU's clock: total-time less downtime), less what
  // pre-copy still sent between that sample and the stop (at the host's rate).
  const downtimeMs = final.downtime ?? 0;
  const stopAt = (final["total-time"] ?? 0) - downtimeMs;
  const lastRunning = active.filter((p) => p.at <= stopAt).at(-1);
  const bytes =
    final.ram?.["downtime-bytes"] ??
    (final.ram?.transferred ?? 0) -
      (lastRunning?.transferred ?? 0) -
      (hostRate * Math.max(0, stopAt - (lastRunning?.at ?? stopAt))) / 1000;
  // A completion too small or too quick for QEMU's millisecond clock to
  // time gives no rate of its own: the last pages then go at no slower
  // than the unthrottled rate just measured.
  const probe: HostProbe = {
    hostRate,
    completionRate: completionRate(bytes, downtimeMs, hostRate),
    completions: [{ bytes, downtimeMs }],
    // Timed once, after every probe migration (probeHost).
    fresh: null,
    startMs,
    intervals: pass.intervals,
    // The tail's rate where the probe reached it: the model scans the tail
    // at this rate, and the pages below the working set go faster.
    zeroScanRate:
      zeroScanRate(unlimited, Number.POSITIVE_INFINITY, true) ??
      zeroScanRate(samples, unlimitedUntil),
    writesPerSecondDuring: writesDuring,
  };
  return { probe, destination };
}

/** The guest's page writes per second since `t0` (its write counter against `before`). */
async function writesSince(
  source: QemuProcess,
  before: { readonly writes: number },
  t0: number,
): Promise<number> {
  const status = await readGuestStatus(source.qmp);
  const ms = performance.now() - t0;
  return ms > 0 ? ((status.writes - before.writes) * 1000) / ms : 0;
}
