import { ProtocolError } from "./protocol.js";

/*
 * The control messages of the node protocol: STATUS (type 19) asks a node
 * what it knows (role, epoch, members, I/O counters) and FAILOVER (type
 * 20) asks the coordinator to hand its role to another node. Both carry
 * JSON, checked field by field before use, as the other node messages do.
 */

/** What a node has done since it started. */
export interface NodeCounters {
  /** Data writes acknowledged by the target (direct I/O). */
  writes: number;
  bytesWritten: number;
  /** Metadata operations answered (done here as coordinator, or forwarded). */
  metadataOps: number;
  /** Metadata attempts retried because no coordinator answered (a failover's pause). */
  metadataRetries: number;
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

function parseObject(payload: Uint8Array, what: string): Record<string, unknown> {
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

/** Checks a STATUS answer. */
export function parseNodeStatus(payload: Uint8Array): NodeStatus {
  const what = "node status";
  const r = parseObject(payload, what);
  if (r.role !== "coordinator" && r.role !== "node")
    throw new ProtocolError(`${what}: role must be coordinator or node`);
  if (r.mode !== "direct" && r.mode !== "redirected")
    throw new ProtocolError(`${what}: mode must be direct or redirected`);
  if (typeof r.key !== "string" || !/^0x[0-9a-f]{1,16}$/.test(r.key))
    throw new ProtocolError(`${what}: key must be a hex reservation key`);
  if (!Array.isArray(r.members) || r.members.length > 16)
    throw new ProtocolError(`${what}: members must be a list of at most 16 nodes`);
  const io = r.io;
  if (typeof io !== "object" || io === null || Array.isArray(io))
    throw new ProtocolError(`${what}: io must be an object`);
  const c = io as Record<string, unknown>;
  const coordinator = r.coordinator === 0 ? 0 : nodeId(r.coordinator, what, "coordinator");
  return {
    node: nodeId(r.node, what, "node"),
    pid: count(r.pid, what, "pid"),
    port: count(r.port, what, "port"),
    role: r.role,
    epoch: count(r.epoch, what, "epoch"),
    coordinator,
    mode: r.mode,
    key: r.key,
    members: r.members.map((m, i) => nodeId(m, what, `members[${i}]`)),
    heartbeatMs: count(r.heartbeatMs, what, "heartbeatMs"),
    misses: count(r.misses, what, "misses"),
    uptimeMs: count(r.uptimeMs, what, "uptimeMs"),
    atMs: count(r.atMs, what, "atMs"),
    io: {
      writes: count(c.writes, what, "io.writes"),
      bytesWritten: count(c.bytesWritten, what, "io.bytesWritten"),
      metadataOps: count(c.metadataOps, what, "io.metadataOps"),
      metadataRetries: count(c.metadataRetries, what, "io.metadataRetries"),
    },
  };
}
