import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";

/** A chart in a report: a Vega-Lite specification with its data inlined. */
export interface ReportChart {
  readonly title: string;
  readonly spec: TopLevelSpec;
}

/** Renders a Vega-Lite chart to a standalone SVG string (no browser, no canvas). */
export async function renderChartSvg(chart: ReportChart): Promise<string> {
  const { spec } = compile(chart.spec);
  const view = new vega.View(vega.parse(spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
