/*
 * QMP's wire format (QEMU docs/interop/qmp-spec.rst): one JSON object per
 * line. The server greets with {"QMP": ...}, answers each command with
 * {"return": ...} or {"error": {"class", "desc"}} (echoing "id"), and sends
 * {"event", "data", "timestamp"} whenever something happens.
 */

/** A line longer than this is refused: no QMP answer hvlab asks for comes near it. */
export const MAX_QMP_LINE = 1 << 20;

/** A message from the server, told apart by its key. */
export type QmpMessage =
  | { readonly type: "greeting"; readonly version: string }
  | { readonly type: "return"; readonly id: string | undefined; readonly value: unknown }
  | {
      readonly type: "error";
      readonly id: string | undefined;
      readonly errorClass: string;
      readonly desc: string;
    }
  | {
      readonly type: "event";
      readonly event: string;
      readonly data: unknown;
      readonly timestampMs: number | undefined;
    };

/** Bytes from the server that are not QMP: says what and where. */
export class QmpProtocolError extends Error {
  override name = "QmpProtocolError";
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function idOf(record: Record<string, unknown>): string | undefined {
  const id = record.id;
  return typeof id === "string" ? id : id === undefined ? undefined : JSON.stringify(id);
}

/** Reads one line of QMP (without its newline) as a message. */
export function parseQmpLine(line: string, lineNumber: number): QmpMessage {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new QmpProtocolError(`QMP line ${lineNumber} is not JSON: ${line.slice(0, 80)}`);
  }
  if (!isRecord(value)) throw new QmpProtocolError(`QMP line ${lineNumber} is not a JSON object`);
  if ("QMP" in value) {
    const qmp = value.QMP;
    const v = isRecord(qmp) && isRecord(qmp.version) ? qmp.version.qemu : undefined;
    const version = isRecord(v) ? `${String(v.major)}.${String(v.minor)}.${String(v.micro)}` : "?";
    return { type: "greeting", version };
  }
  if ("return" in value) return { type: "return", id: idOf(value), value: value.return };
  if ("error" in value) {
    const error = value.error;
    if (!isRecord(error))
      throw new QmpProtocolError(`QMP line ${lineNumber}: "error" is not an object`);
    return {
      type: "error",
      id: idOf(value),
      errorClass: typeof error.class === "string" ? error.class : "GenericError",
      desc: typeof error.desc === "string" ? error.desc : JSON.stringify(error),
    };
  }
  if (typeof value.event === "string") {
    const ts = value.timestamp;
    const timestampMs =
      isRecord(ts) && typeof ts.seconds === "number" && typeof ts.microseconds === "number"
        ? ts.seconds * 1000 + ts.microseconds / 1000
        : undefined;
    return { type: "event", event: value.event, data: value.data, timestampMs };
  }
  throw new QmpProtocolError(
    `QMP line ${lineNumber} is neither a greeting, a return, an error nor an event`,
  );
}

/** Splits a byte stream into QMP messages, bounding each line. */
export class QmpLineReader {
  private pending = "";
  private lines = 0;

  /** Feeds bytes; returns every message completed by them. */
  push(chunk: string): QmpMessage[] {
    this.pending += chunk;
    const out: QmpMessage[] = [];
    for (;;) {
      const end = this.pending.indexOf("\n");
      if (end < 0) break;
      const line = this.pending.slice(0, end).trim();
      this.pending = this.pending.slice(end + 1);
      this.lines++;
      if (line !== "") out.push(parseQmpLine(line, this.lines));
    }
    if (this.pending.length > MAX_QMP_LINE)
      throw new QmpProtocolError(
        `QMP line ${this.lines + 1} is longer than ${MAX_QMP_LINE} bytes without a newline`,
      );
    return out;
  }
}
