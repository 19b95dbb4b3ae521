// The incident report as an operator sees it: a real node process relays mail to two domains behind one next hop
// (an outage of 451s there, a bounce, retries) and a third domain, is killed with SIGKILL and restarted mid-incident;
// `missive replay report --html` runs on its log and headless Chromium opens the page. The SVG series are read back
// through the geometry each chart carries and checked against the log itself (a plain count of open recipients):
// not empty, inside the window, the peak at the height and the time the log has it. Screenshots: test/artifacts/.
import { SqliteStore } from "@missive/events"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Browser, Page } from "playwright-core"
import { launchBrowser, screenshot } from "../src/Browser.js"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import {
  freePort,
  missive,
  rawMessage,
  send,
  spawnNode,
  tempDir,
  testConfig,
  waitFor,
  writeConfig,
  type ChildNode
} from "../src/Harness.js"

interface ChartData {
  readonly label: string
  readonly x0: number
  readonly x1: number
  readonly lines: Record<string, Array<[number, number]>>
  readonly bars: Array<{ series: string; at: number; value: number; left: number; right: number }>
  readonly plot: [number, number, number, number]
}

/**
 * Every chart on the page with its series mapped back from pixels to (epoch ms, value), read in the browser from the
 * rendered DOM (a script string: the test package compiles without the DOM's types).
 */
const readCharts = async (page: Page): Promise<Array<ChartData>> =>
  (await page.evaluate(`[...document.querySelectorAll("svg[data-x0]")].map((svg) => {
      const x0 = Number(svg.getAttribute("data-x0")), x1 = Number(svg.getAttribute("data-x1")), top = Number(svg.getAttribute("data-ytop"))
      const [l, t, r, b] = svg.getAttribute("data-plot").split(",").map(Number)
      const time = (px) => x0 + ((px - l) / (r - l)) * (x1 - x0)
      const value = (py) => ((b - py) / (b - t)) * top
      const lines = {}
      for (const p of svg.querySelectorAll("polyline[data-series]"))
        lines[p.getAttribute("data-series")] = p.getAttribute("points").trim().split(/\\s+/)
          .map((xy) => xy.split(",").map(Number)).map(([px, py]) => [time(px), value(py)])
      const bars = [...svg.querySelectorAll("rect[data-series]")].map((rect) => ({
        series: rect.getAttribute("data-series"),
        at: Number(rect.getAttribute("data-at")),
        value: Number(rect.getAttribute("data-value")),
        left: time(Number(rect.getAttribute("x"))),
        right: time(Number(rect.getAttribute("x")) + Number(rect.getAttribute("width")))
      }))
      return { label: svg.getAttribute("aria-label"), x0, x1, lines, bars, plot: [l, t, r, b] }
    })`)) as Array<ChartData>

interface JsonReport {
  from: number
  to: number
  chart: { from: number; to: number; bucketMs: number }
  total: { attempts: number; delivered: number; bounced: number; deferrals: number; peakDepth: number; recipients: number }
  destinations: Array<{ destination: string; attempts: number; recipients: number; messages: number }>
}

describe("the incident report in a browser", () => {
  const dir = tempDir("missive-replay-browser-")
  let shared: CaptureServer, other: CaptureServer, senders: CaptureServer
  let node: ChildNode | undefined
  let browser: Browser
  let configPath = ""
  let outage = true
  const started = Date.now()

  beforeAll(async () => {
    // a.test and b.test share one next hop: an outage (451 to every message) until it is lifted, then one
    // message in three is refused once more; nobody@ is refused for good.
    const tries = new Map<string, number>()
    shared = await startCapture({
      onRcpt: (r) => (r.startsWith("nobody@") ? { code: 550, text: "5.1.1 No such user" } : undefined),
      onData: (m) => {
        const subject = /Subject: (.*)/.exec(m.raw.toString())?.[1] ?? ""
        const n = (tries.get(subject) ?? 0) + 1
        tries.set(subject, n)
        if (outage) return { code: 451, text: "4.3.2 Service busy" }
        return Number(/\d+/.exec(subject)?.[0] ?? 0) % 3 === 0 && n <= 2 ? { code: 451, text: "4.3.2 Try later" } : undefined
      }
    })
    other = await startCapture()
    senders = await startCapture()
    const port = await freePort()
    configPath = writeConfig(
      dir.path,
      testConfig(join(dir.path, "data"), {
        listeners: { smtp: { host: "127.0.0.1", port }, submission: { enabled: false } },
        routes: {
          "a.test": `127.0.0.1:${shared.port}`,
          "b.test": `127.0.0.1:${shared.port}`,
          "c.test": `127.0.0.1:${other.port}`,
          "sender.test": `127.0.0.1:${senders.port}`
        },
        relay: { relay_domains: ["a.test", "b.test", "c.test"] },
        retry: { initial: "400ms", max: "1s", multiplier: 2, jitter: 0, lifetime: "1h" }
      })
    )
    node = await spawnNode(configPath)
    const mail = async (seq: number, to: Array<string>) => {
      const from = "ops@sender.test"
      const r = await send(port, { from, to }, rawMessage({ from, to: to[0]!, subject: `m${seq}` }))
      expect(r.ok, r.response).toBe(true)
    }
    const rcpts = (seq: number) =>
      seq % 4 === 0 ? [`u${seq}@a.test`, `v${seq}@b.test`] : seq % 4 === 1 ? [`u${seq}@a.test`, `w${seq}@c.test`] : [`u${seq}@b.test`]
    let seq = 0
    for (; seq < 60; seq++) await mail(seq, rcpts(seq))
    await mail(seq++, ["nobody@a.test", `u${seq}@c.test`])
    // Mid-incident the node dies without a goodbye and comes back.
    await new Promise((r) => setTimeout(r, 1500))
    await node.kill9()
    node = await spawnNode(configPath)
    for (; seq < 80; seq++) await mail(seq, rcpts(seq))
    await new Promise((r) => setTimeout(r, 1500))
    outage = false
    await waitFor(
      "every message delivered, the bounce's DSN too",
      // 79 messages have recipients behind the shared hop (the one to nobody@ is refused there at RCPT).
      () => new Set(shared.messages.map((m) => /Subject: (.*)/.exec(m.raw.toString())?.[1])).size >= 79 && senders.messages.length >= 1,
      40_000
    )
    // Let the last completions land in the log.
    await new Promise((r) => setTimeout(r, 1500))
    await node.stop()
    node = undefined
    browser = await launchBrowser()
  }, 120_000)

  afterAll(async () => {
    await browser?.close()
    await node?.stop()
    await Promise.all([shared, other, senders].map((s) => s?.close()))
    dir.remove()
  })

  /** From the log itself: open recipients over time, and the most open at once and when. */
  const logPeak = async () => {
    const store = SqliteStore.open({ path: join(dir.path, "data", "missive.db"), readonly: true })
    const all = await store.events.readAll(0, 1_000_000)
    await store.close()
    const open = new Map<string, Set<string>>()
    let n = 0,
      peak = 0,
      peakAt = 0
    for (const { stream, event: e } of all) {
      if (e.type === "MessageReceived") {
        open.set(stream, new Set(e.recipients))
        n += e.recipients.length
      } else if (e.type === "RecipientDelivered" || e.type === "RecipientBounced" || e.type === "RecipientExpired") {
        if (open.get(stream)?.delete(e.rcpt)) n -= 1
      } else if (e.type === "MessageCompleted") {
        n -= open.get(stream)?.size ?? 0
        open.delete(stream)
      }
      if (n > peak) [peak, peakAt] = [n, e.at]
    }
    return { peak, peakAt, events: all.length, end: all[all.length - 1]!.event.at }
  }

  const report = async (name: string, ...extra: Array<string>) => {
    const html = join(dir.path, `${name}.html`)
    const from = new Date(started - 60_000).toISOString()
    const r = await missive(
      "replay",
      "report",
      "--from",
      extra.includes("--zoom") ? "-1h" : from,
      "--to",
      "now",
      "--config",
      configPath,
      "--html",
      html,
      "--json",
      ...extra
    )
    expect(r.code, r.stderr).toBe(0)
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } })
    await page.goto(`file://${html}`)
    return { html, page, json: JSON.parse(r.stdout) as JsonReport }
  }

  const checkPage = async (page: Page, json: JsonReport) => {
    const log = await logPeak()
    expect(log.peak).toBeGreaterThanOrEqual(20)
    const charts = await readCharts(page)
    expect(charts.length).toBeGreaterThanOrEqual(4 + 3 * 3)
    for (const c of charts) {
      // The x axis is the report's chart range: the window, or its traffic when zoomed.
      expect([c.x0, c.x1], c.label).toEqual([json.chart.from, json.chart.to])
      for (const pts of Object.values(c.lines)) for (const [t] of pts) expect(t, c.label).toBeGreaterThanOrEqual(c.x0 - 1)
      for (const pts of Object.values(c.lines)) for (const [t] of pts) expect(t, c.label).toBeLessThanOrEqual(c.x1 + json.chart.bucketMs)
    }
    const depth = charts.find((c) => c.label === "Queue depth, all destinations")!
    const open = depth.lines["open recipients"]!
    const peakLine = Object.entries(depth.lines).find(([k]) => k.startsWith("most open"))![1]
    expect(open.length).toBeGreaterThan(10)
    expect(Math.max(...open.map((p) => p[1]))).toBeGreaterThan(0)
    // The drawn peak is the log's, in height and in time (the bucket drawn highest holds the moment of the peak).
    const drawnPeak = Math.max(...peakLine.map((p) => p[1]))
    expect(Math.round(drawnPeak)).toBe(log.peak)
    expect(json.total.peakDepth).toBe(log.peak)
    const top = peakLine.filter((p) => Math.round(p[1]) === log.peak).map((p) => p[0])
    expect(Math.min(...top)).toBeLessThanOrEqual(log.peakAt + 1)
    expect(Math.max(...top)).toBeGreaterThanOrEqual(log.peakAt - 1)
    // The queue is empty at the end: everything was delivered or bounced.
    expect(Math.round(open[open.length - 1]![1])).toBe(0)
    // Attempts and outcomes per bucket add up to the table's totals.
    const attempts = charts.find((c) => c.label.startsWith("All destinations: attempts"))!
    expect(attempts.bars.reduce((n, b) => n + b.value, 0)).toBe(json.total.attempts)
    const outcomes = charts.find((c) => c.label.startsWith("All destinations: recipient outcomes"))!
    const sum = (s: string) => outcomes.bars.filter((b) => b.series === s).reduce((n, b) => n + b.value, 0)
    expect(sum("delivered")).toBe(json.total.delivered)
    expect(sum("bounced")).toBe(json.total.bounced)
    expect(sum("deferred")).toBe(json.total.deferrals)
    for (const b of [...attempts.bars, ...outcomes.bars]) {
      expect(b.left).toBeGreaterThanOrEqual(json.chart.from - 1)
      expect(b.right).toBeLessThanOrEqual(json.chart.to + 1)
    }
  }

  it("draws the queue, attempts and outcomes of a real node's incident where the log has them", async () => {
    const { page, json } = await report("incident")
    // Two domains behind one next hop: each is counted for the attempts that carried its recipients.
    const by = (d: string) => json.destinations.find((x) => x.destination === d)!
    expect(by("a.test").attempts).toBeGreaterThan(0)
    expect(by("b.test").attempts).toBeGreaterThan(0)
    expect(by("a.test").attempts + by("b.test").attempts + by("c.test").attempts).toBeGreaterThan(
      json.total.attempts - by("sender.test").attempts
    )
    await checkPage(page, json)
    await screenshot(page, "replay-report")
    await page.close()
  })

  it("zooms the charts to the traffic of a wide window", async () => {
    const { page, json } = await report("incident-zoom", "--zoom")
    expect(json.chart.to - json.chart.from).toBeLessThan((json.to - json.from) / 4)
    await checkPage(page, json)
    await screenshot(page, "replay-report-zoom")
    const page2 = await browser.newPage()
    await page2.goto(`file://${join(dir.path, "incident-zoom.html")}`)
    expect(readFileSync(join(dir.path, "incident-zoom.html"), "utf8")).not.toMatch(/<script|<link|src=|url\(|https?:\/\//i)
    await page2.close()
    await page.close()
  })
})
