import { formatBytes } from "../../util/units.js";
import type { StopPolicyName } from "../options.js";
import { decide } from "../policy.js";
import type { MigrationResult, MigrationStatus, RoundDecision } from "../stats.js";
import type { RoundRecorder } from "./recorder.js";
import type {
  PostcopyOutcome,
  PrecopyClock,
  PrecopyGuest,
  PrecopyPolicy,
  PrecopyTransport,
  Sent,
} from "./types.js";

/** Everything one pre-copy run needs. */
export interface PrecopyRun {
  readonly guest: PrecopyGuest;
  readonly clock: PrecopyClock;
  readonly transport: PrecopyTransport;
  readonly policy: PrecopyPolicy;
  readonly recorder: RoundRecorder;
  /** Called as the run enters a phase (setup, pre-copy pass N, stop-and-copy, post-copy, verification). */
  readonly onPhase?: (phase: string) => void;
}

/** What a run keeps while it runs: a fresh object per run, never reset by hand. */
interface RunState {
  phase: string;
  status: MigrationStatus;
  failure: string | null;
  pendingPages: number;
  pagesSent: number;
  precopyBytes: number;
  downtimeBytes: number;
  dirtyPagesRate: number;
  expectedDowntime: number;
  setupTime: number;
  downtime: number;
  warning: string | null;
  overLimit: boolean;
  /** Clock time the migration ended (before verification); null until then. */
  totalTime: number | null;
  postcopy: PostcopyOutcome | null;
  verified: boolean | null;
  /** Pending bytes after each round since the dirty rate last changed (what the shrink is fitted to). */
  readonly pendingHistory: number[];
  previousPagesSent: number | null;
}

/**
 * The one pre-copy loop every mode runs (virtual time, live TCP, quick
 * migration's saved-state file): send the pending set, sync the dirty log,
 * ask the policy, record the round; then stop-and-copy (or switch to
 * post-copy), and verify. Quick migration's policy runs no round: it goes
 * straight to stop-and-copy. The mode is only in
 * what it passes: a clock (virtual or wall), a guest, a transport (records
 * in-process, multifd channels on the pool, TCP frames) and a policy.
 *
 * A time limit holds within one page batch: the transport stops a pass at
 * the deadline. A failure while the guest is paused reports the real pause
 * and resumes the guest on the source. Never throws for a failed migration:
 * the result says completed, failed or not-converged, with the reason.
 */
export async function runPrecopy(run: PrecopyRun): Promise<MigrationResult> {
  const { guest, clock, transport, policy, recorder } = run;
  const state: RunState = {
    phase: "setup",
    status: "completed",
    failure: null,
    pendingPages: 0,
    pagesSent: 0,
    precopyBytes: 0,
    downtimeBytes: 0,
    dirtyPagesRate: 0,
    expectedDowntime: 0,
    setupTime: 0,
    downtime: 0,
    warning: null,
    overLimit: false,
    totalTime: null,
    postcopy: null,
    verified: null,
    pendingHistory: [],
    previousPagesSent: null,
  };
  let pausedAt: number | null = null;
  const throttle = () => guest.throttle?.percentage ?? 0;
  try {
    // Refused before anything runs: found at the switch, the guest would
    // already be paused for a post-copy that cannot start.
    if ((policy.postcopyAfterRounds !== null || policy.postcopyRequested) && !transport.postcopy)
      throw new Error(`the ${transport.mode} transport has no post-copy`);
    await transport.open();
    state.setupTime = clock.now();
    state.pendingPages = guest.logAll();
    const switchTo =
      policy.name === "quick" ? "stop-and-copy" : await precopyRounds(run, state, policy.name);
    if (state.status === "completed") {
      enter(run, state, "stop-and-copy");
      const start = clock.now();
      pausedAt = start;
      state.pendingPages = await guest.pause();
      let sent: Sent = { pages: 0, bytes: 0 };
      if (switchTo === "stop-and-copy") {
        sent = await transport.sendPending({
          running: false,
          round: recorder.rounds.length + 1,
          untilMs: Number.POSITIVE_INFINITY,
        });
      }
      const copied = clock.now();
      const handover = await transport.switchover(
        switchTo === "postcopy" ? "postcopy" : "stop-and-copy",
      );
      const resumed = clock.now();
      state.downtime = resumed - start;
      // Without post-copy the migration ends as the destination runs the guest.
      if (switchTo === "stop-and-copy") state.totalTime = resumed;
      state.downtimeBytes = sent.bytes + handover.bytes;
      state.pagesSent += sent.pages;
      state.overLimit = state.downtime > policy.downtimeLimitMs;
      // On virtual time the parts of the downtime are known exactly, so the
      // warning can say which pushed it over; on the wall clock the flag
      // stands alone (a shared machine's pause is not the link's).
      if (state.overLimit && clock.kind === "virtual") {
        state.warning = overLimit(run, state.downtime, sent.bytes, copied - start, handover.fixed);
      }
      const left = switchTo === "postcopy" ? state.pendingPages : 0;
      const own = handover.ownRound;
      recorder.record({
        phase: "stop-and-copy",
        start,
        ...(own ? { end: copied } : {}),
        sent: { pages: sent.pages, bytes: own ? sent.bytes : state.downtimeBytes },
        pagesDirtied: 0,
        remainingPages: left,
        transferred: transport.transferred,
        bandwidth: transport.rate(),
        throttle: throttle(),
        decision: switchTo === "postcopy" ? "switch-to-postcopy" : "stop-and-copy",
        reason:
          switchTo === "postcopy"
            ? `paused for the device state and switchover (${handover.fixed}); ${formatBytes(left * guest.pageBytes)} left for post-copy`
            : own
              ? own.copy
              : `sent the last ${sent.pages} pages and the device state; ${handover.fixed}`,
      });
      if (own) {
        recorder.record({
          phase: "resume",
          start: copied,
          end: resumed,
          sent: { pages: 0, bytes: handover.bytes },
          pagesDirtied: 0,
          remainingPages: 0,
          transferred: transport.transferred,
          bandwidth: 0,
          throttle: throttle(),
          decision: "stop-and-copy",
          reason: own.resume,
        });
      }
      pausedAt = null;
      state.pendingPages = left;
      if (switchTo === "postcopy") await postcopy(run, state);
    }
    // Verification is hvlab's check, not the migration's: it is not in total-time.
    state.totalTime ??= clock.now();
    if (state.status === "completed") {
      enter(run, state, "verification");
      const mismatch = await transport.verify();
      state.verified = mismatch === undefined ? null : mismatch === null;
      if (mismatch && state.postcopy) {
        // The guest already ran on the destination: resuming the source's
        // copy would run it twice. It stays paused for the user to decide.
        state.status = "failed";
        state.failure = `${mismatch}; the guest ran on the destination since the post-copy switch, and the source keeps its paused copy as of the switch`;
      } else if (mismatch) {
        state.status = "failed";
        state.failure = `${mismatch}; the guest runs again on the source`;
        guest.resume();
      }
    }
  } catch (error) {
    state.status = "failed";
    state.failure = transport.explain(error as Error, state.phase);
    // The destination hears why where the link still carries it (a multifd
    // channel cut, a local error): otherwise it sees only connections closing,
    // in whatever order they reach it, and cannot name the cause.
    await transport.cancel(`migration failed at the source: ${state.failure}`).catch(() => {});
    if (pausedAt !== null) {
      // The guest was paused for this long before the failure: that was its downtime.
      state.downtime = clock.now() - pausedAt;
      state.failure += `; the guest was paused ${state.downtime.toFixed(1)} ms and runs again on the source`;
    }
    guest.resume();
  }
  const post = state.postcopy;
  return recorder.result(
    {
      status: state.status,
      reason: state.failure,
      policy: policy.label,
      transferred: transport.transferred,
      remainingPages: post ? post.missing : state.pendingPages,
      pagesSent: state.pagesSent,
      syncs: guest.syncs,
      dirtyPagesRate: state.dirtyPagesRate,
      precopyBytes: state.precopyBytes,
      downtimeBytes: state.downtimeBytes,
      postcopyBytes: post?.bytes ?? 0,
      expectedDowntime: state.expectedDowntime,
      downtime: state.downtime,
      setupTime: state.setupTime,
      throttle: throttle(),
      requests: post?.requests ?? 0,
      faultWaitMs: post?.faultWaitMs ?? 0,
      blocktime: post?.blocktime ?? 0,
      vcpuBlocktime: post?.vcpuBlocktime ?? [],
      ...(post?.recovery ? { recovery: post.recovery } : {}),
      verified: state.verified,
      counters: transport.counters(),
      overLimit: state.overLimit,
      totalTime: state.totalTime ?? clock.now(),
      warning: state.status === "completed" ? state.warning : null,
    },
    transport.mode,
  );
}

/** The pre-copy rounds. Returns how the loop ended (give-up also sets the state's status). */
async function precopyRounds(
  run: PrecopyRun,
  state: RunState,
  rule: StopPolicyName,
): Promise<"stop-and-copy" | "postcopy" | "give-up"> {
  const { guest, clock, transport, policy, recorder } = run;
  for (let round = 1; ; round++) {
    enter(run, state, `pre-copy pass ${round}`);
    const start = clock.now();
    const pass = await transport.sendPending({ running: true, round, untilMs: policy.timeoutMs });
    state.pagesSent += pass.pages;
    state.precopyBytes += pass.bytes;
    const duration = clock.now() - start;
    const bandwidth = transport.bandwidth(pass.bytes, duration);
    // The bitmap sync at the end of the round: what the guest dirtied meanwhile.
    const pendingPages = guest.sync();
    state.pendingPages = pendingPages;
    const pendingBytes = pendingPages * guest.pageBytes;
    state.dirtyPagesRate = duration > 0 ? pendingPages / (duration / 1000) : 0;
    state.expectedDowntime = bandwidth < Number.MAX_VALUE ? (pendingBytes / bandwidth) * 1000 : 0;
    const facts = {
      phase: "precopy" as const,
      start,
      sent: pass,
      pagesDirtied: pendingPages,
      remainingPages: pendingPages,
      transferred: transport.transferred,
      bandwidth,
    };
    if (pass.cut || clock.now() > policy.timeoutMs) {
      state.status = "not-converged";
      state.failure = timedOut(run, pendingBytes, bandwidth, guest.writeRate(duration));
      recorder.record({
        ...facts,
        throttle: guest.throttle?.percentage ?? 0,
        decision: "give-up",
        reason: state.failure,
      });
      await transport.cancel(`migration cancelled by the source: ${state.failure}`);
      return "give-up";
    }
    const throttled = guest.throttle?.afterSync(pendingBytes, pass.bytes, duration) ?? false;
    state.pendingHistory.push(pendingBytes);
    const verdict = decide(rule, {
      round,
      pendingBytes,
      pagesSent: pass.pages,
      bandwidth,
      transferredBytes: transport.transferred,
      ramBytes: guest.ramBytes,
      downtimeLimitMs: policy.downtimeLimitMs,
      maxRounds: policy.maxRounds,
      pendingHistory: state.pendingHistory,
      previousPagesSent: state.previousPagesSent,
      elapsedMs: clock.now(),
      maxTimeMs: policy.timeoutMs,
      giveUp: policy.giveUp,
      canThrottle: guest.throttle?.canRise ?? false,
      // Every write, repeats included: the distinct-page rate saturates at the guest's size.
      writeBytesRate: guest.writeRate(duration) * guest.pageBytes,
    });
    state.previousPagesSent = pass.pages;
    // A throttle step changes the dirty rate: the shrink is fitted afresh.
    if (throttled) state.pendingHistory.length = 0;
    let decision: RoundDecision = verdict.decision;
    let reason = verdict.reason;
    if (
      decision === "continue" &&
      policy.postcopyAfterRounds !== null &&
      round >= policy.postcopyAfterRounds
    ) {
      decision = "switch-to-postcopy";
      reason = `post-copy after ${policy.postcopyAfterRounds} pre-copy rounds (${formatBytes(pendingBytes)} pending)`;
    } else if (decision === "continue" && policy.postcopyRequested?.() === true) {
      decision = "switch-to-postcopy";
      reason = `post-copy on command after ${round} pre-copy rounds (${formatBytes(pendingBytes)} pending)`;
    } else if (decision === "continue" && throttled) {
      decision = "throttle";
      reason = `${reason}; bytes dirtied > 50% of bytes sent twice: throttle to ${guest.throttle?.percentage ?? 0}%`;
    }
    recorder.record({ ...facts, throttle: guest.throttle?.percentage ?? 0, decision, reason });
    if (decision === "stop-and-copy") return "stop-and-copy";
    if (decision === "switch-to-postcopy") return "postcopy";
    if (decision === "give-up") {
      state.status = "not-converged";
      state.failure = reason;
      await transport.cancel(`migration cancelled by the source: ${reason}`);
      return "give-up";
    }
  }
}

/** Moves the run into `phase` and tells whoever watches. */
function enter(run: PrecopyRun, state: RunState, phase: string): void {
  state.phase = phase;
  run.onPhase?.(phase);
}

/** Post-copy after the switchover: the transport pulls faulted pages and pushes the rest. */
async function postcopy(run: PrecopyRun, state: RunState): Promise<void> {
  const { clock, transport, policy, recorder, guest } = run;
  if (!transport.postcopy) throw new Error(`the ${transport.mode} transport has no post-copy`);
  enter(run, state, "post-copy");
  const start = clock.now();
  const post = await transport.postcopy(state.pendingPages, policy.timeoutMs);
  state.postcopy = post;
  state.pagesSent += post.pages;
  if (post.failure) {
    state.status = "failed";
    state.failure = post.failure;
  }
  recorder.record({
    phase: "postcopy",
    start,
    sent: post,
    pagesDirtied: 0,
    remainingPages: post.missing,
    transferred: transport.transferred,
    bandwidth: transport.rate(),
    throttle: guest.throttle?.percentage ?? 0,
    decision: post.failure ? "give-up" : "continue",
    reason:
      post.failure ??
      post.summary ??
      `${post.windows} windows: ${post.requests} remote faults (${post.faultWaitMs.toFixed(1)} ms waiting), the rest pushed in the background`,
  });
}

/** Why a run that reached its time limit gave up, with the figures. */
function timedOut(
  run: PrecopyRun,
  pendingBytes: number,
  bandwidth: number,
  writeRate: number,
): string {
  const { clock, policy } = run;
  if (clock.kind === "virtual") {
    return `timeout: ${formatBytes(pendingBytes)} still pending after ${(clock.now() / 1000).toFixed(1)} s (limit ${(policy.timeoutMs / 1000).toFixed(1)} s)`;
  }
  const threshold = (bandwidth * policy.downtimeLimitMs) / 1000;
  return `no convergence within ${policy.timeoutMs} ms: ${Math.round(writeRate)} pages/s dirtied against ${formatBytes(bandwidth)}/s of bandwidth, ${formatBytes(pendingBytes)} pending above the ${formatBytes(threshold)} the downtime-limit allows`;
}

/**
 * The warning of a completed run whose downtime passed the limit: which
 * part did. `pagesMs` is the time the last pages took, as the virtual clock
 * counted it.
 */
function overLimit(
  run: PrecopyRun,
  downtime: number,
  pageBytes: number,
  pagesMs: number,
  fixed: string,
): string {
  const { policy } = run;
  const over = `downtime ${downtime.toFixed(1)} ms is over the downtime-limit ${policy.downtimeLimitMs} ms`;
  return pagesMs > policy.downtimeLimitMs
    ? `${over}: the ${policy.label} rule stopped pre-copy with ${formatBytes(pageBytes)} still to send (${pagesMs.toFixed(1)} ms of it)`
    : `${over}: the last pages took ${pagesMs.toFixed(1)} ms, within the limit; the fixed part pushed it over: ${fixed}, ${(downtime - pagesMs).toFixed(1)} ms in all`;
}
