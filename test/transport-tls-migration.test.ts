import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DestinationReport, DestinationServer } from "../src/migration/live/destination.js";
import { LiveSource } from "../src/migration/live/source.js";
import {
  checkExposure,
  isLoopback,
  loadTransportSecurity,
  looksLikeTls,
  parsePskFile,
  TransportError,
  type TransportSecurity,
} from "../src/transport/secure.js";
import { CertFactory, hasOpenssl } from "./support/tls-certs.js";

const MiB = 1024 ** 2;

const openssl = hasOpenssl();
if (!openssl && process.env.CI === "true") throw new Error("openssl is needed by the TLS tests");
if (!openssl) console.warn("skipping the TLS migration tests: openssl is not installed");

let root = "";
const makeCa = (dir: string, cn: string) => new CertFactory(root).makeCa(dir, cn);
const makeCert = (dir: string, caDir: string, role: string, cn: string, days = 2) =>
  new CertFactory(root).makeCert(dir, caDir, role, cn, days);

const x509 = (dir: string, role: "server" | "client", extra = {}) =>
  loadTransportSecurity({ tlsCreds: join(root, dir), ...extra }, role);

async function migrateOnce(
  server: TransportSecurity,
  client: TransportSecurity,
  multifdChannels = 0,
): Promise<{
  source: Awaited<ReturnType<LiveSource["migrate"]>>;
  reports: DestinationReport[];
  destination: DestinationServer;
}> {
  const reports: DestinationReport[] = [];
  const destination = await DestinationServer.listen({
    port: 0,
    security: server,
    onSession: (r) => reports.push(r),
  });
  const source = LiveSource.start({
    guestBytes: 4 * MiB,
    vcpus: 1,
    workload: { kind: "hotset" },
    writesPerSecond: 20_000,
    threads: 0,
    seed: 3,
  });
  try {
    const result = await source.migrate({
      host: "127.0.0.1",
      port: destination.address.port,
      security: client,
      replyTimeoutMs: 5_000,
      multifdChannels,
    });
    // Let the destination's side of a refusal land before it is read.
    for (let i = 0; i < 50 && reports.length === 0; i++)
      await new Promise((r) => setTimeout(r, 20));
    return { source: result, reports, destination };
  } finally {
    await source.close();
  }
}

describe.skipIf(!openssl)(
  "live migration over TLS 1.3 (loopback, certificates made by openssl)",
  () => {
    beforeAll(() => {
      root = mkdtempSync(join(tmpdir(), "hvlab-tls-"));
      makeCa("ca", "hvlab test CA");
      makeCert("good", "ca", "server", "destination.example");
      makeCert("good", "ca", "client", "source.example");
      makeCa("other-ca", "another CA");
      makeCert("stranger", "other-ca", "client", "source.example");
      makeCert("stranger", "ca", "server", "unused");
      makeCert("expired", "ca", "client", "source.example", -1);
      makeCert("expired", "ca", "server", "unused");
      writeFileSync(join(root, "keys.psk"), `source:${"5a".repeat(32)}\n`);
      writeFileSync(join(root, "wrong.psk"), `source:${"a5".repeat(32)}\n`);
    });
    afterAll(() => rmSync(root, { recursive: true, force: true }));

    it("migrates with mutual x509 authentication and verifies every page", async () => {
      const { source, reports, destination } = await migrateOnce(
        x509("good", "server", { tlsAuthz: "source.example" }),
        x509("good", "client"),
      );
      await destination.close();
      expect(source.summary.status).toBe("completed");
      expect(source.summary.verified).toBe(true);
      expect(reports).toHaveLength(1);
      expect(reports[0]).toMatchObject({ status: "completed", verified: true, mismatches: 0 });
    });

    it("opens every multifd channel over mutual TLS too: a TLS listener takes no plain connection", async () => {
      const { source, reports, destination } = await migrateOnce(
        x509("good", "server", { tlsAuthz: "source.example" }),
        x509("good", "client"),
        2,
      );
      await destination.close();
      expect(source.summary.status).toBe("completed");
      expect(source.summary.verified).toBe(true);
      expect(source.summary["multifd-channels"]).toBe(2);
      // The pages went on the two channels, each its own TLS connection.
      expect(source.summary["multifd-packets"]).toBeGreaterThan(0);
      expect(reports[0]).toMatchObject({ status: "completed", verified: true, mismatches: 0 });
    });

    it("migrates with a pre-shared key over TLS 1.3", async () => {
      const psk = loadTransportSecurity({ tlsPsk: join(root, "keys.psk") }, "server");
      const { source, reports, destination } = await migrateOnce(
        psk,
        loadTransportSecurity({ tlsPsk: join(root, "keys.psk") }, "client"),
      );
      await destination.close();
      expect(source.summary.status).toBe("completed");
      expect(source.summary.verified).toBe(true);
      expect(reports[0]).toMatchObject({ status: "completed", verified: true });
    });

    const refusals: [string, () => [TransportSecurity, TransportSecurity], RegExp, RegExp][] = [
      [
        "a client certificate from another CA",
        () => [x509("good", "server"), x509("stranger", "client")],
        /refused: the client certificate is not acceptable: the certificate is not signed by the trusted CA/,
        /refused: the client certificate is not acceptable: the certificate is not signed by the trusted CA/,
      ],
      [
        "an expired client certificate",
        () => [x509("good", "server"), x509("expired", "client")],
        /refused: the client certificate is not acceptable: the certificate has expired/,
        /refused: the client certificate is not acceptable: the certificate has expired/,
      ],
      [
        "a client without a certificate",
        () => [
          x509("good", "server"),
          {
            ...x509("good", "client"),
            cert: undefined,
            key: undefined,
          } as unknown as TransportSecurity,
        ],
        /certificate|TLS/,
        /refused: .*(no certificate|certificate)/i,
      ],
      [
        "a subject not in --tls-authz",
        () => [x509("good", "server", { tlsAuthz: "someone.else" }), x509("good", "client")],
        /refused: the client certificate "source\.example" is not in --tls-authz/,
        /refused: the client certificate "source\.example" is not in --tls-authz/,
      ],
      [
        "a wrong pre-shared key",
        () => [
          loadTransportSecurity({ tlsPsk: join(root, "keys.psk") }, "server"),
          loadTransportSecurity({ tlsPsk: join(root, "wrong.psk") }, "client"),
        ],
        /TLS handshake failed/,
        /refused: .*TLS handshake failed/,
      ],
      [
        "a plain TCP client to a TLS listener",
        () => [x509("good", "server"), { kind: "plain", insecure: false }],
        /^the destination stopped the migration: refused: the peer speaks plain TCP to a listener that takes TLS only \(give both ends --tls-creds or --tls-psk\)/,
        /^refused: the peer speaks plain TCP to a listener that takes TLS only \(give both ends --tls-creds or --tls-psk\)$/,
      ],
      [
        "a TLS client to a plain listener",
        () => [{ kind: "plain", insecure: false }, x509("good", "client")],
        /^cannot migrate to 127\.0\.0\.1:\d+: the peer does not speak TLS \(give both ends --tls-creds or --tls-psk\)$/,
        /^the peer began a TLS handshake with a listener without TLS \(give both ends --tls-creds or --tls-psk, or neither\)$/,
      ],
    ];
    for (const [name, make, sourceLine, destinationLine] of refusals) {
      it(`refuses ${name}, one line on each side, and frees the slot`, async () => {
        const [server, client] = make();
        const { source, reports, destination } = await migrateOnce(server, client);
        try {
          expect(source.summary.status).toBe("failed");
          expect(source.summary.reason).toMatch(sourceLine);
          expect(source.summary.reason).not.toMatch(/\n/);
          expect(reports[0]?.status).toBe("failed");
          expect(reports[0]?.reason).toMatch(destinationLine);
          expect(reports[0]?.reason).not.toMatch(/\n/);
          // The slot is free: a good client migrates at once.
          if (server.kind !== "plain") {
            const good =
              server.kind === "x509"
                ? x509("good", "client")
                : loadTransportSecurity({ tlsPsk: join(root, "keys.psk") }, "client");
            const again = LiveSource.start({
              guestBytes: 2 * MiB,
              vcpus: 1,
              workload: { kind: "hotset" },
              writesPerSecond: 0,
              threads: 0,
              seed: 4,
            });
            try {
              if (server.kind === "x509" && server.authz.length > 0) return;
              const ok = await again.migrate({
                host: "127.0.0.1",
                port: destination.address.port,
                security: good,
              });
              expect(ok.summary.status).toBe("completed");
            } finally {
              await again.close();
            }
          }
        } finally {
          await destination.close();
        }
      });
    }
  },
);

describe.skipIf(!openssl)("a TLS listener and peers that never start TLS", () => {
  it("a silent connection is refused when the handshake deadline passes, and the slot stays free", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hvlab-tls-silent-"));
    try {
      root = dir;
      makeCa("ca", "hvlab test CA");
      makeCert("good", "ca", "server", "destination.example");
      const reports: DestinationReport[] = [];
      const destination = await DestinationServer.listen({
        port: 0,
        security: x509("good", "server"),
        handshakeTimeoutMs: 300,
        onSession: (r) => reports.push(r),
      });
      try {
        const silent = connect({ host: "127.0.0.1", port: destination.address.port });
        silent.on("error", () => undefined);
        const closed = once(silent, "close");
        await closed;
        expect(reports).toHaveLength(1);
        expect(reports[0]?.reason).toBe("refused: no TLS handshake within 300 ms");
        expect(destination.receiving).toBe(false);
      } finally {
        await destination.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("looks at the first byte of a stream to tell TLS from plain", () => {
    expect(looksLikeTls(Uint8Array.of(22))).toBe(true);
    expect(looksLikeTls(Uint8Array.of(22, 3, 1))).toBe(true);
    expect(looksLikeTls(Uint8Array.of(21, 3, 3))).toBe(true);
    expect(looksLikeTls(Uint8Array.of(22, 4))).toBe(false);
    expect(looksLikeTls(Buffer.from("HVLM"))).toBe(false);
    expect(looksLikeTls(new Uint8Array(0))).toBe(false);
  });
});

describe("transport options", () => {
  it("refuses to listen beyond loopback without TLS unless --insecure", () => {
    expect(() => checkExposure("0.0.0.0", { kind: "plain", insecure: false })).toThrow(
      /refusing to listen on 0\.0\.0\.0 without TLS.*--tls-creds DIR or --tls-psk FILE.*--insecure/,
    );
    expect(() => checkExposure("0.0.0.0", { kind: "plain", insecure: true })).not.toThrow();
    expect(() => checkExposure("127.0.0.1", { kind: "plain", insecure: false })).not.toThrow();
    expect(() => checkExposure("::1", { kind: "plain", insecure: false })).not.toThrow();
    // Loopback in any spelling, and nothing that only looks like it.
    for (const host of ["127.255.0.9", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "localhost"]) {
      expect(isLoopback(host), host).toBe(true);
    }
    for (const host of ["128.0.0.1", "::2", "::ffff:10.0.0.1", "127.example", "::", "0.0.0.0"]) {
      expect(isLoopback(host), host).toBe(false);
      expect(() => checkExposure(host, { kind: "plain", insecure: false }), host).toThrow(
        /refusing to listen/,
      );
    }
  });

  it("parses QEMU's PSK file and names the line of a bad entry", () => {
    const keys = parsePskFile(`alice:${"00".repeat(16)}\n\nbob:${"ff".repeat(32)}\r\n`, "k");
    expect([...keys.keys()]).toEqual(["alice", "bob"]);
    expect(keys.get("bob")?.length).toBe(32);
    expect(() => parsePskFile(`alice:${"0".repeat(31)}`, "k")).toThrow(
      /k line 1: the key is not an even number/,
    );
    expect(() => parsePskFile(`\nalice:${"00".repeat(8)}`, "k")).toThrow(
      /k line 2: a key of 8 bytes/,
    );
    expect(() => parsePskFile("nokey", "k")).toThrow(TransportError);
    expect(() => parsePskFile("", "k")).toThrow(/no identity:hexkey line/);
  });

  it("rejects contradictory options", () => {
    expect(() => loadTransportSecurity({ tlsCreds: "a", tlsPsk: "b" }, "server")).toThrow(
      /not both/,
    );
    expect(() => loadTransportSecurity({ tlsAuthz: "x" }, "server")).toThrow(/need --tls-creds/);
    expect(() => loadTransportSecurity({ tlsCreds: "/nonexistent-dir" }, "server")).toThrow(
      /ca-cert\.pem is missing/,
    );
  });
});

describe("the PSK file parser under arbitrary input", () => {
  it("returns keys or throws a one-line TransportError, never anything else", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 300 }),
          fc
            .array(fc.tuple(fc.string({ maxLength: 20 }), fc.uint8Array({ maxLength: 70 })))
            .map((lines) =>
              lines.map(([id, key]) => `${id}:${Buffer.from(key).toString("hex")}`).join("\n"),
            ),
        ),
        (text) => {
          try {
            const keys = parsePskFile(text, "f");
            for (const key of keys.values()) expect(key.length).toBeGreaterThanOrEqual(16);
          } catch (error) {
            expect(error).toBeInstanceOf(TransportError);
            expect((error as Error).message).not.toMatch(/\n/);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
