import type { ReportSection } from "../report/section.js";

/** How the tour runs its sections. */
export interface TourOptions {
  /** Smaller sizes and shorter benchmarks (tests, slow machines). */
  readonly quick: boolean;
  /** Seed for every random choice. */
  readonly seed: number;
  /** Reports a line of progress to the user. */
  readonly log: (line: string) => void;
}

/** A section of the default tour: runs something real and reports it. */
export interface TourSection {
  readonly id: string;
  readonly title: string;
  run(options: TourOptions): Promise<ReportSection>;
}
