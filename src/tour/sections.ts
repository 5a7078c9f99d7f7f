import { csvTourSection } from "./csv.js";
import { dirtyTourSection } from "./dirty.js";
import { migrationTourSection } from "./migration.js";
import { migrationLiveTourSection } from "./migration-live.js";
import { netTourSection } from "./net.js";
import { pagingTourSection } from "./paging.js";
import { powerTourSection } from "./power.js";
import type { TourSection } from "./section.js";
import { storageTourSection } from "./storage.js";

/** The tour's sections, in the order they run and appear in the report. */
export const TOUR_SECTIONS: readonly TourSection[] = [
  dirtyTourSection,
  migrationTourSection,
  migrationLiveTourSection,
  pagingTourSection,
  netTourSection,
  powerTourSection,
  storageTourSection,
  csvTourSection,
];
