// The live dashboard in a real browser (Debian's chromium through playwright-core) against a real node process:
// the charts carry the node's traffic, the live feed shows events, a search opens a message's timeline, a read token
// is refused an operator action and an admin token releases a held message from the page; after a restart the
// throughput, the feed and the search still show the last hour, folded back from the log. Every request the page
// makes goes to the node itself (no external network). Saves test/artifacts/http-dashboard.png and
// http-dashboard-restarted.png.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Browser } from "playwright-core"
import { launchBrowser, screenshot } from "../src/Browser.js"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { freePort, rawMessage, send, spawnNode, tempDir, testConfig, waitFor, writeConfig, type ChildNode } from "../src/Harness.js"
import { Http } from "@missive/node"

const READ = "dashboard-read-token-0123456789"
const ADMIN = "dashboard-admin-token-0123456789"

describe("the live dashboard", () => {
  const dir = tempDir()
  let capture: CaptureServer
  let node: ChildNode
  let browser: Browser
  let base: string
  let smtp: number
  let configPath: string

  const api = async (method: string, path: string, token = ADMIN): Promise<any> => {
    const r = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${token}` } })
    return r.json()
  }

  beforeAll(async () => {
    capture = await startCapture({ onRcpt: (r) => (r.endsWith("@slow.test") ? { code: 451, text: "4.7.1 greylisted" } : undefined) })
    smtp = await freePort()
    const http = await freePort()
    base = `http://127.0.0.1:${http}`
    const config = testConfig(dir.path, {
      listeners: { smtp: { port: smtp }, submission: { enabled: false }, http: { port: http } },
      routes: { "fast.test": `127.0.0.1:${capture.port}`, "slow.test": `127.0.0.1:${capture.port}` },
      relay: { trusted_networks: ["127.0.0.0/8"] },
      http: {
        tokens: [
          { name: "dash-read", scope: "read", hash: Http.hashToken(READ) },
          { name: "dash-admin", scope: "admin", hash: Http.hashToken(ADMIN) }
        ]
      }
    })
    configPath = writeConfig(dir.path, config)
    node = await spawnNode(configPath)
    browser = await launchBrowser()
  })

  afterAll(async () => {
    await browser?.close()
    await node?.stop()
    await capture?.close()
    dir.remove()
  })

  it("draws the node's traffic, follows events live and releases a held message from the page", async () => {
    for (let i = 0; i < 8; i++) {
      const to = i < 6 ? `user${i}@fast.test` : `user${i}@slow.test`
      const r = await send(smtp, { from: "dash@sender.test", to: [to] }, rawMessage({ from: "dash@sender.test", to, subject: `dash${i}` }))
      expect(r.ok, r.response).toBe(true)
    }
    await waitFor("six deliveries", () => capture.messages.length >= 6)
    const queue = await waitFor("two queued for slow.test", async () => {
      const q = await api("GET", "/api/v1/queue")
      return q.messages.length >= 2 ? q : undefined
    })
    const heldId = queue.messages[0].id as string
    expect((await api("POST", `/api/v1/messages/${heldId}/hold`)).events).toEqual(["MessageHeld"])

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    const requested: Array<string> = []
    page.on("request", (r) => void requested.push(r.url()))
    await page.goto(`${base}/dashboard`)

    // A read token: the views work, an operator action is refused with the node's message.
    await page.fill("#token", READ)
    await page.click("#connect")
    await page.waitForSelector("#throughput svg[data-sum]")
    await page.fill("#q", heldId)
    await page.click("#search button")
    await page.waitForSelector("#message-state")
    expect(await page.textContent("#message-state")).toBe("active (held)")
    await page.click('button[data-op="release"]')
    await page.waitForFunction(() => (globalThis as any).document.querySelector("#action-result")?.textContent?.includes("refused"))
    expect(await page.textContent("#action-result")).toBe(
      'release refused: 403: token "dash-read" has scope read; this endpoint needs admin'
    )

    // An admin token: charts with data, the live feed, the release.
    await page.fill("#token", ADMIN)
    await page.click("#connect")
    await page.waitForFunction(() => Number((globalThis as any).document.querySelector("#throughput svg")?.getAttribute("data-sum")) >= 6)
    const throughputSum = Number(await page.getAttribute("#throughput svg", "data-sum"))
    const depthSum = Number(await page.getAttribute("#depth svg", "data-sum"))
    expect(throughputSum).toBeGreaterThanOrEqual(12) // 6 delivered + 8 received, over the hour's minutes
    expect(depthSum).toBeGreaterThanOrEqual(2)
    expect(await page.locator("#throughput polyline").count()).toBeGreaterThanOrEqual(2)
    // A node up for less than the hour says since when it counts, instead of zeros for the time before it.
    expect(await page.textContent("#depth-span")).toMatch(/^messages per destination, every 10 s since \d\d:\d\d:\d\d \(node start\)$/)
    // the throughput is folded from the log, which holds everything since it began: nothing to qualify
    expect(await page.textContent("#throughput-span")).toBe(
      "messages received and recipients delivered per destination, per minute, last hour"
    )
    expect(await page.locator("#queue td", { hasText: "(on hold)" }).count()).toBe(1)
    expect(await page.locator("#cluster td", { hasText: "test-node" }).count()).toBe(1)
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll("#feed li").length > 0)

    // A live event: a new message appears in the feed without a reload.
    const before = await page.locator("#feed li").count()
    const live = await send(
      smtp,
      { from: "dash@sender.test", to: ["live@fast.test"] },
      rawMessage({ from: "dash@sender.test", to: "live@fast.test", subject: "live" })
    )
    await page.waitForFunction((n) => (globalThis as any).document.querySelectorAll("#feed li").length > n, before)
    expect(await page.locator("#feed li", { hasText: live.id! }).count()).toBeGreaterThan(0)

    // Search by address, then release from the timeline.
    await page.fill("#q", "user6@slow")
    await page.click("#search button")
    await page.waitForSelector(`#results a:text("${heldId}")`)
    await page.click(`#results a:text("${heldId}")`)
    await page.waitForFunction(() => (globalThis as any).document.querySelector("#message-state")?.textContent === "active (held)")
    await page.click('button[data-op="release"]')
    await page.waitForFunction(() => (globalThis as any).document.querySelector("#action-result")?.textContent?.startsWith("release:"))
    expect(await page.textContent("#action-result")).toBe("release: MessageReleased")
    expect(await page.textContent("#message-state")).toBe("active")
    const timeline = await api("GET", `/api/v1/messages/${heldId}`, READ)
    expect(timeline.entries.find((e: any) => e.type === "MessageReleased").event.by).toBe("dash-admin")

    await page.evaluate(() => (globalThis as any).window.scrollTo(0, 0))
    await screenshot(page, "http-dashboard")
    expect(requested.filter((u) => !u.startsWith(base))).toEqual([])
    await page.close()
  })

  it("after a restart, draws the last hour from the log: the throughput, the feed and the search", async () => {
    const total = (d: any) =>
      (d.series.received as Array<number>).reduce((a, b) => a + b, 0) +
      Object.values(d.series.delivered as Record<string, Array<number>>)
        .flat()
        .reduce((a, b) => a + b, 0)
    const before = await api("GET", "/api/v1/dashboard", READ)
    expect(total(before)).toBeGreaterThanOrEqual(16) // 9 received, 7 delivered (the released one may still be on its way)
    const delivered = (before.series.delivered as Record<string, Array<number>>)[`route:127.0.0.1:${capture.port}`]
    await node.stop()
    node = await spawnNode(configPath)

    const after = await waitFor("the log's last hour folded back", async () => {
      const d = await api("GET", "/api/v1/dashboard", READ)
      return d.seeded ? d : undefined
    })
    // the same hour, the same minutes: each message received and each recipient delivered before the restart is there
    expect(after.series.received).toEqual(before.series.received)
    expect(after.series.delivered[`route:127.0.0.1:${capture.port}`]).toEqual(delivered)
    expect(total(after)).toBe(total(before))

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    await page.goto(`${base}/dashboard`)
    await page.fill("#token", ADMIN)
    await page.click("#connect")
    await page.waitForSelector("#throughput svg[data-sum]")
    expect(Number(await page.getAttribute("#throughput svg", "data-sum"))).toBe(total(after))
    expect(await page.locator("#throughput polyline").count()).toBeGreaterThanOrEqual(2)
    expect(await page.textContent("#throughput-span")).toBe(
      "messages received and recipients delivered per destination, per minute, last hour"
    )
    // the queue depth is sampled, not in the log: it says it begins at this start
    expect(await page.textContent("#depth-span")).toMatch(/^messages per destination, every 10 s since \d\d:\d\d:\d\d \(node start\)$/)
    // the feed shows events from before the restart, without new traffic
    await page.waitForFunction(() => (globalThis as any).document.querySelectorAll("#feed li").length > 0)
    expect(await page.locator("#feed li", { hasText: "MessageCompleted" }).count()).toBeGreaterThan(0)
    // a delivered (completed) message, no longer queued, is found by its address
    await page.fill("#q", "user0@fast")
    await page.click("#search button")
    await page.waitForSelector("#results a")
    expect(await page.locator("#results a").count()).toBe(1)
    await page.evaluate(() => (globalThis as any).window.scrollTo(0, 0))
    await screenshot(page, "http-dashboard-restarted")
    await page.close()
  })
})
