import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";

/** A chart in a report: a Vega-Lite specification with its data inlined. */
export interface ReportChart {
  readonly title: string;
  readonly spec: TopLevelSpec;
}

/** The Vega-Lite schema every chart names. */
export const VEGA_LITE_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

/**
 * The report's axis and legend conventions, applied to every chart when it
 * is rendered: labels and legends are never cut short (Vega's default
 * shortens them to 160-180 px with an ellipsis), numbers on axes carry
 * thousands separators and no more than three significant digits, and titles
 * name their unit, which each chart's author writes in its axis title.
 */
export const CHART_CONFIG = {
  font: "system-ui, sans-serif",
  axis: { labelLimit: 0, titleFontWeight: 600, labelFontSize: 11, titleFontSize: 12 },
  axisQuantitative: { format: ",~r", labelFlush: true },
  legend: { labelLimit: 0, titleLimit: 0, labelFontSize: 11, titleFontSize: 12 },
  header: { labelLimit: 0, labelFontSize: 11 },
  view: { stroke: "#ccc" },
} as const;

/** Renders a Vega-Lite chart to a standalone SVG string (no browser, no canvas). */
export async function renderChartSvg(chart: ReportChart): Promise<string> {
  const spec = { ...chart.spec, config: { ...CHART_CONFIG, ...chart.spec.config } } as TopLevelSpec;
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** One axis of a {@link lineChart}. */
export interface ChartAxis {
  /** The record field drawn on this axis. */
  readonly field: string;
  /** Its title, with the unit in brackets: "remaining (MiB)". */
  readonly title: string;
  /** A log scale (for quantities spanning decades; values must be above 0). */
  readonly log?: boolean;
  /** Whole numbers only (rounds, counts): no fractional ticks. */
  readonly whole?: boolean;
  /** Start the scale at zero (default: the y axis does, the x axis does not). */
  readonly zero?: boolean;
}

/** What {@link lineChart} draws. */
export interface LineChartOptions {
  readonly title: string;
  /** The records, one point each. */
  readonly data: readonly object[];
  readonly x: ChartAxis;
  readonly y: ChartAxis;
  /** Field naming the series a point belongs to (one line and colour each). */
  readonly series?: string;
  /** Its legend title; null for none. */
  readonly seriesTitle?: string | null;
  /** Field telling measured from modelled lines by dash (a second legend). */
  readonly dash?: string;
  readonly width?: number;
  readonly height?: number;
  /**
   * Moments marked with a dashed vertical rule and a label at the top (a
   * hot add, a killed node): records holding the x field and a label field.
   */
  readonly marks?: { readonly data: readonly object[]; readonly label: string };
}

function axisEncoding(axis: ChartAxis, zero: boolean) {
  return {
    field: axis.field,
    type: "quantitative" as const,
    title: axis.title,
    scale: axis.log ? { type: "log" as const } : { zero: axis.zero ?? zero, nice: true },
    ...(axis.whole ? { axis: { tickMinStep: 1, format: ",d" } } : {}),
  };
}

/**
 * A line chart with a point at each record: the one helper every line chart
 * of the report goes through (tours, migration reports), so that they share
 * sizes, axis conventions and the way series are told apart.
 */
export function lineChart(options: LineChartOptions): ReportChart {
  const encoding = {
    // Time and rounds start where the data start; quantities from zero.
    x: axisEncoding(options.x, false),
    y: axisEncoding(options.y, true),
    ...(options.series
      ? {
          color: {
            field: options.series,
            type: "nominal" as const,
            title: options.seriesTitle ?? null,
          },
        }
      : {}),
    ...(options.dash ? { strokeDash: { field: options.dash, type: "nominal" as const } } : {}),
  };
  const frame = {
    $schema: VEGA_LITE_SCHEMA,
    width: options.width ?? 560,
    height: options.height ?? 220,
  };
  const line = { mark: { type: "line" as const, point: true }, encoding };
  if (!options.marks)
    return {
      title: options.title,
      spec: { ...frame, data: { values: options.data as object[] }, ...line },
    };
  const at = { field: options.x.field, type: "quantitative" as const };
  return {
    title: options.title,
    spec: {
      ...frame,
      layer: [
        { data: { values: options.data as object[] }, ...line },
        {
          data: { values: options.marks.data as object[] },
          mark: { type: "rule", strokeDash: [4, 3], color: "#555" },
          encoding: { x: at, tooltip: { field: options.marks.label, type: "nominal" } },
        },
        {
          data: { values: options.marks.data as object[] },
          mark: {
            type: "text",
            angle: 270,
            align: "right",
            baseline: "bottom",
            dx: -4,
            dy: -2,
            fontSize: 10,
          },
          encoding: {
            x: at,
            y: { value: 0 },
            text: { field: options.marks.label, type: "nominal" },
          },
        },
      ],
    },
  };
}
