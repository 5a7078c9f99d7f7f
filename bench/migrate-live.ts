/**
 * Live migration over loopback TCP against its peers: a plain in-process
 * memory copy of the same bytes (the bound) and a raw socket pipe of the same
 * bytes without framing, to another process as the migration goes; and quick
 * migration's save + restore through a saved-state file against a plain file
 * write + read of the same bytes. Every case is verified before it is timed.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { open, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import type { BenchCase, BenchSuite } from "../src/bench/harness.js";
import { MemoryLayout } from "../src/memory/layout.js";
import type { Region } from "../src/memory/region.js";
import { fillDeviceState, prefillGuest } from "../src/migration/live/guest-image.js";
import { LiveSource } from "../src/migration/live/source.js";
import {
  readSavedState,
  type SavedStateContext,
  writeSavedState,
} from "../src/migration/quick/saved-state.js";
import { loadTransportSecurity } from "../src/transport/secure.js";
import { packageRoot } from "../src/util/package-root.js";
import { makeTemporaryDir, removeTemporary } from "../src/util/temporary.js";
import { formatBytes } from "../src/util/units.js";
import { BandwidthKernel } from "../src/wasm/bandwidth.js";
import { StreamKernel } from "../src/wasm/stream.js";

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

function assert(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

/** Starts a child process and reads the port from its first `listening on HOST:PORT` line. */
async function startListener(args: string[]): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening on [^:\s]+:(\d+)/.exec(out);
      if (match) resolve(Number(match[1]));
    });
    child.once("exit", (code) => reject(new Error(`listener exited with ${code}`)));
  });
  return { child, port };
}

/**
 * A sink process for the raw pipe: per connection, reads `bytes` bytes and
 * answers with how many it got, in ASCII.
 */
const SINK = `
const net = require("node:net");
const want = Number(process.argv[1]);
net.createServer((socket) => {
  let got = 0;
  socket.on("data", (chunk) => {
    got += chunk.length;
    if (got >= want) socket.end(String(got));
  });
}).listen(0, "127.0.0.1", function () {
  console.log("listening on 127.0.0.1:" + this.address().port);
});
`;

/** Writes `ram` over a raw loopback socket in 1 MiB writes; resolves with the sink's count. */
async function rawPipe(port: number, memory: WebAssembly.Memory, ram: Region): Promise<number> {
  const socket = connect(port, "127.0.0.1");
  socket.setNoDelay(true);
  await once(socket, "connect");
  const reply = new Promise<number>((resolve, reject) => {
    let text = "";
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString();
    });
    socket.on("end", () => resolve(Number(text)));
    socket.on("error", reject);
  });
  for (let at = 0; at < ram.byteLength; at += MiB) {
    // A copy per write, as any sender of memory that keeps changing must make.
    const piece = Buffer.from(
      new Uint8Array(memory.buffer, ram.offset + at, Math.min(MiB, ram.byteLength - at)),
    );
    if (!socket.write(piece)) await once(socket, "drain");
  }
  const got = await reply;
  socket.destroy();
  return got;
}

export const suite: BenchSuite = {
  name: "migrate-live",
  description:
    "live migration over loopback TCP beside a memory copy and a raw socket pipe; quick migration save + restore beside a plain file write + read",
  async setup({ quick }) {
    const cases: BenchCase[] = [];
    const root = packageRoot();
    const hvlab = join(root, "bin", "hvlab.js");

    // --- live migration over loopback TCP ---------------------------------
    const guestBytes = quick ? 64 * MiB : GiB;
    const destination = await startListener([
      hvlab,
      "migrate-live",
      "--listen",
      "0",
      "--sessions",
      "0",
    ]);
    // The same destination over TLS 1.3 (a pre-shared key, so the bench needs no openssl).
    const keysDir = makeTemporaryDir("bench-tls");
    const keys = join(keysDir, "keys.psk");
    await writeFile(keys, `source:${randomBytes(32).toString("hex")}\n`, { mode: 0o600 });
    const tlsDestination = await startListener([
      hvlab,
      "migrate-live",
      "--listen",
      "0",
      "--sessions",
      "0",
      "--tls-psk",
      keys,
    ]);
    const tls = loadTransportSecurity({ tlsPsk: keys }, "client");
    const sink = await startListener(["-e", SINK, String(guestBytes)]);
    // An idle guest: the figure is the transport's, not the workload's convergence.
    const source = LiveSource.start({
      guestBytes,
      vcpus: 1,
      workload: { kind: "uniform" },
      writesPerSecond: 0,
      threads: 0,
      seed: 9,
    });
    const ram = source.ram.region;
    const memory = source.layout.memory;
    const bandwidth = BandwidthKernel.on(memory);
    const copyTarget = source.layout.allocate("bench-copy-target", guestBytes, 4096);
    const migrate = async (verify: boolean, overTls = false) => {
      const result = await source.migrate({
        host: "127.0.0.1",
        port: overTls ? tlsDestination.port : destination.port,
        verify,
        ...(overTls ? { security: tls } : {}),
      });
      if (result.summary.status !== "completed") {
        throw new Error(`migration ${result.summary.status}: ${result.summary.reason}`);
      }
      return result;
    };
    cases.push({
      case: `live migration of a ${formatBytes(guestBytes)} idle guest over loopback TCP`,
      bytesPerOp: guestBytes,
      verify: async () => {
        const checked = await migrate(true);
        assert(checked.summary.verified === true, "the destination did not verify every page");
        assert(
          checked.summary.normal === guestBytes / 4096,
          `sent ${checked.summary.normal} pages`,
        );
        const overTls = await migrate(true, true);
        assert(
          overTls.summary.verified === true,
          "over TLS, the destination did not verify every page",
        );
        const got = await rawPipe(sink.port, memory, ram);
        assert(got === guestBytes, `the raw pipe delivered ${got} of ${guestBytes} bytes`);
        bandwidth.copy(copyTarget, 0, ram, 0, guestBytes);
        assert(
          Buffer.from(copyTarget.bytes(memory)).equals(Buffer.from(ram.bytes(memory))),
          "the memory copy differs",
        );
      },
      impls: [
        // Declared async so that the harness knows to await them without a probe call.
        {
          impl: "hvlab live-tcp (framed, XXH64 per frame)",
          fn: async () => {
            await migrate(false);
          },
        },
        {
          impl: "hvlab live-tcp + every page verified",
          fn: async () => {
            await migrate(true);
          },
        },
        {
          impl: "hvlab live-tcp over TLS 1.3 (PSK, AES-128-GCM)",
          fn: async () => {
            await migrate(false, true);
          },
        },
        {
          impl: "raw socket pipe, no framing (peer)",
          fn: async () => {
            await rawPipe(sink.port, memory, ram);
          },
        },
        {
          impl: "memory copy in-process (bound)",
          fn: () => bandwidth.copy(copyTarget, 0, ram, 0, guestBytes),
        },
      ],
    });

    // --- quick migration: save + restore ----------------------------------
    const quickBytes = quick ? 16 * MiB : 256 * MiB;
    const dir = makeTemporaryDir("bench-quick");
    const file = join(dir, "guest.hvls");
    const plain = join(dir, "guest.raw");
    const layout = new MemoryLayout();
    const guestRam = layout.allocate("quick-ram", quickBytes, 4096);
    prefillGuest(guestRam.bytes(layout.memory), 4096, 9);
    const device = layout.allocate("quick-device", 64 * 1024);
    fillDeviceState(device.bytes(layout.memory), 9);
    const restoredRam = layout.allocate("quick-restored", quickBytes, 4096);
    const restoredDevice = layout.allocate("quick-restored-device", 64 * 1024);
    const context: SavedStateContext = {
      memory: layout.memory,
      kernel: StreamKernel.on(layout.memory, layout.allocate("quick-scratch", 64)),
      scratch: layout.allocate("quick-header", 64),
    };
    const saveRestore = async () => {
      await writeSavedState(file, context, { ram: guestRam, pageShift: 12, device });
      await readSavedState(file, context, { maxGuestBytes: quickBytes }, () => ({
        ram: restoredRam,
        device: restoredDevice,
      }));
    };
    const plainWriteRead = async () => {
      const out = await open(plain, "w");
      await out.write(guestRam.bytes(layout.memory), 0, quickBytes, 0);
      await out.sync();
      await out.close();
      const back = await open(plain, "r");
      await back.read(restoredRam.bytes(layout.memory), 0, quickBytes, 0);
      await back.close();
    };
    const same = () =>
      Buffer.from(restoredRam.bytes(layout.memory)).equals(
        Buffer.from(guestRam.bytes(layout.memory)),
      );
    cases.push({
      case: `quick migration save + restore of a ${formatBytes(quickBytes)} guest (fsync, chunk digests)`,
      bytesPerOp: quickBytes,
      verify: async () => {
        restoredRam.bytes(layout.memory).fill(0);
        await saveRestore();
        assert(same(), "the restored guest differs");
        restoredRam.bytes(layout.memory).fill(0);
        await plainWriteRead();
        assert(same(), "the plain read-back differs");
      },
      impls: [
        { impl: "hvlab saved-state write + read", fn: saveRestore },
        { impl: "plain file write + fsync + read (peer)", fn: plainWriteRead },
      ],
    });

    return {
      cases,
      async teardown() {
        await source.close();
        destination.child.kill();
        tlsDestination.child.kill();
        removeTemporary(keysDir);
        sink.child.kill();
        removeTemporary(dir);
      },
    };
  },
};
