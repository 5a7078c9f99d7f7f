import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type AckRecord, readAckLogs, verifyAcks } from "../src/csv/acks.js";
import type { Lun } from "../src/csv/lun.js";
import { STORM_BLOCK, stormBlock } from "../src/csv/storm.js";
import { Volume } from "../src/csv/volume.js";
import { DyingLun, memoryLun } from "./support/csv.js";
import { testTempDir } from "./support/temp.js";

/*
 * The acknowledged-writes check of the storm (docs/csv.md, `--storm`): every
 * write the target acknowledged is appended to an ack log as a JSON line,
 * and afterwards every logged block must read back holding that write or a
 * later write of the same block, for the files still on the volume.
 */

const FILE_BYTES = 4 * STORM_BLOCK;

function ack(name: string, offset: number, seq: number, node = 1): AckRecord {
  return { node, name, offset, seq };
}

function logLine(record: unknown): string {
  return `${JSON.stringify(record)}\n`;
}

/** A small volume holding files "a" and "b" of four storm blocks each, nothing written yet. */
async function twoFiles(): Promise<{ lun: Lun; volume: Volume }> {
  const { lun } = memoryLun(1 << 20);
  const volume = await Volume.format(lun, { clusterBytes: STORM_BLOCK, fileSlots: 8 });
  await volume.takeOver(1);
  await volume.create("a", FILE_BYTES);
  await volume.create("b", FILE_BYTES);
  return { lun, volume };
}

/** Writes storm write `seq` into block `offset` of file `name`. */
async function stamp(volume: Volume, name: string, offset: number, seq: number): Promise<void> {
  await volume.write(volume.lookup(name), offset, stormBlock(seq));
}

describe("ack logs: one JSON record per acknowledged write", () => {
  // Each node appends {node, name, offset, seq} per write; the checker reads
  // every node's log, one record per line, in the order written.
  it("reads every record of every log, in order", () => {
    const dir = testTempDir("csv-acks");
    const first = join(dir, "acks-node-1.jsonl");
    const second = join(dir, "acks-node-2.jsonl");
    writeFileSync(first, logLine(ack("a", 0, 1)) + logLine(ack("a", 4096, 2)));
    writeFileSync(second, logLine(ack("b", 8192, 1, 2)));
    expect(readAckLogs([first, second])).toEqual([
      ack("a", 0, 1),
      ack("a", 4096, 2),
      ack("b", 8192, 1, 2),
    ]);
  });

  // A node that never wrote has no log: there is nothing of it to check.
  it("passes over a log that does not exist", () => {
    const dir = testTempDir("csv-acks");
    const present = join(dir, "acks-node-2.jsonl");
    writeFileSync(present, logLine(ack("a", 0, 7, 2)));
    expect(readAckLogs([join(dir, "acks-node-1.jsonl"), present])).toEqual([ack("a", 0, 7, 2)]);
    expect(readAckLogs([join(dir, "none.jsonl")])).toEqual([]);
  });

  // A node killed in the middle of an append leaves its last line cut short;
  // such a line, an empty one, and any line that is not a whole record
  // (name a string; node, offset and seq safe integers) are not acknowledgements.
  it("skips a line cut short by a kill and every line that is not a record", () => {
    const dir = testTempDir("csv-acks");
    const log = join(dir, "acks-node-3.jsonl");
    const good = [ack("a", 0, 1, 3), ack("b", 4096, 2, 3)];
    const bad: unknown[] = [
      { node: 3, offset: 0, seq: 3 },
      { node: 3, name: 5, offset: 0, seq: 3 },
      { name: "a", offset: 0, seq: 3 },
      { node: "3", name: "a", offset: 0, seq: 3 },
      { node: 3.5, name: "a", offset: 0, seq: 3 },
      { node: 3, name: "a", seq: 3 },
      { node: 3, name: "a", offset: 4096.5, seq: 3 },
      { node: 3, name: "a", offset: 2 ** 53, seq: 3 },
      { node: 3, name: "a", offset: 0 },
      { node: 3, name: "a", offset: 0, seq: "3" },
      { node: 3, name: "a", offset: 0, seq: 0.5 },
      42,
      "a",
    ];
    const text = [
      logLine(good[0]),
      "\n",
      ...bad.map(logLine),
      logLine(good[1]),
      logLine(ack("a", 8192, 4, 3)).slice(0, 30),
    ].join("");
    writeFileSync(log, text);
    expect(readAckLogs([log])).toEqual(good);
  });
});

describe("verifying acknowledged writes against the volume", () => {
  // Each logged block holds its write: all are checked and intact. Two files
  // and two blocks of one file are distinct blocks; a write stamped 1 (the
  // storm's first) counts like any other.
  it("counts every block that holds its acknowledged write as intact", async () => {
    const { lun, volume } = await twoFiles();
    await stamp(volume, "a", 0, 1);
    await stamp(volume, "a", 4096, 2);
    await stamp(volume, "b", 0, 3);
    const acks = [ack("a", 0, 1), ack("a", 4096, 2), ack("b", 0, 3, 2)];
    expect(await verifyAcks(lun, acks)).toEqual({ checked: 3, intact: 3, lost: [] });
  });

  // "or a later write of the same block does": a block overwritten after the
  // logged write holds a higher sequence number and is intact.
  it("counts a block that holds a later write of it as intact", async () => {
    const { lun, volume } = await twoFiles();
    await stamp(volume, "a", 8192, 9);
    expect(await verifyAcks(lun, [ack("a", 8192, 5)])).toEqual({
      checked: 1,
      intact: 1,
      lost: [],
    });
  });

  // A block holding an older write (or no storm write at all) lost an
  // acknowledged write; it is named as "name@offset: seq".
  it("names a block that holds an older write, or none, as lost", async () => {
    const { lun, volume } = await twoFiles();
    await stamp(volume, "a", 4096, 4);
    expect(await verifyAcks(lun, [ack("a", 4096, 6), ack("b", 12288, 2)])).toEqual({
      checked: 2,
      intact: 0,
      lost: ["a@4096: 6", "b@12288: 2"],
    });
  });

  // Only the latest acknowledged write of a block is demanded, whatever the
  // order the logs list them in (two nodes' logs are read one after the other).
  it("checks each block against its latest acknowledged write only", async () => {
    const { lun, volume } = await twoFiles();
    await stamp(volume, "a", 0, 4);
    await stamp(volume, "b", 0, 4);
    const acks = [ack("a", 0, 5), ack("a", 0, 3, 2), ack("b", 0, 2, 2), ack("b", 0, 4)];
    expect(await verifyAcks(lun, acks)).toEqual({ checked: 2, intact: 1, lost: ["a@0: 5"] });
  });

  // The report names the first few lost blocks (five), and counts them all.
  it("names at most five lost blocks", async () => {
    const { lun } = await twoFiles();
    const acks = [0, 1, 2, 3].flatMap((b) => [
      ack("a", b * STORM_BLOCK, 10 + b),
      ack("b", b * STORM_BLOCK, 20 + b),
    ]);
    const check = await verifyAcks(lun, acks);
    expect(check.checked).toBe(8);
    expect(check.intact).toBe(0);
    expect(check.lost).toEqual(["a@0: 10", "b@0: 20", "a@4096: 11", "b@4096: 21", "a@8192: 12"]);
  });

  // "for files that still exist (a file deleted later took its blocks with it)".
  it("does not check the blocks of a file deleted later", async () => {
    const { lun, volume } = await twoFiles();
    await stamp(volume, "a", 0, 1);
    await volume.delete("b");
    expect(await verifyAcks(lun, [ack("a", 0, 1), ack("b", 0, 2)])).toEqual({
      checked: 1,
      intact: 1,
      lost: [],
    });
  });

  // A file shrunk later lost the blocks past its new end; a block that
  // still ends within the file (up to its last byte) is checked.
  it("does not check blocks past the end of a file shrunk later, and checks its last block", async () => {
    const { lun, volume } = await twoFiles();
    await stamp(volume, "a", 8192, 2);
    await stamp(volume, "a", 12288, 3);
    await volume.resize("a", 3 * STORM_BLOCK);
    expect(await verifyAcks(lun, [ack("a", 8192, 2), ack("a", 12288, 3)])).toEqual({
      checked: 1,
      intact: 1,
      lost: [],
    });
  });

  // "Reads the volume without replaying its journal": a check after a
  // coordinator died mid-transaction must not write the LUN (it may be read
  // by a backup host); the pending transaction is applied in memory only.
  it("reads a volume with a pending transaction without writing to the LUN", async () => {
    const { lun, volume } = await twoFiles();
    await stamp(volume, "a", 0, 1);
    // The coordinator dies right after its journal write of a third create.
    const dying = await Volume.open(new DyingLun(lun, 1));
    await expect(dying.create("c", FILE_BYTES)).rejects.toThrow("killed");
    const readOnly = new DyingLun(lun, 0);
    expect(await verifyAcks(readOnly, [ack("a", 0, 1), ack("c", 0, 2)])).toEqual({
      checked: 2,
      intact: 1,
      lost: ["c@0: 2"],
    });
    expect(readOnly.writes).toBe(0);
  });
});
