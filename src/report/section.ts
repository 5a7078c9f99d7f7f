import type { ReportChart } from "./chart.js";
import type { Table } from "./table.js";

/** A titled table in a report. Every column header names its unit. */
export interface ReportTable extends Table {
  readonly title: string;
}

/**
 * A section's headline: the one figure a reader looks for first, held
 * against the target the engine is built to meet. The report opens with the
 * headlines of all its sections.
 */
export interface ReportHeadline {
  /** The figure in words with its unit, e.g. "downtime 198 ms after 5 rounds". */
  readonly figure: string;
  /** What it is held against, e.g. "converges with downtime under the 300 ms limit". */
  readonly target: string;
  readonly met: boolean;
}

/** One section of a report, as a tour section or a command produces it. */
export interface ReportSection {
  /** Anchor and JSON key, e.g. "dirty". */
  readonly id: string;
  readonly title: string;
  /** Paragraphs of plain text, saying what was run and what it showed. */
  readonly summary: readonly string[];
  /** The headline figure and its target (sections of a tour have one). */
  readonly headline?: ReportHeadline;
  readonly tables: readonly ReportTable[];
  readonly charts: readonly ReportChart[];
  /** The records behind the section, written to the JSON report as they are. */
  readonly data: unknown;
}
