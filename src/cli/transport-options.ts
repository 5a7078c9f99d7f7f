import type { Command } from "commander";
import {
  loadTransportSecurity,
  TransportError,
  type TransportFlags,
  type TransportRole,
  type TransportSecurity,
} from "../transport/secure.js";
import { UsageError } from "./options.js";

/**
 * Adds the TLS options every listener and client takes, in QEMU's
 * vocabulary (`tls-creds`, `tls-authz`, `tls-hostname`).
 */
export function addTransportOptions(command: Command, prefix = ""): Command {
  return command
    .option(
      "--tls-creds <dir>",
      `${prefix}TLS 1.3 with x509 mutual authentication: a directory of ca-cert.pem, server-cert.pem/server-key.pem, client-cert.pem/client-key.pem (QEMU's tls-creds-x509 layout) (default: none, plain TCP)`,
    )
    .option(
      "--tls-psk <file>",
      `${prefix}TLS 1.3 with a pre-shared key: identity:hexkey lines (QEMU's tls-creds-psk); a client presents the first identity (default: none, plain TCP)`,
    )
    .option(
      "--tls-authz <names>",
      `${prefix}listening side: accept only these client certificate subjects (CN or full DN) or PSK identities, comma-separated (default: any the CA or key file admits)`,
    )
    .option(
      "--tls-hostname <name>",
      `${prefix}connecting side: the name the server's certificate must carry (default: the host connected to)`,
    )
    .option(
      "--insecure",
      `${prefix}listen beyond loopback without TLS anyway (printed, and recorded in the JSON) (default: off: loopback only without TLS)`,
    );
}

/**
 * The security the parsed options ask for, for one end.
 *
 * @throws UsageError with one line when an option or credential is not usable.
 */
export function transportSecurityOf(flags: TransportFlags, role: TransportRole): TransportSecurity {
  try {
    return loadTransportSecurity(flags, role);
  } catch (error) {
    if (error instanceof TransportError) throw new UsageError(error.message);
    throw error;
  }
}
