import { createServer, type Server, Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { describeSocketError, Link, LinkError } from "../src/migration/live/link.js";
import { TokenBucket } from "../src/transport/token-bucket.js";

/*
 * The sending side of a live-migration connection over a real TCP socket on
 * 127.0.0.1: what reaches the peer, what is counted, when a send waits and
 * how a dropped connection is reported.
 */

const opened: { server: Server; sockets: Socket[] }[] = [];

/** A connected pair: the link's end and the peer's. */
async function connectedPair(): Promise<{ near: Socket; far: Socket }> {
  const server = createServer();
  const sockets: Socket[] = [];
  opened.push({ server, sockets });
  const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  const near = await new Promise<Socket>((resolve, reject) => {
    const socket = new Socket();
    socket.once("error", reject);
    socket.connect(address.port, "127.0.0.1", () => resolve(socket));
  });
  const far = await accepted;
  sockets.push(near, far);
  return { near, far };
}

afterEach(async () => {
  for (const { server, sockets } of opened.splice(0)) {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** Everything the peer reads until it has `bytes`. */
function readExactly(far: Socket, bytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  return new Promise((resolve) => {
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      got += chunk.length;
      if (got >= bytes) {
        far.off("data", onData);
        resolve(Buffer.concat(chunks));
      }
    };
    far.on("data", onData);
  });
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

/** Bytes 0, 1, 2 ... 250, 0, 1 ... so that order and slices show. */
function numbered(length: number, from = 0): Buffer {
  return Buffer.from(Array.from({ length }, (_, i) => (from + i) % 251));
}

describe("link: unthrottled sends", () => {
  // A frame's bytes reach the peer as they were, in order; `queued` counts
  // the bytes handed to the socket, the meter those the kernel took, and
  // `sent` is called once the socket no longer needs them.
  it("hands each frame to the socket and counts it once the kernel took it", async () => {
    const { near, far } = await connectedPair();
    const link = new Link(near);
    const received = readExactly(far, 3000);
    const sent: string[] = [];
    await link.send(numbered(1000), () => sent.push("first"));
    await link.send(numbered(2000, 1000), () => sent.push("second"));
    expect(link.queued).toBe(3000);
    expect(await received).toEqual(Buffer.concat([numbered(1000), numbered(2000, 1000)]));
    await turn();
    expect(sent).toEqual(["first", "second"]);
    expect(link.meter.total).toBe(3000);
    expect(link.down).toBeUndefined();
  });

  // Every 16th send lets the event loop run (replies, socket events,
  // workers' completions), and only every 16th.
  it("lets the event loop run on every 16th send", async () => {
    const { near, far } = await connectedPair();
    far.resume();
    const link = new Link(near);
    for (let round = 0; round < 2; round++) {
      let ran = false;
      setImmediate(() => {
        ran = true;
      });
      for (let i = 0; i < 15; i++) await link.send(numbered(10));
      expect(ran).toBe(false);
      await link.send(numbered(10));
      expect(ran).toBe(true);
    }
  });
});

describe("link: throttled sends", () => {
  // A throttled frame goes out one window's bytes (the bucket's slice) at a
  // time, each after its tokens, so a frame larger than the window trickles
  // out; `sent` is called once, after the last slice left.
  it("hands a frame to the socket a window's bytes at a time", async () => {
    const { near, far } = await connectedPair();
    const bucket = new TokenBucket(1_000_000, 1000);
    const takes: number[] = [];
    const take = bucket.take.bind(bucket);
    bucket.take = (bytes: number) => {
      takes.push(bytes);
      return take(bytes);
    };
    const writes: number[] = [];
    const write = near.write.bind(near);
    near.write = ((chunk: Buffer, callback: (error?: Error | null) => void) => {
      writes.push(chunk.length);
      return write(chunk, callback);
    }) as typeof near.write;
    const link = new Link(near, bucket);
    const received = readExactly(far, 2500);
    let sentCalls = 0;
    await link.send(numbered(2500), () => sentCalls++);
    expect(takes).toEqual([1000, 1000, 500]);
    expect(writes).toEqual([1000, 1000, 500]);
    expect(link.queued).toBe(2500);
    expect(await received).toEqual(numbered(2500));
    await turn();
    expect(sentCalls).toBe(1);
    expect(link.meter.total).toBe(2500);
  });

  // A frame of exactly one window goes in one slice, and `sent` still comes.
  it("sends a frame of one window in one slice", async () => {
    const { near, far } = await connectedPair();
    const link = new Link(near, new TokenBucket(1_000_000, 1000));
    const received = readExactly(far, 1000);
    let sentCalls = 0;
    await link.send(numbered(1000), () => sentCalls++);
    expect(await received).toEqual(numbered(1000));
    await turn();
    expect(sentCalls).toBe(1);
  });

  // A link that fails while a frame waits for its tokens stops there: the
  // rest of the frame is not handed over, `sent` is called, the failure
  // thrown.
  it("stops a throttled frame at the slice where the link failed", async () => {
    const { near } = await connectedPair();
    const bucket = new TokenBucket(1_000_000, 1000);
    const link = new Link(near, bucket);
    const peerError = new LinkError("the destination refused the page: bad page");
    const take = bucket.take.bind(bucket);
    let slices = 0;
    bucket.take = async (bytes: number) => {
      await take(bytes);
      if (++slices === 2) link.fail(peerError);
    };
    let sentCalls = 0;
    await expect(link.send(numbered(3000), () => sentCalls++)).rejects.toBe(peerError);
    expect(link.queued).toBe(1000);
    expect(sentCalls).toBe(1);
  });
});

describe("link: the socket's backpressure", () => {
  // Up to 8 MiB may wait in the socket beyond what the kernel took before a
  // sender waits: a frame of 8 MiB goes without the peer reading a byte.
  it("does not wait for a frame the socket's queue can hold", async () => {
    const { near, far } = await connectedPair();
    far.pause();
    const link = new Link(near);
    await link.send(Buffer.alloc(8 * 1024 * 1024, 1));
    expect(link.queued).toBe(8 * 1024 * 1024);
  });

  // Beyond 8 MiB waiting the send waits for the socket to drain: it
  // resolves only once the peer reads. The frame is 24 MiB so that more
  // than 8 MiB still waits whatever the kernel takes with the peer paused:
  // a send buffer of at most tcp_wmem's maximum (4 MiB by default, tcp(7))
  // and a receive buffer that grows only as the peer reads.
  it("waits for the drain when more than 8 MiB is waiting", async () => {
    const { near, far } = await connectedPair();
    far.pause();
    const link = new Link(near);
    const frame = 24 * 1024 * 1024;
    let done = false;
    const sending = link.send(Buffer.alloc(frame, 2)).then(() => {
      done = true;
    });
    for (let i = 0; i < 5; i++) await turn();
    expect(near.writableLength).toBeGreaterThan(8 * 1024 * 1024);
    expect(done).toBe(false);
    const received = readExactly(far, frame);
    far.resume();
    await sending;
    expect((await received).length).toBe(frame);
  });

  // A connection that drops while a send waits for the drain ends the
  // wait, and the send reports the link down and why (a reset peer).
  it("ends the wait when the connection drops, reporting why", async () => {
    const { near, far } = await connectedPair();
    far.pause();
    const link = new Link(near);
    const sending = link.send(Buffer.alloc(24 * 1024 * 1024, 3));
    for (let i = 0; i < 5; i++) await turn();
    far.resetAndDestroy();
    await expect(sending).rejects.toThrow(LinkError);
    await expect(sending).rejects.toThrow(new LinkError("connection reset by the peer"));
  });
});

describe("link: a link that is down", () => {
  // The first failure is the one reported: a peer's error frame, then the
  // socket error and the close that follow it, leave the peer's reason.
  it("keeps the first failure", async () => {
    const { near, far } = await connectedPair();
    const link = new Link(near);
    const first = new LinkError("the destination failed: out of memory");
    link.fail(first);
    link.fail(new LinkError("a later failure"));
    let socketError: Error | undefined;
    near.on("error", (error) => {
      socketError = error;
    });
    far.resetAndDestroy();
    await new Promise((resolve) => near.once("close", resolve));
    expect(socketError).toMatchObject({ code: "ECONNRESET" });
    expect(link.down).toBe(first);
  });

  // A send on a link that is down calls `sent` (the caller's buffer is
  // free) and throws why, handing nothing to the socket.
  it("refuses a send on a link that is down", async () => {
    const { near } = await connectedPair();
    const link = new Link(near);
    const why = new LinkError("the connection closed");
    link.fail(why);
    let sentCalls = 0;
    await expect(link.send(numbered(10), () => sentCalls++)).rejects.toBe(why);
    expect(sentCalls).toBe(1);
    expect(link.queued).toBe(0);
  });

  // The peer closing the connection marks the link down.
  it("goes down when the peer closes the connection", async () => {
    const { near, far } = await connectedPair();
    const link = new Link(near);
    far.end();
    near.end();
    await new Promise((resolve) => near.once("close", resolve));
    expect(link.down).toEqual(new LinkError("the connection closed"));
    expect(link.down?.name).toBe("LinkError");
  });

  // A socket error marks the link down with the error said in one line,
  // and the close after it does not replace it.
  it("goes down on a socket error, said in one line", async () => {
    const { near, far } = await connectedPair();
    const link = new Link(near);
    far.resetAndDestroy();
    await new Promise((resolve) => near.once("close", resolve));
    expect(link.down).toBeInstanceOf(LinkError);
    expect(link.down?.message).toBe("connection reset by the peer");
  });

  // A write that fails is not counted by the meter, though `sent` comes,
  // throttled or not.
  it.each([
    ["unthrottled", undefined],
    ["throttled", new TokenBucket(1_000_000, 1000)],
  ])("does not count a write that failed (%s)", async (_, bucket) => {
    const { near } = await connectedPair();
    const link = new Link(near, bucket);
    near.destroy();
    let sentCalls = 0;
    await link.send(numbered(100), () => sentCalls++).catch(() => undefined);
    await turn();
    expect(sentCalls).toBe(1);
    expect(link.meter.total).toBe(0);
  });
});

describe("describeSocketError", () => {
  const coded = (code: string, message = `${code} from the socket`) =>
    Object.assign(new Error(message), { code }) as NodeJS.ErrnoException;

  // Each socket error code a migration meets, in one line.
  it.each([
    ["ECONNREFUSED", "connection refused"],
    ["ECONNRESET", "connection reset by the peer"],
    ["EPIPE", "the peer closed the connection"],
    ["ETIMEDOUT", "connection timed out"],
    ["ENOTFOUND", "host not found (ENOTFOUND)"],
    ["EAI_AGAIN", "host not found (EAI_AGAIN)"],
    ["EADDRINUSE", "address in use"],
  ])("says %s as %j", (code, said) => {
    expect(describeSocketError(coded(code))).toBe(said);
  });

  // Any other error keeps its own message.
  it("keeps the message of any other error", () => {
    expect(describeSocketError(coded("EHOSTUNREACH", "connect EHOSTUNREACH 10.0.0.9:4444"))).toBe(
      "connect EHOSTUNREACH 10.0.0.9:4444",
    );
  });

  // A TLS error is said as TLS says it, not as a TCP error.
  it("says a TLS error as TLS does", () => {
    expect(describeSocketError(coded("CERT_HAS_EXPIRED"))).toBe("the certificate has expired");
    expect(
      describeSocketError(
        coded(
          "ECONNRESET",
          "Client network socket disconnected before secure TLS connection was established",
        ),
      ),
    ).toBe("the peer closed the connection during the TLS handshake (does it listen without TLS?)");
  });

  // A connection refused at connect time reaches the link as one line.
  it("says a refused connection", async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("no TCP address");
    await new Promise((resolve) => server.close(resolve));
    const socket = new Socket();
    const link = new Link(socket);
    socket.connect(address.port, "127.0.0.1");
    await new Promise((resolve) => socket.once("close", resolve));
    expect(link.down?.message).toBe("connection refused");
  });
});
