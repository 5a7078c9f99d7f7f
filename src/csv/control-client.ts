import type { TransportSecurity } from "../transport/secure.js";
import {
  type FailoverReply,
  type NodeStatus,
  parseFailoverReply,
  parseNodeStatus,
} from "./control.js";
import { Op } from "./protocol.js";
import { TargetClient } from "./target-client.js";

/*
 * The client side of the control messages: what `hvlab csv status`, `hvlab
 * csv failover` and `hvlab csv bench` ask of a running cluster, over the
 * ports its nodes (and its target) listen on. A paused node answers
 * nothing, so every request has a deadline.
 */

/** A node that did not answer, and why. */
export interface UnreachableNode {
  readonly node: number;
  readonly port: number;
  readonly error: string;
}

/** The reservation state the target reports (PERSISTENT RESERVE IN). */
export interface TargetStatus {
  readonly port: number;
  /** PRgeneration. */
  readonly generation: number;
  readonly keys: readonly string[];
  /** The holder's key, hex, or null when nothing is reserved. */
  readonly holder: string | null;
  /** The reservation type (5: Write Exclusive - Registrants Only). */
  readonly type: number | null;
}

/** What a running cluster says of itself. */
export interface ClusterStatus {
  /** The highest epoch any node answered with, and its coordinator (0: none yet). */
  readonly epoch: number;
  readonly coordinator: number;
  readonly nodes: readonly NodeStatus[];
  readonly unreachable: readonly UnreachableNode[];
  readonly target?: TargetStatus;
}

async function withDeadline<T>(what: string, ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `connecting` within `ms`, or the deadline's error. The client's own LOGIN
 * deadline starts once its connection is made, after this one, so a
 * client that logs in between the two is closed as soon as it does:
 * nothing is left open for a request already refused.
 */
async function connectedWithin(
  what: string,
  ms: number,
  connecting: Promise<TargetClient>,
): Promise<TargetClient> {
  try {
    return await withDeadline(what, ms, connecting);
  } catch (error) {
    connecting.then(
      (late) => late.close(),
      () => {},
    );
    throw error;
  }
}

/**
 * Sends one control request to the node on 127.0.0.1:`port` and returns the
 * reply's payload. `security` is how the node's socket listens: a node
 * started with --tls-creds or --tls-psk answers TLS 1.3 clients only.
 */
async function ask(
  port: number,
  type: number,
  payload: Uint8Array,
  ms: number,
  security?: TransportSecurity,
) {
  const what = `node 127.0.0.1:${port}`;
  const connecting = TargetClient.connect(
    port,
    `control-${process.pid}`,
    ms,
    security ? { security } : {},
  );
  const client = await connectedWithin(what, ms, connecting);
  try {
    return (await withDeadline(what, ms, client.request(type, payload))).payload;
  } finally {
    client.close();
  }
}

/** Asks one node for its status. */
export async function queryNode(
  port: number,
  timeoutMs: number,
  security?: TransportSecurity,
): Promise<NodeStatus> {
  return parseNodeStatus(await ask(port, Op.status, new Uint8Array(0), timeoutMs, security));
}

/** Asks the coordinator on `port` to hand its role to node `to`. */
export async function requestFailover(
  port: number,
  to: number,
  timeoutMs: number,
  security?: TransportSecurity,
): Promise<FailoverReply> {
  const payload = new TextEncoder().encode(JSON.stringify({ to }));
  return parseFailoverReply(await ask(port, Op.failover, payload, timeoutMs, security));
}

/** Reads the reservation state of the target on `port`. */
export async function queryTarget(
  port: number,
  timeoutMs: number,
  security?: TransportSecurity,
): Promise<TargetStatus> {
  const client = await connectedWithin(
    `target 127.0.0.1:${port}`,
    timeoutMs,
    TargetClient.connect(port, `status-${process.pid}`, timeoutMs, security ? { security } : {}),
  );
  try {
    const [keys, held] = await withDeadline(
      `target 127.0.0.1:${port}`,
      timeoutMs,
      Promise.all([client.readKeys(), client.readReservation()]),
    );
    const hex = (key: bigint) => `0x${key.toString(16)}`;
    return {
      port,
      generation: keys.generation,
      keys: keys.keys.map(hex),
      holder: held.reservation ? hex(held.reservation.key) : null,
      type: held.reservation?.type ?? null,
    };
  } finally {
    client.close();
  }
}

/** Asks every node (and the target, when its port is given) at once. */
export async function clusterStatus(
  nodes: ReadonlyMap<number, number>,
  options: {
    readonly targetPort?: number;
    readonly timeoutMs: number;
    /** How the nodes and the target listen (default plain TCP). */
    readonly security?: TransportSecurity;
  },
): Promise<ClusterStatus> {
  const entries = [...nodes].sort((a, b) => a[0] - b[0]);
  const answers = await Promise.allSettled(
    entries.map(([, port]) => queryNode(port, options.timeoutMs, options.security)),
  );
  const up: NodeStatus[] = [];
  const unreachable: UnreachableNode[] = [];
  answers.forEach((answer, i) => {
    const [node, port] = entries[i] ?? [0, 0];
    if (answer.status === "rejected")
      unreachable.push({ node, port, error: (answer.reason as Error).message });
    else if (answer.value.node !== node)
      unreachable.push({ node, port, error: `node ${answer.value.node} answered on this port` });
    else up.push(answer.value);
  });
  const latest = up.reduce<NodeStatus | undefined>(
    (best, s) => (best === undefined || s.epoch > best.epoch ? s : best),
    undefined,
  );
  const target =
    options.targetPort === undefined
      ? undefined
      : await queryTarget(options.targetPort, options.timeoutMs, options.security);
  return {
    epoch: latest?.epoch ?? 0,
    coordinator: latest?.coordinator ?? 0,
    nodes: up,
    unreachable,
    ...(target ? { target } : {}),
  };
}

/** A control connection kept open to one node, for frequent STATUS requests (the failover timeline). */
export class NodeControl {
  private client: Promise<TargetClient> | undefined;

  constructor(readonly port: number) {}

  /** The node's status, or an error when it does not answer within `timeoutMs` (the connection is then dropped). */
  async status(timeoutMs: number): Promise<NodeStatus> {
    const what = `node 127.0.0.1:${this.port}`;
    this.client ??= TargetClient.connect(this.port, `control-${process.pid}`, timeoutMs);
    try {
      const client = await withDeadline(what, timeoutMs, this.client);
      const reply = await withDeadline(what, timeoutMs, client.request(Op.status));
      return parseNodeStatus(reply.payload);
    } catch (error) {
      this.close();
      throw error;
    }
  }

  close(): void {
    this.client?.then(
      (c) => c.close(),
      () => {},
    );
    this.client = undefined;
  }
}
