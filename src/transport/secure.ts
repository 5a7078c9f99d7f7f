import { readFileSync, statSync } from "node:fs";
import { BlockList, connect as connectPlain, isIP, type Socket } from "node:net";
import { join } from "node:path";
import {
  checkServerIdentity,
  createServer as createTlsServer,
  type PeerCertificate,
  type TLSSocket,
  connect as tlsConnect,
} from "node:tls";

/**
 * How a connection is protected, in QEMU's vocabulary: `tls-creds-x509`
 * (a directory laid out as QEMU's `dir=`), `tls-creds-psk` (a keys file of
 * `identity:hexkey` lines), `tls-authz` (the accepted peer names) and
 * `tls-hostname` (the name the server's certificate must carry).
 */
export type TransportSecurity =
  | { readonly kind: "plain"; readonly insecure: boolean }
  | {
      readonly kind: "x509";
      readonly dir: string;
      readonly ca: Buffer;
      readonly cert: Buffer;
      readonly key: Buffer;
      readonly authz: readonly string[];
      readonly hostname: string | undefined;
    }
  | {
      readonly kind: "psk";
      readonly file: string;
      readonly keys: ReadonlyMap<string, Buffer>;
      /** The identity a client presents: the file's first line (QEMU's `username`). */
      readonly identity: string;
      readonly authz: readonly string[];
    };

/** The command-line options every listener and client takes. */
export interface TransportFlags {
  /** `--tls-creds DIR` */
  readonly tlsCreds?: string;
  /** `--tls-psk FILE` */
  readonly tlsPsk?: string;
  /** `--tls-authz NAME,...` */
  readonly tlsAuthz?: string;
  /** `--tls-hostname NAME` */
  readonly tlsHostname?: string;
  /** `--insecure` */
  readonly insecure?: boolean;
}

/** A credential, option or handshake that is not acceptable; the message is one line. */
export class TransportError extends Error {
  override name = "TransportError";
}

/** Which end of a connection the credentials are for. */
export type TransportRole = "server" | "client";

/** Largest credential file read (a certificate chain is a few KiB). */
const MAX_CREDENTIAL_BYTES = 1024 * 1024;
/** Largest PSK file read, and the PSK sizes accepted (RFC 4279 section 5.3 allows up to 64 bytes). */
const MAX_PSK_FILE_BYTES = 64 * 1024;
const MIN_PSK_BYTES = 16;
const MAX_PSK_BYTES = 64;
/** RFC 4279 section 5.3: identities up to 128 bytes. */
const MAX_PSK_IDENTITY_BYTES = 128;
/**
 * TLS 1.3 only. A PSK handshake in TLS 1.3 needs a suite whose hash matches
 * the PSK's (RFC 8446 section 4.2.11); OpenSSL's PSK callbacks assume
 * SHA-256, so PSK connections pin TLS_AES_128_GCM_SHA256 (OpenSSL's
 * SSL_CTX_set_psk_use_session_callback documentation).
 */
const TLS_VERSION = "TLSv1.3";
/** How long a TLS listener waits for a connection's handshake by default (Node's own is 120 s). */
const DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
const PSK_SUITE = "TLS_AES_128_GCM_SHA256";

function readCredential(dir: string, name: string): Buffer {
  const path = join(dir, name);
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    throw new TransportError(`--tls-creds ${dir}: ${name} is missing`);
  }
  if (size === 0 || size > MAX_CREDENTIAL_BYTES) {
    throw new TransportError(
      `--tls-creds ${dir}: ${name} is ${size} bytes, expected 1 to ${MAX_CREDENTIAL_BYTES}`,
    );
  }
  const bytes = readFileSync(path);
  if (!bytes.includes("-----BEGIN ")) {
    throw new TransportError(`--tls-creds ${dir}: ${name} is not PEM`);
  }
  return bytes;
}

/**
 * Parses a QEMU `tls-creds-psk` keys file: one `identity:hexkey` per line.
 *
 * @throws TransportError naming the file and line of the first bad entry.
 */
export function parsePskFile(text: string, file: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? "").replace(/\r$/, "");
    if (line.trim() === "") continue;
    const where = `--tls-psk ${file} line ${i + 1}`;
    const colon = line.lastIndexOf(":");
    if (colon < 1) throw new TransportError(`${where}: expected identity:hexkey`);
    const identity = line.slice(0, colon);
    const hex = line.slice(colon + 1);
    if (Buffer.byteLength(identity) > MAX_PSK_IDENTITY_BYTES) {
      throw new TransportError(`${where}: identity longer than ${MAX_PSK_IDENTITY_BYTES} bytes`);
    }
    if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex)) {
      throw new TransportError(`${where}: the key is not an even number of hex digits`);
    }
    const key = Buffer.from(hex, "hex");
    if (key.length < MIN_PSK_BYTES || key.length > MAX_PSK_BYTES) {
      throw new TransportError(
        `${where}: a key of ${key.length} bytes, expected ${MIN_PSK_BYTES} to ${MAX_PSK_BYTES}`,
      );
    }
    if (keys.has(identity)) throw new TransportError(`${where}: identity "${identity}" repeated`);
    keys.set(identity, key);
  }
  if (keys.size === 0) throw new TransportError(`--tls-psk ${file}: no identity:hexkey line`);
  return keys;
}

/** Splits `--tls-authz NAME,...` into names; an empty name is a mistake. */
export function parseAuthz(text: string | undefined): string[] {
  if (text === undefined) return [];
  const names = text.split(",").map((name) => name.trim());
  if (names.some((name) => name === "")) {
    throw new TransportError(`--tls-authz "${text}": an empty name in the list`);
  }
  return names;
}

/**
 * Loads the credentials the options name, for one end of a connection.
 *
 * @throws TransportError with one line when an option or file is not usable.
 */
export function loadTransportSecurity(
  flags: TransportFlags,
  role: TransportRole,
): TransportSecurity {
  if (flags.tlsCreds !== undefined && flags.tlsPsk !== undefined) {
    throw new TransportError("give --tls-creds or --tls-psk, not both");
  }
  const tls = flags.tlsCreds !== undefined || flags.tlsPsk !== undefined;
  if (!tls) {
    if (flags.tlsAuthz !== undefined || flags.tlsHostname !== undefined) {
      throw new TransportError("--tls-authz and --tls-hostname need --tls-creds or --tls-psk");
    }
    return { kind: "plain", insecure: flags.insecure === true };
  }
  if (flags.insecure) throw new TransportError("--insecure and TLS options contradict each other");
  if (role === "client" && flags.tlsAuthz !== undefined) {
    throw new TransportError("--tls-authz is for the listening side");
  }
  const authz = parseAuthz(flags.tlsAuthz);
  if (flags.tlsCreds !== undefined) {
    const dir = flags.tlsCreds;
    return {
      kind: "x509",
      dir,
      ca: readCredential(dir, "ca-cert.pem"),
      cert: readCredential(dir, `${role}-cert.pem`),
      key: readCredential(dir, `${role}-key.pem`),
      authz,
      hostname: flags.tlsHostname,
    };
  }
  const file = flags.tlsPsk as string;
  if (flags.tlsHostname !== undefined) {
    throw new TransportError("--tls-hostname needs --tls-creds: a PSK has no certificate to match");
  }
  let size: number;
  try {
    size = statSync(file).size;
  } catch {
    throw new TransportError(`--tls-psk ${file}: no such file`);
  }
  if (size > MAX_PSK_FILE_BYTES) {
    throw new TransportError(`--tls-psk ${file}: ${size} bytes, over ${MAX_PSK_FILE_BYTES}`);
  }
  const keys = parsePskFile(readFileSync(file, "utf8"), file);
  const identity = keys.keys().next().value as string;
  return { kind: "psk", file, keys, identity, authz };
}

/** The loopback networks: 127.0.0.0/8 (RFC 1122 section 3.2.1.3) and ::1 (RFC 4291 section 2.5.3). */
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");
// IPv4-mapped loopback (RFC 4291 section 2.5.5.2): the same host.
LOOPBACK.addSubnet("::ffff:127.0.0.0", 104, "ipv6");

/** Whether an address only this machine can reach, in any spelling (`::1`, `0:0:0:0:0:0:0:1`, `::ffff:127.0.0.1`). */
export function isLoopback(host: string): boolean {
  if (host === "localhost") return true;
  const family = isIP(host);
  if (family === 0) return false;
  return LOOPBACK.check(host, family === 4 ? "ipv4" : "ipv6");
}

/**
 * Refuses to listen beyond loopback without TLS unless `--insecure` says so;
 * `risk` says what a stranger could do (a migration listener's by default).
 *
 * @throws TransportError saying how to enable TLS.
 */
export function checkExposure(
  host: string,
  security: TransportSecurity,
  risk = "push or read a guest",
): void {
  if (security.kind === "plain" && !security.insecure && !isLoopback(host)) {
    throw new TransportError(
      `refusing to listen on ${host} without TLS: anyone who reaches it could ${risk}; give --tls-creds DIR or --tls-psk FILE (see docs/tls.md), or --insecure to accept the risk`,
    );
  }
}

/** One line describing TLS use, for output and JSON. */
export function describeSecurity(security: TransportSecurity): string {
  switch (security.kind) {
    case "plain":
      return security.insecure ? "plain TCP (--insecure)" : "plain TCP (loopback)";
    case "x509":
      return `TLS 1.3, x509 mutual authentication${security.authz.length ? `, authz ${security.authz.join(",")}` : ""}`;
    case "psk":
      return `TLS 1.3, pre-shared key${security.authz.length ? `, authz ${security.authz.join(",")}` : ""}`;
  }
}

/** The names a peer certificate answers to in `--tls-authz`: its CN and its whole subject. */
function certificateNames(cert: PeerCertificate): string[] {
  const subject = cert.subject as unknown as Record<string, string | string[]> | undefined;
  if (!subject) return [];
  const parts = Object.entries(subject).map(
    ([k, v]) => `${k}=${Array.isArray(v) ? v.join("+") : v}`,
  );
  const cn = subject.CN;
  return [...(typeof cn === "string" ? [cn] : []), parts.join(","), parts.reverse().join(",")];
}

/** One line for a TLS failure, in words a user acts on. */
export function describeTlsError(error: NodeJS.ErrnoException): string {
  const code = error.code ?? "";
  const reason = /:([a-z0-9 _]+):[^:]*$/.exec(error.message.split("\n")[0] ?? "")?.[1];
  if (code === "ECONNRESET" && /secure TLS connection/.test(error.message)) {
    return "the peer closed the connection during the TLS handshake (does it listen without TLS?)";
  }
  if (code === "CERT_HAS_EXPIRED") return "the certificate has expired";
  if (
    code === "UNABLE_TO_VERIFY_LEAF_SIGNATURE" ||
    code === "SELF_SIGNED_CERT_IN_CHAIN" ||
    code === "DEPTH_ZERO_SELF_SIGNED_CERT" ||
    code === "UNABLE_TO_GET_ISSUER_CERT_LOCALLY"
  ) {
    return `the certificate is not signed by the trusted CA (${code})`;
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID")
    return `the peer's certificate does not match the host name: ${error.message}`;
  if (
    code === "ERR_SSL_WRONG_VERSION_NUMBER" ||
    code === "ERR_SSL_PACKET_LENGTH_TOO_LONG" ||
    code === "ERR_SSL_HTTP_REQUEST"
  ) {
    return "the peer does not speak TLS (give both ends --tls-creds or --tls-psk)";
  }
  if (code === "ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE")
    return "the client sent no certificate (give it --tls-creds with client-cert.pem)";
  if (code === "ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED")
    return "the server wants a client certificate (give --tls-creds with client-cert.pem)";
  if (code.startsWith("ERR_SSL_") || code.startsWith("ERR_TLS_"))
    return `TLS handshake failed: ${reason ?? code}`;
  return error.message;
}

/**
 * Whether bytes a peer sent first are a TLS record: a handshake (22) or an
 * alert (21) with major version 3 (RFC 8446 section 5.1, TLSPlaintext: a
 * ContentType byte, then legacy_record_version 0x0301 to 0x0303).
 */
export function looksLikeTls(bytes: Uint8Array): boolean {
  // Decided on the first byte when only one has come: a stream may arrive a byte at a time.
  return (
    bytes.length >= 1 &&
    (bytes[0] === 22 || bytes[0] === 21) &&
    (bytes.length < 2 || bytes[1] === 3)
  );
}

/** What a plain peer of a TLS listener, and a TLS peer of a plain one, are told. */
export const PLAIN_PEER_OF_TLS =
  "the peer speaks plain TCP to a listener that takes TLS only (give both ends --tls-creds or --tls-psk)";
export const TLS_PEER_OF_PLAIN =
  "the peer began a TLS handshake with a listener without TLS (give both ends --tls-creds or --tls-psk, or neither)";

/** A connection that passed (or needs no) TLS, and who the peer proved to be. */
export interface AcceptedConnection {
  readonly socket: Socket;
  /** The peer's certificate subject CN or PSK identity (null: plain TCP). */
  readonly peerName: string | null;
}

/** What a listener does with each incoming connection. */
export interface IncomingHandlers {
  accepted(connection: AcceptedConnection): void;
  /**
   * A connection refused by TLS or `--tls-authz`; `reason` is one line.
   * `reply` is the secured socket when the handshake completed, so the
   * protocol can tell the peer why before closing it; otherwise it is gone.
   */
  refused(reason: string, peer: string, reply: Socket | undefined): void;
}

/**
 * The server side of a listener's security: returns what to do with each
 * freshly accepted TCP connection (take it through the handshake and
 * `--tls-authz`, then hand it on). Plain listeners hand sockets on as they
 * are. The TLS work is Node's own `tls.Server`, fed connections from the
 * listener's TCP server (`server.emit("connection", socket)`, as Node's
 * documentation describes), so certificate checks are OpenSSL's.
 */
export function secureIncoming(
  security: TransportSecurity,
  handlers: IncomingHandlers,
  handshakeTimeoutMs = DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS,
): (raw: Socket) => void {
  if (security.kind === "plain") {
    return (raw) => handlers.accepted({ socket: raw, peerName: null });
  }
  // A PSK identity is judged inside the handshake, so a stranger gets an alert, not a session.
  const pskRefusals = new WeakMap<TLSSocket, string>();
  const pskIdentities = new WeakMap<TLSSocket, string>();
  const server =
    security.kind === "x509"
      ? createTlsServer({
          minVersion: TLS_VERSION,
          maxVersion: TLS_VERSION,
          handshakeTimeout: handshakeTimeoutMs,
          ca: security.ca,
          cert: security.cert,
          key: security.key,
          requestCert: true,
          // Checked below instead: OpenSSL's verdict is kept, and the refused client is told why
          // over the finished TLS 1.3 handshake rather than seeing a bare close.
          rejectUnauthorized: false,
        })
      : createTlsServer({
          minVersion: TLS_VERSION,
          maxVersion: TLS_VERSION,
          handshakeTimeout: handshakeTimeoutMs,
          ciphers: PSK_SUITE,
          pskCallback: (socket: TLSSocket, offered: string) => {
            pskIdentities.set(socket, offered);
            const key = security.keys.get(offered);
            if (!key) pskRefusals.set(socket, `unknown PSK identity "${offered}"`);
            else if (security.authz.length > 0 && !security.authz.includes(offered)) {
              pskRefusals.set(socket, `the PSK identity "${offered}" is not in --tls-authz`);
            } else return key;
            return null;
          },
        });
  server.on("tlsClientError", (error: NodeJS.ErrnoException, socket: TLSSocket) => {
    const peer = peerOf(socket);
    socket.destroy();
    handlers.refused(pskRefusals.get(socket) ?? describeTlsError(error), peer, undefined);
  });
  server.on("secureConnection", (socket: TLSSocket) => {
    if (security.kind === "psk") {
      handlers.accepted({ socket, peerName: pskIdentities.get(socket) ?? "" });
      return;
    }
    if (!socket.authorized) {
      const code = String(socket.authorizationError ?? "no certificate");
      const reason = /PEER_DID_NOT_RETURN|no certificate/i.test(code)
        ? "the client sent no certificate (give it --tls-creds with client-cert.pem)"
        : `the client certificate is not acceptable: ${describeTlsError(Object.assign(new Error(code), { code }))}`;
      handlers.refused(reason, peerOf(socket), socket);
      return;
    }
    const names = certificateNames(socket.getPeerCertificate());
    const peerName = names[0] ?? "";
    if (security.authz.length > 0 && !security.authz.some((name) => names.includes(name))) {
      handlers.refused(
        `the client certificate "${peerName}" is not in --tls-authz`,
        peerOf(socket),
        socket,
      );
      return;
    }
    handlers.accepted({ socket, peerName });
  });
  // The first bytes decide: a TLS handshake goes on to the TLS server; plain
  // bytes (an hvlab source without TLS) are answered in plain, so that peer
  // reads why in its own protocol instead of seeing a bare close.
  return (raw) => {
    const timer = setTimeout(() => {
      raw.destroy();
      handlers.refused(`no TLS handshake within ${handshakeTimeoutMs} ms`, peerOf(raw), undefined);
    }, handshakeTimeoutMs);
    raw.on("error", () => clearTimeout(timer));
    raw.once("close", () => clearTimeout(timer));
    raw.once("data", (first: Buffer) => {
      clearTimeout(timer);
      raw.pause();
      // A ClientHello is a handshake record (22); its first byte is enough.
      if (first[0] === 22) {
        raw.unshift(first);
        server.emit("connection", raw);
      } else {
        handlers.refused(PLAIN_PEER_OF_TLS, peerOf(raw), raw);
      }
    });
  };
}

function peerOf(socket: Socket): string {
  return `${socket.remoteAddress}:${socket.remotePort}`;
}

/**
 * Opens a connection with the client side of the given security, resolving
 * once TLS (if any) is established.
 *
 * @throws TransportError with one line saying why it could not.
 */
export async function connectSecure(
  host: string,
  port: number,
  security: TransportSecurity,
  timeoutMs: number,
  describe: (error: NodeJS.ErrnoException) => string,
): Promise<Socket> {
  return await new Promise<Socket>((resolve, reject) => {
    let socket: Socket;
    if (security.kind === "plain") {
      socket = connectPlain({ host, port });
    } else if (security.kind === "x509") {
      const servername = security.hostname ?? host;
      socket = tlsConnect({
        host,
        port,
        minVersion: TLS_VERSION,
        maxVersion: TLS_VERSION,
        ca: security.ca,
        cert: security.cert,
        key: security.key,
        // SNI must not be an IP address (RFC 6066 section 3); the certificate check still uses it.
        ...(isIP(servername) ? {} : { servername }),
        checkServerIdentity: (_name, cert) => checkServerIdentity(servername, cert),
      });
    } else {
      socket = tlsConnect({
        host,
        port,
        minVersion: TLS_VERSION,
        maxVersion: TLS_VERSION,
        ciphers: PSK_SUITE,
        pskCallback: () => ({
          identity: security.identity,
          psk: security.keys.get(security.identity) as Buffer,
        }),
        // A PSK handshake proves the server knows the key; there is no certificate to check.
        checkServerIdentity: () => undefined,
      });
    }
    socket.setNoDelay(true);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new TransportError(`no connection within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once(security.kind === "plain" ? "connect" : "secureConnect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(socket);
    });
    socket.once("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new TransportError(isTlsError(error) ? describeTlsError(error) : describe(error)));
    });
  });
}

/** Whether an error came from TLS rather than from TCP. */
export function isTlsError(error: NodeJS.ErrnoException): boolean {
  const code = error.code ?? "";
  return (
    code.startsWith("ERR_SSL_") ||
    code.startsWith("ERR_TLS_") ||
    code.startsWith("CERT_") ||
    code.includes("_CERT") ||
    (code === "ECONNRESET" && /secure TLS connection/.test(error.message))
  );
}
