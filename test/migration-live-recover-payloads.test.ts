import { describe, expect, it } from "vitest";
import {
  decodePostcopyResume,
  decodeRecoverHello,
  decodeRecvBitmap,
  decodeResumeAck,
  encodeRecvBitmap,
  MAX_RECV_BITMAP_PAGES,
  RECV_BITMAP_END_MARK,
  recvBitmapBytes,
} from "../src/migration/live/messages.js";
import { queryMigrateSummary } from "../src/migration/query-migrate.js";
import type { MigrationSummary } from "../src/migration/stats.js";
import { EMPTY_SUMMARY } from "./support/migration-summary.js";

// Post-copy recovery's payloads byte by byte (docs/migration-live.md,
// "Post-copy recovery"): each refusal names its frame and what was wrong,
// the received-page bitmap is written whole whatever the buffer held
// (QEMU's ramblock_recv_bitmap_send: the size, the bitmap's little-endian
// bits, RAMBLOCK_RECV_BITMAP_ENDING), and the run's recovery counts reach
// query-migrate under hvlab.

function payload(bytes: number, fill = 0): DataView {
  return new DataView(new Uint8Array(bytes).fill(fill).buffer);
}

describe("post-copy recovery's fixed-size payloads", () => {
  it("refuse any other length, naming the frame", () => {
    expect(() => decodeRecoverHello(payload(7))).toThrow(
      "recover-hello frame: payload of 7 bytes, expected 8",
    );
    expect(() => decodePostcopyResume(payload(9))).toThrow(
      "postcopy-resume frame: payload of 9 bytes, expected 8",
    );
    expect(() => decodeResumeAck(payload(0))).toThrow(
      "resume-ack frame: payload of 0 bytes, expected 8",
    );
  });

  it("postcopy-resume refuses a reserved word that is not zero", () => {
    const view = payload(8);
    view.setUint32(0, 5, true);
    expect(decodePostcopyResume(view)).toBe(5);
    view.setUint8(7, 1);
    expect(() => decodePostcopyResume(view)).toThrow(
      "postcopy-resume frame: reserved field is not zero",
    );
  });
});

describe("the received-page bitmap", () => {
  it("is written whole over a buffer that held other bytes: only the received pages' bits set", () => {
    const pages = 70;
    const bytes = recvBitmapBytes(pages);
    expect(bytes).toBe(16 + 2 * 8);
    const view = payload(bytes, 0xff);
    expect(encodeRecvBitmap(view, pages, (page) => page === 0 || page === 9 || page === 69)).toBe(
      bytes,
    );
    const bitmap = [...new Uint8Array(view.buffer, 8, bytes - 16)];
    // Page p is bit p & 7 of byte p >> 3: pages 0, 9 and 69.
    expect(bitmap).toEqual([0x01, 0x02, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0]);
    expect(view.getUint32(0, true)).toBe(pages);
    expect(view.getUint32(4, true)).toBe(0);
    expect(view.getBigUint64(bytes - 8, true)).toBe(RECV_BITMAP_END_MARK);
    expect(decodeRecvBitmap(view)).toEqual({ pages, bits: Uint8Array.from(bitmap) });
  });

  it("refuses a payload shorter than its count and end mark, then a count out of range, each by name", () => {
    expect(() => decodeRecvBitmap(payload(15))).toThrow(
      "recv-bitmap frame: payload of 15 bytes, at least 16",
    );
    // Sixteen bytes hold a count and an end mark: the count is checked next.
    expect(() => decodeRecvBitmap(payload(16))).toThrow(
      `recv-bitmap frame: 0 pages is not from 1 to ${MAX_RECV_BITMAP_PAGES}`,
    );
    const tooMany = payload(16);
    tooMany.setUint32(0, MAX_RECV_BITMAP_PAGES + 1, true);
    expect(() => decodeRecvBitmap(tooMany)).toThrow(
      `recv-bitmap frame: ${MAX_RECV_BITMAP_PAGES + 1} pages is not from 1 to ${MAX_RECV_BITMAP_PAGES}`,
    );
  });

  it("refuses a reserved word that is not zero, by name", () => {
    const view = payload(recvBitmapBytes(8));
    encodeRecvBitmap(view, 8, () => true);
    view.setUint8(5, 1);
    expect(() => decodeRecvBitmap(view)).toThrow("recv-bitmap frame: reserved field is not zero");
  });
});

describe("query-migrate of a run that recovered", () => {
  it("carries the recovery's counts under hvlab, as the run counted them", () => {
    const recovery = {
      pauses: 2,
      "paused-ms": 812,
      "rerequested-pages": 3,
      "pages-left": [900, 410],
      "bytes-after-resume": 5_570_560,
    };
    const summary = {
      ...EMPTY_SUMMARY,
      mode: "content",
      policy: "qemu",
      "postcopy-recovery": recovery,
      verified: true,
    } satisfies MigrationSummary;
    const hvlab = queryMigrateSummary({ rounds: [], summary }, 4096).hvlab;
    expect(hvlab["postcopy-recovery"]).toEqual(recovery);
    expect(Object.keys(hvlab)).toContain("postcopy-recovery");
  });
});
