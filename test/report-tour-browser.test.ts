import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, requireChromium } from "./support/browser.js";
import { hvlab } from "./support/cli.js";

/*
 * The real tour report (`hvlab tour --quick`), opened in headless Chromium
 * and read as a performance engineer would: every chart draws something in
 * its plot area, numeric axes run in numeric order, nothing is cut, no table
 * spills off the page. A screenshot of each section is kept beside the
 * report (reports/browser-test/screenshots/) for a reader to check by eye.
 * HVLAB_TOUR_REPORT=<folder> checks a report written before (by another
 * version, say) instead of running the tour.
 */

const GIVEN = process.env.HVLAB_TOUR_REPORT;
const OUT = GIVEN ?? join(import.meta.dirname, "..", "reports", "browser-test");
const SHOTS = join(OUT, "screenshots");
const chromiumPath = requireChromium();

/** A box in page pixels. */
interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** What the page says about one chart. */
interface ChartFacts {
  caption: string;
  plotAreas: Box[];
  /** Marks drawn with a non-zero extent (bars need both sides, lines one). */
  drawn: Box[];
  /** Marks of a kind that has an area (bars, cells) but were drawn empty. */
  empty: number;
  axes: { label: string; vertical: boolean; ticks: { text: string; at: number }[] }[];
  /** Text that Vega shortened with an ellipsis because it did not fit. */
  cut: string[];
  width: number;
}

/** Reads every chart of the page (runs in the browser). */
async function chartFacts(page: Page): Promise<ChartFacts[]> {
  return page.evaluate(() => {
    const box = (e: Element) => {
      const r = e.getBoundingClientRect();
      return { x: r.x, y: r.y, width: r.width, height: r.height };
    };
    return Array.from(document.querySelectorAll("figure")).map((figure) => {
      const svg = figure.querySelector("svg");
      const plotAreas = Array.from(
        figure.querySelectorAll(
          // The view of a single chart, a facet's cells, a concatenation's panels.
          "g.role-frame > g > path.background, g.role-scope > g > path.background",
        ),
      )
        .map(box)
        .filter((b) => b.width > 0 && b.height > 0);
      const drawn: ReturnType<typeof box>[] = [];
      let empty = 0;
      for (const mark of Array.from(
        figure.querySelectorAll("g.role-mark > path, g.role-mark > rect"),
      )) {
        const b = box(mark);
        const container = mark.parentElement?.getAttribute("class") ?? "";
        const hasArea = /mark-rect|mark-area|mark-arc/.test(container);
        if (hasArea ? b.width > 0 && b.height > 0 : b.width > 0 || b.height > 0) drawn.push(b);
        // A bar for a value of 0 (native paging's VM exits) is rightly drawn empty.
        else if (hasArea && !/: 0(;|$)/.test(mark.getAttribute("aria-label") ?? "")) empty++;
      }
      const axes = Array.from(figure.querySelectorAll("g.role-axis[aria-label]")).map((axis) => {
        const label = axis.getAttribute("aria-label") ?? "";
        const vertical = label.startsWith("Y-axis");
        const ticks = Array.from(axis.querySelectorAll("g.role-axis-label text")).map((t) => {
          const b = box(t);
          return {
            text: t.textContent ?? "",
            at: vertical ? b.y + b.height / 2 : b.x + b.width / 2,
          };
        });
        return { label, vertical, ticks };
      });
      const cut = Array.from(figure.querySelectorAll("svg text"))
        .map((t) => t.textContent ?? "")
        .filter((t) => t.includes("…"));
      return {
        caption: figure.querySelector("figcaption")?.textContent ?? "",
        plotAreas,
        drawn,
        empty,
        axes,
        cut,
        width: svg ? box(svg).x + box(svg).width : 0,
      };
    });
  });
}

/** A tick label as a number (`1,250`, `2.5k`, `125 MB/s`), with its unit text; null if not numeric. */
function tickValue(text: string): { value: number; unit: string } | null {
  const match = /^\s*(-?[\d,]*\.?\d+(?:e[+-]?\d+)?)\s*([kMGTµmn]?)\b\s*(.*)$/.exec(text);
  if (!match) return null;
  const si: Record<string, number> = { "": 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, m: 1e-3 };
  const value = Number((match[1] ?? "").replaceAll(",", "")) * (si[match[2] ?? ""] ?? 1);
  return Number.isFinite(value) ? { value, unit: match[3] ?? "" } : null;
}

function inside(mark: Box, areas: readonly Box[], slack: number): boolean {
  return areas.some(
    (a) =>
      mark.x >= a.x - slack &&
      mark.y >= a.y - slack &&
      mark.x + mark.width <= a.x + a.width + slack &&
      mark.y + mark.height <= a.y + a.height + slack,
  );
}

describe.skipIf(chromiumPath === null)("the tour report in Chromium", () => {
  let browser: Browser;
  let page: Page;
  const errors: string[] = [];
  let charts: ChartFacts[] = [];

  beforeAll(async () => {
    if (GIVEN === undefined) {
      rmSync(OUT, { recursive: true, force: true });
      const run = hvlab(["tour", "--quick", "--out", OUT], 600_000);
      expect(run.stderr).not.toMatch(/hvlab: /);
      // Vega-Lite warns on stderr about specifications it had to guess at.
      expect(run.stderr).not.toMatch(/WARN/);
      expect(run.status).toBe(0);
    }
    browser = await launchChromium(chromiumPath ?? "");
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("console", (message) => {
      if (message.type() === "error") errors.push(message.text());
    });
    page.on("pageerror", (error) => errors.push(error.message));
    await page.goto(pathToFileURL(join(OUT, "tour.html")).href);
    charts = await chartFacts(page);
  }, 660_000);

  afterAll(async () => {
    await browser?.close();
  });

  it("opens with no console errors and a chart in every engine's section", async () => {
    expect(errors).toEqual([]);
    expect(charts.length).toBeGreaterThan(10);
    const sections = await page
      .locator("section")
      .evaluateAll((all) =>
        all.map((s) => ({ id: s.id, charts: s.querySelectorAll("figure svg").length })),
      );
    // Every engine's section; the summary at the top is a table.
    for (const section of sections.filter((s) => s.id !== "summary")) {
      expect(section.charts, `section ${section.id}`).toBeGreaterThan(0);
    }
  });

  it("draws marks of non-zero size inside every chart's plot area", () => {
    const problems: string[] = [];
    for (const chart of charts) {
      if (chart.plotAreas.length === 0) problems.push(`${chart.caption}: no plot area`);
      if (chart.drawn.length === 0) problems.push(`${chart.caption}: no mark drawn`);
      // Points on a line sit on the plot area's edge: their symbols stick out by a radius.
      const outside = chart.drawn.filter((m) => !inside(m, chart.plotAreas, 6)).length;
      if (outside > 0) problems.push(`${chart.caption}: ${outside} marks outside the plot area`);
      if (chart.empty > 0) problems.push(`${chart.caption}: ${chart.empty} bars drawn empty`);
    }
    expect(problems).toEqual([]);
  });

  it("orders every numeric axis numerically, with whole rounds", () => {
    const problems: string[] = [];
    let numericAxes = 0;
    for (const chart of charts) {
      for (const axis of chart.axes) {
        const ticks = axis.ticks.map((t) => t.text).join(" | ");
        const values = axis.ticks.map((t) => ({ at: t.at, parsed: tickValue(t.text) }));
        if (values.length < 2 || values.some((v) => v.parsed === null)) continue;
        if (new Set(values.map((v) => v.parsed?.unit)).size !== 1) continue;
        numericAxes++;
        const inOrder = values.sort((a, b) => a.at - b.at).map((v) => v.parsed?.value ?? 0);
        // Down the page a vertical axis counts down; across it, up (or the reverse throughout).
        const rising = inOrder.every((v, i) => i === 0 || v > (inOrder[i - 1] ?? 0));
        const falling = inOrder.every((v, i) => i === 0 || v < (inOrder[i - 1] ?? 0));
        if (!rising && !falling) problems.push(`${chart.caption}: out of order: ${ticks}`);
        if (/titled 'rounds?\b/.test(axis.label) && !inOrder.every(Number.isInteger)) {
          problems.push(`${chart.caption}: fractional rounds: ${ticks}`);
        }
      }
    }
    expect(problems).toEqual([]);
    expect(numericAxes).toBeGreaterThanOrEqual(charts.length);
  });

  it("cuts no label or legend and keeps every chart on the page", async () => {
    const pageWidth = await page.evaluate(() => document.documentElement.clientWidth);
    const problems: string[] = [];
    for (const chart of charts) {
      if (chart.cut.length > 0) problems.push(`${chart.caption}: cut ${chart.cut.join(", ")}`);
      if (chart.width > pageWidth) {
        problems.push(`${chart.caption}: right edge at ${chart.width} px, page ${pageWidth} px`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("fits every table on the page, or scrolls it with a visible scroll bar", async () => {
    const tables = await page.locator("table").evaluateAll((all) =>
      all.map((table) => {
        const caption = table.querySelector("caption")?.textContent ?? "";
        // The box that scrolls: a wrapper, or the table itself (display: block).
        const scroller = table.closest(".scroll") ?? table;
        const r = table.getBoundingClientRect();
        return {
          caption,
          right: r.right,
          width: table.scrollWidth,
          scroller:
            getComputedStyle(scroller).display !== "table"
              ? {
                  right: scroller.getBoundingClientRect().right,
                  clientWidth: scroller.clientWidth,
                  scrollWidth: scroller.scrollWidth,
                  // A classic scroll bar takes height from the box; an overlay one is hidden until hovered.
                  bar: (scroller as HTMLElement).offsetHeight - scroller.clientHeight,
                  overflow: getComputedStyle(scroller).overflowX,
                }
              : null,
        };
      }),
    );
    const pageWidth = await page.evaluate(() => document.documentElement.clientWidth);
    expect(tables.length).toBeGreaterThan(5);
    for (const t of tables) {
      if (t.scroller === null) {
        expect(t.right, `table "${t.caption}" is wider than the page`).toBeLessThanOrEqual(
          pageWidth,
        );
        continue;
      }
      expect(t.scroller.right, `table "${t.caption}": its scroll box`).toBeLessThanOrEqual(
        pageWidth,
      );
      if (t.scroller.scrollWidth > t.scroller.clientWidth) {
        expect(t.scroller.overflow, `table "${t.caption}"`).toBe("auto");
        expect(t.scroller.bar, `table "${t.caption}": no visible scroll bar`).toBeGreaterThan(0);
      }
    }
  });

  it("keeps a screenshot of each section under the report's folder", async () => {
    mkdirSync(SHOTS, { recursive: true });
    const ids = await page
      .locator("body > section, main > section")
      .evaluateAll((all) => all.map((s) => s.id));
    expect(ids.length).toBeGreaterThan(4);
    for (const id of ids) {
      const shot = await page.locator(`section#${id}`).screenshot({
        path: join(SHOTS, `${id}.png`),
      });
      expect(shot.byteLength, id).toBeGreaterThan(10_000);
    }
  });
});
