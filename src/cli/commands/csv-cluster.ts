import type { Command } from "commander";
import { clusterStatus, requestFailover } from "../../csv/control-client.js";
import { formatTable } from "../../report/table.js";
import { formatBytes } from "../../util/units.js";
import { integerOption, UsageError } from "../options.js";
import { peersOption } from "./csv-options.js";

interface ClusterFlags {
  nodes: Map<number, number>;
  targetPort?: number;
  timeout: number;
  json?: boolean;
}

function addClusterOptions(command: Command, timeout: number): Command {
  return command
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
            ]),
          ],
        }),
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
    const status = await clusterStatus(flags.nodes, { timeoutMs: Math.min(flags.timeout, 2000) });
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
    const reply = await requestFailover(coordinator.port, to, flags.timeout);
    if (!reply.ok) throw new Error(`node ${coordinator.node} refused the failover: ${reply.error}`);
    console.log(
      flags.json
        ? JSON.stringify(reply, null, 2)
        : `coordinator moved from node ${reply.from} to node ${reply.to}: epoch ${reply.epoch}, metadata paused ${reply.pauseMs.toFixed(1)} ms`,
    );
  });
}
