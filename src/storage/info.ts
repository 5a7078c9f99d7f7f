import { statSync } from "node:fs";
import { RawImage } from "./disk-image.js";
import { BAT_UNALLOCATED, formatUuid, VHD_EPOCH_SECONDS } from "./format.js";
import { chsBytes } from "./geometry.js";
import type { StorageKernels } from "./kernels.js";
import { openImage } from "./open.js";
import type { VhdImage } from "./vhd.js";

/** What `hvlab storage info` reports, in qemu-img info's keys where they overlap. */
export interface ImageInfo {
  readonly filename: string;
  readonly format: "raw" | "vpc";
  readonly "virtual-size": number;
  /** Bytes the file occupies on the host (allocated blocks of the host file system). */
  readonly "actual-size": number;
  /** The file's length. */
  readonly "file-length": number;
  readonly "cluster-size"?: number;
  readonly vhd?: {
    readonly type: string;
    readonly creator: string;
    readonly creatorVersion: string;
    readonly creatorOs: string;
    readonly timestamp: string;
    readonly uuid: string;
    readonly geometry: {
      readonly cylinders: number;
      readonly heads: number;
      readonly sectorsPerTrack: number;
    };
    /** C x H x S x 512: the size QEMU would read for an unknown creator. */
    readonly chsSize: number;
    readonly allocatedBlocks?: number;
    readonly totalBlocks?: number;
    readonly parent?: {
      readonly uuid: string;
      readonly name: string;
      readonly path: string;
      readonly timestamp: string;
    };
    readonly notes: readonly string[];
  };
}

function vhdTime(seconds: number): string {
  return new Date((seconds + VHD_EPOCH_SECONDS) * 1000).toISOString();
}

function describeVhd(image: VhdImage): NonNullable<ImageInfo["vhd"]> {
  const f = image.footer;
  const h = image.header;
  const bat = image.blockTable;
  let allocated = 0;
  for (const e of bat) if (e !== BAT_UNALLOCATED) allocated++;
  return {
    type: f.diskType,
    creator: f.creatorApp,
    creatorVersion: `${f.creatorVersion >>> 16}.${f.creatorVersion & 0xffff}`,
    creatorOs: f.creatorOs,
    timestamp: vhdTime(f.timestamp),
    uuid: formatUuid(f.uniqueId),
    geometry: f.geometry,
    chsSize: chsBytes(f.geometry),
    ...(h ? { allocatedBlocks: allocated, totalBlocks: Math.ceil(image.size / h.blockSize) } : {}),
    ...(h && image.parent && image.parentPath
      ? {
          parent: {
            uuid: formatUuid(h.parentUniqueId),
            name: h.parentName,
            path: image.parentPath,
            timestamp: vhdTime(h.parentTimestamp),
          },
        }
      : {}),
    notes: image.notes,
  };
}

/** Describes an image (raw or VHD) by path. */
export function imageInfo(path: string, kernels?: StorageKernels): ImageInfo {
  const image = openImage(path, kernels ? { kernels } : {});
  try {
    const stat = statSync(path);
    const base = {
      filename: path,
      format: image.format,
      "virtual-size": image.size,
      "actual-size": stat.blocks * 512,
      "file-length": stat.size,
    };
    if (image instanceof RawImage) return base;
    const vhd = image as VhdImage;
    return {
      ...base,
      ...(vhd.blockBytes ? { "cluster-size": vhd.blockBytes } : {}),
      vhd: describeVhd(vhd),
    };
  } finally {
    image.close();
  }
}
