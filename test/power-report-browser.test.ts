import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";
import { describe, expect, it } from "vitest";
import { machineInfo } from "../src/bench/machine.js";
import { renderHtmlReport } from "../src/report/html.js";
import { powerTourSection } from "../src/tour/power.js";
import { requireTool } from "./support/cli.js";
import { testTempDir } from "./support/temp.js";

/* The tour's power section, run for real (quick) and opened in Debian's Chromium. */

const haveChromium = requireTool("chromium");

describe.skipIf(!haveChromium)("the power section of the HTML report in Chromium", () => {
  it("draws the timeline, the residency bars and the sweep heat map, with every table", async () => {
    const section = await powerTourSection.run({ quick: true, seed: 1, log: () => {} });
    const html = await renderHtmlReport("hvlab power", machineInfo(), [section], new Date());
    const file = join(testTempDir("power-report"), "report.html");
    writeFileSync(file, html);
    const browser = await chromium.launch({
      executablePath: "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
    });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("console", (message) => {
        if (message.type() === "error") errors.push(message.text());
      });
      page.on("pageerror", (error) => errors.push(error.message));
      await page.goto(pathToFileURL(file).href);
      expect(await page.locator("section#power h2").textContent()).toContain("Core parking");
      expect(await page.locator("section#power figure svg").count()).toBe(3);
      for (const svg of await page.locator("section#power figure svg").all()) {
        const box = await svg.boundingBox();
        expect(box?.width ?? 0).toBeGreaterThan(100);
        expect(box?.height ?? 0).toBeGreaterThan(100);
      }
      // The quick sweep is 3 x 3: nine cells, each labelled.
      const heat = page.locator("section#power figure").nth(2);
      expect(await heat.locator("path[aria-roledescription='rect mark']").count()).toBe(9);
      expect(await heat.locator("text[aria-roledescription='text mark']").count()).toBe(9);
      // One bar segment per policy and state: 4 policies x (running, waking, 4 C-states).
      const bars = page.locator("section#power figure").nth(1);
      expect(await bars.locator("path[aria-roledescription='bar']").count()).toBe(24);
      expect(await page.locator("section#power table").count()).toBe(4);
      expect(await page.locator("section#power").textContent()).toContain("10-18 %");
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
