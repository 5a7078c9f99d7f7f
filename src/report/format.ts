/**
 * The one way hvlab writes a number for a reader, in tables, prose and
 * terminal output alike:
 * - whole numbers, and anything of 100 or more, with thousands separators
 *   and no decimals (`1,625`, never `1.625e+3` or `1625` beside `1,625`);
 * - smaller fractions with three significant digits (`12.8`, `0.0318`);
 * - never scientific notation, so that a column reads from top to bottom.
 * JSON and CSV keep full precision: they are for programs, not readers.
 */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return Number.isNaN(value) ? "n/a" : value > 0 ? "∞" : "-∞";
  if (Number.isInteger(value) || Math.abs(value) >= 100) return WHOLE.format(value);
  return SIGNIFICANT.format(value);
}

const WHOLE = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const SIGNIFICANT = new Intl.NumberFormat("en-US", {
  maximumSignificantDigits: 3,
  minimumSignificantDigits: 1,
});

/** A number and its unit, `12.8 ms`, `1,250 MB/s` (a thin space would not survive terminals). */
export function formatQuantity(value: number, unit: string): string {
  return `${formatNumber(value)} ${unit}`;
}

/** A ratio against a reference, `3.2x` (`0.53x` below one). */
export function formatRatio(value: number): string {
  return `${formatNumber(value)}x`;
}

/** A share as a percentage, `63 %` or `0.25 %`. */
export function formatPercent(fraction: number): string {
  return `${formatNumber(fraction * 100)} %`;
}
