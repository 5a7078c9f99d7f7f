import type { QueueTarget } from "./connection.js";

/** How long a command waits for Redis at its start before it says it cannot reach it, ms. */
export const CONNECT_TIMEOUT_MS = 10_000;

/** Thrown when Redis does not answer at start: names the server (password redacted) and the last error. */
export class QueueUnreachableError extends Error {
  override name = "QueueUnreachableError";
}

/**
 * Waits for BullMQ objects to be ready, failing after `timeoutMs` with the
 * last connection error they reported (ioredis would otherwise retry for
 * ever, silently: a wrong password or an untrusted certificate would hang).
 */
export async function reach(
  target: QueueTarget,
  parts: readonly {
    waitUntilReady(): Promise<unknown>;
    on(event: "error", listener: (error: Error) => void): unknown;
  }[],
  timeoutMs = CONNECT_TIMEOUT_MS,
): Promise<void> {
  let last = "no answer";
  for (const part of parts) {
    part.on("error", (error) => {
      last = error.message;
    });
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new QueueUnreachableError(
            `cannot reach ${target.shown} in ${timeoutMs / 1000} s: ${last}`,
          ),
        ),
      timeoutMs,
    );
  });
  try {
    await Promise.race([Promise.all(parts.map((p) => p.waitUntilReady())), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
