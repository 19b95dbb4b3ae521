// Headless Chromium for tests that look at what users look at (HTML reports, the dashboard): Debian's `chromium`
// (installed by scripts/setup.sh), driven by playwright-core pointed at that binary; no browser download.
// MISSIVE_CHROMIUM overrides the path. Screenshots go to test/artifacts/ (kept for a person to look at).
import { existsSync, mkdirSync } from "node:fs"
import { join } from "node:path"
import { chromium, type Browser, type Page } from "playwright-core"

const CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]

export const chromiumPath = (): string => {
  const fromEnv = process.env["MISSIVE_CHROMIUM"]
  if (fromEnv) return fromEnv
  const found = CANDIDATES.find((p) => existsSync(p))
  if (!found)
    throw new Error(`no Chromium at ${CANDIDATES.join(", ")} (scripts/setup.sh installs Debian's chromium; or set MISSIVE_CHROMIUM)`)
  return found
}

export const launchBrowser = (): Promise<Browser> =>
  chromium.launch({ executablePath: chromiumPath(), headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] })

/** test/artifacts/<name>.png: where a screenshot is saved for a person to look at. */
export const artifactPath = (name: string): string => {
  const dir = join(import.meta.dirname, "..", "artifacts")
  mkdirSync(dir, { recursive: true })
  return join(dir, name)
}

/** Saves a full-page screenshot of `page` as test/artifacts/<name>.png and returns its path. */
export const screenshot = async (page: Page, name: string): Promise<string> => {
  const path = artifactPath(`${name}.png`)
  await page.screenshot({ path, fullPage: true })
  return path
}
