import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { TraceFormatError } from "../src/paging/errors.js";
import { type RecordBuffer, streamTrace, type TraceProgress } from "../src/paging/trace.js";
import { fileTempDir } from "./support/temp.js";

/*
 * Streaming a trace file: gzip by its magic bytes 1f 8b (RFC 1952 section
 * 2.3.1, ID1 and ID2), the format named or guessed, records handed to the
 * sink in batches that are never empty, progress by bytes read, and the
 * errors a whole trace can end in.
 */

const dir = fileTempDir("trace-stream");

function file(name: string, bytes: string | Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

/** Streams a file, keeping each batch's record count. */
async function stream(path: string, options: Parameters<typeof streamTrace>[2] = {}) {
  const batches: number[] = [];
  const summary = await streamTrace(
    path,
    (records: RecordBuffer) => {
      batches.push(records.count);
    },
    options,
  );
  return { summary, batches };
}

async function refusal(path: string, options: Parameters<typeof streamTrace>[2] = {}) {
  try {
    await stream(path, options);
  } catch (error) {
    expect(error).toBeInstanceOf(TraceFormatError);
    return (error as Error).message;
  }
  throw new Error(`${path} was taken`);
}

describe("streaming a trace", () => {
  it("takes gzip by both magic bytes only", async () => {
    const text = "R 1000\nW 2000\n";
    expect((await stream(file("a.trace", text))).summary.gzip).toBe(false);
    expect((await stream(file("a.trace.gz", gzipSync(text)))).summary).toMatchObject({
      gzip: true,
      records: 2,
    });
    // 1f without 8b, and 8b without 1f: text, read as such.
    const first = await stream(file("b.trace", "\x1f\nR 1000\n"), {
      format: "plain",
      lenient: true,
    });
    expect(first.summary).toMatchObject({ gzip: false, records: 1, skipped: 1 });
    const second = await stream(
      file("c.trace", Buffer.from([0x23, 0x8b, 0x0a, 0x52, 0x20, 0x31, 0x0a])),
      {
        format: "plain",
      },
    );
    expect(second.summary).toMatchObject({ gzip: false, records: 1 });
  });

  it("reads the format named, and guesses it only for auto or none", async () => {
    const path = file("mixed.trace", "I  1000,4\nR 2000\n");
    for (const format of [undefined, "auto"] as const) {
      const guessed = await stream(path, { lenient: true, ...(format ? { format } : {}) });
      expect(guessed.summary).toMatchObject({ format: "lackey", records: 1, skipped: 1 });
    }
    const plain = await stream(path, { format: "plain", lenient: true });
    expect(plain.summary).toMatchObject({ format: "plain", records: 1, skipped: 1 });
  });

  it("hands the sink non-empty batches, the last line's record too, and counts them all", async () => {
    const { summary, batches } = await stream(file("end.trace", "# head\nR 1000\nW 2000"));
    expect(summary.records).toBe(2);
    expect(batches).toEqual([1, 1]);
    const ended = await stream(file("ended.trace", "R 1000\nW 2000\n"));
    expect(ended.batches).toEqual([2]);
  });

  it("reports progress as bytes read of the file's size, and records so far", async () => {
    const text = "R 1000\nW 2000\nR 3000\n";
    const seen: TraceProgress[] = [];
    await stream(file("progress.trace", text), { onProgress: (p) => seen.push(p) });
    expect(seen.at(-1)).toEqual({ bytesRead: text.length, totalBytes: text.length, records: 3 });
  });

  it("keeps a parser's error as it is, and names a read that failed", async () => {
    const bad = await refusal(file("bad.trace", "R 1000\nX 2000\n"));
    expect(bad).toMatch(/bad\.trace:2: expected 'R' or 'W'/);
    expect(bad).not.toMatch(/cannot read/);
    const cut = gzipSync("R 1000\n".repeat(1000)).subarray(0, 40);
    expect(await refusal(file("cut.trace.gz", cut))).toMatch(/cut\.trace\.gz: cannot read: /);
  });

  it("refuses a trace with no record, saying whether lines were skipped", async () => {
    expect(await refusal(file("empty.trace", "# only a comment\n"))).toMatch(
      /empty\.trace: no memory accesses: the trace is empty or holds only comments$/,
    );
    expect(
      await refusal(file("skipped.trace", "X 1\nY 2\n"), { format: "plain", lenient: true }),
    ).toMatch(/skipped\.trace: no memory accesses: all 2 lines or records were skipped$/);
  });
});
