import { appendFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import {
  type FailoverReply,
  type NodeCounters,
  type NodeStatus,
  parseFailoverReply,
  parseFailoverRequest,
} from "./control.js";
import { encodeFrame, type Frame, FrameReader, Op, ProtocolError, REPLY } from "./protocol.js";
import { ReservationType, ServiceAction } from "./reservations.js";
import { parseSuperblock } from "./superblock.js";
import { ReservationConflictError, TargetClient } from "./target-client.js";
import { type FileMap, mapFileRange, StaleEpochError, Volume } from "./volume.js";

/*
 * `hvlab csv node`: one cluster node. It registers a key with the target,
 * heartbeats every peer (the cluster service's one second and five misses
 * by default), and follows the coordinator of the highest epoch it has
 * seen. When that coordinator has missed the threshold and this node is
 * the lowest-numbered node still alive, it takes over: PREEMPT the dead
 * coordinator's key at the target (the fence), open the volume (which
 * replays the journal), and open a new epoch on the volume. Other nodes
 * forward metadata operations to the coordinator and write file data
 * straight to the target at the extents the coordinator returns.
 *
 * The coordinator role is sticky: a node that comes back (a paused
 * coordinator resumed with SIGCONT) does not take the role back because
 * its number is lower; it finds its key preempted, its writes refused and
 * the volume in a newer epoch, and steps down.
 */

/** How a node is set up. */
export interface NodeOptions {
  readonly id: number;
  /** Port this node listens on for peers (127.0.0.1). */
  readonly port: number;
  readonly targetPort: number;
  /** Every other node's id and port. */
  readonly peers: ReadonlyMap<number, number>;
  readonly heartbeatMs: number;
  /** Heartbeats missed before a peer is dead. */
  readonly misses: number;
  /** Called with every event (role changes, fencing), for the command's JSON lines. */
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
      readonly event: "fenced";
      readonly node: number;
      readonly epoch: number;
      readonly reason: string;
      readonly atMs: number;
    }
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

const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

/** Parses a JSON payload into an object, or throws a ProtocolError. */
function parseJson(payload: Uint8Array, what: string): Record<string, unknown> {
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

/** Checks a forwarded metadata request. */
export function parseMetadataRequest(payload: Uint8Array): MetadataRequest {
  const r = parseJson(payload, "metadata request");
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
  private key = 0n;
  private volume: Volume | undefined;
  private known = { epoch: 0, coordinator: 0 };
  private readonly lastSeen = new Map<number, number>();
  private readonly links = new Map<number, Promise<TargetClient>>();
  private readonly declaredDead = new Set<number>();
  private server: Server | undefined;
  private timer: NodeJS.Timeout | undefined;
  private metadataQueue: Promise<unknown> = Promise.resolve();
  private takingOver = false;
  private readonly started = performance.now();
  /** A node that has just started listens for a threshold before it may take over, to learn the current term. */
  private graceUntil = 0;
  private readonly accepted = new Set<Socket>();
  private stopped = false;
  /** Set while this coordinator hands its role on: it neither serves metadata nor takes the role back. */
  private handingOver = false;
  /** What this node has done, for `hvlab csv status` and the failover timeline. */
  readonly counters: NodeCounters = {
    writes: 0,
    bytesWritten: 0,
    metadataOps: 0,
    metadataRetries: 0,
  };

  constructor(readonly options: NodeOptions) {}

  /** The epoch and coordinator this node follows. */
  get state(): { epoch: number; coordinator: number; role: "coordinator" | "node" } {
    return { ...this.known, role: this.volume ? "coordinator" : "node" };
  }

  /** This node's status, as `hvlab csv status` shows it. */
  status(): NodeStatus {
    const now = performance.now();
    return {
      node: this.options.id,
      pid: process.pid,
      port: this.options.port,
      role: this.volume ? "coordinator" : "node",
      epoch: this.known.epoch,
      coordinator: this.known.coordinator,
      mode: "direct",
      key: `0x${this.key.toString(16)}`,
      members: [
        this.options.id,
        ...[...this.options.peers.keys()].filter((p) => this.alive(p)),
      ].sort((a, b) => a - b),
      heartbeatMs: this.options.heartbeatMs,
      misses: this.options.misses,
      uptimeMs: Math.round(now - this.started),
      atMs: Date.now(),
      io: { ...this.counters },
    };
  }

  /** Connects to the target, registers, listens for peers and starts heartbeating. */
  async start(): Promise<void> {
    this.target = await TargetClient.connect(
      this.options.targetPort,
      `node-${this.options.id}-${process.pid}`,
    );
    await this.register();
    this.server = createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      this.server?.once("error", reject);
      this.server?.listen(this.options.port, "127.0.0.1", () => resolve());
    });
    for (const peer of this.options.peers.keys()) this.lastSeen.set(peer, performance.now());
    this.graceUntil = performance.now() + this.options.heartbeatMs * this.options.misses;
    this.timer = setInterval(() => this.tick(), this.options.heartbeatMs);
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
  }

  private async register(): Promise<void> {
    // A fresh key per registration: the node's id in the high half, a counter below.
    this.key =
      (BigInt(this.options.id) << 32n) | BigInt((Number(this.key & 0xffff_ffffn) + 1) >>> 0);
    await this.target.register(this.key);
  }

  private now(): number {
    return performance.now() - this.started;
  }

  private alive(peer: number): boolean {
    return (
      performance.now() - (this.lastSeen.get(peer) ?? 0) <=
      this.options.heartbeatMs * this.options.misses
    );
  }

  private tick(): void {
    for (const [peer, port] of this.options.peers) {
      if (!this.alive(peer) && !this.declaredDead.has(peer)) {
        this.declaredDead.add(peer);
        this.options.onEvent?.({ event: "dead", node: this.options.id, peer, atMs: Date.now() });
      }
      this.link(peer, port)
        .then((c) => c.request(Op.heartbeat, json({ id: this.options.id, ...this.known })))
        .then((reply) => this.heard(peer, reply))
        .catch(() => this.links.delete(peer));
    }
    void this.maybeTakeOver();
  }

  private heard(peer: number, frame: Frame): void {
    this.lastSeen.set(peer, performance.now());
    this.declaredDead.delete(peer);
    const r = parseJson(frame.payload, "heartbeat");
    const epoch = Number(r.epoch);
    const coordinator = Number(r.coordinator);
    if (Number.isSafeInteger(epoch) && epoch > this.known.epoch) this.follow(epoch, coordinator);
  }

  private follow(epoch: number, coordinator: number): void {
    this.known = { epoch, coordinator };
    if (this.volume && coordinator !== this.options.id)
      this.stepDown(`epoch ${epoch} belongs to node ${coordinator}`);
  }

  private link(peer: number, port: number): Promise<TargetClient> {
    let link = this.links.get(peer);
    if (!link) {
      link = TargetClient.connect(port, `node-${this.options.id}`, this.options.heartbeatMs);
      link.catch(() => this.links.delete(peer));
      this.links.set(peer, link);
    }
    return link;
  }

  /** The lowest-numbered live node takes over when the coordinator it follows is dead (or there is none). */
  private async maybeTakeOver(): Promise<void> {
    if (this.takingOver || this.handingOver || this.volume || performance.now() < this.graceUntil)
      return;
    const c = this.known.coordinator;
    const coordinatorAlive = c !== 0 && c !== this.options.id && this.alive(c);
    if (coordinatorAlive) return;
    for (const peer of this.options.peers.keys())
      if (peer < this.options.id && this.alive(peer)) return;
    this.takingOver = true;
    try {
      let preempted: string | undefined;
      const held = await this.target.readReservation();
      if (held.reservation && held.reservation.key !== this.key) {
        // Preempt only a dead holder: a live one (whose id is the key's high half)
        // may be in the middle of its own takeover, and preempting it would start
        // a war in which no one finishes.
        const holder = Number(held.reservation.key >> 32n);
        if (holder !== this.options.id && this.alive(holder)) return;
        await this.target.reserveOut(
          ServiceAction.preempt,
          ReservationType.writeExclusiveRegistrantsOnly,
          this.key,
          held.reservation.key,
        );
        preempted = `0x${held.reservation.key.toString(16)}`;
      } else if (!held.reservation) {
        await this.target.reserveOut(
          ServiceAction.reserve,
          ReservationType.writeExclusiveRegistrantsOnly,
          this.key,
        );
      }
      const volume = await Volume.open(this.target);
      const epoch = await volume.takeOver(this.options.id);
      this.volume = volume;
      this.known = { epoch, coordinator: this.options.id };
      this.options.onEvent?.({
        event: "coordinator",
        node: this.options.id,
        epoch,
        atMs: Date.now(),
        ...(preempted ? { preempted } : {}),
      });
    } catch (error) {
      if (error instanceof ReservationConflictError || error instanceof StaleEpochError)
        await this.fenced((error as Error).message);
    } finally {
      this.takingOver = false;
    }
  }

  private stepDown(reason: string): void {
    this.volume = undefined;
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
    const port = this.options.peers.get(to);
    if (!this.volume)
      return Promise.resolve({
        ok: false,
        error: `node ${from} is not the coordinator (node ${this.known.coordinator} is, epoch ${this.known.epoch})`,
      });
    if (to === from)
      return Promise.resolve({ ok: true, from, to, epoch: this.known.epoch, pauseMs: 0 });
    if (port === undefined || !this.alive(to))
      return Promise.resolve({
        ok: false,
        error: `node ${to} is not a live member of the cluster`,
      });
    const run = async (): Promise<FailoverReply> => {
      const started = performance.now();
      const epoch = this.known.epoch;
      this.handingOver = true;
      try {
        await this.target.reserveOut(
          ServiceAction.release,
          ReservationType.writeExclusiveRegistrantsOnly,
          this.key,
        );
        this.volume = undefined;
        this.known = { epoch, coordinator: to };
        const link = await this.link(to, port);
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
      const volume = await Volume.open(this.target);
      const epoch = await volume.takeOver(to);
      this.volume = volume;
      this.known = { epoch, coordinator: to };
      this.options.onEvent?.({
        event: "coordinator",
        node: to,
        epoch,
        handedOverBy: from,
        atMs: Date.now(),
      });
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
          const port = this.options.peers.get(c);
          if (!port) throw new Error("no coordinator yet");
          const frame = await (await this.link(c, port)).request(Op.metadata, json(request));
          reply = parseJson(frame.payload, "metadata reply") as MetadataReply;
        }
      } catch (error) {
        reply = { ok: false, error: (error as Error).message, retry: true };
      }
      if (reply.ok) {
        this.counters.metadataOps++;
        return reply.file;
      }
      if (!reply.retry || this.stopped) throw new Error(reply.error);
      this.counters.metadataRetries++;
      if (performance.now() > until)
        throw new Error(
          `metadata ${request.op} ${request.name}: no coordinator answered within ${deadlineMs} ms: ${reply.error}`,
        );
      await sleep(Math.max(5, this.options.heartbeatMs / 4));
    }
  }

  /** Runs a metadata operation as coordinator, one at a time. */
  private runMetadata(request: MetadataRequest): Promise<MetadataReply> {
    const run = async (): Promise<MetadataReply> => {
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
              if (
                (error as Error).name === "VolumeFileError" &&
                /already exists/.test((error as Error).message)
              )
                return { ok: true, file: volume.lookup(request.name) };
              throw error;
            }
          case "open":
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
        return { ok: false, error: (error as Error).message, retry: false };
      }
    };
    const next = this.metadataQueue.then(run, run);
    this.metadataQueue = next.catch(() => {});
    return next;
  }

  /** Writes file data straight to the target at the file's extents (direct I/O). */
  async writeFile(file: FileMap, offset: number, data: Uint8Array): Promise<void> {
    const layout = await this.layout();
    for (const r of mapFileRange(layout, file, offset, data.length))
      await this.target.write(
        r.lunOffset,
        data.subarray(r.bufferOffset, r.bufferOffset + r.length),
      );
    this.counters.writes++;
    this.counters.bytesWritten += data.length;
  }

  private cachedLayout: Volume["layout"] | undefined;

  private async layout(): Promise<Volume["layout"]> {
    if (!this.cachedLayout) {
      this.cachedLayout = parseSuperblock(await this.target.read(0, 512), this.target.bytes).layout;
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
    socket.on("data", (chunk: Buffer) => {
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
        this.answer(frame).then(
          (reply) => socket.write(reply),
          (error: Error) => socket.end(encodeFrame(Op.error, 0, json(error.message))),
        );
      }
    });
  }

  private async answer(frame: Frame): Promise<Uint8Array> {
    if (frame.type === Op.heartbeat) {
      const r = parseJson(frame.payload, "heartbeat");
      const id = Number(r.id);
      if (this.options.peers.has(id)) {
        this.lastSeen.set(id, performance.now());
        this.declaredDead.delete(id);
      }
      const epoch = Number(r.epoch);
      if (Number.isSafeInteger(epoch) && epoch > this.known.epoch)
        this.follow(epoch, Number(r.coordinator));
      return encodeFrame(
        Op.heartbeat | REPLY,
        frame.tag,
        json({ id: this.options.id, ...this.known }),
      );
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
