import { type BlockFile, FdFile } from "./block-file.js";
import { ParentChainError, VhdFormatError } from "./errors.js";
import {
  BAT_UNALLOCATED,
  bitmapBytes,
  decodeFooter,
  decodeHeader,
  FOOTER_BYTES,
  HEADER_BYTES,
  SECTOR,
  type VhdFooter,
} from "./format.js";
import { chsGeometry } from "./geometry.js";
import { defaultKernels, type StorageKernels } from "./kernels.js";
import { detectFormat } from "./open.js";
import { blockProblems, type ParentSource, VhdImage } from "./vhd.js";

/** One finding of {@link checkVhd}. */
export interface CheckProblem {
  /** error: the image cannot be trusted; warning: it reads correctly but is not as written by the book. */
  readonly severity: "error" | "warning";
  /** Byte offset in the file, or -1 for the image as a whole. */
  readonly offset: number;
  readonly message: string;
}

/** What {@link checkVhd} found. */
export interface CheckReport {
  readonly file: string;
  /** True when no error was found (warnings allowed). */
  readonly ok: boolean;
  readonly problems: readonly CheckProblem[];
  /** Blocks allocated, of the disk's blocks (dynamic and differencing). */
  readonly allocatedBlocks?: number;
  readonly totalBlocks?: number;
}

function fromError(error: unknown): CheckProblem {
  if (error instanceof VhdFormatError)
    return { severity: "error", offset: error.offset, message: error.message };
  return {
    severity: "error",
    offset: -1,
    message: error instanceof Error ? error.message : String(error),
  };
}

/**
 * Verifies a VHD's structure (qemu-img check does not support the format):
 * footer and its copy, dynamic header, every BAT entry, the parent chain,
 * and the geometry. Reports every problem found, each with its offset.
 */
export function checkVhd(
  file: BlockFile,
  options: { kernels?: StorageKernels; parents?: ParentSource } = {},
): CheckReport {
  const kernels = options.kernels ?? defaultKernels();
  const problems: CheckProblem[] = [];
  const name = file.name;
  if (detectFormat(file) !== "vpc") {
    return {
      file: name,
      ok: false,
      problems: [
        {
          severity: "error",
          offset: Math.max(0, file.size() - FOOTER_BYTES),
          message: 'no VHD footer: no "conectix" cookie at the end or at offset 0',
        },
      ],
    };
  }
  const size = file.size();
  const read = (at: number, n: number) => {
    const bytes = new Uint8Array(n);
    return at >= 0 && at + n <= size && file.read(bytes, at) === n ? bytes : undefined;
  };
  // The structures one by one, so that each problem is reported, not only the first.
  const endBytes = read(size - FOOTER_BYTES, FOOTER_BYTES);
  let footer: VhdFooter | undefined;
  try {
    footer = decodeFooter(endBytes ?? new Uint8Array(0), size - FOOTER_BYTES, kernels.checksum);
  } catch (error) {
    problems.push(fromError(error));
  }
  const copyBytes = read(0, FOOTER_BYTES);
  let copy: VhdFooter | undefined;
  try {
    copy = decodeFooter(copyBytes ?? new Uint8Array(0), 0, kernels.checksum);
  } catch (error) {
    if ((footer ?? copy)?.diskType !== "fixed" && footer?.diskType !== "fixed")
      problems.push(fromError(error));
  }
  // The end's error when the copy stands in: opening notes it again, in other words.
  let standIn: string | undefined;
  if (!footer && copy && copy.diskType !== "fixed") {
    // The specification keeps the copy for this: the image is readable, the end is to be rewritten.
    standIn = problems[0]?.message;
    problems[0] = {
      ...(problems[0] as CheckProblem),
      severity: "warning",
      message: `${problems[0]?.message}; the footer copy at offset 0 is valid and used`,
    };
  }
  if (
    footer &&
    copy &&
    endBytes &&
    copyBytes &&
    !Buffer.from(endBytes).equals(Buffer.from(copyBytes))
  ) {
    problems.push({
      severity: "error",
      offset: 0,
      message: "footer copy at offset 0 differs from the footer at the end",
    });
  }
  const f = footer ?? (copy?.diskType !== "fixed" ? copy : undefined);
  if (f) {
    if ((f.features & 2) === 0) {
      problems.push({
        severity: "warning",
        offset: (footer ? size - FOOTER_BYTES : 0) + 8,
        message: "footer features: the reserved bit 0x2 is not set",
      });
    }
    const g = chsGeometry(f.currentSize / SECTOR);
    const stored = f.geometry;
    if (
      g.cylinders !== stored.cylinders ||
      g.heads !== stored.heads ||
      g.sectorsPerTrack !== stored.sectorsPerTrack
    ) {
      problems.push({
        severity: "warning",
        offset: (footer ? size - FOOTER_BYTES : 0) + 56,
        message: `footer geometry ${stored.cylinders}/${stored.heads}/${stored.sectorsPerTrack} is not the specification's ${g.cylinders}/${g.heads}/${g.sectorsPerTrack} for ${f.currentSize} bytes`,
      });
    }
  }
  let allocatedBlocks: number | undefined;
  let totalBlocks: number | undefined;
  if (f && f.diskType !== "fixed") {
    const headerBytes = read(f.dataOffset, HEADER_BYTES);
    try {
      const header = decodeHeader(headerBytes ?? new Uint8Array(0), f.dataOffset, kernels.checksum);
      const entries = header.maxTableEntries;
      const bat = read(header.tableOffset, entries * 4);
      totalBlocks = Math.ceil(f.currentSize / header.blockSize);
      if (!bat || entries < totalBlocks) {
        problems.push({
          severity: "error",
          offset: f.dataOffset + 16,
          message: `dynamic header: a BAT of ${entries} entries at ${header.tableOffset} does not fit the file or the disk's ${totalBlocks} blocks`,
        });
      } else {
        const view = new DataView(bat.buffer);
        const table = new Uint32Array(entries);
        for (let i = 0; i < entries; i++) table[i] = view.getUint32(i * 4);
        allocatedBlocks = table.filter((e) => e !== BAT_UNALLOCATED).length;
        const spans: [number, number, string][] = [
          [0, FOOTER_BYTES, "footer copy"],
          [f.dataOffset, f.dataOffset + HEADER_BYTES, "dynamic header"],
          [
            header.tableOffset,
            header.tableOffset + Math.ceil((entries * 4) / SECTOR) * SECTOR,
            "BAT",
          ],
        ];
        for (const e of blockProblems({
          bat: table,
          blocks: totalBlocks,
          tableOffset: header.tableOffset,
          span: bitmapBytes(header.blockSize) + header.blockSize,
          dataEnd: footer ? size - FOOTER_BYTES : size,
          spans,
        })) {
          problems.push(fromError(e));
        }
      }
    } catch (error) {
      problems.push(fromError(error));
    }
  }
  // Last, open it the way a reader does: parents, locators, time stamps.
  if (!problems.some((p) => p.severity === "error")) {
    try {
      const image = VhdImage.open(file, {
        kernels,
        ...(options.parents ? { parents: options.parents } : {}),
      });
      for (const note of image.notes)
        if (
          !problems.some((p) => note.includes(p.message)) &&
          !(standIn !== undefined && note.includes(standIn))
        )
          problems.push({ severity: "warning", offset: -1, message: note });
      image.parent?.close();
    } catch (error) {
      if (error instanceof ParentChainError || error instanceof VhdFormatError)
        problems.push(fromError(error));
      else throw error;
    }
  }
  const result: CheckReport = {
    file: name,
    ok: !problems.some((p) => p.severity === "error"),
    problems,
    ...(allocatedBlocks !== undefined ? { allocatedBlocks } : {}),
    ...(totalBlocks !== undefined ? { totalBlocks } : {}),
  };
  return result;
}

/** Checks a VHD by path. */
export function checkVhdFile(path: string, kernels?: StorageKernels): CheckReport {
  const file = new FdFile(path, "r");
  try {
    return checkVhd(file, kernels ? { kernels } : {});
  } finally {
    file.close();
  }
}
