import { ProtocolError } from "./protocol.js";

/*
 * The control messages of the node protocol: STATUS (type 19) asks a node
 * what it knows (role, epoch, members, access mode, I/O counters) and
 * FAILOVER (type 20) asks the coordinator to hand its role to another
 * node. Both carry JSON, checked field by field before use, as the other
 * node messages do. A node's Unix control socket (control-socket.ts)
 * answers `query-status` with the same status.
 */

/** What a node has done since it started. */
export interface NodeCounters {
  /** Data writes acknowledged, by either path (directWrites + redirectedWrites). */
  writes: number;
  /** Bytes of those writes. */
  bytesWritten: number;
  /** Metadata operations answered (done here as coordinator, or forwarded). */
  metadataOps: number;
  /** Metadata attempts retried because no coordinator answered (a failover's pause). */
  metadataRetries: number;
  /** Data reads and writes done straight to the target, and their bytes. */
  directReads: number;
  directWrites: number;
  directBytes: number;
  /** Data reads and writes sent through the coordinator (redirected access), and their bytes. */
  redirectedReads: number;
  redirectedWrites: number;
  redirectedBytes: number;
  /** Redirected requests this node served as coordinator. */
  servedRedirected: number;
}

/** The counters a STATUS answer carries, in the order `hvlab csv status` shows them. */
export const NODE_COUNTERS = [
  "writes",
  "bytesWritten",
  "metadataOps",
  "metadataRetries",
  "directReads",
  "directWrites",
  "directBytes",
  "redirectedReads",
  "redirectedWrites",
  "redirectedBytes",
  "servedRedirected",
] as const satisfies readonly (keyof NodeCounters)[];

/** What a node knows of one peer. */
export interface PeerStatus {
  readonly id: number;
  /** Heard from within the heartbeat threshold. */
  readonly alive: boolean;
  /** Its heartbeats say its storage path is cut: it may not coordinate. */
  readonly pathCut: boolean;
}

/** A node's answer to STATUS. */
export interface NodeStatus {
  readonly node: number;
  readonly pid: number;
  /** Port the node listens on for peers and control requests. */
  readonly port: number;
  readonly role: "coordinator" | "node";
  /** The highest epoch the node knows, and that epoch's coordinator. */
  readonly epoch: number;
  readonly coordinator: number;
  /** How the node reaches the LUN: straight to the target, or through the coordinator. */
  readonly mode: "direct" | "redirected";
  /** Why its data I/O goes through the coordinator, or null when it is direct. */
  readonly redirected: string | null;
  /** Its own storage path to the target. */
  readonly path: "up" | "cut";
  /** Whether this node, as coordinator, has a backup window open. */
  readonly backup: boolean;
  /** Bytes per second of its cluster-network link, which carries redirected I/O. */
  readonly clusterBandwidth: number;
  /** Its reservation key at the target, hex. */
  readonly key: string;
  /** The nodes it believes alive, itself included. */
  readonly members: readonly number[];
  readonly heartbeatMs: number;
  readonly misses: number;
  readonly uptimeMs: number;
  /** Wall-clock time of the answer, ms since 1970. */
  readonly atMs: number;
  readonly io: Readonly<NodeCounters>;
  readonly peers: readonly PeerStatus[];
}

/** A FAILOVER request: sent to the coordinator with `to` alone; the coordinator sends it on to `to` with `from`. */
export interface FailoverRequest {
  readonly to: number;
  readonly from?: number;
}

/** A FAILOVER answer. */
export type FailoverReply =
  | {
      readonly ok: true;
      readonly from: number;
      readonly to: number;
      /** The new coordinator's epoch. */
      readonly epoch: number;
      /** From the old coordinator's last metadata operation to the new one's epoch, ms. */
      readonly pauseMs: number;
    }
  | { readonly ok: false; readonly error: string };

/** Parses a JSON payload into an object, or throws a ProtocolError naming `what`. */
export function parseObject(payload: Uint8Array, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(payload));
  } catch {
    throw new ProtocolError(`${what}: payload is not JSON`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new ProtocolError(`${what}: payload is not an object`);
  return value as Record<string, unknown>;
}

function nodeId(value: unknown, what: string, field: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 16)
    throw new ProtocolError(`${what}: ${field} must be a node number from 1 to 16`);
  return value;
}

function count(value: unknown, what: string, field: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0)
    throw new ProtocolError(`${what}: ${field} must be a whole number of at least 0`);
  return value;
}

/** Checks a FAILOVER request. */
export function parseFailoverRequest(payload: Uint8Array): FailoverRequest {
  const r = parseObject(payload, "failover request");
  const to = nodeId(r.to, "failover request", "to");
  if (r.from === undefined) return { to };
  return { to, from: nodeId(r.from, "failover request", "from") };
}

/** Checks a FAILOVER answer. */
export function parseFailoverReply(payload: Uint8Array): FailoverReply {
  const what = "failover reply";
  const r = parseObject(payload, what);
  if (r.ok === false) {
    if (typeof r.error !== "string") throw new ProtocolError(`${what}: error must be a string`);
    return { ok: false, error: r.error.slice(0, 1000) };
  }
  if (r.ok !== true) throw new ProtocolError(`${what}: ok must be true or false`);
  if (typeof r.pauseMs !== "number" || !(r.pauseMs >= 0))
    throw new ProtocolError(`${what}: pauseMs must be a number of at least 0`);
  return {
    ok: true,
    from: nodeId(r.from, what, "from"),
    to: nodeId(r.to, what, "to"),
    epoch: count(r.epoch, what, "epoch"),
    pauseMs: r.pauseMs,
  };
}

function flag(value: unknown, what: string, field: string): boolean {
  if (typeof value !== "boolean")
    throw new ProtocolError(`${what}: ${field} must be true or false`);
  return value;
}

function parsePeers(value: unknown, what: string): PeerStatus[] {
  if (!Array.isArray(value) || value.length > 16)
    throw new ProtocolError(`${what}: peers must be a list of at most 16 nodes`);
  return value.map((p: unknown, i) => {
    if (typeof p !== "object" || p === null || Array.isArray(p))
      throw new ProtocolError(`${what}: peers[${i}] must be an object`);
    const r = p as Record<string, unknown>;
    return {
      id: nodeId(r.id, what, `peers[${i}].id`),
      alive: flag(r.alive, what, `peers[${i}].alive`),
      pathCut: flag(r.pathCut, what, `peers[${i}].pathCut`),
    };
  });
}

/** Longest redirect reason kept from a status (a node's own are far shorter). */
const MAX_REASON_CHARS = 1000;

/** Checks a STATUS answer. */
export function parseNodeStatus(payload: Uint8Array): NodeStatus {
  const what = "node status";
  const r = parseObject(payload, what);
  if (r.role !== "coordinator" && r.role !== "node")
    throw new ProtocolError(`${what}: role must be coordinator or node`);
  if (r.mode !== "direct" && r.mode !== "redirected")
    throw new ProtocolError(`${what}: mode must be direct or redirected`);
  // The reason and the mode say one thing twice: a status where they disagree is not trusted.
  let redirected: string | null = null;
  if (r.mode === "direct") {
    if (r.redirected !== null)
      throw new ProtocolError(`${what}: redirected must be null in direct mode`);
  } else {
    if (typeof r.redirected !== "string" || r.redirected.length > MAX_REASON_CHARS)
      throw new ProtocolError(
        `${what}: redirected must be the reason, at most ${MAX_REASON_CHARS} characters, in redirected mode`,
      );
    redirected = r.redirected;
  }
  if (r.path !== "up" && r.path !== "cut")
    throw new ProtocolError(`${what}: path must be up or cut`);
  if (
    typeof r.clusterBandwidth !== "number" ||
    !Number.isFinite(r.clusterBandwidth) ||
    !(r.clusterBandwidth > 0)
  )
    throw new ProtocolError(
      `${what}: clusterBandwidth must be a number of bytes per second above 0`,
    );
  if (typeof r.key !== "string" || !/^0x[0-9a-f]{1,16}$/.test(r.key))
    throw new ProtocolError(`${what}: key must be a hex reservation key`);
  if (!Array.isArray(r.members) || r.members.length > 16)
    throw new ProtocolError(`${what}: members must be a list of at most 16 nodes`);
  const io = r.io;
  if (typeof io !== "object" || io === null || Array.isArray(io))
    throw new ProtocolError(`${what}: io must be an object`);
  const c = io as Record<string, unknown>;
  const counters = {} as NodeCounters;
  for (const name of NODE_COUNTERS) counters[name] = count(c[name], what, `io.${name}`);
  const coordinator = r.coordinator === 0 ? 0 : nodeId(r.coordinator, what, "coordinator");
  return {
    node: nodeId(r.node, what, "node"),
    pid: count(r.pid, what, "pid"),
    port: count(r.port, what, "port"),
    role: r.role,
    epoch: count(r.epoch, what, "epoch"),
    coordinator,
    mode: r.mode,
    redirected,
    path: r.path,
    backup: flag(r.backup, what, "backup"),
    clusterBandwidth: r.clusterBandwidth,
    key: r.key,
    members: r.members.map((m, i) => nodeId(m, what, `members[${i}]`)),
    heartbeatMs: count(r.heartbeatMs, what, "heartbeatMs"),
    misses: count(r.misses, what, "misses"),
    uptimeMs: count(r.uptimeMs, what, "uptimeMs"),
    atMs: count(r.atMs, what, "atMs"),
    io: counters,
    peers: parsePeers(r.peers, what),
  };
}
