import type { RedisOptions } from "bullmq";

/** Thrown for a queue URL that hvlab cannot use; the message never holds the password. */
export class QueueUrlError extends TypeError {
  override name = "QueueUrlError";
}

/**
 * Decodes a URL's percent-escaped user name or password. A stray '%' (not
 * followed by two hex digits) is the user's typo, told without the secret.
 */
function decodeCredential(text: string, what: string, shown: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new QueueUrlError(
      `queue ${shown}: the ${what} has a '%' not followed by two hex digits (write '%25' for '%')`,
    );
  }
}

/** Where a distributed study's queue lives: a Redis server, a database and a queue name. */
export interface QueueTarget {
  /** ioredis options: host, port, db, credentials, TLS for rediss://. */
  readonly redis: RedisOptions;
  /** BullMQ's queue name (Redis keys `bull:<name>:...`). */
  readonly name: string;
  /** The URL with its password replaced by `***`: the only form ever printed or reported. */
  readonly shown: string;
}

/** The queue name when the URL's query does not give one. */
export const DEFAULT_QUEUE_NAME = "hvlab";

/** Redis databases a URL may name (Redis' default `databases 16`). */
const MAX_DB = 15;

/**
 * The URL with any password replaced by `***`, for messages and reports.
 * Text that is not a URL is not echoed at all (it could be a password).
 */
export function redactQueueUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return "(not a URL)";
  }
  if (url.password !== "") url.password = "***";
  return url.toString();
}

/**
 * Reads `redis://[user][:password@]host[:port][/db][?queue=name]` or the same
 * with `rediss://` (TLS, the server's certificate checked against the
 * system's CAs or NODE_EXTRA_CA_CERTS). Bounded: port 1-65535, db 0-15, a
 * queue name of letters, digits, `.`, `_` and `-` (BullMQ keys cannot hold `:`).
 *
 * @throws QueueUrlError naming what is wrong, with the password redacted.
 */
export function parseQueueUrl(text: string): QueueTarget {
  const shown = redactQueueUrl(text);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new QueueUrlError(
      "the queue is not a URL (expected redis://[:password@]host[:port][/db] or rediss://...)",
    );
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    throw new QueueUrlError(
      `queue ${shown}: the scheme must be redis: or rediss:, not ${url.protocol}`,
    );
  }
  if (url.hostname === "") throw new QueueUrlError(`queue ${shown}: no host`);
  const port = url.port === "" ? 6379 : Number(url.port);
  const path = url.pathname.replace(/^\//, "");
  if (path !== "" && !/^\d{1,2}$/.test(path)) {
    throw new QueueUrlError(`queue ${shown}: the path must be a database number 0-${MAX_DB}`);
  }
  const db = path === "" ? 0 : Number(path);
  if (db > MAX_DB) {
    throw new QueueUrlError(`queue ${shown}: database ${db} is out of range (0-${MAX_DB})`);
  }
  for (const key of url.searchParams.keys()) {
    if (key !== "queue") {
      throw new QueueUrlError(`queue ${shown}: unknown parameter '${key}' (only queue=NAME)`);
    }
  }
  const name = url.searchParams.get("queue") ?? DEFAULT_QUEUE_NAME;
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
    throw new QueueUrlError(
      `queue ${shown}: the queue name must be 1-64 letters, digits, '.', '_' or '-'`,
    );
  }
  // Brackets of an IPv6 literal are URL syntax, not part of the address.
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const redis: RedisOptions = {
    host,
    port,
    db,
    ...(url.username !== ""
      ? { username: decodeCredential(url.username, "user name", shown) }
      : {}),
    ...(url.password !== "" ? { password: decodeCredential(url.password, "password", shown) } : {}),
    ...(url.protocol === "rediss:" ? { tls: { servername: host } } : {}),
    // BullMQ's workers block on Redis; it requires ioredis not to give up on a command.
    maxRetriesPerRequest: null,
  };
  return { redis, name, shown };
}
