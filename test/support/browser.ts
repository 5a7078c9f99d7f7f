import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { type Browser, chromium } from "playwright-core";

/** Names Chromium goes by on PATH (Debian's package, Ubuntu's, Google's build). */
const CHROMIUM_NAMES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];

/**
 * Where a Chromium to test with is: the first of {@link CHROMIUM_NAMES} on
 * PATH, else the browser playwright-core would use (`npx playwright-core
 * install chromium` puts one there), else null.
 */
export function findChromium(): string | null {
  for (const name of CHROMIUM_NAMES) {
    const found = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
    if (found.status === 0 && found.stdout.trim() !== "") return found.stdout.trim();
  }
  const bundled = chromium.executablePath();
  return bundled && existsSync(bundled) ? bundled : null;
}

/**
 * For tests that need a browser: the Chromium to launch, or null (with a
 * message naming the tool) when none is found; in CI a missing browser is a
 * failure.
 */
export function requireChromium(): string | null {
  const found = findChromium();
  if (found !== null) return found;
  if (process.env.CI === "true") {
    throw new Error("chromium is required in CI but is not installed");
  }
  console.warn("skipping: chromium is not installed (nor playwright-core's own browser)");
  return null;
}

/**
 * Launches headless Chromium quietly. Playwright gives every launch a fresh
 * temporary profile (user-data-dir), so no state leaks between runs.
 */
export async function launchChromium(executablePath: string): Promise<Browser> {
  return chromium.launch({
    executablePath,
    headless: true,
    // Playwright hides scroll bars in headless mode; a test of what a reader sees needs them.
    ignoreDefaultArgs: ["--hide-scrollbars"],
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}
