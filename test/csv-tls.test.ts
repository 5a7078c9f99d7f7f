import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clusterStatus } from "../src/csv/control-client.js";
import { FileLun } from "../src/csv/lun.js";
import { ClusterNode, type NodeEvent } from "../src/csv/node.js";
import { LunTarget } from "../src/csv/target.js";
import { TargetClient } from "../src/csv/target-client.js";
import { Volume } from "../src/csv/volume.js";
import { MemoryFile } from "../src/storage/block-file.js";
import { loadTransportSecurity, type TransportSecurity } from "../src/transport/secure.js";
import { hvlab, hvlabAsync } from "./support/cli.js";
import { freePort } from "./support/csv-cluster.js";
import { startTarget } from "./support/csv-target.js";
import { CertFactory, hasOpenssl } from "./support/tls-certs.js";

// The CSV target and node sockets over TLS 1.3 with mutual authentication
// (src/transport/secure.ts), with certificates made by openssl here: a
// node with the cluster's certificate or key does I/O; a stranger, a plain
// client of a TLS listener (and the reverse), a subject outside
// --tls-authz and a wrong PSK are refused with one line, and the target
// serves on. Beyond loopback, plain TCP needs --insecure.

const openssl = hasOpenssl();
if (!openssl && process.env.CI === "true")
  throw new Error("openssl is needed by the CSV TLS tests");
if (!openssl) console.warn("skipping the CSV TLS tests: openssl is not installed");

let root = "";
const LUN_BYTES = 8 << 20;

const creds = (dir: string, role: "server" | "client", authz?: string): TransportSecurity =>
  loadTransportSecurity({ tlsCreds: join(root, dir), ...(authz ? { tlsAuthz: authz } : {}) }, role);
const psk = (file: string, role: "server" | "client"): TransportSecurity =>
  loadTransportSecurity({ tlsPsk: join(root, file) }, role);
const PLAIN: TransportSecurity = { kind: "plain", insecure: false };

async function serve(
  security: TransportSecurity,
): Promise<{ target: LunTarget; port: number; refusals: string[] }> {
  const memory = new MemoryFile("/tls/lun", new Uint8Array(LUN_BYTES), LUN_BYTES);
  await Volume.format(new FileLun(memory, false), { clusterBytes: 4096 });
  const refusals: string[] = [];
  const target = new LunTarget(memory, {
    durable: false,
    security,
    onRefused: (reason) => refusals.push(reason),
  });
  return { target, port: await target.listen(), refusals };
}

describe.skipIf(!openssl)("csv target and nodes over TLS 1.3", () => {
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "hvlab-csv-tls-"));
    const certs = new CertFactory(root);
    certs.makeCa("ca", "csv test CA");
    certs.makeCert("cluster", "ca", "server", "csv-cluster");
    certs.makeCert("cluster", "ca", "client", "csv-node");
    certs.makeCa("other-ca", "another CA");
    certs.makeCert("stranger", "other-ca", "client", "csv-node");
    certs.makeCert("stranger", "other-ca", "server", "unused");
    // The stranger trusts the cluster's CA (so it is the target that refuses it), but its
    // own certificate comes from another CA.
    copyFileSync(join(root, "ca", "ca-cert.pem"), join(root, "stranger", "ca-cert.pem"));
    certs.makeCert("outsider", "ca", "client", "backup-host");
    certs.makeCert("outsider", "ca", "server", "unused");
    writeFileSync(join(root, "cluster.psk"), `csv-node:${"5a".repeat(32)}\n`);
    writeFileSync(join(root, "wrong.psk"), `csv-node:${"a5".repeat(32)}\n`);
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("a node with the cluster's certificate reads and writes; strangers and plain peers are refused with one line", async () => {
    const { target, port, refusals } = await serve(creds("cluster", "server", "csv-node"));
    try {
      const good = await TargetClient.connect(port, "node-1", 5000, {
        security: creds("cluster", "client"),
      });
      const bytes = Uint8Array.from({ length: 4096 }, (_, i) => i & 0xff);
      await good.write(1 << 20, bytes);
      expect(Buffer.from(await good.read(1 << 20, 4096)).equals(Buffer.from(bytes))).toBe(true);

      const refused = async (security: TransportSecurity) => {
        const error = await TargetClient.connect(port, "node-2", 5000, { security }).then(
          (c) => {
            c.close();
            return new Error("connected");
          },
          (e: Error) => e,
        );
        expect(error.message).not.toBe("connected");
        expect(error.message).not.toMatch(/\n/);
        return error.message;
      };
      expect(await refused(creds("stranger", "client"))).toMatch(/certificate|alert|TLS/i);
      expect(await refused(PLAIN)).toMatch(/plain TCP to a listener that takes TLS only/);
      expect(await refused(creds("outsider", "client"))).toMatch(/not in --tls-authz|closed/);
      expect(refusals.join(" / ")).toMatch(/not signed by the trusted CA|not acceptable/);
      expect(refusals).toContain(
        "the peer speaks plain TCP to a listener that takes TLS only (give both ends --tls-creds or --tls-psk)",
      );
      expect(refusals.join(" / ")).toMatch(/"backup-host" is not in --tls-authz/);
      expect(target.counters.refused).toBe(3);
      // The good session was never disturbed.
      expect(Buffer.from(await good.read(1 << 20, 4096)).equals(Buffer.from(bytes))).toBe(true);
      good.close();
    } finally {
      await target.close();
    }
  }, 60_000);

  it("a TLS client of a plain target, and a wrong PSK, are refused; the right PSK works", async () => {
    const plain = await serve(PLAIN);
    try {
      const error = await TargetClient.connect(plain.port, "node-1", 5000, {
        security: creds("cluster", "client"),
      }).catch((e: Error) => e);
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toMatch(/does not speak TLS|closed|TLS/);
      expect(plain.target.counters.protocolErrors).toBe(1);
    } finally {
      await plain.target.close();
    }
    const keyed = await serve(psk("cluster.psk", "server"));
    try {
      const good = await TargetClient.connect(keyed.port, "node-1", 5000, {
        security: psk("cluster.psk", "client"),
      });
      await good.write(0 + (2 << 20), new Uint8Array(512).fill(7));
      good.close();
      const error = await TargetClient.connect(keyed.port, "node-2", 5000, {
        security: psk("wrong.psk", "client"),
      }).catch((e: Error) => e);
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).not.toMatch(/\n/);
      expect(keyed.target.counters.refused).toBe(1);
    } finally {
      await keyed.target.close();
    }
  }, 60_000);

  it("two nodes heartbeat, forward metadata and redirect I/O to each other over mutual TLS", async () => {
    const { target, port } = await serve(creds("cluster", "server", "csv-node"));
    const events: NodeEvent[] = [];
    const ports = [await freePort(), await freePort()];
    const nodes = [1, 2].map(
      (id) =>
        new ClusterNode({
          id,
          port: ports[id - 1] ?? 0,
          targetPort: port,
          peers: new Map([[3 - id, ports[2 - id] ?? 0]]),
          heartbeatMs: 50,
          misses: 4,
          security: {
            listen: creds("cluster", "server", "csv-node"),
            connect: creds("cluster", "client"),
          },
          onEvent: (e) => events.push(e),
        }),
    );
    try {
      await Promise.all(nodes.map((n) => n.start()));
      const [one, two] = nodes as [ClusterNode, ClusterNode];
      // Metadata forwarded to whoever coordinates, retried until one does.
      const file = await two.metadata({ op: "create", name: "vm.vhd", size: 64 * 1024 });
      if (!file) throw new Error("no map");
      expect(one.state.role).toBe("coordinator");
      expect(two.state.coordinator).toBe(1);
      two.cutPath("test");
      const data = new Uint8Array(8192).fill(9);
      await two.writeFile(file, 4096, data);
      expect(one.io.servedRedirected).toBe(1);
      expect(Buffer.from(await two.readFile(file, 4096, 8192)).equals(Buffer.from(data))).toBe(
        true,
      );
      // csv status speaks TLS to TLS nodes; a plain client gets no answer.
      const members = new Map([
        [1, ports[0] ?? 0],
        [2, ports[1] ?? 0],
      ]);
      const status = await clusterStatus(members, {
        timeoutMs: 5000,
        security: creds("cluster", "client"),
      });
      expect(status.nodes.map((n) => [n.node, n.mode])).toEqual([
        [1, "direct"],
        [2, "redirected"],
      ]);
      expect(status.coordinator).toBe(1);
      const plain = await clusterStatus(members, { timeoutMs: 2000 });
      expect(plain.nodes).toHaveLength(0);
      expect(plain.unreachable.map((u) => u.node)).toEqual([1, 2]);
      // The command line takes the same credentials.
      const cli = await hvlabAsync([
        "csv",
        "status",
        "--nodes",
        `1=${ports[0]},2=${ports[1]}`,
        "--tls-creds",
        join(root, "cluster"),
        "--json",
      ]);
      expect(cli.stderr).toBe("");
      expect(cli.code).toBe(0);
      expect((JSON.parse(cli.stdout) as { coordinator: number }).coordinator).toBe(1);
    } finally {
      for (const n of nodes) n.stop();
      await target.close();
    }
  }, 60_000);

  it("the commands refuse to listen beyond loopback without TLS unless --insecure, which is printed and recorded", async () => {
    const dir = mkdtempSync(join(tmpdir(), "hvlab-csv-tls-cli-"));
    try {
      const lun = join(dir, "lun.img");
      expect(hvlab(["csv", "create", lun, "4MiB", "--cluster-size", "4KiB"]).status).toBe(0);
      const target = hvlab(["csv", "target", lun, "--host", "0.0.0.0"]);
      expect(target.status).toBe(2);
      expect(target.stderr).toMatch(
        /refusing to listen on 0\.0\.0\.0 without TLS.*--tls-creds DIR or --tls-psk FILE/,
      );
      expect(target.stderr.trim().split("\n")).toHaveLength(1);
      const node = hvlab([
        "csv",
        "node",
        "--id",
        "1",
        "--port",
        "7001",
        "--target-port",
        "7000",
        "--host",
        "::",
      ]);
      expect(node.status).toBe(2);
      expect(node.stderr).toMatch(/refusing to listen on :: without TLS/);
      const insecure = await startTarget(lun, ["--host", "0.0.0.0", "--insecure", "--no-sync"]);
      try {
        expect(insecure.record).toMatchObject({
          host: "0.0.0.0",
          insecure: true,
          transport: "plain TCP (--insecure)",
        });
        expect(insecure.stderr()).toMatch(/--insecure: listening on 0\.0\.0\.0 without TLS/);
      } finally {
        await insecure.stop();
      }
      const tls = await startTarget(lun, ["--tls-creds", join(root, "cluster"), "--no-sync"]);
      try {
        expect(tls.record).toMatchObject({
          insecure: false,
          transport: "TLS 1.3, x509 mutual authentication",
        });
      } finally {
        await tls.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
