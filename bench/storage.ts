/**
 * Storage benchmarks, every case verified before it is timed and run beside
 * its peers: sequential 1 MiB writes to a new dynamic VHD against the same
 * writes to a raw file; random 4 KiB reads at queue depth 32 from a fully
 * allocated dynamic VHD against a raw file; converting a dynamic VHD with
 * 10 % of its blocks allocated to raw against qemu-img convert; and the
 * sector-bitmap, zero-detection and pattern-verification kernels against
 * their oracles and a plain memory read (the bandwidth bound). Buffered I/O
 * by default, the host's page cache in play for every file case; with
 * `--direct`, every file case (hvlab, the raw peer and qemu-img, given
 * `-t none -T none`) goes around it with O_DIRECT, on the first of the
 * temporary and the current directory whose file system takes it. The
 * results say which (`conditions.pageCache`). I/O buffers are in the wasm
 * memory at page-aligned offsets, so direct requests need no bounce.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BenchCase, BenchSuite } from "../src/bench/harness.js";
import { MemoryLayout } from "../src/memory/layout.js";
import {
  bitmapCountOracle,
  bitmapScanOracle,
  isZeroOracle,
  patternVerifyOracle,
} from "../src/oracle/storage.js";
import { FdFile } from "../src/storage/block-file.js";
import { directIoDir, openFile } from "../src/storage/direct-file.js";
import { RawImage } from "../src/storage/disk-image.js";
import { convertImage } from "../src/storage/operations.js";
import { VhdImage } from "../src/storage/vhd.js";
import { packageRoot } from "../src/util/package-root.js";
import { removeTemporary, trackTemporary } from "../src/util/temporary.js";
import { BandwidthKernel } from "../src/wasm/bandwidth.js";
import { StorageKernel } from "../src/wasm/storage.js";

const MiB = 1024 * 1024;

function assert(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

/** Whether two files hold the same bytes (read 8 MiB at a time: the outputs are 4 GiB). */
function sameFiles(a: string, b: string): boolean {
  const fa = new FdFile(a, "r");
  const fb = new FdFile(b, "r");
  try {
    if (fa.size() !== fb.size()) return false;
    const x = Buffer.alloc(8 * MiB);
    const y = Buffer.alloc(8 * MiB);
    for (let at = 0; at < fa.size(); at += x.length) {
      const n = fa.read(x, at);
      if (fb.read(y, at) !== n || !x.subarray(0, n).equals(y.subarray(0, n))) return false;
    }
    return true;
  } finally {
    fa.close();
    fb.close();
  }
}

function qemuImgVersion(): string | undefined {
  const run = spawnSync("qemu-img", ["--version"], { encoding: "utf8" });
  return run.status === 0 ? /version (\S+)/.exec(run.stdout)?.[1] : undefined;
}

/** The `storage` suite: `hvlab bench storage`. */
export const suite: BenchSuite = {
  name: "storage",
  description: "VHD I/O against raw files, convert against qemu-img, bitmap/zero/pattern kernels",
  async setup({ quick, direct = false }) {
    const base = direct ? directIoDir([tmpdir(), process.cwd()]) : tmpdir();
    const dir = trackTemporary(mkdtempSync(join(base, "hvlab-bench-storage-")));
    const open = (path: string, mode: "r" | "w+") => openFile(path, mode, { direct });
    const layout = new MemoryLayout();
    const memory = layout.memory;
    const kernel = StorageKernel.on(memory);
    const bandwidth = BandwidthKernel.on(memory);
    const cases: BenchCase[] = [];
    const data = layout.allocate("storage.bench.data", MiB, 4096).bytes(memory);
    data.forEach((_, i) => {
      data[i] = (i * 131 + 7) & 0xff;
    });

    // --- sequential 1 MiB writes to a new disk ---------------------------------
    const seqBytes = quick ? 32 * MiB : 256 * MiB;
    const seqPath = (name: string) => join(dir, `seq-${name}`);
    const writeAll = (image: { write(o: number, b: Uint8Array): void; close(): void }) => {
      for (let at = 0; at < seqBytes; at += MiB) image.write(at, data);
      image.close();
    };
    const newDynamic = () =>
      VhdImage.create(open(seqPath("dynamic.vhd"), "w+"), {
        type: "dynamic",
        size: seqBytes,
      });
    const newRaw = () => {
      const f = open(seqPath("raw.img"), "w+");
      f.truncate(seqBytes);
      return new RawImage(f, true);
    };
    cases.push({
      case: `sequential 1 MiB writes, new ${seqBytes / MiB} MiB disk`,
      opsPerCall: seqBytes / MiB,
      bytesPerOp: MiB,
      iterations: quick ? 4 : 8,
      verify: () => {
        writeAll(newDynamic());
        writeAll(newRaw());
        const a = new FdFile(seqPath("raw.img"), "r");
        const v = VhdImage.open(new FdFile(seqPath("dynamic.vhd"), "r"));
        const x = new Uint8Array(MiB);
        const y = new Uint8Array(MiB);
        for (let at = 0; at < seqBytes; at += 8 * MiB) {
          a.read(x, at);
          v.read(at, y);
          assert(Buffer.from(x).equals(Buffer.from(y)), `dynamic VHD differs from raw at ${at}`);
        }
        a.close();
        v.close();
      },
      impls: [
        { impl: "hvlab dynamic VHD", fn: () => writeAll(newDynamic()) },
        { impl: "raw file", fn: () => writeAll(newRaw()) },
      ],
    });

    // --- random 4 KiB reads at queue depth 32 ----------------------------------
    const readBytes = quick ? 64 * MiB : 512 * MiB;
    const dyn = VhdImage.create(open(join(dir, "read.vhd"), "w+"), {
      type: "dynamic",
      size: readBytes,
    });
    const rawFile = open(join(dir, "read.img"), "w+");
    rawFile.truncate(readBytes);
    const raw = new RawImage(rawFile, true);
    for (let at = 0; at < readBytes; at += MiB) {
      dyn.write(at, data);
      raw.write(at, data);
    }
    const QD = 32;
    const BATCHES = 64;
    const offsets = new Float64Array(QD * BATCHES);
    let x = 12345;
    for (let i = 0; i < offsets.length; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      offsets[i] = (x % (readBytes / 4096)) * 4096;
    }
    const page = layout.allocate("storage.bench.page", 4096, 4096).bytes(memory);
    const readAll = (image: { read(o: number, b: Uint8Array): void }) => {
      // A queue of 32 served in turn: the synchronous engine's queue depth.
      for (const o of offsets) image.read(o, page);
      return page[0];
    };
    cases.push({
      case: `random 4 KiB reads, queue depth ${QD}, allocated ${readBytes / MiB} MiB disk`,
      opsPerCall: offsets.length,
      bytesPerOp: 4096,
      verify: () => {
        const p = new Uint8Array(4096);
        for (const o of offsets.subarray(0, 256)) {
          dyn.read(o, page);
          raw.read(o, p);
          assert(Buffer.from(page).equals(Buffer.from(p)), `read at ${o} differs`);
        }
      },
      impls: [
        { impl: "hvlab dynamic VHD", fn: () => readAll(dyn) },
        { impl: "raw file", fn: () => readAll(raw) },
      ],
    });

    // --- convert a dynamic VHD, 10 % allocated, to raw -------------------------
    const convBytes = quick ? 512 * MiB : 4096 * MiB;
    const src = join(dir, "convert.vhd");
    const conv = VhdImage.create(new FdFile(src, "w+"), { type: "dynamic", size: convBytes });
    const blocks = convBytes / (2 * MiB);
    for (let b = 0; b < blocks; b += 10) {
      conv.write(b * 2 * MiB, data);
      conv.write(b * 2 * MiB + MiB, data);
    }
    conv.close();
    const qemu = qemuImgVersion();
    const outHv = join(dir, "convert-hvlab.raw");
    const outQemu = join(dir, "convert-qemu.raw");
    const outHvInProcess = join(dir, "convert-hvlab-in-process.raw");
    // Both sides are timed as whole commands, process start-up included: a
    // user types `hvlab storage convert` as they type `qemu-img convert`.
    // The command has no direct I/O option: with --direct, hvlab's side is
    // the conversion in this process alone.
    const hvlabBin = join(packageRoot(), "bin", "hvlab.js");
    const hvCommandIn = (env: NodeJS.ProcessEnv) => () => {
      const run = spawnSync(
        process.execPath,
        [hvlabBin, "storage", "convert", src, outHv, "--to", "raw"],
        { env },
      );
      if (run.status !== 0) throw new Error(`hvlab storage convert failed: ${run.stderr}`);
    };
    const hvCommand = hvCommandIn(process.env);
    // NODE_EXTRA_CA_CERTS makes every Node.js process parse the certificates
    // it names as it starts, before any script runs (node::crypto::
    // UseExtraCaCerts, Node's src/crypto/crypto_context.cc): a convert opens
    // no TLS connection, yet where it names a whole system bundle (some 150
    // certificates) that is some 30 ms of each start. Where it is set, the
    // command is also timed without it, so both figures are seen.
    const { NODE_EXTRA_CA_CERTS: extraCaCerts, ...withoutExtraCaCerts } = process.env;
    const hvCommandNoCa = extraCaCerts ? hvCommandIn(withoutExtraCaCerts) : undefined;
    // The same conversion in this process: what the command costs without its start-up.
    const hvInProcess = async () => {
      await convertImage(src, outHvInProcess, { to: "raw", direct });
    };
    // qemu-img's cache modes: -T for the source, -t for the destination; none is O_DIRECT.
    const qemuCache = direct ? ["-T", "none", "-t", "none"] : [];
    const qemuConvert = () => {
      const run = spawnSync("qemu-img", [
        "convert",
        ...qemuCache,
        "-f",
        "vpc",
        "-O",
        "raw",
        src,
        outQemu,
      ]);
      if (run.status !== 0) throw new Error(`qemu-img convert failed: ${run.stderr}`);
    };
    const sameBytes = (what: string) => {
      const cmp = spawnSync("qemu-img", [
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        outHvInProcess,
        outQemu,
      ]);
      assert(cmp.status === 0, `${what} and qemu-img's raw outputs differ: ${cmp.stdout}`);
    };
    cases.push({
      case: `convert ${convBytes / MiB} MiB dynamic VHD, 10% allocated, to raw`,
      bytesPerOp: convBytes,
      iterations: 7,
      verify: async () => {
        await hvInProcess();
        if (!direct) {
          for (const command of hvCommandNoCa ? [hvCommand, hvCommandNoCa] : [hvCommand]) {
            rmSync(outHv, { force: true });
            command();
            assert(
              sameFiles(outHv, outHvInProcess),
              "the command's and the in-process conversion's outputs differ",
            );
          }
        }
        if (!qemu) return;
        qemuConvert();
        sameBytes("hvlab's");
      },
      impls: [
        ...(direct ? [] : [{ impl: "hvlab storage convert (command)", fn: hvCommand }]),
        ...(direct || !hvCommandNoCa
          ? []
          : [
              {
                impl: "hvlab storage convert (command, NODE_EXTRA_CA_CERTS unset)",
                fn: hvCommandNoCa,
              },
            ]),
        ...(qemu
          ? [
              {
                impl: `qemu-img ${qemu} convert${direct ? " -t none -T none" : ""} (command)`,
                fn: qemuConvert,
              },
            ]
          : []),
        { impl: "hvlab convertImage in this process (no start-up)", fn: hvInProcess },
      ],
    });

    // --- kernels ---------------------------------------------------------------
    const bm = layout.allocate("storage.bench.bitmap", 8192);
    const bmView = bm.bytes(memory);
    bmView.fill(0xff);
    bmView[8000] = 0xfe; // the one clear sector, near the end of a 2 MiB block's 4096 sectors x 16
    const sectors = 8192 * 8;
    cases.push({
      case: "sector bitmap scan+count, 64 Ki sectors",
      bytesPerOp: 8192,
      verify: () => {
        const copy = bmView.slice();
        assert(
          kernel.bitmapScan(bm, 0, 0, sectors, 0) === bitmapScanOracle(copy, 0, sectors, 0),
          "scan",
        );
        assert(
          kernel.bitmapCount(bm, 0, 0, sectors) === bitmapCountOracle(copy, 0, sectors),
          "count",
        );
      },
      impls: [
        {
          impl: "hvlab",
          fn: () => kernel.bitmapScan(bm, 0, 0, sectors, 0) + kernel.bitmapCount(bm, 0, 0, sectors),
        },
        {
          impl: "oracle",
          fn: () => bitmapScanOracle(bmView, 0, sectors, 0) + bitmapCountOracle(bmView, 0, sectors),
        },
      ],
    });
    const block = layout.allocate("storage.bench.block", 2 * MiB, 4096);
    const blockView = block.bytes(memory);
    blockView.fill(0);
    cases.push({
      case: "zero-block detection, 2 MiB block",
      bytesPerOp: 2 * MiB,
      verify: () =>
        assert(kernel.isZero(block, 0, 2 * MiB) === isZeroOracle(blockView), "zero test"),
      impls: [
        { impl: "hvlab", fn: () => kernel.isZero(block, 0, 2 * MiB) },
        { impl: "oracle", fn: () => isZeroOracle(blockView) },
        { impl: "memory read (bound)", fn: () => bandwidth.read(block, 0, 2 * MiB) },
      ],
    });
    const pat = layout.allocate("storage.bench.pattern", MiB, 4096);
    const gens = layout.allocate("storage.bench.gens", 4 * 256);
    new Uint32Array(memory.buffer, gens.offset, 256).fill(3);
    kernel.patternFill(pat, 0, MiB, 4096, 0, 3, 9n);
    const patView = pat.bytes(memory);
    cases.push({
      case: "pattern verification, 1 MiB of 4 KiB blocks",
      bytesPerOp: MiB,
      iterations: quick ? 8 : 32,
      verify: () => {
        assert(kernel.patternVerify(pat, 0, MiB, 4096, 0, gens, 0, 9n) === -1, "kernel");
        const table = new Uint32Array(memory.buffer, gens.offset, 256).slice();
        assert(
          patternVerifyOracle(patView.slice(0, 64 * 1024), 4096, 0, table, 9n) === -1,
          "oracle",
        );
      },
      impls: [
        { impl: "hvlab", fn: () => kernel.patternVerify(pat, 0, MiB, 4096, 0, gens, 0, 9n) },
        {
          impl: "oracle",
          fn: () =>
            patternVerifyOracle(
              patView,
              4096,
              0,
              new Uint32Array(memory.buffer, gens.offset, 256),
              9n,
            ),
        },
        { impl: "memory read (bound)", fn: () => bandwidth.read(pat, 0, MiB) },
      ],
    });

    return {
      cases,
      conditions: { pageCache: !direct },
      async teardown() {
        dyn.close();
        raw.close();
        for (const f of [outHv, outHvInProcess, outQemu]) {
          try {
            unlinkSync(f);
          } catch {}
        }
        removeTemporary(dir);
      },
    };
  },
};
