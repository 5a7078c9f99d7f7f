import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GuestStatusError, parseXpWords } from "../src/qemu/guest-status.js";
import { MigrationInfoError, parseMigrationInfo } from "../src/qemu/migrate-info.js";
import { formatQmpAddress, parseQmpAddress, QmpAddressError } from "../src/qemu/qmp-address.js";
import {
  MAX_QMP_LINE,
  parseQmpLine,
  QmpLineReader,
  QmpProtocolError,
} from "../src/qemu/qmp-lines.js";

describe("QMP lines", () => {
  it("tells greetings, returns, errors and events apart (examples from qmp-spec.rst)", () => {
    const reader = new QmpLineReader();
    const out = reader.push(
      '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}\r\n' +
        '{"return": {}, "id": "hvlab-1"}\n' +
        '{"error": {"class": "GenericError", "desc": "Failed to bind socket: Address already in use"}, "id": "hvlab-2"}\n' +
        '{"timestamp": {"seconds": 1700000000, "microseconds": 500}, "event": "MIGRATION", "data": {"status": "active"}}\n{"ret',
    );
    expect(out).toEqual([
      { type: "greeting", version: "7.2.22" },
      { type: "return", id: "hvlab-1", value: {} },
      {
        type: "error",
        id: "hvlab-2",
        errorClass: "GenericError",
        desc: "Failed to bind socket: Address already in use",
      },
      {
        type: "event",
        event: "MIGRATION",
        data: { status: "active" },
        timestampMs: 1_700_000_000_000.5,
      },
    ]);
    // The partial line waits for its end.
    expect(reader.push('urn": 3}\n')).toEqual([{ type: "return", id: undefined, value: 3 }]);
  });

  it("refuses what is not QMP with the line number, and a line without end past the bound", () => {
    expect(() => parseQmpLine("[1]", 4)).toThrow(/line 4 is not a JSON object/);
    expect(() => parseQmpLine("{", 2)).toThrow(/line 2 is not JSON/);
    expect(() => parseQmpLine('{"x": 1}', 9)).toThrow(/line 9 is neither/);
    const reader = new QmpLineReader();
    expect(() => reader.push("x".repeat(MAX_QMP_LINE + 1))).toThrow(QmpProtocolError);
  });

  it("fuzz: any bytes either parse or throw QmpProtocolError, never anything else", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.string(), fc.json(), fc.constant("\n")), { maxLength: 20 }),
        (chunks) => {
          const reader = new QmpLineReader();
          try {
            for (const c of chunks) reader.push(c);
          } catch (error) {
            expect(error).toBeInstanceOf(QmpProtocolError);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("--qmp addresses", () => {
  it("reads unix:PATH and tcp:HOST:PORT, IPv6 in brackets, and writes them back the same", () => {
    for (const text of [
      "unix:/run/vm.qmp",
      "tcp:127.0.0.1:4444",
      "tcp:[::1]:4444",
      "tcp:localhost:1",
    ]) {
      expect(formatQmpAddress(parseQmpAddress(text))).toBe(text);
    }
  });
  it("refuses the rest, saying what is wrong", () => {
    expect(() => parseQmpAddress("unix:")).toThrow(/empty/);
    expect(() => parseQmpAddress(`unix:/${"a".repeat(107)}`)).toThrow(/at most 107/);
    expect(() => parseQmpAddress("tcp:127.0.0.1:0")).toThrow(/port 0/);
    expect(() => parseQmpAddress("tcp:127.0.0.1:65536")).toThrow(/port 65536/);
    expect(() => parseQmpAddress("tcp:127.0.0.1")).toThrow(/not tcp:HOST:PORT/);
    expect(() => parseQmpAddress("/run/vm.qmp")).toThrow(/neither/);
  });
  it("fuzz: any text parses or throws QmpAddressError", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string().map((s) => `tcp:${s}`),
          fc.string().map((s) => `unix:${s}`),
        ),
        (text) => {
          try {
            parseQmpAddress(text);
          } catch (error) {
            expect(error).toBeInstanceOf(QmpAddressError);
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe("HMP xp output and query-migrate answers", () => {
  it("reads xp's words across lines (QEMU 7.2's format)", () => {
    const text =
      "0000000000101000: 0x00000010 0x00000000 0x05f5e100 0x00000000\r\n0000000000101010: 0x00000002 0x00006f00\r\n";
    expect(parseXpWords(text, 6)).toEqual([16, 0, 100_000_000, 0, 2, 0x6f00]);
    expect(() => parseXpWords(text, 5)).toThrow(/6 words, not 5/);
    expect(() => parseXpWords("0000000000101000: Cannot access memory", 1)).toThrow(
      GuestStatusError,
    );
  });
  it("fuzz: xp text parses or throws GuestStatusError; query-migrate parses or throws MigrationInfoError", () => {
    fc.assert(
      fc.property(fc.string(), fc.integer({ min: 0, max: 8 }), (text, n) => {
        try {
          parseXpWords(text, n);
        } catch (error) {
          expect(error).toBeInstanceOf(GuestStatusError);
        }
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        try {
          parseMigrationInfo(value);
        } catch (error) {
          expect(error).toBeInstanceOf(MigrationInfoError);
        }
      }),
      { numRuns: 500 },
    );
  });
  it("keeps QEMU's numbers and drops what is not a number", () => {
    const info = parseMigrationInfo({
      status: "active",
      "total-time": 1200,
      ram: { transferred: 4096, "dirty-sync-count": 3, bogus: "x" },
    });
    expect(info).toEqual({
      status: "active",
      "total-time": 1200,
      ram: { transferred: 4096, "dirty-sync-count": 3 },
    });
    expect(parseMigrationInfo({}).status).toBe("none");
    expect(() => parseMigrationInfo({ status: 3 })).toThrow(/status/);
    expect(() => parseMigrationInfo({ status: "active", downtime: "9" })).toThrow(/downtime/);
  });
});
