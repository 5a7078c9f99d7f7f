import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { TraceFormatError } from "./errors.js";

/** Bytes of a trace's head that sniffing reads (the longest magic, xz's, is 6). */
const HEAD_BYTES = 6;
/** How long a trace server may stay silent (connecting, answering, between chunks) by default, ms. */
export const DEFAULT_TRACE_TIMEOUT_MS = 30_000;
/** Most bytes read from a trace URL by default: 64 GiB on the wire. */
export const DEFAULT_MAX_TRACE_URL_BYTES = 64 * 1024 ** 3;
/** Redirects followed before a URL is refused (curl's and browsers' limits are 20-50; 5 is plenty). */
const MAX_REDIRECTS = 5;

/** Options of {@link openTraceSource}. */
export interface TraceSourceOptions {
  /** How long a server may stay silent, ms (default {@link DEFAULT_TRACE_TIMEOUT_MS}). */
  readonly timeoutMs?: number;
  /** Most bytes a URL may send (default {@link DEFAULT_MAX_TRACE_URL_BYTES}). */
  readonly maxBytes?: number;
  /**
   * Certificates trusted for https besides the system's (PEM). The command
   * line has none: there, NODE_EXTRA_CA_CERTS adds a private CA.
   */
  readonly ca?: string | Buffer;
}

/** A trace's bytes, from a file or a URL. */
export interface TraceSource {
  /** Bytes the source announces (the file's size, a URL's Content-Length), or null when unknown. */
  readonly totalBytes: number | null;
  /** The first bytes (up to {@link HEAD_BYTES}), for sniffing the compression. */
  readonly head: Buffer;
  /** Every byte, the head included, in chunks of up to about 1 MiB. */
  readonly stream: Readable;
}

/** True when `location` names a trace on a web server (http: or https:). */
export function isTraceUrl(location: string): boolean {
  return /^https?:\/\//i.test(location);
}

/**
 * Opens a trace named by a path, a file: URL or an http(s) URL. A URL is
 * fetched once and streamed, never held whole: its Content-Length (when it
 * sends one) is checked against `maxBytes` before its body is read, and the
 * body is cut off with an error past it. Every failure is one line naming
 * the location: a missing file, an HTTP status other than 200, a server
 * silent for `timeoutMs`, a certificate that is not trusted.
 *
 * @throws TraceFormatError (unit "file") saying what went wrong.
 */
export async function openTraceSource(
  location: string,
  options: TraceSourceOptions = {},
): Promise<TraceSource> {
  if (isTraceUrl(location)) return openUrl(location, options);
  const file = /^file:/i.test(location) ? fileURLToPath(location) : location;
  let totalBytes: number;
  try {
    const info = await stat(file);
    if (info.isDirectory())
      throw new TraceFormatError(location, 0, "is a directory, not a trace file", "file");
    totalBytes = info.size;
  } catch (error) {
    if (error instanceof TraceFormatError) throw error;
    throw new TraceFormatError(location, 0, `cannot open: ${(error as Error).message}`, "file");
  }
  const head = await new Promise<Buffer>((resolve, reject) => {
    const probe = createReadStream(file, { start: 0, end: HEAD_BYTES - 1 });
    const parts: Buffer[] = [];
    probe.on("data", (c) => parts.push(c as Buffer));
    probe.on("end", () => resolve(Buffer.concat(parts)));
    probe.on("error", reject);
  });
  return { totalBytes, head, stream: createReadStream(file, { highWaterMark: 1 << 20 }) };
}

/** Why a request failed, in words a user can act on. */
function describe(error: NodeJS.ErrnoException, timeoutMs: number): string {
  const code = error.code ?? "";
  if (code === "ETIMEDOUT") return `no answer in ${timeoutMs / 1000} s`;
  if (
    /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_TLS|ERR_SSL|EPROTO/.test(code) ||
    /certificate/i.test(error.message)
  ) {
    return `TLS: ${error.message} (${code}): the server's certificate is not trusted here (a private CA is added with NODE_EXTRA_CA_CERTS=ca.pem)`;
  }
  return `cannot fetch: ${error.message}${code && !error.message.includes(code) ? ` (${code})` : ""}`;
}

/** Sends a GET and waits for its answer's head, following redirects. */
function get(
  url: URL,
  name: string,
  options: TraceSourceOptions,
  timeoutMs: number,
  redirects: number,
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    const fail = (error: NodeJS.ErrnoException) =>
      reject(new TraceFormatError(name, 0, describe(error, timeoutMs), "file"));
    const req = send(url, {
      method: "GET",
      headers: { "user-agent": "hvlab", accept: "*/*" },
      ...(options.ca !== undefined && url.protocol === "https:" ? { ca: options.ca } : {}),
    });
    // The socket's idle timer: connecting, waiting for the answer, and between chunks of the body.
    let answer: IncomingMessage | undefined;
    req.setTimeout(timeoutMs, () => {
      const error: NodeJS.ErrnoException = new Error(`no answer in ${timeoutMs / 1000} s`);
      error.code = "ETIMEDOUT";
      // The body's reader is told why, not only that the connection was reset.
      answer?.destroy(error);
      req.destroy(error);
    });
    req.once("error", fail);
    req.once("response", (res) => {
      answer = res;
      const status = res.statusCode ?? 0;
      const next = res.headers.location;
      if ([301, 302, 303, 307, 308].includes(status) && next) {
        res.resume();
        if (redirects >= MAX_REDIRECTS) {
          reject(new TraceFormatError(name, 0, `more than ${MAX_REDIRECTS} redirects`, "file"));
          return;
        }
        const to = new URL(next, url);
        if (to.protocol !== "http:" && to.protocol !== "https:") {
          reject(
            new TraceFormatError(name, 0, `redirected to ${to.protocol} (only http(s))`, "file"),
          );
          return;
        }
        get(to, name, options, timeoutMs, redirects + 1).then(resolve, reject);
        return;
      }
      if (status !== 200) {
        res.resume();
        reject(
          new TraceFormatError(
            name,
            0,
            `HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ""}`,
            "file",
          ),
        );
        return;
      }
      resolve(res);
    });
    req.end();
  });
}

async function openUrl(location: string, options: TraceSourceOptions): Promise<TraceSource> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TRACE_TIMEOUT_MS;
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_TRACE_URL_BYTES;
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    throw new TraceFormatError(location, 0, "is not a valid URL", "file");
  }
  // A URL's password would be printed with every message about it: refuse it.
  if (url.password !== "") {
    throw new TraceFormatError(
      `${url.protocol}//${url.host}${url.pathname}`,
      0,
      "carries a password; serve the trace without one (hvlab prints trace locations)",
      "file",
    );
  }
  const res = await get(url, location, options, timeoutMs, 0);
  const announced = res.headers["content-length"];
  const totalBytes = announced !== undefined && /^\d+$/.test(announced) ? Number(announced) : null;
  if (totalBytes !== null && totalBytes > maxBytes) {
    res.destroy();
    throw new TraceFormatError(
      location,
      0,
      `is ${totalBytes} bytes, more than the ${maxBytes} hvlab reads from a URL`,
      "file",
    );
  }
  const failed = (error: Error) =>
    error instanceof TraceFormatError
      ? error
      : new TraceFormatError(location, 0, describe(error, timeoutMs), "file");
  // The head is read from the body itself (a URL cannot be read twice), then handed on first.
  const body = res[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const first: Buffer[] = [];
  let got = 0;
  try {
    while (got < HEAD_BYTES) {
      const next = await body.next();
      if (next.done) break;
      first.push(next.value);
      got += next.value.length;
    }
  } catch (error) {
    throw failed(error as Error);
  }
  const head = Buffer.concat(first).subarray(0, HEAD_BYTES);
  async function* chunks(): AsyncGenerator<Buffer> {
    let read = 0;
    const count = (chunk: Buffer) => {
      read += chunk.length;
      if (read > maxBytes) {
        throw new TraceFormatError(
          location,
          0,
          `sent more than the ${maxBytes} bytes hvlab reads from a URL`,
          "file",
        );
      }
      return chunk;
    };
    try {
      for (const chunk of first) yield count(chunk);
      for (let next = await body.next(); !next.done; next = await body.next()) {
        yield count(next.value);
      }
      if (totalBytes !== null && read < totalBytes) {
        throw new TraceFormatError(
          location,
          0,
          `the server closed after ${read} of the ${totalBytes} bytes it announced`,
          "file",
        );
      }
    } catch (error) {
      throw failed(error as Error);
    } finally {
      // Read to its end, or given up by the reader: either way the connection is done with.
      res.destroy();
    }
  }
  return { totalBytes, head, stream: Readable.from(chunks(), { objectMode: false }) };
}
