import { setTimeout as sleep } from "node:timers/promises";
import { type ClusterNode, logAck } from "./node.js";
import type { FileMap } from "./volume.js";

/*
 * A storm of metadata operations and data writes from one node: it creates
 * files of its own, grows them, and writes 4 KiB blocks into them, each
 * block stamped with a sequence number so that a reader can tell which
 * write it holds. Every write the target acknowledged is logged before the
 * next starts, so after any number of failovers a checker can demand that
 * each logged block reads back (or a later write of the same block).
 */

/** Bytes of one storm write. */
export const STORM_BLOCK = 4096;

/** The bytes of write `seq`: the sequence number, then a pattern drawn from it. */
export function stormBlock(seq: number): Uint8Array {
  const out = new Uint8Array(STORM_BLOCK);
  new DataView(out.buffer).setBigUint64(0, BigInt(seq), true);
  for (let i = 8; i < STORM_BLOCK; i++) out[i] = (seq * 131 + i * 7) & 0xff;
  return out;
}

/** The sequence number a block holds, or -1 when it is not a storm block. */
export function stormSeq(block: Uint8Array): number {
  if (block.length !== STORM_BLOCK) return -1;
  const seq = Number(new DataView(block.buffer, block.byteOffset, 8).getBigUint64(0, true));
  const expected = stormBlock(seq);
  for (let i = 8; i < STORM_BLOCK; i++) if (block[i] !== expected[i]) return -1;
  return seq;
}

/** Options of {@link runStorm}. */
export interface StormOptions {
  /** Files this node keeps. */
  readonly files: number;
  /** Size a file is created with, and its growth step. */
  readonly fileBytes: number;
  /** Where acknowledged writes are logged (JSON lines). */
  readonly ackLog: string;
  /** Pause between operations (0: none). */
  readonly gapMs: number;
  /** Set to stop the storm. */
  readonly signal: AbortSignal;
  /** Called after every acknowledged write (for I/O counts per 100 ms). */
  readonly onWrite?: () => void;
}

/** Runs the storm until the signal aborts. Each step is a metadata operation or a write; the seed is the node id. */
export async function runStorm(node: ClusterNode, options: StormOptions): Promise<void> {
  const id = node.options.id;
  let rand = (id * 2654435761) >>> 0 || 1;
  const next = () => {
    rand ^= rand << 13;
    rand ^= rand >>> 17;
    rand ^= rand << 5;
    rand >>>= 0;
    return rand / 2 ** 32;
  };
  const files: FileMap[] = [];
  let seq = 0;
  let created = 0;
  while (!options.signal.aborted) {
    try {
      const roll = next();
      if (files.length < options.files || roll < 0.05) {
        // The pid keeps a restarted node's files apart from its last life's.
        const name = `n${id}-p${process.pid}-f${created}`;
        const file = await node.metadata({ op: "create", name, size: options.fileBytes });
        created++;
        if (file) files.push(file);
        if (files.length > options.files) {
          const gone = files.shift();
          if (gone) await node.metadata({ op: "delete", name: gone.name });
        }
      } else if (roll < 0.15) {
        const i = Math.floor(next() * files.length);
        const file = files[i];
        if (file) {
          const grown = await node.metadata({
            op: "resize",
            name: file.name,
            size: file.size + options.fileBytes,
          });
          if (grown) files[i] = grown;
        }
      } else {
        const file = files[Math.floor(next() * files.length)];
        if (file) {
          const blocks = Math.floor(file.size / STORM_BLOCK);
          const offset = Math.floor(next() * blocks) * STORM_BLOCK;
          seq++;
          await node.writeFile(file, offset, stormBlock(seq));
          logAck(options.ackLog, { node: id, name: file.name, offset, seq });
          options.onWrite?.();
        }
      }
    } catch {
      // A fenced node's write is refused, a metadata call outlived its deadline:
      // wait a heartbeat for the cluster to settle and go on.
      if (options.signal.aborted) return;
      await sleep(node.options.heartbeatMs);
    }
    if (options.gapMs > 0) await sleep(options.gapMs);
  }
}
