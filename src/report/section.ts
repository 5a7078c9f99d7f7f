import type { ReportChart } from "./chart.js";
import type { Table } from "./table.js";

/** A titled table in a report. */
export interface ReportTable extends Table {
  readonly title: string;
}

/** One section of a report, as a tour section or a command produces it. */
export interface ReportSection {
  /** Anchor and JSON key, e.g. "dirty". */
  readonly id: string;
  readonly title: string;
  /** Paragraphs of plain text, saying what was run and what it showed. */
  readonly summary: readonly string[];
  readonly tables: readonly ReportTable[];
  readonly charts: readonly ReportChart[];
  /** The records behind the section, written to the JSON report as they are. */
  readonly data: unknown;
}
