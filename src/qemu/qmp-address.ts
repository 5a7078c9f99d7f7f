/** Where a QMP monitor listens: a unix socket or a TCP port. */
export type QmpAddress =
  | { readonly kind: "unix"; readonly path: string }
  | { readonly kind: "tcp"; readonly host: string; readonly port: number };

/** A `--qmp` address that is not `unix:PATH` or `tcp:HOST:PORT`. */
export class QmpAddressError extends Error {
  override name = "QmpAddressError";
}

/** The longest unix socket path Linux takes (sun_path is 108 bytes with its NUL). */
const MAX_UNIX_PATH = 107;

/**
 * Parses `unix:PATH` or `tcp:HOST:PORT` (QEMU's own `-qmp` spelling;
 * `tcp:[::1]:4444` for IPv6).
 */
export function parseQmpAddress(text: string): QmpAddress {
  if (text.startsWith("unix:")) {
    const path = text.slice(5);
    if (path === "") throw new QmpAddressError(`'${text}': the unix socket path is empty`);
    if (Buffer.byteLength(path) > MAX_UNIX_PATH)
      throw new QmpAddressError(`'${text}': a unix socket path is at most ${MAX_UNIX_PATH} bytes`);
    if (path.includes("\0")) throw new QmpAddressError(`'${text}': the path holds a NUL byte`);
    return { kind: "unix", path };
  }
  if (text.startsWith("tcp:")) {
    const rest = text.slice(4);
    const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(rest);
    if (!match) throw new QmpAddressError(`'${text}' is not tcp:HOST:PORT`);
    const port = Number(match[3]);
    if (port < 1 || port > 65535)
      throw new QmpAddressError(`'${text}': port ${port} is outside 1 to 65535`);
    return { kind: "tcp", host: match[1] ?? match[2] ?? "", port };
  }
  throw new QmpAddressError(`'${text}' is neither unix:PATH nor tcp:HOST:PORT`);
}

/** The address as QEMU's `-qmp` option spells it. */
export function formatQmpAddress(address: QmpAddress): string {
  if (address.kind === "unix") return `unix:${address.path}`;
  return address.host.includes(":")
    ? `tcp:[${address.host}]:${address.port}`
    : `tcp:${address.host}:${address.port}`;
}
