import type { Command } from "commander";
import type { AutoConvergeSettings } from "../../migration/auto-converge.js";
import { retryDelayMs } from "../../migration/live/backoff.js";
import {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  type DestinationReport,
  DestinationServer,
  MAX_TIMEOUT_MS,
} from "../../migration/live/destination.js";
import {
  MAX_RECOVER_WAIT_MS,
  type PostcopyStatus,
} from "../../migration/live/postcopy-recovery.js";
import { LiveSource, MAX_LIVE_GUEST_BYTES } from "../../migration/live/source.js";
import {
  MIGRATION_DEFAULTS,
  type MigrationOptions,
  POLICY_ROUND_CAPS,
} from "../../migration/options.js";
import type { MigrationResult } from "../../migration/stats.js";
import {
  checkExposure,
  describeSecurity,
  TransportError,
  type TransportFlags,
} from "../../transport/secure.js";
import { formatBytes } from "../../util/units.js";
import { WORKLOAD_KINDS, type WorkloadKind } from "../../workload/spec.js";
import { whileInterruptible } from "../interrupt.js";
import {
  addGuestOption,
  addSeedOption,
  addVcpusOption,
  addWorkloadOptions,
  checkOutputFlags,
  checkWorkloadKind,
  csvOption,
  integerOption,
  jsonOption,
  numberOption,
  sizeOptionOf,
  UsageError,
} from "../options.js";
import { startProgress } from "../progress.js";
import { addTransportOptions, transportSecurityOf } from "../transport-options.js";
import { readMeasuredHandover } from "./csv-measured.js";
import { LIVE_MIGRATION_HOOKS, type LiveMigrationHook, type MigrateFlags } from "./migrate.js";
import { type CliOutput, printMigration, processOutput } from "./migration-output.js";

/**
 * A migration ran but did not complete: its result is printed, and this
 * becomes the one error line and the non-zero exit.
 */
export class MigrationNotCompletedError extends Error {
  override name = "MigrationNotCompletedError";

  constructor(status: string, reason: string | null) {
    super(`migration ${status}${reason ? `: ${reason}` : ""}`);
  }
}

/** Where a source sends to. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/**
 * Parses `HOST:PORT` (`[v6]:PORT` for IPv6; a bare `PORT` means loopback).
 *
 * @throws UsageError with one line for anything else.
 */
export function parseHostPort(text: string): HostPort {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(text.trim());
  const bare = /^\d{1,5}$/.test(text.trim());
  const host = match ? (match[1] ?? match[2] ?? "") : bare ? "127.0.0.1" : "";
  const port = Number(match ? match[3] : bare ? text.trim() : Number.NaN);
  if ((!match && !bare) || !Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new UsageError(`bad address "${text}": expected HOST:PORT with a port from 1 to 65535`);
  }
  return { host: host === "" ? "127.0.0.1" : host, port };
}

/** The destination's options, as parsed. */
export interface LiveDestinationFlags extends TransportFlags {
  /** Port to listen on (0: ephemeral, printed). */
  readonly listen: number;
  readonly host: string;
  readonly sessions: number;
  readonly maxGuest: number;
  /** Milliseconds a connection has to say hello (default: the server's). */
  readonly handshakeTimeout?: number;
  /** Milliseconds a session may receive nothing (default: the server's). */
  readonly idleTimeout?: number;
  /** Milliseconds a post-copy session broken by a lost connection waits for its source (default: it fails at once). */
  readonly postcopyRecover?: number;
  readonly json?: boolean;
}

/** The source's options, as parsed. */
export interface LiveSourceFlags extends TransportFlags {
  readonly to: string;
  readonly guest: number;
  readonly vcpus: number;
  readonly workload: string;
  readonly rate: number;
  readonly hotSet?: number;
  readonly hotFraction: number;
  readonly threads: number;
  readonly seed: number;
  readonly maxBandwidth: number;
  readonly downtimeLimit: number;
  readonly maxPasses: number;
  /** Switch to post-copy after this many pre-copy passes (default never). */
  readonly postcopyAfter?: number;
  /** Milliseconds to keep reconnecting after a post-copy break (default: the break fails the run). */
  readonly postcopyRecover?: number;
  /** The stop rule when given through `hvlab migrate --to` (default qemu). */
  readonly policy?: "qemu" | "hyperv";
  /** Its round cap (hyperv: the release's pass cap). */
  readonly maxRounds?: number;
  readonly timeout: number;
  readonly deviceState: number;
  readonly retries: number;
  /** QEMU's auto-converge, given through `hvlab migrate --to --auto-converge`. */
  readonly autoConverge?: AutoConvergeSettings;
  /** Zero pages as ZERO records (`hvlab migrate --to`: on unless --no-zero-pages). */
  readonly zeroPages?: boolean;
  /** A cluster run's JSON whose measured VHD handover joins the blackout (`--handover-from`). */
  readonly handoverFrom?: string;
  /** XBZRLE from the second pass, with a cache of this many bytes. */
  readonly xbzrleCache?: number;
  /** multifd channels: one more TCP connection each (0: pages on the main one). */
  readonly multifd?: number;
  readonly json?: boolean;
  readonly csv?: boolean;
}

/**
 * Runs a destination (`--listen PORT`): prints `listening on HOST:PORT`,
 * receives migrations (a failed one is discarded and the next awaited), and
 * returns the report of the one that completed.
 */
export async function runLiveDestination(
  flags: LiveDestinationFlags,
  output: CliOutput = processOutput,
): Promise<DestinationReport> {
  const security = transportSecurityOf(flags, "server");
  try {
    checkExposure(flags.host, security);
  } catch (error) {
    if (error instanceof TransportError) throw new UsageError(error.message);
    throw error;
  }
  const server = await DestinationServer.listen({
    security,
    host: flags.host,
    port: flags.listen,
    sessions: flags.sessions,
    maxGuestBytes: flags.maxGuest,
    ...(flags.handshakeTimeout !== undefined ? { handshakeTimeoutMs: flags.handshakeTimeout } : {}),
    ...(flags.idleTimeout !== undefined ? { idleTimeoutMs: flags.idleTimeout } : {}),
    ...(flags.postcopyRecover !== undefined ? { postcopyRecoverMs: flags.postcopyRecover } : {}),
    onSession: (report) => {
      if (report.status === "failed") {
        output.err(
          `hvlab: incoming migration ${report.session} from ${report.peer} failed: ${report.reason}${report.discarded ? "; partial copy discarded" : ""}; still listening`,
        );
      } else if (!flags.json) {
        output.out(
          `migration ${report.session} from ${report.peer} completed: ${formatBytes(report.guestBytes)} guest, ${report.pagesReceived.toLocaleString("en-US")} pages received in ${report.frames.toLocaleString("en-US")} frames${report.verified ? ", every page verified" : " (page verification off)"}`,
        );
      }
    },
  });
  const { host, port } = server.address;
  output.out(`listening on ${host}:${port} over ${describeSecurity(security)}`);
  if (security.kind === "plain" && security.insecure) {
    output.err(
      `hvlab: --insecure: listening on ${host} without TLS; anyone who reaches it can push or read a guest`,
    );
  }
  const stopDescribing = whileInterruptible(() => {
    const received = server.reports.filter((r) => r.status === "completed").length;
    return `while listening on ${host}:${port} (${received} migration${received === 1 ? "" : "s"} received${server.receiving ? "; the one in progress is discarded, its source keeps the guest" : ""})`;
  });
  const report = await server.done().finally(stopDescribing);
  if (flags.json) {
    const transport = {
      transport: describeSecurity(security),
      insecure: security.kind === "plain" && security.insecure,
    };
    output.out(JSON.stringify({ ...report, ...transport }, null, 2));
  }
  return report;
}

/**
 * Runs a source (`--to HOST:PORT`): starts the guest's vCPUs, migrates it
 * (retrying after a failure if asked, the guest running meanwhile) and
 * prints the result. Returns the last attempt's result.
 */
export async function runLiveSource(
  flags: LiveSourceFlags,
  output: CliOutput = processOutput,
): Promise<MigrationResult> {
  checkOutputFlags(flags);
  const target = parseHostPort(flags.to);
  const security = transportSecurityOf(flags, "client");
  checkWorkloadKind(flags.workload, WORKLOAD_KINDS);
  if (flags.guest % 4096 !== 0) {
    throw new UsageError(`--guest ${flags.guest} bytes is not a whole number of 4 KiB pages`);
  }
  if (flags.hotSet !== undefined && (flags.hotSet % 4096 !== 0 || flags.hotSet > flags.guest)) {
    throw new UsageError("--hot-set must be a whole number of pages, at most the guest");
  }
  // Read before the guest starts: a wrong file is a usage error, not a failed migration.
  const storageHandoverMs =
    flags.handoverFrom !== undefined ? readMeasuredHandover(flags.handoverFrom) : 0;
  const source = LiveSource.start({
    guestBytes: flags.guest,
    vcpus: flags.vcpus,
    workload: {
      kind: flags.workload as WorkloadKind,
      hotFraction: flags.hotFraction,
      ...(flags.hotSet !== undefined ? { hotPages: flags.hotSet / 4096 } : {}),
    },
    writesPerSecond: flags.rate,
    threads: flags.threads,
    seed: flags.seed,
  });
  // What Ctrl-C reports: the attempt and what it was doing.
  const where = `${target.host}:${target.port}`;
  let attemptNumber = 1;
  let waiting = false;
  // QEMU's migrate-start-postcopy from outside the process: SIGUSR2.
  const startPostcopy = () => {
    if (source.startPostcopy()) {
      output.err("hvlab: SIGUSR2: switching to post-copy at the end of this pre-copy pass");
    }
  };
  process.on("SIGUSR2", startPostcopy);
  const stopDescribing = whileInterruptible(() =>
    describeInterruptedSource(where, attemptNumber, waiting ? undefined : source.activity),
  );
  try {
    let result: MigrationResult | undefined;
    for (let attempt = 0; attempt <= flags.retries; attempt++) {
      const progress = startProgress(`migrate to ${target.host}:${target.port}`, flags.guest);
      attemptNumber = attempt + 1;
      waiting = false;
      result = await source.migrate({
        host: target.host,
        port: target.port,
        downtimeLimitMs: flags.downtimeLimit,
        maxPasses: flags.maxPasses,
        ...(flags.postcopyAfter !== undefined ? { postcopyAfter: flags.postcopyAfter } : {}),
        ...(flags.postcopyRecover !== undefined
          ? {
              postcopyRecoverMs: flags.postcopyRecover,
              onPostcopyStatus: (status: PostcopyStatus) => {
                if (status === "postcopy-paused") {
                  output.err(
                    `hvlab: post-copy paused: the connection to ${where} broke; reconnecting for up to ${flags.postcopyRecover} ms`,
                  );
                } else if (status === "postcopy-recover") {
                  output.err(`hvlab: post-copy recovering: reconnected to ${where}`);
                }
              },
            }
          : {}),
        ...(flags.policy ? { policy: flags.policy } : {}),
        ...(flags.maxRounds !== undefined ? { maxRounds: flags.maxRounds } : {}),
        timeoutMs: flags.timeout,
        maxBandwidth: flags.maxBandwidth,
        deviceStateBytes: flags.deviceState,
        ...(storageHandoverMs > 0 ? { storageHandoverMs } : {}),
        ...(flags.autoConverge ? { autoConverge: flags.autoConverge } : {}),
        ...(flags.zeroPages ? { zeroPages: true } : {}),
        ...(flags.xbzrleCache !== undefined
          ? { xbzrle: true, xbzrleCacheBytes: flags.xbzrleCache }
          : {}),
        ...(flags.multifd ? { multifdChannels: flags.multifd } : {}),
        security,
        onProgress: (bytes) => progress.update(Math.min(bytes, flags.guest), formatBytes(bytes)),
      });
      progress.stop();
      if (result.summary.status !== "failed" || attempt === flags.retries) break;
      // A failure after the switch lost the guest on the destination; the
      // source holds it paused: restarting it is the user's call, not a retry's.
      if (result.rounds.some((round) => round.phase === "postcopy")) break;
      const wait = retryDelayMs(attempt + 1);
      output.err(
        `hvlab: migration attempt ${attempt + 1} failed: ${result.summary.reason}; the guest is still running here; retrying in ${wait} ms`,
      );
      waiting = true;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
    if (!result) throw new Error("no migration attempt ran");
    printMigration(result, flags, output);
    if (result.summary.status !== "completed") {
      throw new MigrationNotCompletedError(result.summary.status, result.summary.reason);
    }
    return result;
  } finally {
    process.off("SIGUSR2", startPostcopy);
    stopDescribing();
    await source.close();
  }
}

/** The line Ctrl-C prints on a source: what it was doing, and where the guest runs. */
function describeInterruptedSource(
  where: string,
  attempt: number,
  activity: LiveSource["activity"],
): string {
  if (!activity) {
    return `between attempts at the migration to ${where} (attempt ${attempt} failed): the guest keeps running on the source`;
  }
  const doing = `during ${activity.phase} of the migration to ${where} (attempt ${attempt}, ${formatBytes(activity.bytesSent)} sent)`;
  if (activity.phase === "post-copy") {
    return `${doing}: the guest had switched over to the destination in post-copy, which still lacked pages held here: the guest is lost`;
  }
  return activity.phase === "verification"
    ? `${doing}: the guest had already switched over and runs on the destination; only the page verification was cut short`
    : `${doing}: migration cancelled; the guest was never switched over and keeps running on the source; the destination discards its partial copy`;
}

/** Adds the live mode's options to a command (`hvlab migrate-live`, or `hvlab migrate`). */
export function addLiveOptions(command: Command): Command {
  addGuestOption(
    command,
    { min: 1024 ** 2, max: MAX_LIVE_GUEST_BYTES, fallback: 256 * 1024 ** 2 },
    "source: guest memory, content mode",
  );
  addVcpusOption(command, 64, 2, "source: vCPUs writing");
  addWorkloadOptions(command, {
    kinds: WORKLOAD_KINDS,
    maxHotSet: MAX_LIVE_GUEST_BYTES,
    prefix: "source: ",
  });
  addSeedOption(command, "source: seed of the workload and the guest's content");
  command
    .option(
      "--listen <port>",
      "destination: listen on this port (0: pick one and print it)",
      integerOption(0, 65_535),
    )
    .option("--to <host:port>", "source: migrate the guest to the destination at HOST:PORT")
    .option("--host <address>", "destination: address to listen on", "127.0.0.1")
    .option(
      "--sessions <n>",
      "destination: completed migrations before exiting (0: forever)",
      integerOption(0, 1_000_000),
      1,
    )
    .addOption(
      sizeOptionOf(
        "--max-guest <size>",
        "destination: largest guest accepted",
        1024 ** 2,
        MAX_LIVE_GUEST_BYTES,
        MAX_LIVE_GUEST_BYTES,
      ),
    )
    .option(
      "--handshake-timeout <ms>",
      "destination: milliseconds a connection has to send its hello",
      integerOption(1, MAX_TIMEOUT_MS),
      DEFAULT_HANDSHAKE_TIMEOUT_MS,
    )
    .option(
      "--idle-timeout <ms>",
      "destination: milliseconds a migration may receive nothing before it is discarded",
      integerOption(1, MAX_TIMEOUT_MS),
      DEFAULT_IDLE_TIMEOUT_MS,
    )
    .option(
      "--rate <writes/s>",
      "source: guest writes per second on the wall clock (0: idle)",
      numberOption(0, 1e10),
      200_000,
    )
    .option(
      "--threads <n>",
      "source: pool workers running the vCPUs (0: this thread)",
      integerOption(0, 64),
      1,
    )
    .addOption(
      sizeOptionOf(
        "--max-bandwidth <bytes/s>",
        "source: throttle the link (token bucket; 0: unthrottled)",
        0,
        2 ** 40,
        0,
      ),
    )
    .option(
      "--downtime-limit <ms>",
      "source: QEMU's downtime-limit",
      numberOption(1, 3_600_000),
      300,
    )
    .option(
      "--max-passes <n>",
      "source: stop-and-copy after this many passes anyway (0: no cap, as QEMU)",
      integerOption(0, 1_000_000),
      0,
    )
    .option(
      "--postcopy-after <passes>",
      "source: switch to post-copy after this many pre-copy passes: the guest runs on the destination, which pulls the pages it faults on while the rest are pushed; a connection lost after the switch loses the guest (unless --postcopy-recover); SIGUSR2 to the source switches at the end of the pass under way (QEMU's migrate-start-postcopy) (default: pure pre-copy)",
      integerOption(1, 1_000_000),
    )
    .option(
      "--postcopy-recover <ms>",
      "both sides: QEMU's postcopy recovery: a connection lost during post-copy pauses the migration instead of losing the guest; the source reconnects (with the retry backoff) and the destination waits, each for at most this long, then post-copy resumes from the destination's received-page bitmap (default: a lost connection loses the guest)",
      integerOption(1, MAX_RECOVER_WAIT_MS),
    )
    .option(
      "--timeout <ms>",
      "source: give up (not-converged) after this much pre-copy",
      numberOption(1, 86_400_000),
      60_000,
    )
    .addOption(
      sizeOptionOf(
        "--device-state <size>",
        "source: device-state blob sent while paused",
        0,
        4 * 1024 ** 2,
        64 * 1024,
      ),
    )
    .option(
      "--retries <n>",
      "source: retry a failed migration this many times",
      integerOption(0, 100),
      0,
    )
    .option(
      "--handover-from <file>",
      "source: pause the guest also for the storage handover a cluster measured, before the destination resumes it: the JSON of hvlab csv vms --json (live.downtimeMs, a VM's VHD closed on one node and opened on another) (default: none)",
    )
    .addOption(jsonOption("print the result as JSON"))
    .addOption(csvOption("source: print the rounds as CSV"))
    .optionsGroup("Transport security (both ends):");
  return addTransportOptions(command);
}

/** Runs the live mode from parsed options: exactly one of `--listen` and `--to`. */
export async function runLive(
  flags: Partial<LiveSourceFlags & LiveDestinationFlags>,
): Promise<void> {
  checkOutputFlags(flags);
  if ((flags.listen === undefined) === (flags.to === undefined)) {
    throw new UsageError(
      "give exactly one of --listen PORT (destination) and --to HOST:PORT (source)",
    );
  }
  if (flags.listen !== undefined) {
    if (flags.csv)
      throw new UsageError("--csv is for the source; the destination prints one report (--json)");
    await runLiveDestination(flags as LiveDestinationFlags);
  } else {
    await runLiveSource(flags as LiveSourceFlags);
  }
}

/** `hvlab migrate-live`: live migration between two processes over TCP. */
export function registerMigrateLive(program: Command): void {
  addLiveOptions(
    program
      .command("migrate-live")
      .description(
        "live migration over a real TCP connection: run `--listen PORT` on the destination, then `--to HOST:PORT` on the source",
      ),
  ).action(async (flags: Partial<LiveSourceFlags & LiveDestinationFlags>) => {
    await runLive(flags);
  });
}

/**
 * `hvlab migrate --listen PORT` and `hvlab migrate --to HOST:PORT`: the live
 * mode as a hook of `hvlab migrate`, which parses the guest, workload,
 * bandwidth, downtime-limit, policy, timeout and device-state options; this
 * adds the live mode's own and maps the rest onto it.
 */
export const liveMigrationHook: LiveMigrationHook = {
  addOptions(command) {
    command
      .option(
        "--listen <port>",
        "live mode, destination: listen on this port for a migration over TCP (0: pick one and print it; default: none, virtual time)",
        integerOption(0, 65_535),
      )
      .option(
        "--to <host:port>",
        "live mode, source: migrate over TCP to the destination at HOST:PORT, on the wall clock (default: none, virtual time)",
      )
      .option("--host <address>", "live mode, destination: address to listen on", "127.0.0.1")
      .option(
        "--sessions <n>",
        "live mode, destination: completed migrations before exiting (0: forever)",
        integerOption(0, 1_000_000),
        1,
      )
      .addOption(
        sizeOptionOf(
          "--max-guest <size>",
          "live mode, destination: largest guest accepted",
          1024 ** 2,
          MAX_LIVE_GUEST_BYTES,
          MAX_LIVE_GUEST_BYTES,
        ),
      )
      .option(
        "--threads <n>",
        "live mode, source: pool workers running the vCPUs (0: this thread)",
        integerOption(0, 64),
        1,
      )
      .option(
        "--retries <n>",
        "live mode, source: retry a failed migration this many times",
        integerOption(0, 100),
        0,
      )
      .option(
        "--postcopy-recover <ms>",
        "live mode, both sides: QEMU's postcopy recovery: a connection lost during post-copy pauses the migration instead of losing the guest; the source reconnects (with the retry backoff) and the destination waits, each for at most this long, then post-copy resumes from the destination's received-page bitmap (default: a lost connection loses the guest)",
        integerOption(1, MAX_RECOVER_WAIT_MS),
      );
    addTransportOptions(command, "live mode: ");
  },
  wants(flags) {
    return flags.listen !== undefined || flags.to !== undefined;
  },
  async run(flags: MigrateFlags, guest: MigrationOptions) {
    await runLive(liveFlagsOf(flags, guest));
  },
};

/** Maps `hvlab migrate`'s parsed options onto the live mode's. */
export function liveFlagsOf(
  flags: MigrateFlags,
  guest: MigrationOptions,
): Partial<LiveSourceFlags & LiveDestinationFlags> {
  if (flags.to !== undefined) {
    if (!guest.content)
      throw new UsageError("the live mode sends real page bytes: use --mode content");
    if (guest.pageShift !== undefined && guest.pageShift !== 12) {
      throw new UsageError("the live mode sends 4 KiB pages: use --page-size 4KiB");
    }
    if (flags.policy === "xen") {
      throw new UsageError("the live mode stops by the qemu or hyperv rule, not xen's");
    }
  }
  const hypervPasses =
    flags.hypervVersion === "2012r2"
      ? POLICY_ROUND_CAPS.hyperv2012r2
      : POLICY_ROUND_CAPS.hyperv2008r2;
  const maxRounds = guest.maxRounds ?? (flags.policy === "hyperv" ? hypervPasses : undefined);
  const bandwidth = guest.maxBandwidth ?? 0;
  return {
    ...(flags.listen !== undefined ? { listen: flags.listen as number } : {}),
    ...(flags.to !== undefined ? { to: flags.to as string } : {}),
    host: flags.host as string,
    sessions: flags.sessions as number,
    maxGuest: flags.maxGuest as number,
    guest: guest.guestBytes,
    vcpus: guest.vcpus ?? 2,
    workload: guest.workload.kind,
    rate: guest.writesPerSecond ?? 0,
    ...(flags.hotSet !== undefined ? { hotSet: flags.hotSet } : {}),
    hotFraction: flags.hotFraction,
    threads: flags.threads as number,
    seed: guest.seed ?? 1,
    maxBandwidth: Number.isFinite(bandwidth) ? bandwidth : 0,
    downtimeLimit: guest.downtimeLimitMs ?? 300,
    // The policy's own rule: hyperv suspends at its pass cap, qemu gives up at --max-rounds.
    maxPasses: 0,
    ...(flags.postcopyAfter !== undefined ? { postcopyAfter: flags.postcopyAfter } : {}),
    ...(flags.postcopyRecover !== undefined ? { postcopyRecover: flags.postcopyRecover } : {}),
    policy: flags.policy === "hyperv" ? "hyperv" : "qemu",
    ...(maxRounds !== undefined ? { maxRounds } : {}),
    timeout: guest.timeoutMs ?? 60_000,
    deviceState: guest.deviceStateBytes ?? 64 * 1024,
    retries: flags.retries as number,
    ...(flags.handoverFrom !== undefined ? { handoverFrom: flags.handoverFrom } : {}),
    ...(guest.autoConverge
      ? {
          autoConverge: {
            autoConverge: true,
            throttleInitial: guest.throttleInitial ?? MIGRATION_DEFAULTS.throttleInitial,
            throttleIncrement: guest.throttleIncrement ?? MIGRATION_DEFAULTS.throttleIncrement,
            throttleMax: guest.throttleMax ?? MIGRATION_DEFAULTS.throttleMax,
            throttleTriggerThreshold:
              guest.throttleTriggerThreshold ?? MIGRATION_DEFAULTS.throttleTriggerThreshold,
            throttleTailslow: guest.throttleTailslow ?? false,
          },
        }
      : {}),
    zeroPages: guest.zeroPages ?? MIGRATION_DEFAULTS.zeroPages,
    ...(guest.xbzrle
      ? { xbzrleCache: guest.xbzrleCacheBytes ?? MIGRATION_DEFAULTS.xbzrleCacheBytes }
      : {}),
    ...(guest.multifdChannels ? { multifd: guest.multifdChannels } : {}),
    ...transportFlagsOf(flags),
    ...(flags.json ? { json: true } : {}),
    ...(flags.csv ? { csv: true } : {}),
  };
}

function transportFlagsOf(flags: MigrateFlags): TransportFlags {
  const pick = (value: unknown) => (typeof value === "string" ? value : undefined);
  const out: { -readonly [K in keyof TransportFlags]: TransportFlags[K] } = {};
  const creds = pick(flags.tlsCreds);
  const psk = pick(flags.tlsPsk);
  const authz = pick(flags.tlsAuthz);
  const hostname = pick(flags.tlsHostname);
  if (creds !== undefined) out.tlsCreds = creds;
  if (psk !== undefined) out.tlsPsk = psk;
  if (authz !== undefined) out.tlsAuthz = authz;
  if (hostname !== undefined) out.tlsHostname = hostname;
  if (flags.insecure === true) out.insecure = true;
  return out;
}

// `hvlab migrate` runs the live mode through this hook.
LIVE_MIGRATION_HOOKS.push(liveMigrationHook);
