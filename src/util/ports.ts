import { createServer } from "node:net";

/**
 * A TCP port on 127.0.0.1 that was free a moment ago: bound to port 0 and
 * released, for a child process that must be told its port before it
 * starts (a cluster node whose peers list it). The caller takes it at once.
 */
export async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string")
    throw new Error("the loopback listener has no port");
  return address.port;
}
