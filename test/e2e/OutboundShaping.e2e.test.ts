// Traffic shaping per site end to end: two recipient domains whose MX records name the same hosts are one site, so
// `shaping.sites` limits them together: with one connection for the site, the receiver never has two of their
// messages in DATA at once, although they are different destinations (each domain alone could have used one).
// Automation: a "421 4.7.0 try again later" suspends the site for the rule's duration, recorded as SiteSuspended and
// SiteResumed on the site's stream; nothing is attempted there until it ends.
import { Message } from "@missive/core"
import { Timeline } from "@missive/events"
import type { Node } from "@missive/node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { BUSY_STREAM, startBusySite, type BusySite } from "../src/BusySite.js"
import { startDnsServer, type DnsServer } from "../src/DnsServer.js"
import { rawMessage, send, startNode, tempDir, testConfig, waitFor } from "../src/Harness.js"

describe("traffic shaping per site", () => {
  const dir = tempDir()
  let mx: CaptureServer
  let dns: DnsServer
  let node: Node.RunningNode
  let inData = 0
  let most = 0

  beforeAll(async () => {
    mx = await startCapture({
      onData: async () => {
        most = Math.max(most, ++inData)
        await new Promise((r) => setTimeout(r, 150))
        inData--
        return undefined
      }
    })
    const shared = [
      { preference: 10, exchange: "mx1.shared-host.test" },
      { preference: 20, exchange: "mx2.shared-host.test" }
    ]
    dns = await startDnsServer({
      "one.test": { mx: shared },
      "two.test": { mx: [...shared].reverse() },
      "mx1.shared-host.test": { a: ["127.0.0.1"] },
      "mx2.shared-host.test": { a: ["127.0.0.1"] }
    })
    node = await startNode(
      testConfig(dir.path, {
        dns: { servers: [dns.server], timeout: "2s" },
        relay: { local_domains: ["missive.test"], trusted_networks: ["127.0.0.0/8"] },
        delivery: { port: mx.port, mta_sts: false, concurrency_per_destination: 4 },
        shaping: { sites: { "*.shared-host.test": { connections: 1 } } }
      })
    )
  })
  afterAll(async () => {
    await node?.stop()
    await Promise.all([mx?.close(), dns?.close()])
    dir.remove()
  })

  it("two domains on the same MX hosts share the site's one connection", async () => {
    const port = node.ports["smtp"]!
    const sent = await Promise.all(
      ["a@one.test", "b@two.test", "c@one.test", "d@two.test", "e@one.test", "f@two.test"].map((to, i) =>
        send(port, { from: "s@missive.test", to: [to] }, rawMessage({ from: "s@missive.test", to, subject: `shaped ${i}` }))
      )
    )
    expect(sent.every((r) => r.ok)).toBe(true)
    await waitFor("all delivered", () => mx.messages.filter((m) => m.raw.includes("shaped")).length === 6)
    expect(new Set(mx.messages.flatMap((m) => m.to.map((t) => t.split("@")[1])))).toEqual(new Set(["one.test", "two.test"]))
    expect(most).toBe(1)
  })
})

describe("site automation rules", () => {
  const dir = tempDir()
  let site: BusySite
  let mx: CaptureServer
  let node: Node.RunningNode

  beforeAll(async () => {
    site = await startBusySite(dir.path, 1500)
    ;({ mx, node } = site)
  })
  afterAll(async () => {
    await site?.close()
    dir.remove()
  })

  it("a 421 try again later suspends the site until the rule's time has passed, each change an event", async () => {
    const r = await send(
      node.ports["smtp"]!,
      { from: "s@missive.test", to: ["a@busy.test"] },
      rawMessage({ from: "s@missive.test", to: "a@busy.test", subject: "suspend me" })
    )
    expect(r.ok).toBe(true)
    const stream = BUSY_STREAM
    const siteEvents = async (): Promise<ReadonlyArray<Message.Event>> => (await node.store.events.read(stream)).map((e) => e.event)
    await waitFor("the site resumed", async () => (await siteEvents()).some((e) => e.type === "SiteResumed"))
    const events = await siteEvents()
    expect(events.map((e) => e.type)).toEqual(["SiteSuspended", "SiteResumed"])
    const suspended = events[0]!
    if (suspended.type !== "SiteSuspended") throw new Error("not suspended")
    expect(suspended).toMatchObject({ site: "site:mx.busy-host.test", reply: { code: 421, enhanced: "4.7.0" } })
    // replay timeline site-<site> tells it
    const text = Timeline.format(await Timeline.load(node.store.events, stream))
    expect(text).toContain("site site:mx.busy-host.test suspended until")
    expect(text).toContain("site site:mx.busy-host.test resumed")
    const msg = async () => (await node.store.events.read(`message-${r.id}`)).map((e) => e.event)
    await waitFor("delivery", async () => (await msg()).some((e) => e.type === "RecipientDelivered"))
    const attempts = (await msg()).filter((e) => e.type === "AttemptStarted")
    // retries were due every 200-400 ms, but the suspended site started nothing before the suspension ended
    const delivered = (await msg()).find((e) => e.type === "AttemptSucceeded")!
    expect(delivered.at).toBeGreaterThanOrEqual(suspended.until)
    expect(mx.connections).toBe(2)
    expect(attempts.length).toBeGreaterThanOrEqual(2)
  })
})
