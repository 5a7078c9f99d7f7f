import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { MemoryLayout } from "../../src/memory/layout.js";
import {
  type DestinationOptions,
  type DestinationReport,
  DestinationServer,
} from "../../src/migration/live/destination.js";
import { FrameType, type FrameTypeCode } from "../../src/migration/live/frame.js";
import {
  FrameReader,
  FrameWriter,
  type ReceivedFrame,
  stagingBytes,
} from "../../src/migration/live/frame-codec.js";
import { decodeError } from "../../src/migration/live/messages.js";
import { type LiveGuestOptions, LiveSource } from "../../src/migration/live/source.js";
import { StreamKernel } from "../../src/wasm/stream.js";

// The two ends of a live post-copy migration over loopback TCP, a proxy in
// the middle of the link that a test can cut, and destinations that break
// the protocol on purpose: what the post-copy tests and the recovery tests
// build their runs from. Everything a rig opened, `close()` closes.

const MiB = 1024 ** 2;

/** A destination, and its sessions' reports in the order they end. */
export interface TestDestination {
  readonly port: number;
  readonly server: DestinationServer;
  /** Every session's report so far, in the order the sessions ended. */
  readonly reports: readonly DestinationReport[];
  /** The next report {@link TestDestination.nextReport} has not handed out, waited for if need be. */
  nextReport(): Promise<DestinationReport>;
}

/** A proxy that passes both directions of every connection until cut. */
export interface CuttableProxy {
  readonly port: number;
  /** Where later connections go; a test may point it elsewhere. */
  readonly target: { port: number };
  /**
   * Breaks every connection at once (a dead link); with `refuseMs`, also
   * stops listening that long, so reconnects are refused meanwhile, as
   * while a destination is not yet listening again.
   */
  cut(refuseMs?: number): void;
}

/** A destination that answers frames as a test says, and the reason of the error frame it is sent. */
export interface FakeDestination {
  readonly port: number;
  readonly told: Promise<string>;
}

/**
 * Answers one frame a fake destination received: `writer.payload(n)` is
 * where a reply's payload goes, and `reply` seals it and sends it.
 */
export type FakeAnswer = (
  frame: ReceivedFrame,
  reply: (type: FrameTypeCode, payloadBytes: number) => void,
  writer: FrameWriter,
) => void;

/** The endpoints of the live post-copy tests, closed together after each test. */
export class LivePostcopyRig {
  private readonly servers: DestinationServer[] = [];
  private readonly sources: LiveSource[] = [];
  private readonly others: Server[] = [];

  /** Closes every source, destination, proxy and fake this rig started. */
  async close(): Promise<void> {
    for (const s of this.sources.splice(0)) await s.close();
    for (const server of this.servers.splice(0)) await server.close();
    for (const o of this.others.splice(0)) o.close();
  }

  /** A destination serving any number of sessions (`options` added to that). */
  async destination(options: Partial<DestinationOptions> = {}): Promise<TestDestination> {
    const all: DestinationReport[] = [];
    const reports: DestinationReport[] = [];
    const waiting: ((report: DestinationReport) => void)[] = [];
    const server = await DestinationServer.listen({
      port: 0,
      sessions: 0,
      ...options,
      onSession: (report) => {
        all.push(report);
        const wake = waiting.shift();
        if (wake) wake(report);
        else reports.push(report);
      },
    });
    this.servers.push(server);
    return {
      port: server.address.port,
      server,
      reports: all,
      nextReport: () => {
        const ready = reports.shift();
        return ready ? Promise.resolve(ready) : new Promise((resolve) => waiting.push(resolve));
      },
    };
  }

  /** An 8 MiB guest whose 2 vCPUs write uniformly: most pages are dirty again by the end of pass 1. */
  source(writesPerSecond = 4000): LiveSource {
    const s = LiveSource.start({
      guestBytes: 8 * MiB,
      vcpus: 2,
      workload: { kind: "uniform" },
      writesPerSecond,
      threads: 1,
      seed: 11,
    });
    this.sources.push(s);
    return s;
  }

  /**
   * A 1 MiB guest whose one vCPU runs on this thread and writes nothing: a
   * test dirties its pages itself (`guest.write`), so every pass carries a
   * known set of pages.
   */
  idleSource(options: Partial<LiveGuestOptions> = {}): LiveSource {
    const s = LiveSource.start({
      guestBytes: MiB,
      vcpus: 1,
      workload: { kind: "hotset" },
      writesPerSecond: 0,
      threads: 0,
      seed: 7,
      ...options,
    });
    this.sources.push(s);
    return s;
  }

  /** A proxy on loopback in front of `first` (a port). */
  async proxy(first: number): Promise<CuttableProxy> {
    const target = { port: first };
    const pairs: [Socket, Socket][] = [];
    const onClient = (client: Socket) => {
      const upstream = connect(target.port, "127.0.0.1");
      pairs.push([client, upstream]);
      client.pipe(upstream);
      upstream.pipe(client);
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    };
    let server = await this.listen(createServer(onClient));
    const port = portOf(server);
    return {
      port,
      target,
      cut: (refuseMs = 0) => {
        for (const [a, b] of pairs.splice(0)) {
          a.destroy();
          b.destroy();
        }
        if (refuseMs <= 0) return;
        server.close();
        setTimeout(() => {
          server = createServer(onClient);
          this.others.push(server);
          server.listen(port, "127.0.0.1");
        }, refuseMs);
      },
    };
  }

  /**
   * A destination that speaks the live frame format but answers each frame
   * with `answer` (what a broken or hostile destination might send), with
   * room for replies of `sendBytes`; `told` resolves with the reason of the
   * error frame the source answers with.
   */
  async fakeDestination(answer: FakeAnswer, sendBytes = 1024): Promise<FakeDestination> {
    const layout = new MemoryLayout();
    const kernel = StreamKernel.on(layout.memory, layout.allocate("scratch", 64));
    const receive = layout.allocate("receive", stagingBytes(), 4096);
    const send = layout.allocate("send", stagingBytes(sendBytes));
    let tell!: (reason: string) => void;
    const told = new Promise<string>((resolve) => {
      tell = resolve;
    });
    const server = createServer((socket) => {
      const writer = new FrameWriter(layout.memory, kernel, send, sendBytes);
      const reply = (type: FrameTypeCode, payloadBytes: number) => {
        socket.write(writer.seal(type, payloadBytes));
      };
      const reader = new FrameReader(layout.memory, kernel, receive, (frame) => {
        if (frame.type === FrameType.error) tell(decodeError(frame.payload));
        else answer(frame, reply, writer);
      });
      socket.on("data", (chunk: Buffer) => reader.push(chunk));
      socket.on("error", () => socket.destroy());
      socket.on("close", () => tell("(closed without an error frame)"));
    });
    return { port: portOf(await this.listen(server)), told };
  }

  private async listen(server: Server): Promise<Server> {
    this.others.push(server);
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    return server;
  }
}

function portOf(server: Server): number {
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("test server not listening");
  return address.port;
}
