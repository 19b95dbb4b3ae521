// Traffic shaping per site end to end: two recipient domains whose MX records name the same hosts are one site, so
// `shaping.sites` limits them together: with one connection for the site, the receiver never has two of their
// messages in DATA at once, although they are different destinations (each domain alone could have used one).
import type { Node } from "@missive/node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
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
