import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RecordBuffer, streamTrace, type TraceSummary } from "../src/paging/trace.js";
import { hvlabAsync, requireTool } from "./support/cli.js";
import { fileTempDir } from "./support/temp.js";

// Traces named by http(s) URL: fetched from real servers on loopback,
// streamed (gzip too), bounded, and every failure a one-line error.
const fixture = join(import.meta.dirname, "fixtures", "touch.lackey.gz");
const gz = readFileSync(fixture);
const plain = gunzipSync(gz);

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** Every record word of a trace and its summary, read through {@link streamTrace}. */
async function readAll(
  location: string,
  options: Parameters<typeof streamTrace>[2] = {},
): Promise<{ words: number[]; summary: TraceSummary }> {
  const words: number[] = [];
  const summary = await streamTrace(
    location,
    (records: RecordBuffer) => {
      for (const word of records.words.subarray(0, records.count * 2)) words.push(word);
    },
    options,
  );
  return { words, summary };
}

async function listen(server: Server): Promise<string> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("a trace named by an http URL", () => {
  let server: Server;
  let base = "";
  const routes = new Map<string, Handler>();
  beforeAll(async () => {
    routes.set("/touch.lackey.gz", (_, res) => {
      res.writeHead(200, { "content-length": gz.length });
      // In small pieces, so that the head is gathered across chunks.
      for (let at = 0; at < gz.length; at += 3000) res.write(gz.subarray(at, at + 3000));
      res.end();
    });
    routes.set("/touch.lackey", (_, res) => {
      // Chunked: no Content-Length, as a server streaming a file it compresses on the fly.
      res.writeHead(200);
      res.end(plain);
    });
    routes.set("/moved", (_, res) => {
      res.writeHead(302, { location: "/touch.lackey.gz" });
      res.end();
    });
    routes.set("/loop", (_, res) => {
      res.writeHead(301, { location: "/loop" });
      res.end();
    });
    routes.set("/silent", () => {});
    routes.set("/stalls", (_, res) => {
      res.writeHead(200, { "content-length": plain.length });
      res.write(plain.subarray(0, 5000));
    });
    routes.set("/short", (req, res) => {
      res.writeHead(200, { "content-length": plain.length });
      res.write(plain.subarray(0, 5000));
      setTimeout(() => req.socket.destroy(), 20);
    });
    routes.set("/huge", (_, res) => {
      res.writeHead(200, { "content-length": 1e12 });
      res.write("R 1000\n");
    });
    server = createServer((req, res) => {
      const handler = routes.get(req.url ?? "");
      if (handler) handler(req, res);
      else {
        res.writeHead(404, "Not Found");
        res.end();
      }
    });
    base = `http://${await listen(server)}`;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  it("reads the same records as the file, gzip or plain, with or without a length", async () => {
    const file = await readAll(fixture);
    const viaGzip = await readAll(`${base}/touch.lackey.gz`);
    const viaPlain = await readAll(`${base}/touch.lackey`);
    expect(file.words.length).toBeGreaterThan(1000);
    expect(viaGzip.words).toEqual(file.words);
    expect(viaPlain.words).toEqual(file.words);
    expect(viaGzip.summary).toEqual(file.summary);
    expect(viaPlain.summary).toMatchObject({ gzip: false, bytes: plain.length });
    expect(viaPlain.summary.records).toBe(file.summary.records);
  });

  it("follows a redirect, but not for ever", async () => {
    expect((await readAll(`${base}/moved`)).words.length).toBeGreaterThan(1000);
    await expect(readAll(`${base}/loop`)).rejects.toThrow(/\/loop: more than 5 redirects/);
  });

  it("says which status a server answered", async () => {
    await expect(readAll(`${base}/nothing-here.gz`)).rejects.toThrow(
      new RegExp(`^${base}/nothing-here.gz: HTTP 404 Not Found$`),
    );
  });

  it("gives up on a server silent before or during the body", async () => {
    await expect(readAll(`${base}/silent`, { timeoutMs: 200 })).rejects.toThrow(
      /\/silent: no answer in 0.2 s/,
    );
    await expect(readAll(`${base}/stalls`, { timeoutMs: 200 })).rejects.toThrow(
      /\/stalls: no answer in 0.2 s/,
    );
  });

  it("notices a body cut short of its announced length", async () => {
    await expect(readAll(`${base}/short`)).rejects.toThrow(/\/short: /);
  });

  it("bounds the bytes before reading them, and while reading them", async () => {
    await expect(readAll(`${base}/huge`)).rejects.toThrow(
      /\/huge: is 1000000000000 bytes, more than the \d+ hvlab reads from a URL/,
    );
    await expect(readAll(`${base}/touch.lackey`, { maxBytes: 10_000 })).rejects.toThrow(
      /\/touch.lackey: sent more than the 10000 bytes hvlab reads from a URL/,
    );
  });

  it("refuses a connection nobody answers, and a URL with a password, in one line", async () => {
    const closed = createServer();
    const where = await listen(closed);
    closed.close();
    await expect(readAll(`http://${where}/t.gz`)).rejects.toThrow(/cannot fetch: .*ECONNREFUSED/);
    await expect(readAll(`http://user:secret@${where}/t.gz`)).rejects.toThrow(/carries a password/);
    await expect(readAll(`http://user:secret@${where}/t.gz`)).rejects.not.toThrow(/secret/);
  });

  it("runs hvlab paging compare on a URL as on the file", async () => {
    const args = ["paging", "compare", "--guest", "4GiB", "--threads", "1", "--json"];
    const [local, far] = await Promise.all([
      hvlabAsync([...args, "--trace", fixture]),
      hvlabAsync([...args, "--trace", `${base}/touch.lackey.gz`]),
    ]);
    expect(local.code, local.stderr).toBe(0);
    expect(far.code, far.stderr).toBe(0);
    const l = JSON.parse(local.stdout) as { source: string };
    const d = JSON.parse(far.stdout) as { source: string };
    expect(d.source).toBe(`${base}/touch.lackey.gz`);
    expect({ ...d, source: fixture }).toEqual(l);
  }, 120_000);
});

describe.skipIf(!requireTool("openssl"))("a trace named by an https URL", () => {
  const dir = fileTempDir("trace-https");
  let server: Server;
  let base = "";
  let cert: Buffer;
  beforeAll(async () => {
    // A self-signed certificate for the loopback address, made for this test.
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-keyout",
        "key.pem",
        "-out",
        "cert.pem",
      ],
      { cwd: dir, stdio: "ignore" },
    );
    cert = readFileSync(join(dir, "cert.pem"));
    server = createTlsServer({ key: readFileSync(join(dir, "key.pem")), cert }, (req, res) => {
      if (req.url !== "/touch.lackey.gz") {
        res.writeHead(404);
        res.end();
        return;
      }
      res.writeHead(200, { "content-length": gz.length });
      res.end(gz);
    });
    base = `https://${await listen(server)}`;
  }, 60_000);
  afterAll(() => {
    server?.closeAllConnections();
    server?.close();
  });

  it("reads it when the certificate is trusted, and says so in one line when not", async () => {
    const file = await readAll(fixture);
    expect((await readAll(`${base}/touch.lackey.gz`, { ca: cert })).words).toEqual(file.words);
    await expect(readAll(`${base}/touch.lackey.gz`)).rejects.toThrow(
      /touch.lackey.gz: TLS: .*not trusted here .*NODE_EXTRA_CA_CERTS/,
    );
  });

  it("the command line trusts a CA given by NODE_EXTRA_CA_CERTS, and refuses without it", async () => {
    const args = ["paging", "compare", "--guest", "4GiB", "--threads", "1", "--json"];
    const trusted = await hvlabAsync([...args, "--trace", `${base}/touch.lackey.gz`], {
      NODE_EXTRA_CA_CERTS: join(dir, "cert.pem"),
    });
    expect(trusted.code, trusted.stderr).toBe(0);
    expect((JSON.parse(trusted.stdout) as { source: string }).source).toBe(
      `${base}/touch.lackey.gz`,
    );
    const refused = await hvlabAsync([...args, "--trace", `${base}/touch.lackey.gz`], {
      NODE_EXTRA_CA_CERTS: "",
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    expect(refused.stderr).toMatch(/TLS: .*not trusted here/);
  }, 120_000);
});
