import { appendFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import {
  looksLikeTls,
  secureIncoming,
  TLS_PEER_OF_PLAIN,
  type TransportSecurity,
} from "../transport/secure.js";
import { TokenBucket } from "../transport/token-bucket.js";
import {
  type FailoverReply,
  type NodeCounters,
  type NodeStatus,
  parseFailoverReply,
  parseFailoverRequest,
  parseObject,
} from "./control.js";
import { DirectLun, threadPoolSize } from "./direct-lun.js";
import { VolumeFileError, VolumeRangeError } from "./errors.js";
import { batchStopError, chunksAcknowledged, chunkWrites, type FileChunk } from "./file-batch.js";
import { type FileWritten, parseFileWrite, runFileWrite } from "./file-write.js";
import { SECTOR } from "./layout.js";
import {
  CoordinatorLease,
  LeaseWatch,
  leaseOffset,
  parseLease,
  TermUnprovenError,
} from "./lease.js";
import {
  encodeFrame,
  type Frame,
  FrameReader,
  Op,
  ProtocolError,
  REPLY,
  Status,
} from "./protocol.js";
import {
  encodeRedirected,
  MAX_REDIRECTED_BYTES,
  parseRedirected,
  REDIRECTED_HEADER_BYTES,
  type RedirectedRequest,
} from "./redirected-io.js";
import { ReservationType, ServiceAction } from "./reservations.js";
import { PathCutError, StoragePath } from "./storage-path.js";
import { parseSuperblock } from "./superblock.js";
import {
  BusyError,
  ReservationConflictError,
  TargetClient,
  TargetCommandError,
} from "./target-client.js";
import { NodeVms, parseVmStart, parseVmStop, type VmStarted, type VmStopped } from "./vm.js";
import { type FileMap, mapFileRange, StaleEpochError, Volume } from "./volume.js";

/*
 * `hvlab csv node`: one cluster node. It registers a key with the target,
 * heartbeats every peer (the cluster service's one second and five misses
 * by default), and follows the coordinator of the highest epoch it has
 * seen. When that coordinator has missed the threshold (or has lost its
 * storage path) and this node is the lowest-numbered node still alive with
 * a path, it takes over: PREEMPT the old coordinator's key at the target
 * (the fence), open the volume (which replays the journal), and open a new
 * epoch on the volume. Other nodes forward metadata operations to the
 * coordinator and write file data straight to the target at the extents
 * the coordinator returns (direct I/O).
 *
 * A node whose storage path is cut, or whose coordinator has opened a
 * backup window, sends its data I/O to the coordinator instead (redirected
 * access), over the cluster network: a link metered by a token bucket at
 * the cluster network's bandwidth (1 GbE by default). A coordinator whose
 * own path is cut gives the role up, since it could no longer write
 * metadata; the lowest node with a path takes it over.
 *
 * The coordinator proves its term at the target with a lease (src/csv/lease.ts):
 * it rewrites the lease sector every heartbeat interval, answers an open
 * from its volume in memory only while its last renewal still proves the
 * term, and a node preempts it only after the sector has stayed unchanged
 * for a whole lease period. So two nodes that reach the target but not
 * each other never both answer for the volume.
 *
 * The coordinator role is sticky: a node that comes back (a paused
 * coordinator resumed with SIGCONT) does not take the role back because
 * its number is lower; it finds its key preempted, its writes refused and
 * the volume in a newer epoch, and steps down.
 */

/** The cluster network's bandwidth by default: 1 GbE, 10^9 bit/s (IEEE 802.3 clause 34). */
export const DEFAULT_CLUSTER_BANDWIDTH = 125_000_000;

/** Where a peer listens: a port on 127.0.0.1, or a host and port. */
export type PeerAddress = number | { readonly host: string; readonly port: number };

/** How a node's sockets are protected: the listening side (peers connect) and the connecting side (target, peers). */
export interface NodeSecurity {
  readonly listen: TransportSecurity;
  readonly connect: TransportSecurity;
}

/** How a node is set up. */
export interface NodeOptions {
  readonly id: number;
  /** Port this node listens on for peers. */
  readonly port: number;
  /** Address this node listens on (127.0.0.1 by default). */
  readonly host?: string;
  readonly targetPort: number;
  /** The target's address (127.0.0.1 by default). */
  readonly targetHost?: string;
  /** The target's Unix socket on this host (`hvlab csv target --socket`): the data path goes there instead of TCP. */
  readonly targetSocket?: string;
  /**
   * This node's own path to the LUN (the file or block device the target
   * serves): data I/O is pread/pwrite there, fenced by the target's
   * registration board; unset, data goes through the target connection.
   */
  readonly lun?: string;
  /** Open {@link lun} with O_DIRECT: unbuffered, around the host's page cache, as CSV direct I/O is. */
  readonly lunDirect?: boolean;
  /** The target's registration board (`hvlab csv target --registrations`; default: the LUN's path + ".registrations"). */
  readonly registrations?: string;
  /** Every other node's id and address. */
  readonly peers: ReadonlyMap<number, PeerAddress>;
  readonly heartbeatMs: number;
  /** Heartbeats missed before a peer is dead. */
  readonly misses: number;
  /** Bytes per second of this node's cluster-network link, which carries redirected I/O (1 GbE by default). */
  readonly clusterBandwidth?: number;
  /** TLS for the node and target sockets (plain TCP by default). */
  readonly security?: NodeSecurity;
  /** Called with every event (role changes, fencing, redirected access), for the command's JSON lines. */
  readonly onEvent?: (event: NodeEvent) => void;
}

/** What a node reports as it runs. */
export type NodeEvent =
  | {
      readonly event: "listening";
      readonly node: number;
      readonly port: number;
      readonly pid: number;
    }
  | {
      readonly event: "coordinator";
      readonly node: number;
      readonly epoch: number;
      readonly preempted?: string;
      /** Set when the role was handed over on purpose (`hvlab csv failover`) by this node. */
      readonly handedOverBy?: number;
      readonly atMs: number;
    }
  | {
      readonly event: "follow";
      readonly node: number;
      readonly epoch: number;
      readonly coordinator: number;
      readonly atMs: number;
    }
  | {
      readonly event: "fenced";
      readonly node: number;
      readonly epoch: number;
      readonly reason: string;
      readonly atMs: number;
    }
  | {
      readonly event: "redirected";
      readonly node: number;
      readonly reason: string;
      readonly atMs: number;
    }
  | { readonly event: "direct"; readonly node: number; readonly atMs: number }
  | { readonly event: "dead"; readonly node: number; readonly peer: number; readonly atMs: number };

/** A metadata operation forwarded to the coordinator. */
export interface MetadataRequest {
  readonly op: "create" | "open" | "resize" | "delete";
  readonly name: string;
  readonly size?: number;
}

type MetadataReply =
  | { readonly ok: true; readonly file?: FileMap }
  | { readonly ok: false; readonly error: string; readonly retry: boolean };

const PLAIN: TransportSecurity = { kind: "plain", insecure: false };

const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

/** Checks a forwarded metadata request. */
export function parseMetadataRequest(payload: Uint8Array): MetadataRequest {
  const r = parseObject(payload, "metadata request");
  const op = r.op;
  if (op !== "create" && op !== "open" && op !== "resize" && op !== "delete")
    throw new ProtocolError(
      `metadata request: op ${JSON.stringify(op)} is not create, open, resize or delete`,
    );
  if (typeof r.name !== "string" || r.name.length === 0 || r.name.length > 128)
    throw new ProtocolError("metadata request: name must be a string of 1 to 128 characters");
  if (
    (op === "create" || op === "resize") &&
    !(typeof r.size === "number" && Number.isSafeInteger(r.size) && r.size >= 0)
  )
    throw new ProtocolError(`metadata request: ${op} needs a whole size in bytes`);
  return { op, name: r.name, ...(typeof r.size === "number" ? { size: r.size } : {}) };
}

/** One cluster node. */
export class ClusterNode {
  private target!: TargetClient;
  /** The path through the target: reservations, metadata and the coordinator's own I/O, checked by the target as each command runs. */
  private path!: StoragePath;
  /** The path file data takes: the node's own path to the LUN when it has one, else {@link path}. */
  private data!: StoragePath;
  private direct: DirectLun | undefined;
  private key = 0n;
  private volume: Volume | undefined;
  /** This coordinator's lease: renewed every heartbeat interval while it holds the role. */
  private lease: CoordinatorLease | undefined;
  /** The renewal in flight, shared by the tick and the opens waiting on it; false when it was refused. */
  private renewing: Promise<boolean> | undefined;
  /** What this node has read of the coordinator's lease sector while it did not coordinate. */
  private readonly leaseWatch = new LeaseWatch();
  private watchingLease = false;
  private known = { epoch: 0, coordinator: 0 };
  private readonly lastSeen = new Map<number, number>();
  private readonly links = new Map<number, Promise<TargetClient>>();
  private readonly declaredDead = new Set<number>();
  /** Peers whose heartbeats say their storage path is cut: they may not coordinate. */
  private readonly peersCut = new Set<number>();
  /** The reservation key each peer's heartbeats say it holds now (a restarted node has a new one). */
  private readonly peerKeys = new Map<number, bigint>();
  private server: Server | undefined;
  private timer: NodeJS.Timeout | undefined;
  private metadataQueue: Promise<unknown> = Promise.resolve();
  /** Redirected I/O the coordinator is doing: a metadata operation waits for it, so no extent moves under it. */
  private readonly dataInFlight = new Set<Promise<unknown>>();
  private takingOver = false;
  /** A node that has just started listens for a threshold before it may take over, to learn the current term. */
  private graceUntil = 0;
  private readonly accepted = new Set<Socket>();
  private stopped = false;
  private readonly started = performance.now();
  /** This coordinator's backup window: every other node goes redirected while it is open. */
  private backup = false;
  /** The coordinator this node follows has a backup window open. */
  private coordinatorBackup = false;
  private redirectedFor: string | undefined;
  /** This node's cluster-network link: meters what it sends over it (redirected writes, and reads served). */
  private readonly link: TokenBucket;
  /** Set while this coordinator hands its role on: it neither serves metadata nor takes the role back. */
  private handingOver = false;
  /** The VMs this node runs on the volume. */
  readonly vms = new NodeVms(this);
  /** What this node has done, for `hvlab csv status`, the control socket and the failover timeline. */
  readonly io: NodeCounters = {
    writes: 0,
    bytesWritten: 0,
    metadataOps: 0,
    metadataRetries: 0,
    directReads: 0,
    directWrites: 0,
    directBytes: 0,
    redirectedReads: 0,
    redirectedWrites: 0,
    redirectedBytes: 0,
    servedRedirected: 0,
  };

  constructor(readonly options: NodeOptions) {
    const rate = options.clusterBandwidth ?? DEFAULT_CLUSTER_BANDWIDTH;
    // Bursts of at most one redirected request (or one 100 ms window of a fast link).
    this.link = new TokenBucket(rate, Math.max(MAX_REDIRECTED_BYTES, rate / 10));
  }

  /** The epoch and coordinator this node follows. */
  get state(): { epoch: number; coordinator: number; role: "coordinator" | "node" } {
    return { ...this.known, role: this.volume ? "coordinator" : "node" };
  }

  /** This node's status, as `hvlab csv status` and the control socket's `query-status` show it. */
  status(): NodeStatus {
    const now = performance.now();
    const redirected = this.redirectedBecause();
    return {
      node: this.options.id,
      pid: process.pid,
      port: this.options.port,
      role: this.volume ? "coordinator" : "node",
      epoch: this.known.epoch,
      coordinator: this.known.coordinator,
      mode: redirected === undefined ? "direct" : "redirected",
      redirected: redirected ?? null,
      path: this.path?.cut === undefined ? "up" : "cut",
      backup: this.backup,
      clusterBandwidth: this.link.rate,
      key: `0x${this.key.toString(16)}`,
      members: [
        this.options.id,
        ...[...this.options.peers.keys()].filter((p) => this.alive(p)),
      ].sort((a, b) => a - b),
      heartbeatMs: this.options.heartbeatMs,
      misses: this.options.misses,
      uptimeMs: Math.round(now - this.started),
      atMs: Date.now(),
      io: { ...this.io },
      peers: [...this.options.peers.keys()].map((id) => ({
        id,
        alive: this.alive(id),
        pathCut: this.peersCut.has(id),
      })),
    };
  }

  /** Connects to the target, registers, listens for peers and starts heartbeating. */
  async start(): Promise<void> {
    this.target = await TargetClient.connect(
      this.options.targetPort,
      `node-${this.options.id}-${process.pid}`,
      5000,
      {
        ...(this.options.targetHost ? { host: this.options.targetHost } : {}),
        ...(this.options.security ? { security: this.options.security.connect } : {}),
        ...(this.options.targetSocket ? { socketPath: this.options.targetSocket } : {}),
      },
    );
    this.path = new StoragePath(this.target);
    this.data = this.path;
    await this.register();
    if (this.options.lun !== undefined) {
      this.direct = await DirectLun.open(
        this.options.lun,
        this.options.registrations ?? `${this.options.lun}.registrations`,
        this.target,
        () => this.key,
        { direct: this.options.lunDirect === true },
      );
      this.data = new StoragePath(this.direct);
    }
    const incoming = secureIncoming(this.options.security?.listen ?? PLAIN, {
      accepted: ({ socket }) => this.serve(socket),
      refused: (reason, _peer, reply) => {
        reply?.end(encodeFrame(Op.error, 0, json(reason)));
        reply?.destroy();
      },
    });
    this.server = createServer((socket) => {
      socket.on("error", () => {});
      incoming(socket);
    });
    await new Promise<void>((resolve, reject) => {
      this.server?.once("error", reject);
      this.server?.listen(this.options.port, this.options.host ?? "127.0.0.1", () => resolve());
    });
    for (const peer of this.options.peers.keys()) this.lastSeen.set(peer, performance.now());
    this.graceUntil = performance.now() + this.options.heartbeatMs * this.options.misses;
    this.timer = setInterval(() => this.tick(), this.options.heartbeatMs);
    // The lease period a takeover waits out is counted from the first read: start it now.
    void this.watchLease();
    this.options.onEvent?.({
      event: "listening",
      node: this.options.id,
      port: this.options.port,
      pid: process.pid,
    });
  }

  /** Stops heartbeating and closes every connection. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.server?.close();
    // Peers' connections to this node would keep the process alive after close().
    for (const socket of this.accepted) socket.destroy();
    for (const link of this.links.values())
      link.then(
        (c) => c.close(),
        () => {},
      );
    this.target?.close();
    this.direct?.close();
    this.direct = undefined;
  }

  private async register(): Promise<void> {
    // A fresh key per registration: the node's id in the high half, a counter below.
    const key =
      (BigInt(this.options.id) << 32n) | BigInt((Number(this.key & 0xffff_ffffn) + 1) >>> 0);
    // Adopted once the target has it: direct writes check the board with the key they hold.
    await this.target.register(key);
    this.key = key;
  }

  /** Milliseconds of silence after which a peer is dead. */
  private get threshold(): number {
    return this.options.heartbeatMs * this.options.misses;
  }

  private alive(peer: number): boolean {
    return performance.now() - (this.lastSeen.get(peer) ?? 0) <= this.threshold;
  }

  /**
   * Sends a request to coordinator `c` and waits for its answer as long as
   * `c` holds the role and is alive. A coordinator that died, lost its path
   * or was replaced is given up on (its connection closed) so the caller
   * retries where the role went; a slow but live one is waited for, since a
   * retry on a new connection could overtake the first request.
   */
  private async toCoordinator(c: number, type: number, payload: Uint8Array): Promise<Frame> {
    const pending = this.peer(c);
    const link = await pending;
    const answer = link.request(type, payload).then((frame) => ({ frame }));
    answer.catch(() => {});
    for (;;) {
      const done = await Promise.race([answer, sleep(this.options.heartbeatMs)]);
      if (done) return done.frame;
      if (this.stopped || this.known.coordinator !== c || !this.eligible(c)) {
        if (this.links.get(c) === pending) this.links.delete(c);
        link.close();
        throw new BusyError(`node ${c} stopped answering as coordinator`);
      }
    }
  }

  /** Alive and with a storage path: a node that may hold the coordinator role. */
  private eligible(peer: number): boolean {
    return this.alive(peer) && !this.peersCut.has(peer);
  }

  private heartbeat(): Uint8Array {
    return json({
      id: this.options.id,
      ...this.known,
      key: this.key.toString(16),
      cut: this.path.cut !== undefined,
      backup: this.backup,
    });
  }

  private tick(): void {
    for (const peer of this.options.peers.keys()) {
      if (!this.alive(peer) && !this.declaredDead.has(peer)) {
        this.declaredDead.add(peer);
        this.options.onEvent?.({ event: "dead", node: this.options.id, peer, atMs: Date.now() });
      }
      this.peer(peer)
        .then((c) => c.request(Op.heartbeat, this.heartbeat()))
        .then((reply) => this.heard(parseObject(reply.payload, "heartbeat"), peer))
        .catch(() => this.links.delete(peer));
    }
    if (this.volume) void this.renewTerm();
    else void this.watchLease();
    void this.maybeTakeOver();
  }

  /** Byte offset of the lease sector on the LUN. */
  private async leaseAt(): Promise<number> {
    return leaseOffset(await this.layout());
  }

  /**
   * Reads the lease sector (a node that does not coordinate), for the
   * takeover's wait, and follows a newer term it names: across a partition
   * of the cluster network the target is the one place a node hears of it.
   */
  private async watchLease(): Promise<void> {
    if (this.watchingLease || this.volume || this.stopped || this.path.cut !== undefined) return;
    this.watchingLease = true;
    try {
      const at = await this.leaseAt();
      const bytes = await this.path.read(at, SECTOR);
      this.leaseWatch.observe(bytes, performance.now());
      const lease = parseLease(bytes, at);
      if (lease && lease.epoch > this.known.epoch && !this.volume)
        this.follow(lease.epoch, lease.node);
    } catch {
      // A cut path, a target gone or a torn sector: no observation this time.
    } finally {
      this.watchingLease = false;
    }
  }

  /**
   * Renews this coordinator's lease; true when the target took the
   * renewal. A renewal refused with RESERVATION CONFLICT means another node
   * preempted this one's key: it steps down, once however many callers wait.
   */
  private renewTerm(): Promise<boolean> {
    const lease = this.lease;
    const volume = this.volume;
    if (!lease || !volume) return Promise.resolve(false);
    if (!this.renewing) {
      this.renewing = lease.renew().then(
        () => {
          this.renewing = undefined;
          return this.lease === lease;
        },
        async (error: unknown) => {
          this.renewing = undefined;
          if (error instanceof ReservationConflictError && this.volume === volume)
            await this.fenced(`lease renewal refused: ${error.message}`);
          return false;
        },
      );
    }
    return this.renewing;
  }

  /**
   * Resolves when this coordinator's term is proven at the target: at once
   * while its last renewal holds, else after one more renewal. Throws a
   * {@link TermUnprovenError} when it is not, so an open is never answered
   * from a volume in memory that a node which preempted this one may have
   * changed (an open writes nothing, so no RESERVATION CONFLICT would say so).
   */
  private async confirmTerm(volume: Volume): Promise<void> {
    if (this.lease?.trusted() && this.volume === volume) return;
    const renewed = await this.renewTerm();
    if (!renewed || this.volume !== volume || this.handingOver || !this.lease?.trusted())
      throw new TermUnprovenError(
        `node ${this.options.id} could not prove its term ${this.known.epoch} at the target`,
      );
  }

  /** Starts this node's lease for the term it has just opened; the first renewal lands before it serves anything. */
  private async holdLease(volume: Volume, epoch: number): Promise<void> {
    const lease = new CoordinatorLease(
      this.path,
      leaseOffset(volume.layout),
      { node: this.options.id, key: this.key, epoch },
      this.threshold,
      this.options.heartbeatMs,
    );
    await lease.renew();
    this.lease = lease;
  }

  /** A peer's view, from its heartbeat or its reply to ours. */
  private heard(r: Record<string, unknown>, from: number): void {
    if (!this.options.peers.has(from)) return;
    this.lastSeen.set(from, performance.now());
    this.declaredDead.delete(from);
    if (r.cut === true) this.peersCut.add(from);
    else this.peersCut.delete(from);
    if (typeof r.key === "string" && /^[0-9a-f]{1,16}$/.test(r.key))
      this.peerKeys.set(from, BigInt(`0x${r.key}`));
    const epoch = Number(r.epoch);
    const coordinator = Number(r.coordinator);
    if (
      Number.isSafeInteger(epoch) &&
      epoch > this.known.epoch &&
      Number.isSafeInteger(coordinator) &&
      coordinator >= 1 &&
      coordinator <= 16
    )
      this.follow(epoch, coordinator);
    if (from === this.known.coordinator && epoch === this.known.epoch)
      this.coordinatorBackup = r.backup === true;
    this.updateRedirected();
  }

  private follow(epoch: number, coordinator: number): void {
    this.known = { epoch, coordinator };
    this.coordinatorBackup = false;
    if (this.volume && coordinator !== this.options.id)
      this.stepDown(`epoch ${epoch} belongs to node ${coordinator}`);
    this.options.onEvent?.({
      event: "follow",
      node: this.options.id,
      epoch,
      coordinator,
      atMs: Date.now(),
    });
  }

  private peer(peer: number): Promise<TargetClient> {
    let link = this.links.get(peer);
    if (!link) {
      const address = this.options.peers.get(peer);
      if (address === undefined) return Promise.reject(new Error(`node ${peer} is no peer`));
      const host = typeof address === "number" ? "127.0.0.1" : address.host;
      const port = typeof address === "number" ? address : address.port;
      // A threshold to connect: a peer slow to accept under load is not yet dead.
      link = TargetClient.connect(port, `node-${this.options.id}`, this.threshold, {
        host,
        ...(this.options.security ? { security: this.options.security.connect } : {}),
      });
      link.catch(() => this.links.delete(peer));
      this.links.set(peer, link);
    }
    return link;
  }

  /** The lowest-numbered live node with a path takes over when the coordinator it follows is dead, cut off, or missing. */
  private async maybeTakeOver(): Promise<void> {
    if (
      this.takingOver ||
      this.handingOver ||
      this.volume ||
      this.stopped ||
      performance.now() < this.graceUntil
    )
      return;
    if (this.path.cut !== undefined) return;
    const c = this.known.coordinator;
    const coordinatorAlive = c !== 0 && c !== this.options.id && this.eligible(c);
    if (coordinatorAlive) return;
    for (const peer of this.options.peers.keys())
      if (peer < this.options.id && this.eligible(peer)) return;
    this.takingOver = true;
    try {
      let preempted: string | undefined;
      const held = await this.target.readReservation();
      if (held.reservation && held.reservation.key !== this.key) {
        // Preempt only a holder that is dead or has lost its path: a live one may be
        // in the middle of its own takeover, and preempting it would start a war in
        // which no one finishes. The holder is the live peer whose heartbeats carry
        // that very key: a node restarted under the same id holds a new key, so the
        // key its dead predecessor left is preempted, not mistaken for a live one.
        const key = held.reservation.key;
        const holderLive = [...this.options.peers.keys()].some(
          (peer) => this.eligible(peer) && this.peerKeys.get(peer) === key,
        );
        if (holderLive) return;
        // Silence on the cluster network is not enough: two nodes may reach the target
        // but not each other. The holder's lease must have lapsed (its sector unchanged
        // for a lease period), unless its own heartbeat said it gave the role up.
        const holderGaveUp = [...this.options.peers.keys()].some(
          (peer) => this.alive(peer) && this.peersCut.has(peer) && this.peerKeys.get(peer) === key,
        );
        const at = await this.leaseAt();
        this.leaseWatch.observe(await this.path.read(at, SECTOR), performance.now());
        if (!holderGaveUp && !this.leaseWatch.lapsed(performance.now(), this.threshold)) return;
        const before = this.leaseWatch.bytes;
        await this.target.reserveOut(
          ServiceAction.preempt,
          ReservationType.writeExclusiveRegistrantsOnly,
          this.key,
          key,
        );
        preempted = `0x${key.toString(16)}`;
        // No renewal of the preempted key lands from here on. One that landed between
        // the read above and the PREEMPT may still prove the old term: wait it out.
        const after = await this.path.read(at, SECTOR);
        if (!before || !this.leaseWatch.unchanged(after))
          await sleep(this.leaseWatch.periodMs(this.threshold, after));
      } else if (!held.reservation) {
        await this.target.reserveOut(
          ServiceAction.reserve,
          ReservationType.writeExclusiveRegistrantsOnly,
          this.key,
        );
      }
      const volume = await Volume.open(this.path);
      const epoch = await volume.takeOver(this.options.id);
      await this.holdLease(volume, epoch);
      this.volume = volume;
      this.known = { epoch, coordinator: this.options.id };
      this.coordinatorBackup = false;
      this.options.onEvent?.({
        event: "coordinator",
        node: this.options.id,
        epoch,
        atMs: Date.now(),
        ...(preempted ? { preempted } : {}),
      });
      this.updateRedirected();
    } catch (error) {
      if (error instanceof ReservationConflictError || error instanceof StaleEpochError)
        await this.fenced((error as Error).message);
    } finally {
      this.takingOver = false;
    }
  }

  private stepDown(reason: string): void {
    this.volume = undefined;
    this.lease = undefined;
    this.backup = false;
    this.options.onEvent?.({
      event: "fenced",
      node: this.options.id,
      epoch: this.known.epoch,
      reason,
      atMs: Date.now(),
    });
  }

  /** This node's key was preempted or its term taken: it is no coordinator; it registers anew as a plain node. */
  private async fenced(reason: string): Promise<void> {
    this.stepDown(reason);
    try {
      await this.register();
    } catch {
      // Still registered (the conflict was the volume's epoch, not the key): keep the key.
    }
  }

  /** Why this node's data I/O goes through the coordinator now, or undefined when it is direct. */
  private redirectedBecause(): string | undefined {
    if (this.path.cut !== undefined) return `storage path cut (${this.path.cut})`;
    if (!this.volume && this.coordinatorBackup)
      return `backup window on coordinator ${this.known.coordinator}`;
    return undefined;
  }

  /** Reports a change between direct and redirected access. */
  private updateRedirected(): void {
    const now = this.redirectedBecause();
    if (now === this.redirectedFor) return;
    this.redirectedFor = now;
    this.options.onEvent?.(
      now === undefined
        ? { event: "direct", node: this.options.id, atMs: Date.now() }
        : { event: "redirected", node: this.options.id, reason: now, atMs: Date.now() },
    );
  }

  /**
   * Cuts this node's storage path (a lost HBA or iSCSI session): its data I/O
   * goes redirected, and a coordinator gives up its role.
   */
  cutPath(reason = "by command"): void {
    if (this.path.cut !== undefined) return;
    this.path.cutOff(reason);
    this.data.cutOff(reason);
    if (this.volume)
      this.stepDown(`storage path cut (${reason}): the role moves to a node with a path`);
    this.updateRedirected();
  }

  /**
   * Restores the storage path: a key preempted while it was cut is
   * registered again, then data I/O goes direct.
   */
  async restorePath(): Promise<void> {
    if (this.path.cut === undefined) return;
    const { keys } = await this.target.readKeys();
    if (!keys.includes(this.key)) await this.register();
    this.path.restore();
    this.data.restore();
    this.updateRedirected();
  }

  /** Opens (true) or closes the backup window; only the coordinator holds one. */
  setBackup(open: boolean): void {
    if (!this.volume)
      throw new Error(
        `node ${this.options.id} is not the coordinator (node ${this.known.coordinator} is): a backup window opens there`,
      );
    this.backup = open;
  }

  /** Waits before asking again, and says when to give up. */
  private async retryPause(until: number, what: string, why: string): Promise<void> {
    if (this.stopped) throw new Error(`${what}: the node is stopping: ${why}`);
    if (performance.now() > until)
      throw new Error(`${what}: no coordinator answered in time: ${why}`);
    await sleep(Math.max(5, this.options.heartbeatMs / 4));
  }

  /**
   * Moves the coordinator role to node `to` on purpose (`hvlab csv
   * failover`), as the cluster service moves a volume's owner node: after
   * the metadata operations already queued, this node RELEASEs the
   * reservation and stops serving metadata, and `to` RESERVEs it and opens
   * a new epoch. Metadata sent meanwhile is retried by its senders until
   * `to` answers; that wait is the pause a planned move costs.
   */
  handOver(to: number): Promise<FailoverReply> {
    const from = this.options.id;
    if (!this.volume)
      return Promise.resolve({
        ok: false,
        error: `node ${from} is not the coordinator (node ${this.known.coordinator} is, epoch ${this.known.epoch})`,
      });
    if (to === from)
      return Promise.resolve({ ok: true, from, to, epoch: this.known.epoch, pauseMs: 0 });
    if (!this.options.peers.has(to) || !this.alive(to))
      return Promise.resolve({
        ok: false,
        error: `node ${to} is not a live member of the cluster`,
      });
    // A node without a storage path could not write metadata: the role goes only where the LUN is reachable.
    if (this.peersCut.has(to))
      return Promise.resolve({
        ok: false,
        error: `node ${to} has lost its storage path and may not coordinate`,
      });
    const run = async (): Promise<FailoverReply> => {
      const started = performance.now();
      const epoch = this.known.epoch;
      this.handingOver = true;
      try {
        // Redirected I/O already being served finishes in this term; later requests wait in the queue.
        await Promise.allSettled([...this.dataInFlight]);
        await this.target.reserveOut(
          ServiceAction.release,
          ReservationType.writeExclusiveRegistrantsOnly,
          this.key,
        );
        this.volume = undefined;
        this.lease = undefined;
        this.backup = false;
        this.known = { epoch, coordinator: to };
        const link = await this.peer(to);
        const answer = link.request(Op.failover, json({ to, from }));
        // Opening the volume reads its file table and bitmap: allow more than a heartbeat threshold.
        const limit = Math.max(5000, 4 * this.options.heartbeatMs * this.options.misses);
        const frame = await Promise.race([
          answer,
          sleep(limit).then(() => {
            throw new Error(`node ${to} did not take the role within ${limit} ms`);
          }),
        ]);
        const reply = parseFailoverReply(frame.payload);
        if (!reply.ok) throw new Error(reply.error);
        this.known = { epoch: reply.epoch, coordinator: to };
        return { ...reply, pauseMs: performance.now() - started };
      } catch (error) {
        // `to` did not take the role: nobody holds it, so this node claims it back in a new term.
        this.known = { epoch, coordinator: 0 };
        this.handingOver = false;
        await this.maybeTakeOver();
        return { ok: false, error: (error as Error).message };
      } finally {
        this.handingOver = false;
      }
    };
    const next = this.metadataQueue.then(run, run);
    this.metadataQueue = next.catch(() => {});
    return next;
  }

  /** Takes the role the coordinator `from` has released for this node (see {@link handOver}). */
  async acceptHandover(from: number): Promise<FailoverReply> {
    const to = this.options.id;
    if (this.volume) return { ok: true, from, to, epoch: this.known.epoch, pauseMs: 0 };
    if (from !== this.known.coordinator || this.takingOver)
      return {
        ok: false,
        error: `node ${to} follows node ${this.known.coordinator}, not node ${from}, or is taking over already`,
      };
    if (this.path.cut !== undefined)
      return { ok: false, error: `node ${to} has lost its storage path (${this.path.cut})` };
    this.takingOver = true;
    try {
      const held = await this.target.readReservation();
      if (held.reservation && held.reservation.key !== this.key)
        return {
          ok: false,
          error: `the reservation is still held, by key 0x${held.reservation.key.toString(16)}`,
        };
      if (!held.reservation)
        await this.target.reserveOut(
          ServiceAction.reserve,
          ReservationType.writeExclusiveRegistrantsOnly,
          this.key,
        );
      const volume = await Volume.open(this.path);
      const epoch = await volume.takeOver(to);
      await this.holdLease(volume, epoch);
      this.volume = volume;
      this.known = { epoch, coordinator: to };
      this.coordinatorBackup = false;
      this.options.onEvent?.({
        event: "coordinator",
        node: to,
        epoch,
        handedOverBy: from,
        atMs: Date.now(),
      });
      this.updateRedirected();
      return { ok: true, from, to, epoch, pauseMs: 0 };
    } catch (error) {
      return { ok: false, error: (error as Error).message };
    } finally {
      this.takingOver = false;
    }
  }

  /** A metadata operation, done here when this node is coordinator, else forwarded; retried across a failover. */
  async metadata(request: MetadataRequest, deadlineMs = 60_000): Promise<FileMap | undefined> {
    const until = performance.now() + deadlineMs;
    for (;;) {
      let reply: MetadataReply;
      try {
        if (this.volume) reply = await this.runMetadata(request);
        else {
          const c = this.known.coordinator;
          if (!this.options.peers.has(c)) throw new Error("no coordinator yet");
          const frame = await this.toCoordinator(c, Op.metadata, json(request));
          reply = parseObject(frame.payload, "metadata reply") as MetadataReply;
        }
      } catch (error) {
        reply = { ok: false, error: (error as Error).message, retry: true };
      }
      if (reply.ok) {
        this.io.metadataOps++;
        return reply.file;
      }
      if (!reply.retry || this.stopped) throw new Error(reply.error);
      this.io.metadataRetries++;
      await this.retryPause(
        until,
        `metadata ${request.op} ${request.name} (within ${deadlineMs} ms)`,
        reply.error,
      );
    }
  }

  /** Runs a metadata operation as coordinator, one at a time, and none while redirected I/O runs. */
  private runMetadata(request: MetadataRequest): Promise<MetadataReply> {
    const run = async (): Promise<MetadataReply> => {
      await Promise.allSettled([...this.dataInFlight]);
      const volume = this.handingOver ? undefined : this.volume;
      if (!volume)
        return { ok: false, error: `node ${this.options.id} is not the coordinator`, retry: true };
      try {
        switch (request.op) {
          case "create":
            try {
              return { ok: true, file: await volume.create(request.name, request.size ?? 0) };
            } catch (error) {
              // A create the last coordinator committed but never answered: the retry finds it.
              if (error instanceof VolumeFileError && /already exists/.test(error.message))
                return { ok: true, file: volume.lookup(request.name) };
              throw error;
            }
          case "open":
            // An open writes nothing, so no RESERVATION CONFLICT would tell a coordinator
            // deposed without hearing of it that its volume in memory is stale.
            await this.confirmTerm(volume);
            return { ok: true, file: volume.lookup(request.name) };
          case "resize":
            return { ok: true, file: await volume.resize(request.name, request.size ?? 0) };
          case "delete":
            await volume.delete(request.name);
            return { ok: true };
        }
      } catch (error) {
        if (error instanceof ReservationConflictError || error instanceof StaleEpochError) {
          await this.fenced((error as Error).message);
          return { ok: false, error: (error as Error).message, retry: true };
        }
        // The path was cut under the operation, or the term could not be proven:
        // the role moves on, the caller retries there.
        if (error instanceof PathCutError || error instanceof TermUnprovenError)
          return { ok: false, error: (error as Error).message, retry: true };
        return { ok: false, error: (error as Error).message, retry: false };
      }
    };
    const next = this.metadataQueue.then(run, run);
    this.metadataQueue = next.catch(() => {});
    return next;
  }

  /**
   * Writes file data: straight to the target at the file's extents (direct
   * I/O), or through the coordinator while this node is redirected. A
   * direct write cut off by a path failure is sent again redirected, so
   * the caller sees one acknowledgement or one error.
   */
  async writeFile(file: FileMap, offset: number, data: Uint8Array): Promise<void> {
    if (this.redirectedBecause() === undefined) {
      try {
        const layout = await this.layout();
        for (const r of mapFileRange(layout, file, offset, data.length))
          await this.data.write(
            r.lunOffset,
            data.subarray(r.bufferOffset, r.bufferOffset + r.length),
          );
        this.io.directWrites++;
        this.io.directBytes += data.length;
        this.io.writes++;
        this.io.bytesWritten += data.length;
        return;
      } catch (error) {
        if (!(error instanceof PathCutError)) throw error;
      }
    }
    for (let at = 0; at < data.length; at += MAX_REDIRECTED_BYTES) {
      const n = Math.min(MAX_REDIRECTED_BYTES, data.length - at);
      await this.redirect(file.name, offset + at, n, data.subarray(at, at + n));
    }
    this.io.redirectedWrites++;
    this.io.redirectedBytes += data.length;
    this.io.writes++;
    this.io.bytesWritten += data.length;
  }

  /**
   * Writes chunks of file data as one batch on the node's I/O threads where
   * its data path takes batches (its own path to the LUN, direct-lun.ts),
   * so the event loop is woken once for the batch and not per write: each
   * write is fenced by the board on that thread as one write is here
   * (fenced-batch.ts). Settles when every chunk is acknowledged; a batch
   * stopped by the fence rejects with RESERVATION CONFLICT, one stopped by
   * an I/O error with DirectWriteError, each counting the chunks
   * acknowledged before it. Chunks the batch could not take (the path cut
   * or halted under it, or a node without a path of its own) go through
   * {@link writeFile}, as many at once as the node has I/O threads,
   * redirected while the path is cut.
   */
  async writeFileBatch(file: FileMap, chunks: readonly FileChunk[]): Promise<void> {
    let left: readonly FileChunk[] = chunks;
    if (this.redirectedBecause() === undefined && this.data.batches && chunks.length > 0) {
      try {
        const { writes, ends } = chunkWrites(await this.layout(), file, chunks);
        const result = await this.data.writeBatch(writes);
        const acknowledged = chunksAcknowledged(ends, result.acknowledged);
        for (const [i, c] of chunks.entries()) {
          if (!acknowledged[i]) continue;
          this.io.directWrites++;
          this.io.directBytes += c.data.length;
          this.io.writes++;
          this.io.bytesWritten += c.data.length;
        }
        const stop = result.stops.find((s) => s.cause !== "halted");
        if (stop)
          throw batchStopError(
            stop,
            acknowledged.filter(Boolean).length,
            writes,
            chunks.length,
            this.data.name,
          );
        left = chunks.filter((_, i) => !acknowledged[i]);
      } catch (error) {
        if (!(error instanceof PathCutError)) throw error;
      }
    }
    // As many in flight as the I/O threads would have kept (redirected ones are metered by the link).
    let next = 0;
    const writer = async () => {
      for (let c = left[next++]; c !== undefined; c = left[next++])
        await this.writeFile(file, c.offset, c.data);
    };
    await Promise.all(Array.from({ length: Math.min(threadPoolSize(), left.length) }, writer));
  }

  /**
   * Makes this node's acknowledged data writes durable at the target
   * (FLUSH). Redirected writes were made durable by the coordinator that
   * did them, so a node whose path is cut has nothing to flush.
   */
  async flushData(): Promise<void> {
    try {
      await this.data.flush();
    } catch (error) {
      if (!(error instanceof PathCutError)) throw error;
    }
  }

  /** Starts the VM workers ahead of a VM's arrival. */
  vmPrepare(): Promise<void> {
    return this.vms.prepare();
  }

  /** Starts a VM on a VHD on the volume (arguments checked by parseVmStart). */
  vmStart(args: unknown): Promise<VmStarted> {
    return this.vms.start(parseVmStart(args));
  }

  /** Stops a VM and closes its VHD (arguments checked by parseVmStop). */
  vmStop(args: unknown): Promise<VmStopped> {
    return this.vms.stop(parseVmStop(args));
  }

  /** Writes a file sequentially for `hvlab bench csv` (arguments checked by parseFileWrite). */
  fileWrite(args: unknown): Promise<FileWritten> {
    return runFileWrite(this, parseFileWrite(args));
  }

  /** Reads file data, direct or redirected as {@link ClusterNode.writeFile} writes it. */
  async readFile(file: FileMap, offset: number, length: number): Promise<Uint8Array> {
    if (this.redirectedBecause() === undefined) {
      try {
        const layout = await this.layout();
        const out = new Uint8Array(length);
        for (const r of mapFileRange(layout, file, offset, length))
          out.set(await this.data.read(r.lunOffset, r.length), r.bufferOffset);
        this.io.directReads++;
        this.io.directBytes += length;
        return out;
      } catch (error) {
        if (!(error instanceof PathCutError)) throw error;
      }
    }
    const out = new Uint8Array(length);
    for (let at = 0; at < length; at += MAX_REDIRECTED_BYTES) {
      const n = Math.min(MAX_REDIRECTED_BYTES, length - at);
      out.set(await this.redirect(file.name, offset + at, n), at);
    }
    this.io.redirectedReads++;
    this.io.redirectedBytes += length;
    return out;
  }

  /** One redirected request to whoever coordinates, retried across a failover like a metadata call. */
  private async redirect(
    name: string,
    offset: number,
    length: number,
    data?: Uint8Array,
    deadlineMs = 60_000,
  ): Promise<Uint8Array> {
    const until = performance.now() + deadlineMs;
    const what = `redirected ${data ? "WRITE" : "READ"} of ${length} bytes at ${offset} of ${name}`;
    const payload = encodeRedirected(name, offset, length, data);
    for (;;) {
      let why: string;
      try {
        if (this.volume) {
          // This node became coordinator while it waited: the I/O is its own to do.
          const reply = await this.serveRedirected(parseRedirected(payload));
          if (reply.status === Status.good) return reply.payload;
          if (reply.status !== Status.busy)
            throw new TargetCommandError(new TextDecoder().decode(reply.payload));
          why = new TextDecoder().decode(reply.payload);
        } else {
          const c = this.known.coordinator;
          if (!this.options.peers.has(c)) throw new BusyError("no coordinator yet");
          await this.link.take(payload.length);
          return (await this.toCoordinator(c, Op.redirected, payload)).payload;
        }
      } catch (error) {
        if (error instanceof TargetCommandError) throw new Error(`${what}: ${error.message}`);
        why = (error as Error).message;
      }
      await this.retryPause(until, `${what} (within ${deadlineMs} ms)`, why);
    }
  }

  /** Does a redirected request as coordinator, through its own file table and path. */
  private async serveRedirected(request: RedirectedRequest): Promise<Frame> {
    const reply = (status: number, payload: Uint8Array = new Uint8Array(0)): Frame => ({
      type: Op.redirected | REPLY,
      status,
      tag: 0,
      payload,
    });
    const text = (s: string) => new TextEncoder().encode(s);
    await this.metadataQueue;
    const volume = this.handingOver ? undefined : this.volume;
    if (!volume) return reply(Status.busy, text(`node ${this.options.id} is not the coordinator`));
    const io = (async (): Promise<Frame> => {
      // A write is fenced at the target; a read is not (type 5 lets anyone read), so
      // a read proves the term before it trusts the file's extents in memory.
      if (!request.data) await this.confirmTerm(volume);
      const file = volume.lookup(request.name);
      if (request.data) {
        await volume.write(file, request.offset, request.data);
        return reply(Status.good);
      }
      const out = await volume.read(file, request.offset, request.length);
      // Read data crosses the coordinator's cluster-network link on its way back.
      await this.link.take(out.length + REDIRECTED_HEADER_BYTES);
      return reply(Status.good, out);
    })();
    this.dataInFlight.add(io);
    try {
      const done = await io;
      this.io.servedRedirected++;
      return done;
    } catch (error) {
      if (error instanceof VolumeFileError || error instanceof VolumeRangeError)
        return reply(Status.checkCondition, text(error.message));
      if (error instanceof ReservationConflictError) {
        await this.fenced(error.message);
        return reply(Status.busy, text(error.message));
      }
      // A path cut under the request, or a target gone: the sender retries where the role goes.
      return reply(Status.busy, text((error as Error).message));
    } finally {
      this.dataInFlight.delete(io);
    }
  }

  private cachedLayout: Volume["layout"] | undefined;

  private async layout(): Promise<Volume["layout"]> {
    if (!this.cachedLayout) {
      this.cachedLayout = parseSuperblock(await this.data.read(0, 512), this.data.bytes).layout;
    }
    return this.cachedLayout;
  }

  private serve(socket: Socket): void {
    const reader = new FrameReader();
    let loggedIn = false;
    this.accepted.add(socket);
    socket.on("close", () => this.accepted.delete(socket));
    socket.setNoDelay(true);
    socket.on("error", () => {});
    const plain = (this.options.security?.listen.kind ?? "plain") === "plain";
    let first = true;
    socket.on("data", (chunk: Buffer) => {
      // A TLS ClientHello to a plain listener is told so, rather than "bad magic".
      if (first && plain && looksLikeTls(chunk)) {
        socket.end(encodeFrame(Op.error, 0, json(TLS_PEER_OF_PLAIN)));
        return;
      }
      first = false;
      let frames: Frame[];
      try {
        frames = reader.push(chunk);
      } catch (error) {
        socket.end(encodeFrame(Op.error, 0, json((error as Error).message)));
        return;
      }
      for (const frame of frames) {
        if (!loggedIn) {
          if (frame.type !== Op.login) {
            socket.end(encodeFrame(Op.error, 0, json("the first frame must be LOGIN")));
            return;
          }
          loggedIn = true;
          socket.write(encodeFrame(Op.login | REPLY, frame.tag, new Uint8Array(8)));
          continue;
        }
        this.handle(frame).then(
          (reply) => {
            if (!socket.destroyed) socket.write(reply);
          },
          (error: Error) => socket.end(encodeFrame(Op.error, 0, json(error.message))),
        );
      }
    });
  }

  /**
   * Answers one node-protocol request of a logged-in peer: a reply frame,
   * or a {@link ProtocolError} (the connection is then closed) when the
   * request breaks the protocol. Nothing else escapes.
   */
  async handle(frame: Frame): Promise<Uint8Array> {
    if (frame.type === Op.heartbeat) {
      const r = parseObject(frame.payload, "heartbeat");
      const id = Number(r.id);
      if (!Number.isSafeInteger(id) || id < 1 || id > 16)
        throw new ProtocolError(
          `heartbeat: id ${JSON.stringify(r.id)} is not a node number 1 to 16`,
        );
      this.heard(r, id);
      return encodeFrame(Op.heartbeat | REPLY, frame.tag, this.heartbeat());
    }
    if (frame.type === Op.status)
      return encodeFrame(Op.status | REPLY, frame.tag, json(this.status()));
    if (frame.type === Op.failover) {
      const { to, from } = parseFailoverRequest(frame.payload);
      const reply = from === undefined ? await this.handOver(to) : await this.acceptHandover(from);
      return encodeFrame(Op.failover | REPLY, frame.tag, json(reply));
    }
    if (frame.type === Op.metadata) {
      const reply = await this.runMetadata(parseMetadataRequest(frame.payload));
      return encodeFrame(Op.metadata | REPLY, frame.tag, json(reply));
    }
    if (frame.type === Op.redirected) {
      const reply = await this.serveRedirected(parseRedirected(frame.payload));
      return encodeFrame(reply.type, frame.tag, reply.payload, reply.status);
    }
    throw new ProtocolError(`request type ${frame.type} is not one a node serves`);
  }
}

/** Appends one acknowledged write to the node's log (JSON lines), before the next write starts. */
export function logAck(
  path: string,
  record: { name: string; offset: number; seq: number; node: number },
): void {
  appendFileSync(path, `${JSON.stringify(record)}\n`);
}
