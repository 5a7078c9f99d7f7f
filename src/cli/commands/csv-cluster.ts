import type { Command } from "commander";
import { MAX_BENCH_NODES, runCsvBench } from "../../csv/bench.js";
import { clusterStatus, requestFailover } from "../../csv/control-client.js";
import { recordsToTable, toCsv } from "../../report/csv.js";
import { formatTable } from "../../report/table.js";
import { csvBenchSection } from "../../tour/csv.js";
import type { TransportFlags } from "../../transport/secure.js";
import { formatBytes } from "../../util/units.js";
import { checkOutputFlags, integerOption, sizeOption, UsageError } from "../options.js";
import { prepareScenarioOutput, printSection, writeSectionReport } from "../section-output.js";
import { addTransportOptions, transportSecurityOf } from "../transport-options.js";
import { peersOption } from "./csv-options.js";

interface ClusterFlags extends TransportFlags {
  nodes: Map<number, number>;
  targetPort?: number;
  timeout: number;
  json?: boolean;
}

function addClusterOptions(command: Command, timeout: number): Command {
  // The nodes' and target's sockets take TLS when they were started with it.
  return addTransportOptions(command, "the cluster's sockets: ")
    .requiredOption(
      "--nodes <list>",
      "the cluster's nodes as id=port, comma-separated (the ports given to csv node --port)",
      peersOption,
    )
    .option(
      "--timeout <ms>",
      "how long a node may take to answer",
      integerOption(10, 600_000),
      timeout,
    )
    .option("--json", "print the result as JSON");
}

/** Registers `hvlab csv status` and `hvlab csv failover`: questions and orders to a running cluster. */
export function registerCsvCluster(csv: Command): void {
  addClusterOptions(
    csv
      .command("status")
      .description(
        "ask a running cluster's nodes (and its target) for members, coordinator, epoch, each node's mode and I/O counters; exit 1 when no node answers",
      )
      .option(
        "--target-port <n>",
        "also read the target's registrations and reservation",
        integerOption(1, 65535),
      ),
    2000,
  ).action(async (flags: ClusterFlags) => {
    const status = await clusterStatus(flags.nodes, {
      timeoutMs: flags.timeout,
      security: transportSecurityOf(flags, "client"),
      ...(flags.targetPort !== undefined ? { targetPort: flags.targetPort } : {}),
    });
    if (flags.json) console.log(JSON.stringify(status, null, 2));
    else {
      console.log(
        status.coordinator === 0
          ? "no coordinator yet"
          : `coordinator node ${status.coordinator}, epoch ${status.epoch}; ${status.nodes.length} of ${flags.nodes.size} nodes answered`,
      );
      console.log(
        formatTable({
          columns: [
            "node",
            "pid",
            "role",
            "epoch",
            "follows",
            "mode",
            "members",
            "writes",
            "written",
            "metadata ops",
            "retries",
            "redirected r/w",
            "redirected",
            "served",
          ],
          rows: [
            ...status.nodes.map((n) => [
              n.node,
              String(n.pid),
              n.role,
              n.epoch,
              n.coordinator,
              n.mode,
              n.members.join(","),
              n.io.writes,
              formatBytes(n.io.bytesWritten),
              n.io.metadataOps,
              n.io.metadataRetries,
              `${n.io.redirectedReads}/${n.io.redirectedWrites}`,
              formatBytes(n.io.redirectedBytes),
              n.io.servedRedirected,
            ]),
            ...status.unreachable.map((u) => [
              u.node,
              null,
              `unreachable: ${u.error}`,
              null,
              null,
              null,
              null,
              null,
              null,
              null,
              null,
              null,
              null,
              null,
            ]),
          ],
        }),
      );
      for (const n of status.nodes)
        if (n.redirected !== null)
          console.log(
            `node ${n.node} is redirected: ${n.redirected} (cluster network ${formatBytes(n.clusterBandwidth)}/s)`,
          );
      if (status.target)
        console.log(
          `target 127.0.0.1:${status.target.port}: PRgeneration ${status.target.generation}, ${status.target.keys.length} registered keys, reservation ${status.target.holder === null ? "none" : `held by ${status.target.holder} (type ${status.target.type})`}`,
        );
    }
    if (status.nodes.length === 0) throw new Error("no node of the cluster answered");
  });

  addClusterOptions(
    csv
      .command("failover")
      .description(
        "move the coordinator role on purpose: the coordinator releases the reservation after its queued metadata operations and the chosen node takes a new epoch",
      )
      .option(
        "--to <n>",
        "the node to take the role (default: the lowest live node that is not coordinator)",
        integerOption(1, 16),
      ),
    10_000,
  ).action(async (flags: ClusterFlags & { to?: number }) => {
    if (flags.to !== undefined && !flags.nodes.has(flags.to))
      throw new UsageError(`--to ${flags.to} is not one of --nodes`);
    const security = transportSecurityOf(flags, "client");
    const status = await clusterStatus(flags.nodes, {
      timeoutMs: Math.min(flags.timeout, 2000),
      security,
    });
    const coordinator = status.nodes.find(
      (n) => n.node === status.coordinator && n.role === "coordinator",
    );
    if (!coordinator)
      throw new Error(
        status.coordinator === 0
          ? "the cluster has no coordinator yet"
          : `node ${status.coordinator}, the coordinator of epoch ${status.epoch}, did not answer`,
      );
    const to =
      flags.to ??
      status.nodes.find((n) => n.node !== coordinator.node && coordinator.members.includes(n.node))
        ?.node;
    if (to === undefined) throw new Error("no other live node can take the role");
    const reply = await requestFailover(coordinator.port, to, flags.timeout, security);
    if (!reply.ok) throw new Error(`node ${coordinator.node} refused the failover: ${reply.error}`);
    console.log(
      flags.json
        ? JSON.stringify(reply, null, 2)
        : `coordinator moved from node ${reply.from} to node ${reply.to}: epoch ${reply.epoch}, metadata paused ${reply.pauseMs.toFixed(1)} ms`,
    );
  });

  csv
    .command("bench")
    .description(
      "a cluster scenario: start the target and N nodes under a storm of metadata operations and direct writes, kill the coordinator by PID, draw I/O per node per 100 ms with the pause marked and the new coordinator named, then check the volume",
    )
    .option(
      "--nodes <n>",
      `node processes (2 to ${MAX_BENCH_NODES})`,
      integerOption(2, MAX_BENCH_NODES),
      4,
    )
    .option(
      "--heartbeat-interval <ms>",
      "time between heartbeats (100 ms here to keep the run short; the cluster service's is 1000)",
      integerOption(10, 60_000),
      100,
    )
    .option(
      "--heartbeat-misses <n>",
      "heartbeats missed before a peer is dead",
      integerOption(1, 100),
      5,
    )
    .option("--before <ms>", "workload before the kill", integerOption(100, 600_000), 3000)
    .option(
      "--after <ms>",
      "workload after the new coordinator took over",
      integerOption(200, 600_000),
      4000,
    )
    .option("--interval <ms>", "timeline interval", integerOption(10, 10_000), 100)
    .option("--files <n>", "files each node keeps", integerOption(1, 64), 4)
    .option(
      "--file-size <size>",
      "size a file is created with and grows by",
      sizeOption(4096, 1 << 24),
      16384,
    )
    .option("--lun-size <size>", "size of the LUN file", sizeOption(16 << 20, 64 << 30), 64 << 20)
    .option("--no-planned", "skip the planned move of the role after the failover")
    .option(
      "--no-cut-path",
      "do not cut a node's storage path mid-run (by default the last node goes redirected for the middle third before the kill)",
    )
    .option(
      "--dir <dir>",
      "keep the LUN and the ack logs in this folder (default: a temporary one, removed)",
    )
    .option(
      "--html <file>",
      "write the report (timeline chart, tables) as a self-contained HTML file",
    )
    .option("--json", "print the whole result as JSON")
    .option(
      "--csv",
      "print the timeline (node, ms, writes, metadata ops, redirected writes) as CSV",
    )
    .action(
      async (flags: {
        nodes: number;
        heartbeatInterval: number;
        heartbeatMisses: number;
        before: number;
        after: number;
        interval: number;
        files: number;
        fileSize: number;
        lunSize: number;
        planned: boolean;
        cutPath: boolean;
        dir?: string;
        html?: string;
        json?: boolean;
        csv?: boolean;
      }) => {
        checkOutputFlags(flags);
        prepareScenarioOutput(flags);
        const result = await runCsvBench({
          nodes: flags.nodes,
          heartbeatMs: flags.heartbeatInterval,
          misses: flags.heartbeatMisses,
          beforeMs: flags.before,
          afterMs: flags.after,
          intervalMs: flags.interval,
          pollMs: Math.max(5, Math.min(20, flags.interval / 5)),
          files: flags.files,
          fileBytes: flags.fileSize,
          lunBytes: flags.lunSize,
          planned: flags.planned,
          cutPath: flags.cutPath,
          ...(flags.dir !== undefined ? { dir: flags.dir } : {}),
          log: (line) => console.error(line),
        });
        const section = csvBenchSection(result);
        if (flags.html !== undefined)
          await writeSectionReport(flags.html, "hvlab csv bench", section);
        if (flags.json) console.log(JSON.stringify(result, null, 2));
        else if (flags.csv)
          process.stdout.write(
            toCsv(
              recordsToTable(
                result.timeline.map((p) => ({
                  node: p.node,
                  ms: p.ms,
                  writes: p.writes,
                  metadataOps: p.metadataOps,
                  redirectedWrites: p.redirectedWrites,
                  ios: p.ios,
                })),
              ),
            ),
          );
        else {
          printSection(section, flags.html);
        }
        if (!result.check.ok || result.acks.intact !== result.acks.checked)
          throw new Error(
            `the volume did not survive the failover: ${result.check.problems[0]?.message ?? `${result.acks.checked - result.acks.intact} acknowledged writes lost`}`,
          );
      },
    );
}
