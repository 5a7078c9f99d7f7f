import { join } from "node:path";
import { setImmediate as nextTurn } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { readAckLogs, verifyAcks } from "../src/csv/acks.js";
import type { ClusterNode, MetadataRequest } from "../src/csv/node.js";
import { runStorm, STORM_BLOCK, stormBlock, stormSeq } from "../src/csv/storm.js";
import { type FileMap, Volume } from "../src/csv/volume.js";
import { memoryLun } from "./support/csv.js";
import { testTempDir } from "./support/temp.js";

/*
 * The storm (docs/csv.md, `--storm`): one node's creates, deletes, resizes
 * and 4 KiB data writes, each block stamped with its write's sequence
 * number and a pattern drawn from it, every acknowledged write logged
 * before the next starts, so that a checker can demand each logged block
 * reads back (or a later write of the same block does).
 */

describe("storm blocks: the sequence number, then a pattern drawn from it", () => {
  // Bytes 0..7: the sequence number, 64-bit little-endian; byte i >= 8:
  // (seq * 131 + i * 7) mod 256. Known answers worked out by hand.
  it("lays out write 1 and write 0x0102030405", () => {
    const one = stormBlock(1);
    expect(one.length).toBe(STORM_BLOCK);
    expect([...one.subarray(0, 8)]).toEqual([1, 0, 0, 0, 0, 0, 0, 0]);
    // 131 + 56 = 187, 131 + 63 = 194, 131 + 28665 = 28796 = 112 * 256 + 124
    expect([one[8], one[9], one[4095]]).toEqual([187, 194, 124]);
    const big = stormBlock(0x0102030405);
    expect([...big.subarray(0, 8)]).toEqual([5, 4, 3, 2, 1, 0, 0, 0]);
    // seq = 5 (mod 256): 655 + 56 = 711 = 2 * 256 + 199; 655 + 28665 = 29320 = 114 * 256 + 136
    expect([big[8], big[4095]]).toEqual([199, 136]);
  });

  // A checker reads the sequence number back from a block that is whole.
  it("reads back the sequence number of any storm write", () => {
    for (const seq of [0, 1, 2, 255, 256, 65_537, 2 ** 40 + 3])
      expect(stormSeq(stormBlock(seq))).toBe(seq);
    const inside = new Uint8Array(3 * STORM_BLOCK);
    inside.set(stormBlock(77), STORM_BLOCK);
    expect(stormSeq(inside.subarray(STORM_BLOCK, 2 * STORM_BLOCK))).toBe(77);
  });

  // Anything else is not a storm block (-1): a block of another length, a
  // never-written (zero) block, one byte of the pattern off (a torn or
  // misplaced write), or one write's number over another's pattern.
  it("refuses a block that is not a whole storm write", () => {
    const longer = new Uint8Array(STORM_BLOCK + 1);
    longer.set(stormBlock(9));
    expect(stormSeq(longer)).toBe(-1);
    expect(stormSeq(stormBlock(9).subarray(0, STORM_BLOCK - 1))).toBe(-1);
    expect(stormSeq(new Uint8Array(STORM_BLOCK))).toBe(-1);
    for (const at of [8, 100, STORM_BLOCK - 1]) {
      const torn = stormBlock(9);
      torn[at] = (torn[at] ?? 0) ^ 1;
      expect(stormSeq(torn)).toBe(-1);
    }
    const relabelled = stormBlock(9);
    relabelled.set(stormBlock(10).subarray(0, 8));
    expect(stormSeq(relabelled)).toBe(-1);
  });
});

/** One call the storm made on its node, with what the node saw at that moment. */
interface StormCall {
  readonly op: string;
  readonly name: string;
  /** create, resize: the size asked for. */
  readonly size?: number;
  /** resize, write: the file's size on the volume when asked. */
  readonly sizeBefore?: number;
  readonly offset?: number;
  /** write: the sequence number the block carries. */
  readonly seq?: number;
  /** The storm's files as the node knows them (oldest first) before the call. */
  readonly held: readonly string[];
  /** Records in the ack log when the call started. */
  readonly acked: number;
}

/** How the node answers one call: as asked, refused, with no map, or stopping the storm and refused. */
type Answer = "ok" | "refuse" | "no map" | "stop and refuse";

/** The heartbeat settings of a {@link StormNode}; every read of the interval is a wait for the cluster to settle. */
class StormNodeOptions {
  settles = 0;

  constructor(readonly id: number) {}

  get heartbeatMs(): number {
    this.settles++;
    return 0;
  }
}

/**
 * The storm's stop signal: raised after the last call the test wants, and
 * also when the storm goes round without calling its node (every step of a
 * storm makes a call), so that such a storm ends and fails the test.
 */
class StopSignal {
  stopped = false;
  runaway = false;
  private idle = 0;

  get aborted(): boolean {
    if (++this.idle > 1000) this.runaway = true;
    return this.stopped || this.runaway;
  }

  called(): void {
    this.idle = 0;
  }
}

/**
 * A cluster node to the storm: metadata operations and writes go to a
 * volume in memory, as a coordinator would do them, and every call is
 * recorded; the storm is stopped after `stopAfter` calls.
 */
class StormNode {
  readonly calls: StormCall[] = [];
  /** The storm's files, oldest first, as its creates and deletes were answered. */
  readonly held: string[] = [];
  readonly stop = new StopSignal();
  readonly options: StormNodeOptions;

  constructor(
    id: number,
    readonly volume: Volume,
    readonly ackLog: string,
    private readonly stopAfter: number,
    private readonly answer: (call: StormCall) => Answer,
  ) {
    this.options = new StormNodeOptions(id);
  }

  async metadata(request: MetadataRequest): Promise<FileMap | undefined> {
    const { op, name, size } = request;
    const answer = this.record({ op, name, size, sizeBefore: this.sizeOf(name) });
    switch (op) {
      case "create": {
        const file = await this.volume.create(name, size ?? 0);
        if (answer === "no map") return undefined;
        this.held.push(name);
        return file;
      }
      case "resize": {
        const file = await this.volume.resize(name, size ?? 0);
        return answer === "no map" ? undefined : file;
      }
      case "delete":
        await this.volume.delete(name);
        this.held.splice(this.held.indexOf(name), 1);
        return undefined;
      default:
        throw new Error(`no metadata operation ${JSON.stringify(op)}`);
    }
  }

  async writeFile(file: FileMap, offset: number, data: Uint8Array): Promise<void> {
    const sizeBefore = this.sizeOf(file.name);
    this.record({ op: "write", name: file.name, offset, seq: stormSeq(data), sizeBefore });
    await this.volume.write(file, offset, data);
  }

  get settles(): number {
    return this.options.settles;
  }

  ofKind(op: string): StormCall[] {
    return this.calls.filter((c) => c.op === op);
  }

  private sizeOf(name: string): number | undefined {
    return this.volume.list().find((f) => f.name === name)?.size;
  }

  private record(what: Omit<StormCall, "held" | "acked">): Answer {
    const call = { ...what, held: [...this.held], acked: readAckLogs([this.ackLog]).length };
    this.calls.push(call);
    this.stop.called();
    const answer = this.answer(call);
    if (this.calls.length >= this.stopAfter || answer === "stop and refuse")
      this.stop.stopped = true;
    if (answer === "refuse" || answer === "stop and refuse") throw new Error("refused");
    return answer;
  }
}

const FILES = 3;
const FILE_BYTES = 4 * STORM_BLOCK;

interface StormRun {
  readonly calls: number;
  readonly gapMs?: number;
  readonly onWrite?: () => void;
  readonly answer?: (call: StormCall) => Answer;
  /** Called with the node before the storm starts. */
  readonly before?: (node: StormNode) => void;
}

/** Runs node `id`'s storm (3 files of 16 KiB) on a fresh volume until it has made `calls` calls. */
async function storm(id: number, run: StormRun) {
  const { lun } = memoryLun(8 << 20);
  const volume = await Volume.format(lun, { clusterBytes: STORM_BLOCK, fileSlots: 16 });
  await volume.takeOver(id);
  const ackLog = join(testTempDir("csv-storm"), `acks-node-${id}.jsonl`);
  const node = new StormNode(id, volume, ackLog, run.calls, run.answer ?? (() => "ok"));
  run.before?.(node);
  await runStorm(node as unknown as ClusterNode, {
    files: FILES,
    fileBytes: FILE_BYTES,
    ackLog,
    gapMs: run.gapMs ?? 0,
    signal: node.stop as unknown as AbortSignal,
    ...(run.onWrite ? { onWrite: run.onWrite } : {}),
  });
  if (node.stop.runaway) throw new Error(`node ${id}'s storm went round without calling its node`);
  return { node, lun, volume, acks: readAckLogs([ackLog]) };
}

describe("a storm on a healthy cluster", () => {
  // The storm's promise: every write the target acknowledged reads back (or
  // a later write of the same block does), and with nothing failing the
  // storm never has to wait for the cluster to settle.
  it("leaves every acknowledged write readable, and never waits a heartbeat", async () => {
    const { node, lun, acks } = await storm(1, { calls: 300 });
    expect(acks.length).toBe(node.ofKind("write").length);
    expect(acks.length).toBeGreaterThan(100);
    const check = await verifyAcks(lun, acks);
    expect(check.lost).toEqual([]);
    expect(check.intact).toBe(check.checked);
    expect(check.checked).toBeGreaterThan(0);
    expect(node.settles).toBe(0);
  });

  // "Every write the target acknowledged is logged before the next starts":
  // each write carries the next sequence number (1, 2, 3...: a later write of
  // a block has a higher one), and its record {node, name, offset, seq} is in
  // the log before the node is asked for anything else.
  it("stamps writes 1, 2, 3... and logs each before the next call", async () => {
    const { node, acks } = await storm(4, { calls: 120 });
    const writes = node.ofKind("write");
    expect(writes.map((w) => w.seq)).toEqual(writes.map((_, i) => i + 1));
    expect(acks).toEqual(
      writes.map((w) => ({ node: 4, name: w.name, offset: w.offset, seq: w.seq })),
    );
    let logged = 0;
    for (const call of node.calls) {
      expect(call.acked).toBe(logged);
      if (call.op === "write") logged++;
    }
  });

  // onWrite (the I/O counters) is told of each acknowledged write, once it is logged.
  it("reports each acknowledged write to onWrite after logging it", async () => {
    const seen: number[] = [];
    let node: StormNode | undefined;
    const { acks } = await storm(2, {
      calls: 60,
      before: (n) => {
        node = n;
      },
      onWrite: () => {
        seen.push(readAckLogs([node?.ackLog ?? ""]).length);
      },
    });
    expect(seen).toEqual(acks.map((_, i) => i + 1));
  });

  // Writes are whole 4 KiB blocks inside the file, at block boundaries, spread
  // over the file's blocks (grown ones included) and over all its files.
  it("writes 4 KiB blocks within each file, over all its blocks and files", async () => {
    const { node } = await storm(1, { calls: 300 });
    const writes = node.ofKind("write");
    for (const w of writes) {
      expect(w.offset ?? -1).toBeGreaterThanOrEqual(0);
      expect((w.offset ?? 1) % STORM_BLOCK).toBe(0);
      expect((w.offset ?? 0) + STORM_BLOCK).toBeLessThanOrEqual(w.sizeBefore ?? 0);
    }
    expect(writes.some((w) => (w.offset ?? 0) >= FILE_BYTES)).toBe(true);
    expect(new Set(writes.map((w) => w.offset)).size).toBeGreaterThan(4);
    expect(writes.some((w) => w.name !== w.held[0])).toBe(true);
  });
});

describe("a storm's files", () => {
  // It starts by creating the files it keeps, each named after the node and
  // its process (a restarted node's files stay apart from its last life's),
  // numbered in the order created, of `fileBytes`.
  it("creates its files first, named n<node>-p<pid>-f<k> in order", async () => {
    const { node } = await storm(3, { calls: 200 });
    expect(node.calls.slice(0, FILES).map((c) => c.op)).toEqual(["create", "create", "create"]);
    const creates = node.ofKind("create");
    expect(creates.map((c) => c.name)).toEqual(creates.map((_, k) => `n3-p${process.pid}-f${k}`));
    for (const c of creates) expect(c.size).toBe(FILE_BYTES);
  });

  // It keeps `files` files: a create beyond them is followed by the delete of
  // its oldest file, so the volume ends up holding exactly the storm's files.
  it("deletes its oldest file when a create takes it past the files it keeps", async () => {
    const { node, volume } = await storm(1, { calls: 400 });
    const deletes = node.calls.flatMap((c, i) => (c.op === "delete" ? [i] : []));
    expect(deletes.length).toBeGreaterThan(2);
    for (const i of deletes) {
      const call = node.calls[i];
      expect(node.calls[i - 1]?.op).toBe("create");
      expect(call?.held.length).toBe(FILES + 1);
      expect(call?.name).toBe(call?.held[0]);
    }
    expect(volume.list().map((f) => f.name)).toEqual(node.held);
    expect(node.held.length).toBe(FILES);
  });

  // A resize grows a file by `fileBytes` from the size it has, whichever of
  // the storm's files it picks.
  it("grows a file by fileBytes at a time, any of its files", async () => {
    const { node } = await storm(1, { calls: 400 });
    const resizes = node.ofKind("resize");
    expect(resizes.length).toBeGreaterThan(10);
    for (const r of resizes) expect(r.size).toBe((r.sizeBefore ?? 0) + FILE_BYTES);
    expect(resizes.some((r) => (r.sizeBefore ?? 0) > FILE_BYTES)).toBe(true);
    expect(resizes.some((r) => r.name !== r.held[0])).toBe(true);
  });

  // The mix of a storm step: about one in twenty creates a file (and deletes
  // the oldest), one in ten grows one, the rest write: data writes dominate,
  // as in a cluster's VMs, with metadata operations among them.
  it("mixes creates (1 in 20), resizes (1 in 10) and mostly writes", async () => {
    const { node } = await storm(5, { calls: 700 });
    const steps = node.calls.slice(FILES).filter((c) => c.op !== "delete");
    const share = (op: string) => steps.filter((c) => c.op === op).length / steps.length;
    expect(share("create")).toBeGreaterThan(0.02);
    expect(share("create")).toBeLessThan(0.1);
    expect(share("resize")).toBeGreaterThan(0.05);
    expect(share("resize")).toBeLessThan(0.17);
    expect(share("write")).toBeGreaterThan(0.75);
  });

  // A create answered without a map gave the storm no file: it creates
  // again until it holds the files it keeps.
  it("creates again after a create answered without a map", async () => {
    const { node } = await storm(1, {
      calls: 30,
      answer: (c) => (c.op === "create" && c.name.endsWith("-f0") ? "no map" : "ok"),
    });
    expect(node.calls.slice(0, FILES + 1).map((c) => c.op)).toEqual([
      "create",
      "create",
      "create",
      "create",
    ]);
    expect(node.settles).toBe(0);
  });

  // A resize answered without a map leaves the storm with the map it had:
  // the file stays one of its files, written to and deleted in its turn.
  it("keeps a file whose resize was answered without a map", async () => {
    let unanswered = "";
    const { node } = await storm(1, {
      calls: 400,
      answer: (c) => {
        if (c.op !== "resize" || unanswered) return "ok";
        unanswered = c.name;
        return "no map";
      },
    });
    expect(unanswered).not.toBe("");
    const at = node.calls.findIndex((c) => c.op === "resize" && c.name === unanswered);
    const after = node.calls.slice(at + 1).filter((c) => c.name === unanswered);
    expect(after.map((c) => c.op)).toContain("write");
    expect(after.map((c) => c.op)).toContain("delete");
  });
});

describe("a storm through failures", () => {
  // "A fenced node's write is refused, a metadata call outlived its
  // deadline: wait a heartbeat for the cluster to settle and go on." A
  // refused write was not acknowledged, so it is not logged.
  it("logs no refused write, waits one heartbeat and goes on", async () => {
    const { node, acks } = await storm(1, {
      calls: 80,
      answer: (c) => (c.op === "write" && c.seq === 3 ? "refuse" : "ok"),
    });
    expect(node.settles).toBe(1);
    expect(node.calls.length).toBe(80);
    const seqs = acks.map((a) => a.seq);
    expect(seqs).not.toContain(3);
    expect(seqs).toContain(4);
    expect(seqs.slice(1).every((s, i) => s > (seqs[i] ?? s))).toBe(true);
  });

  // Stopped while a call fails, the storm ends there and then.
  it("ends without waiting a heartbeat when stopped during a failing call", async () => {
    const { node } = await storm(1, {
      calls: 1000,
      answer: (c) => (c.op === "write" ? "stop and refuse" : "ok"),
    });
    expect(node.calls.at(-1)?.op).toBe("write");
    expect(node.settles).toBe(0);
  });
});

describe("a storm's pace", () => {
  // Node ids seed the storm: two nodes run different storms, and the same
  // node runs the same one again (a run can be replayed).
  it("draws its steps from the node id", async () => {
    const shape = (calls: readonly StormCall[]) =>
      calls.map((c) => `${c.op} ${c.name.replace(/^n\d+/, "")} ${c.size ?? c.offset}`);
    const first = await storm(1, { calls: 100 });
    const again = await storm(1, { calls: 100 });
    const other = await storm(2, { calls: 100 });
    expect(shape(again.node.calls)).toEqual(shape(first.node.calls));
    expect(shape(other.node.calls)).not.toEqual(shape(first.node.calls));
  });

  // `--gap 0`: no pause between operations, the storm runs back to back and
  // gives the event loop no turn of its own between steps.
  it("runs back to back with no gap", async () => {
    let callsAtTurn = -1;
    await storm(1, {
      calls: 30,
      before: (node) => {
        setImmediate(() => {
          callsAtTurn = node.calls.length;
        });
      },
    });
    await nextTurn();
    expect(callsAtTurn).toBe(30);
  });

  // `--gap MS`: a pause between operations, during which the event loop turns.
  it("pauses between operations with a gap", async () => {
    let callsAtTurn = -1;
    await storm(1, {
      calls: 10,
      gapMs: 1,
      before: (node) => {
        setImmediate(() => {
          callsAtTurn = node.calls.length;
        });
      },
    });
    expect(callsAtTurn).toBeGreaterThanOrEqual(0);
    expect(callsAtTurn).toBeLessThan(10);
  });
});
