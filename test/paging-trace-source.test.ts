import { once } from "node:events";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TraceFormatError } from "../src/paging/errors.js";
import {
  DEFAULT_MAX_TRACE_URL_BYTES,
  DEFAULT_TRACE_TIMEOUT_MS,
  isTraceUrl,
  openTraceSource,
} from "../src/paging/trace-source.js";
import { fileTempDir } from "./support/temp.js";

// Where a trace's bytes come from: a path, a file: URL, or an http URL
// served here on loopback (RFC 9110 section 15.4: 301, 302, 303, 307 and
// 308 redirect with a Location; section 8.6: Content-Length). What is
// checked is the source itself, its head for sniffing, its announced size
// and every refusal's one line; the trace parser's view is
// test/paging-trace-url.test.ts's.
const BODY = Buffer.from("I  04000000,4\n S 7ff000100,8\n L 0badc0de,4\n".repeat(200));

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

describe("a trace in a file", () => {
  const dir = fileTempDir("trace-source");

  it("gives its size, its first six bytes and all its bytes, by path or file: URL", async () => {
    const path = join(dir, "t.lackey");
    await writeFile(path, BODY);
    for (const location of [
      path,
      pathToFileURL(path).href,
      pathToFileURL(path).href.replace("file:", "FILE:"),
    ]) {
      const source = await openTraceSource(location);
      expect(source.totalBytes).toBe(BODY.length);
      expect(source.head).toEqual(BODY.subarray(0, 6));
      expect(await readAll(source.stream)).toEqual(BODY);
    }
  });

  it("gives a file shorter than six bytes whole as its head, and an empty one as none", async () => {
    await writeFile(join(dir, "short"), "I 1");
    await writeFile(join(dir, "empty"), "");
    const short = await openTraceSource(join(dir, "short"));
    expect(short).toMatchObject({ totalBytes: 3, head: Buffer.from("I 1") });
    const empty = await openTraceSource(join(dir, "empty"));
    expect(empty).toMatchObject({ totalBytes: 0, head: Buffer.alloc(0) });
    short.stream.destroy();
    empty.stream.destroy();
  });

  it("refuses a directory and a missing file in one line naming the location", async () => {
    await mkdir(join(dir, "sub"), { recursive: true });
    await expect(openTraceSource(join(dir, "sub"))).rejects.toThrow(
      new TraceFormatError(join(dir, "sub"), 0, "is a directory, not a trace file", "file"),
    );
    const missing = join(dir, "nothing.gz");
    const error = await openTraceSource(missing).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TraceFormatError);
    expect((error as TraceFormatError).message).toMatch(
      new RegExp(`^${missing.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: cannot open: ENOENT`),
    );
  });
});

describe("a trace named by URL", () => {
  it("is told from a path by its http: or https: scheme, in any case", () => {
    for (const url of ["http://h/t", "https://h/t", "HTTP://h/t", "Https://h/t"]) {
      expect(isTraceUrl(url), url).toBe(true);
    }
    for (const path of [
      "t.lackey",
      "file:///t",
      "ftp://h/t",
      "xhttp://h/t",
      "http:/h/t",
      "/http://h",
    ]) {
      expect(isTraceUrl(path), path).toBe(false);
    }
  });

  it("has a 30 s silence limit and a 64 GiB size limit by default", () => {
    expect(DEFAULT_TRACE_TIMEOUT_MS).toBe(30_000);
    expect(DEFAULT_MAX_TRACE_URL_BYTES).toBe(64 * 2 ** 30);
  });

  let server: Server;
  let base = "";
  const routes = new Map<string, Handler>();
  const agents: string[] = [];
  beforeAll(async () => {
    routes.set("/sized", (req, res) => {
      agents.push(`${req.method} ${req.headers["user-agent"]} ${req.headers.accept}`);
      res.writeHead(200, { "content-length": BODY.length });
      // One byte at a time first: the head is gathered across chunks.
      for (let at = 0; at < 8; at++) res.write(BODY.subarray(at, at + 1));
      res.end(BODY.subarray(8));
    });
    routes.set("/chunked", (_, res) => {
      res.writeHead(200);
      res.end(BODY);
    });
    routes.set("/tiny", (_, res) => {
      res.writeHead(200, { "content-length": 2 });
      res.end("I ");
    });
    for (const status of [301, 302, 303, 307, 308]) {
      routes.set(`/moved-${status}`, (_, res) => {
        res.writeHead(status, { location: "/sized" });
        res.end();
      });
    }
    routes.set("/relative", (_, res) => {
      res.writeHead(302, { location: "moved-302" });
      res.end();
    });
    for (let hop = 1; hop <= 6; hop++) {
      routes.set(`/hop-${hop}`, (_, res) => {
        res.writeHead(307, { location: hop === 1 ? "/sized" : `/hop-${hop - 1}` });
        res.end();
      });
    }
    routes.set("/to-ftp", (_, res) => {
      res.writeHead(302, { location: "ftp://127.0.0.1/t" });
      res.end();
    });
    routes.set("/no-location", (_, res) => {
      res.writeHead(302);
      res.end("not a trace");
    });
    routes.set("/teapot", (_, res) => {
      res.writeHead(418, "I'm a teapot");
      res.end();
    });
    routes.set("/bare-status", (_, res) => {
      // A status line with no reason phrase.
      res.writeHead(503, "");
      res.end();
    });
    routes.set("/exact", (_, res) => {
      res.writeHead(200, { "content-length": 100 });
      res.end(BODY.subarray(0, 100));
    });
    routes.set("/short", (req, res) => {
      res.writeHead(200, { "content-length": BODY.length });
      res.write(BODY.subarray(0, 1000));
      setTimeout(() => req.socket.destroy(), 20);
    });
    server = createServer((req, res) => {
      const handler = routes.get(req.url ?? "");
      if (handler) handler(req, res);
      else {
        res.writeHead(404, "Not Found");
        res.end();
      }
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  it("is fetched once with a GET, its size announced, its head gathered across chunks", async () => {
    agents.length = 0;
    const source = await openTraceSource(`${base}/sized`);
    expect(source.totalBytes).toBe(BODY.length);
    expect(source.head).toEqual(BODY.subarray(0, 6));
    expect(await readAll(source.stream)).toEqual(BODY);
    expect(agents).toEqual(["GET hvlab */*"]);
  });

  it("has no size when the server announces none", async () => {
    for (const path of ["/chunked"]) {
      const source = await openTraceSource(`${base}${path}`);
      expect(source.totalBytes, path).toBeNull();
      expect(source.head).toEqual(BODY.subarray(0, 6));
      expect(await readAll(source.stream)).toEqual(BODY);
    }
  });

  it("gives a body shorter than six bytes whole as its head", async () => {
    const source = await openTraceSource(`${base}/tiny`);
    expect(source).toMatchObject({ totalBytes: 2, head: Buffer.from("I ") });
    expect(await readAll(source.stream)).toEqual(Buffer.from("I "));
  });

  it("follows each kind of redirect, relative ones too, up to five in a row", async () => {
    for (const path of [
      "/moved-301",
      "/moved-302",
      "/moved-303",
      "/moved-307",
      "/moved-308",
      "/relative",
      "/hop-5",
    ]) {
      const source = await openTraceSource(`${base}${path}`);
      expect(await readAll(source.stream), path).toEqual(BODY);
    }
    await expect(openTraceSource(`${base}/hop-6`)).rejects.toThrow(
      new TraceFormatError(`${base}/hop-6`, 0, "more than 5 redirects", "file"),
    );
  });

  it("refuses a redirect away from http(s), and a redirect without a Location is its status", async () => {
    await expect(openTraceSource(`${base}/to-ftp`)).rejects.toThrow(
      new TraceFormatError(`${base}/to-ftp`, 0, "redirected to ftp: (only http(s))", "file"),
    );
    await expect(openTraceSource(`${base}/no-location`)).rejects.toThrow(
      new TraceFormatError(`${base}/no-location`, 0, "HTTP 302 Found", "file"),
    );
  });

  it("says the status a server answered, with its reason when it gives one", async () => {
    await expect(openTraceSource(`${base}/teapot`)).rejects.toThrow(
      new TraceFormatError(`${base}/teapot`, 0, "HTTP 418 I'm a teapot", "file"),
    );
    await expect(openTraceSource(`${base}/bare-status`)).rejects.toThrow(
      new TraceFormatError(`${base}/bare-status`, 0, "HTTP 503", "file"),
    );
  });

  it("takes a body of exactly the bytes allowed and refuses one byte less allowed", async () => {
    const exact = await openTraceSource(`${base}/exact`, { maxBytes: 100 });
    expect((await readAll(exact.stream)).length).toBe(100);
    await expect(openTraceSource(`${base}/exact`, { maxBytes: 99 })).rejects.toThrow(
      new TraceFormatError(
        `${base}/exact`,
        0,
        "is 100 bytes, more than the 99 hvlab reads from a URL",
        "file",
      ),
    );
    // Unannounced: counted while read, the head's bytes included.
    const chunked = await openTraceSource(`${base}/chunked`, { maxBytes: BODY.length });
    expect((await readAll(chunked.stream)).length).toBe(BODY.length);
    const over = await openTraceSource(`${base}/chunked`, { maxBytes: BODY.length - 1 });
    await expect(readAll(over.stream)).rejects.toThrow(
      new TraceFormatError(
        `${base}/chunked`,
        0,
        `sent more than the ${BODY.length - 1} bytes hvlab reads from a URL`,
        "file",
      ),
    );
  });

  it("notices a body cut short of its announced length", async () => {
    // Node's parser ends such a body with an error (it never ends it quietly short).
    const source = await openTraceSource(`${base}/short`);
    await expect(readAll(source.stream)).rejects.toThrow(
      new TraceFormatError(`${base}/short`, 0, "cannot fetch: aborted (ECONNRESET)", "file"),
    );
  });

  it("refuses a URL that does not parse, and one with a password without printing it", async () => {
    await expect(openTraceSource("http://[bad")).rejects.toThrow(
      new TraceFormatError("http://[bad", 0, "is not a valid URL", "file"),
    );
    const error = await openTraceSource("http://user:secret@127.0.0.1:9/t.gz").catch(
      (e: unknown) => e,
    );
    expect(error).toEqual(
      new TraceFormatError(
        "http://127.0.0.1:9/t.gz",
        0,
        "carries a password; serve the trace without one (hvlab prints trace locations)",
        "file",
      ),
    );
  });

  it("says a server that never answers gave no answer in the time allowed", async () => {
    const silent = createServer(() => {});
    silent.listen(0, "127.0.0.1");
    await once(silent, "listening");
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/t`;
    try {
      await expect(openTraceSource(url, { timeoutMs: 150 })).rejects.toThrow(
        new TraceFormatError(url, 0, "no answer in 0.15 s", "file"),
      );
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  it("names a refused connection's error code once", async () => {
    const closed = createServer();
    closed.listen(0, "127.0.0.1");
    await once(closed, "listening");
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/t`;
    closed.close();
    const error = (await openTraceSource(url).catch((e: unknown) => e)) as Error;
    expect(error).toBeInstanceOf(TraceFormatError);
    expect(error.message).toMatch(
      new RegExp(
        `^${url.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: cannot fetch: connect ECONNREFUSED 127\\.0\\.0\\.1:\\d+$`,
      ),
    );
  });
});
