import { readFileSync } from "node:fs";
import type { Lun } from "./lun.js";
import { STORM_BLOCK, stormSeq } from "./storm.js";
import { Volume } from "./volume.js";

/** One write a node logged as acknowledged by the target. */
export interface AckRecord {
  readonly node: number;
  readonly name: string;
  readonly offset: number;
  readonly seq: number;
}

/** Every acknowledged write in the ack logs; a line cut short by a kill, or not a record, is skipped. */
export function readAckLogs(paths: readonly string[]): AckRecord[] {
  const acks: AckRecord[] = [];
  for (const path of paths) {
    let text = "";
    try {
      text = readFileSync(path, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      if (!line) continue;
      try {
        const r = JSON.parse(line) as Record<string, unknown>;
        if (
          typeof r.name === "string" &&
          Number.isSafeInteger(r.node) &&
          Number.isSafeInteger(r.offset) &&
          Number.isSafeInteger(r.seq)
        )
          acks.push(r as unknown as AckRecord);
      } catch {
        // the last line of a killed node
      }
    }
  }
  return acks;
}

/** What {@link verifyAcks} found. */
export interface AckCheck {
  /** Blocks checked: the latest acknowledged write of each block of a file still on the volume. */
  readonly checked: number;
  /** Of those, blocks holding that write or a later one. */
  readonly intact: number;
  /** The first few blocks that did not, as "name@offset: seq". */
  readonly lost: readonly string[];
}

/**
 * Every acknowledged write reads back, or a later write of the same block
 * does, for files that still exist (a file deleted later took its blocks
 * with it). Reads the volume without replaying its journal.
 */
export async function verifyAcks(lun: Lun, acks: readonly AckRecord[]): Promise<AckCheck> {
  const volume = await Volume.open(lun, { replay: false });
  const names = new Set(volume.list().map((f) => f.name));
  const latest = new Map<string, AckRecord>();
  for (const a of acks) {
    const k = `${a.name}@${a.offset}`;
    if ((latest.get(k)?.seq ?? -1) < a.seq) latest.set(k, a);
  }
  let checked = 0;
  let intact = 0;
  const lost: string[] = [];
  for (const [k, a] of latest) {
    if (!names.has(a.name)) continue;
    const file = volume.lookup(a.name);
    if (a.offset + STORM_BLOCK > file.size) continue;
    checked++;
    const block = await volume.read(file, a.offset, STORM_BLOCK);
    if (stormSeq(block) >= a.seq) intact++;
    else if (lost.length < 5) lost.push(`${k}: ${a.seq}`);
  }
  return { checked, intact, lost };
}
