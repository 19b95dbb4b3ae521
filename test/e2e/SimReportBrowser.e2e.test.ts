// The simulation's HTML report in a browser: `missive sim run` against an embedded node with a destination that
// defers, then headless Chromium opens the page. The time charts' x axis ends where the run ended (it used to run on
// to a rounded-up number of seconds), their series are drawn inside the plot and not empty. Screenshot: test/artifacts/.
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { launchBrowser, screenshot } from "../src/Browser.js"
import { missive, tempDir } from "../src/Harness.js"

const SCENARIO = `
name: browser-check
duration: 3s
drain: 10s
retry: { initial: 300ms, max: 1s }
senders: { connections: 4, loop: closed, messages: 400, recipients: { min: 1, max: 2 }, domains: [s.sim] }
destinations:
  - { domain: a.sim, weight: 2 }
  - { domain: b.sim, weight: 1, behaviour: { temp_fail: 0.3 } }
`

interface Drawn {
  readonly label: string
  readonly x0: number
  readonly x1: number
  readonly plot: [number, number, number, number]
  readonly lines: Record<string, Array<[number, number]>>
  readonly ticks: Array<string>
}

describe("the simulation report in a browser", () => {
  const dir = tempDir("missive-sim-browser-")
  afterAll(() => dir.remove())

  it("draws throughput and queue depth over exactly the run", async () => {
    const scenario = join(dir.path, "scenario.yaml")
    writeFileSync(scenario, SCENARIO)
    const html = join(dir.path, "sim.html")
    const r = await missive("sim", "run", scenario, "--target", "embedded", "--report", html, "--json")
    expect(r.code, r.stderr).toBe(0)
    const run = JSON.parse(r.stdout) as { elapsedMs: number; counts: { accepted: number; delivered: number } }
    expect(run.counts.accepted).toBeGreaterThan(50)
    const browser = await launchBrowser()
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 900 } })
      await page.goto(`file://${html}`)
      const charts = (await page.evaluate(`[...document.querySelectorAll("svg[data-x1]")].map((svg) => {
        const [l, t, r, b] = svg.getAttribute("data-plot").split(",").map(Number)
        const lines = {}
        for (const p of svg.querySelectorAll("polyline[data-series]"))
          lines[p.getAttribute("data-series")] = p.getAttribute("points").trim().split(/\\s+/).filter(Boolean).map((xy) => xy.split(",").map(Number))
        const ticks = [...svg.querySelectorAll("text[text-anchor=middle]")].map((e) => e.textContent)
        return { label: svg.getAttribute("aria-label"), x0: Number(svg.getAttribute("data-x0")), x1: Number(svg.getAttribute("data-x1")), plot: [l, t, r, b], lines, ticks }
      })`)) as Array<Drawn>
      expect(charts.map((c) => c.label)).toEqual([
        "Throughput over time (per second)",
        "Queue depth over time (accepted messages not yet resolved)"
      ])
      for (const c of charts) {
        // The axis is the run: from 0 to its end, not past it.
        expect(c.x0).toBe(0)
        expect(c.x1).toBeGreaterThanOrEqual(run.elapsedMs / 1000 - 0.001)
        expect(c.x1).toBeLessThan(run.elapsedMs / 1000 + 1.5)
        const [l, t, right, b] = c.plot
        const points = Object.values(c.lines).flat()
        expect(points.length, c.label).toBeGreaterThan(5)
        for (const [x, y] of points) {
          expect(x).toBeGreaterThanOrEqual(l - 0.1)
          expect(x).toBeLessThanOrEqual(right + 0.1)
          expect(y).toBeGreaterThanOrEqual(t - 0.1)
          expect(y).toBeLessThanOrEqual(b + 0.1)
        }
        // Something above zero is drawn, and a series reaches the right part of the plot (the run's end).
        expect(Math.min(...points.map((p) => p[1]))).toBeLessThan(b - 1)
        expect(Math.max(...points.map((p) => p[0]))).toBeGreaterThan(l + (right - l) * 0.8)
        // The last tick is a number of seconds inside the run.
        const last = Number(/^([\d.]+)/.exec(c.ticks[c.ticks.length - 1]!)?.[1])
        expect(last).toBeLessThanOrEqual(c.x1)
      }
      await screenshot(page, "sim-report")
    } finally {
      await browser.close()
    }
  })
})
