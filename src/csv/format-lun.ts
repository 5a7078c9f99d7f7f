import { FdFile } from "../storage/block-file.js";
import { FileLun } from "./lun.js";
import { type FormatOptions, Volume } from "./volume.js";

/**
 * Creates a LUN file of `bytes` (refusing one that exists) and formats a
 * volume on it with the given geometry, for a scenario that owns its LUN.
 */
export async function formatLunFile(
  path: string,
  bytes: number,
  geometry: FormatOptions,
): Promise<void> {
  const file = new FdFile(path, "wx+");
  try {
    file.truncate(bytes);
    await Volume.format(new FileLun(file, false), geometry);
  } finally {
    file.close();
  }
}
