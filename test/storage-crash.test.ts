import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FdFile } from "../src/storage/block-file.js";
import { checkVhdFile } from "../src/storage/check.js";
import { openImage } from "../src/storage/open.js";
import { VhdImage } from "../src/storage/vhd.js";

// Kill the writer (SIGKILL, by its PID) at random points of random writes to
// a dynamic VHD, many times over the same file: after each kill the image
// checks clean, and every write acknowledged after its fsync reads back.

const SIZE = 32 * 1024 * 1024;
const BS = 4096;
const KILLS = 50;

/** The bytes of write `gen` at `offset`: the two numbers, then a fill. */
function content(offset: number, gen: number): Uint8Array {
  const b = new Uint8Array(BS).fill((gen * 37 + offset / BS) & 0xff);
  const v = new DataView(b.buffer);
  v.setUint32(0, offset / BS);
  v.setUint32(4, gen);
  return b;
}

const WRITER = `
import { FdFile } from ${JSON.stringify(join(import.meta.dirname, "..", "dist", "src", "storage", "block-file.js"))};
import { VhdImage } from ${JSON.stringify(join(import.meta.dirname, "..", "dist", "src", "storage", "vhd.js"))};
const [path, seedText] = process.argv.slice(2);
const image = VhdImage.open(new FdFile(path, "r+"), { writable: true });
let x = Number(seedText) >>> 0 || 1;
const BS = ${BS};
for (let gen = 1; ; gen++) {
  x ^= x << 13; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
  const offset = (x % (${SIZE} / BS)) * BS;
  const b = new Uint8Array(BS).fill((gen * 37 + offset / BS) & 0xff);
  const v = new DataView(b.buffer);
  v.setUint32(0, offset / BS);
  v.setUint32(4, gen);
  process.stdout.write("begin " + offset + " " + gen + "\\n");
  image.write(offset, b);
  image.flush();
  // Pipes are written synchronously on Linux: once this returns, the parent can read it.
  process.stdout.write("ack " + offset + " " + gen + "\\n");
}
`;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "hvlab-crash-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("crash consistency of block allocation", () => {
  it(`survives ${KILLS} SIGKILLs of the writer mid-write`, async () => {
    const path = join(dir, "crash.vhd");
    VhdImage.create(new FdFile(path, "w+"), {
      type: "dynamic",
      size: SIZE,
      blockSize: 16 * 1024,
    }).close();
    const script = join(dir, "writer.mjs");
    writeFileSync(script, WRITER);
    // What each block must hold: the last acknowledged write, or the one in flight when killed.
    const acked = new Map<number, number>();
    let footerRepairs = 0;
    for (let round = 0; round < KILLS; round++) {
      const child = spawn(process.execPath, [script, path, String(round * 7919 + 1)], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      const lines = createInterface({ input: child.stdout });
      let inFlight: [number, number] | undefined;
      // Killed as it starts its n-th write: mid-allocation, mid-fsync, or between.
      const killAt = 3 + ((round * 13) % 12);
      let begun = 0;
      await new Promise<void>((resolve) => {
        lines.on("line", (line) => {
          const [kind, o, g] = line.split(" ");
          const offset = Number(o);
          const gen = Number(g);
          if (kind === "begin") {
            inFlight = [offset, gen];
            if (++begun === killAt && child.pid) process.kill(child.pid, "SIGKILL");
          } else if (kind === "ack") {
            // Gens restart each round: keep a round-unique number.
            acked.set(offset, round * 1e6 + gen);
            inFlight = undefined;
          }
        });
        child.once("exit", () => resolve());
      });
      const report = checkVhdFile(path);
      expect(report.ok, JSON.stringify(report.problems)).toBe(true);
      if (report.problems.some((p) => p.message.includes("copy at offset 0"))) footerRepairs++;
      const image = openImage(path);
      const got = new Uint8Array(BS);
      for (const [offset, tagged] of acked) {
        image.read(offset, got);
        const want = content(offset, tagged % 1e6);
        if (Buffer.from(got).equals(Buffer.from(want))) continue;
        // The write in flight at the kill may have landed over the acknowledged one.
        const flight = inFlight as [number, number] | undefined;
        if (
          flight &&
          flight[0] === offset &&
          Buffer.from(got).equals(Buffer.from(content(offset, flight[1])))
        ) {
          acked.set(offset, round * 1e6 + flight[1]);
          continue;
        }
        expect.fail(`round ${round}: block at ${offset} lost its acknowledged write`);
      }
      image.close();
    }
    expect(acked.size).toBeGreaterThan(KILLS * 2);
    // Informational: how often the kill fell between the block and its footer.
    console.log(
      `${KILLS} kills, ${acked.size} blocks acknowledged, footer read from its copy after ${footerRepairs}`,
    );
  }, 120_000);
});
