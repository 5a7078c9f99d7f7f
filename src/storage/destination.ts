import { closeSync, existsSync, openSync, unlinkSync } from "node:fs";
import type { BlockFile } from "./block-file.js";
import { openFile } from "./direct-file.js";

/**
 * Opens the destination of a copy (`convert`'s output): created, or emptied
 * if it exists, then opened read-write.
 *
 * The file is created or emptied through a file description of its own,
 * closed at once, and the copy writes through a second one, as qemu-img
 * does (QEMU's block/file-posix.c: `raw_co_create` truncates the new image
 * to zero and closes it before `img_convert` opens it to write). The order
 * matters on ext4: a file truncated to zero is flushed when the description
 * that truncated it is closed (the `auto_da_alloc` mount option, on by
 * default: Linux's Documentation/admin-guide/ext4.rst). Truncated and
 * written through one description, a converted disk would have all its
 * data written back by the `close` that ends the copy, and the next
 * truncation of the file would wait for that writeback; emptied through a
 * description of its own, the flush finds nothing to write, and the data
 * stays in the page cache as `qemu-img convert`'s does (`--flush` makes it
 * durable).
 *
 * A block device is opened as it is (open(2) ignores O_TRUNC on one). A
 * file this call created is removed again if it then cannot be opened (a
 * file system that refuses direct I/O).
 */
export function openDestination(
  path: string,
  options: { direct?: boolean } = {},
): BlockFile & { mtimeMs(): number } {
  const existed = existsSync(path);
  closeSync(openSync(path, "w"));
  try {
    return openFile(path, "r+", { direct: options.direct ?? false });
  } catch (error) {
    if (!existed) {
      try {
        unlinkSync(path);
      } catch {}
    }
    throw error;
  }
}
