import type { BlockFile } from "./block-file.js";
import { openFile } from "./direct-file.js";
import { type DiskImage, RawImage } from "./disk-image.js";
import { FOOTER_BYTES } from "./format.js";
import type { StorageKernels } from "./kernels.js";
import { directParents, VhdImage } from "./vhd.js";

/** An image format, as qemu-img names it. */
export type ImageFormat = "raw" | "vpc";

/**
 * Detects a file's format from its bytes: a VHD has the "conectix" cookie in
 * its last 512 bytes (every type) or, for a dynamic disk whose end is being
 * rewritten, in its first 512. Anything else is raw. (qemu-img probes a fixed
 * VHD as raw unless told -f vpc; hvlab looks at the end as well.)
 */
export function detectFormat(file: BlockFile): ImageFormat {
  const size = file.size();
  if (size < FOOTER_BYTES) return "raw";
  const cookie = new Uint8Array(8);
  for (const at of [size - FOOTER_BYTES, 0]) {
    file.read(cookie, at);
    if (Buffer.from(cookie).toString("latin1") === "conectix") return "vpc";
  }
  return "raw";
}

/** Options for {@link openImage}. */
export interface OpenImageOptions {
  readonly writable?: boolean;
  readonly kernels?: StorageKernels;
  /** The format, when known (default: detected). */
  readonly format?: ImageFormat;
  readonly ordered?: boolean;
  /** Direct I/O (O_DIRECT) on the image and its parents: around the host's page cache. */
  readonly direct?: boolean;
}

/** Opens a disk image by path, raw or VHD, its format detected from its bytes. */
export function openImage(path: string, options: OpenImageOptions = {}): DiskImage {
  const file = openFile(path, options.writable ? "r+" : "r", { direct: options.direct ?? false });
  try {
    const format = options.format ?? detectFormat(file);
    if (format === "raw") return new RawImage(file, options.writable ?? false);
    return VhdImage.open(file, {
      writable: options.writable ?? false,
      ...(options.kernels ? { kernels: options.kernels } : {}),
      ...(options.ordered ? { ordered: true } : {}),
      ...(options.direct ? { parents: directParents } : {}),
    });
  } catch (error) {
    file.close();
    throw error;
  }
}
