/** Binary size units accepted by {@link parseSize}, in bytes. */
const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/**
 * Parses a byte size such as `4096`, `2MiB`, `1 TiB` or `1.5GB`.
 *
 * @throws TypeError naming the text when it is not a size or not a whole number of bytes.
 */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = match ? SIZE_UNITS[(match[2] ?? "").toLowerCase() || "b"] : undefined;
  if (!match || unit === undefined) {
    throw new TypeError(`"${text}" is not a size (examples: 4096, 64MiB, 1TiB)`);
  }
  const bytes = Number(match[1]) * unit;
  if (!Number.isSafeInteger(bytes)) {
    throw new TypeError(`"${text}" is not a whole number of bytes`);
  }
  return bytes;
}

/** Formats bytes with a binary unit, e.g. `32.0 MiB`. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/**
 * Formats bytes as a size the command line accepts back, in the largest
 * binary unit that holds it whole (`1GiB`, `4KiB`, `1536MiB`, `100B`); for
 * help defaults and range errors, so that they read as the user types.
 */
export function formatSize(bytes: number): string {
  const units = ["TiB", "GiB", "MiB", "KiB"] as const;
  for (const [i, unit] of units.entries()) {
    const scale = 1024 ** (units.length - i);
    if (bytes >= scale && bytes % scale === 0) return `${bytes / scale}${unit}`;
  }
  return `${bytes}B`;
}
