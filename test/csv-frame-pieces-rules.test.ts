import { createServer } from "node:net";
import { join } from "node:path";
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { encodeFrame, FrameReader, HEADER_BYTES, Op } from "../src/csv/protocol.js";
import { TargetClient, TargetConnectionError } from "../src/csv/target-client.js";
import { testTempDir } from "./support/temp.js";

// A received frame keeps its payload in the very arrays the socket delivered
// (docs/csv.md: "the pieces the socket delivered"), so the target can hand a
// WRITE's pieces to one gathered pwritev with neither a copy nor a new view.
describe("a frame reader hands on the socket's own arrays", () => {
  it("gives back a payload that ends a read exactly as that read's array", () => {
    const payload = Uint8Array.from({ length: 40 }, (_, i) => i * 7);
    const frame = encodeFrame(Op.write, 9, payload);
    const header = frame.slice(0, HEADER_BYTES);
    const body = frame.slice(HEADER_BYTES);
    const reader = new FrameReader();
    expect(reader.push(header)).toEqual([]);
    const [received] = reader.push(body);
    expect(received?.tag).toBe(9);
    expect(received?.pieces).toHaveLength(1);
    expect(received?.pieces?.[0]).toBe(body);
    expect(received?.payload).toBe(body);
    expect(reader.pending).toBe(0);
  });
});

// TargetClient.connect over a Unix socket gives up once `timeoutMs` passes
// without the connection being made, naming the socket and the time. The
// clock is faked so the time runs out before the connection can complete,
// whatever the machine's load.
describe("connecting to a target's Unix socket", () => {
  it("fails with a connection error naming the socket when the time runs out first", async () => {
    const path = join(testTempDir("csv-unix-timeout"), "target.sock");
    // A server that drops every connection: were the time limit ignored,
    // the login would fail for another reason, not the time limit.
    const server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => server.listen(path, () => resolve()));
    onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    const connecting = TargetClient.connect(0, "node-a", 50, { socketPath: path });
    const outcome = connecting.then(
      () => undefined,
      (error: unknown) => error,
    );
    vi.advanceTimersByTime(50);
    vi.useRealTimers();
    const error = await outcome;
    expect(error).toBeInstanceOf(TargetConnectionError);
    expect((error as Error).message).toBe(`${path}: no connection within 50 ms`);
  });
});
