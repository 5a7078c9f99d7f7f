import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { machineInfo } from "../src/bench/machine.js";
import { renderHtmlReport } from "../src/report/html.js";
import { launchChromium, requireChromium } from "./support/browser.js";
import { testTempDir } from "./support/temp.js";

/* The HTML report, opened in a real browser (Chromium found on PATH or by playwright-core). */

const chromiumPath = requireChromium();

describe.skipIf(chromiumPath === null)("HTML report in Chromium", () => {
  it("renders every section, table and SVG chart with no console errors", async () => {
    const html = await renderHtmlReport(
      "hvlab test report",
      machineInfo(),
      [
        {
          id: "demo",
          title: "Demo <section> & chart",
          summary: ["A paragraph with <markup> that must be escaped."],
          tables: [
            {
              title: "Figures",
              columns: ["case", "value"],
              rows: [
                ["a", 1.5],
                ["b", 2],
              ],
            },
          ],
          charts: [
            {
              title: "Bars",
              spec: {
                $schema: "https://vega.github.io/schema/vega-lite/v6.json",
                data: {
                  values: [
                    { x: "a", y: 1.5 },
                    { x: "b", y: 2 },
                  ],
                },
                mark: "bar",
                encoding: {
                  x: { field: "x", type: "nominal" },
                  y: { field: "y", type: "quantitative" },
                },
              },
            },
          ],
          data: null,
        },
      ],
      new Date("2026-01-01T00:00:00Z"),
    );
    const file = join(testTempDir("report"), "report.html");
    writeFileSync(file, html);
    const browser = await launchChromium(chromiumPath ?? "");
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("console", (message) => {
        if (message.type() === "error") errors.push(message.text());
      });
      page.on("pageerror", (error) => errors.push(error.message));
      await page.goto(pathToFileURL(file).href);
      expect(await page.locator("h2").textContent()).toBe("Demo <section> & chart");
      expect(await page.locator("section p").textContent()).toContain("<markup>");
      expect(await page.locator("table tbody tr").count()).toBe(2);
      const box = await page.locator("figure svg").boundingBox();
      expect(box?.width ?? 0).toBeGreaterThan(50);
      expect(box?.height ?? 0).toBeGreaterThan(50);
      // Two bars drawn by Vega's SVG renderer.
      expect(await page.locator("figure svg path[aria-roledescription='bar']").count()).toBe(2);
      expect(errors).toEqual([]);
      const shot = await page.screenshot({ fullPage: true });
      expect(shot.byteLength).toBeGreaterThan(1000);
    } finally {
      await browser.close();
    }
  });
});
