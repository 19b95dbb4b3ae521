// A site's suspension outlives the node: a "421 4.7.0 try again later" suspends the site for the rule's duration
// (SiteSuspended on the site's stream); the node is killed with SIGKILL and started again, and the restarted node
// reads the change back from the log (nodes/src/scheduler/Shaping.ts `restore`): the receiver sees no connection
// until the suspension ends, although the message is due again within a second; then it is delivered.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { startDnsServer, type DnsServer } from "../src/DnsServer.js"
import { freePort, rawMessage, send, spawnNode, tempDir, testConfig, waitFor, writeConfig, type ChildNode } from "../src/Harness.js"

const SUSPEND_MS = 20_000

/** The node's JSON log lines with this message. */
const linesOf = (output: string, msg: string): ReadonlyArray<Record<string, unknown>> =>
  output
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l["msg"] === msg)

describe("site shaping across a restart", () => {
  const dir = tempDir()
  let mx: CaptureServer
  let dns: DnsServer
  let node: ChildNode | undefined
  /** When each session reached MAIL FROM (the receiver's clock, the same host's as the node's). */
  const mailAt: Array<number> = []

  beforeAll(async () => {
    mx = await startCapture({
      onMailFrom: () => {
        mailAt.push(Date.now())
        return undefined
      },
      onData: () => (mailAt.length === 1 ? { code: 421, text: "4.7.0 Try again later, closing connection." } : undefined)
    })
    dns = await startDnsServer({
      "busy.test": { mx: [{ preference: 10, exchange: "mx.busy-host.test" }] },
      "mx.busy-host.test": { a: ["127.0.0.1"] }
    })
  })
  afterAll(async () => {
    await node?.stop()
    await Promise.all([mx?.close(), dns?.close()])
    dir.remove()
  })

  it("a suspension in force when the node is killed holds after its restart until it ends", { timeout: 90_000 }, async () => {
    const port = await freePort()
    const config = writeConfig(
      dir.path,
      testConfig(`${dir.path}/data`, {
        listeners: { smtp: { host: "127.0.0.1", port }, submission: { enabled: false } },
        dns: { servers: [dns.server], timeout: "2s" },
        relay: { local_domains: ["missive.test"], trusted_networks: ["127.0.0.0/8"] },
        retry: { initial: "200ms", max: "400ms", multiplier: 2, jitter: 0, lifetime: "1h" },
        delivery: { port: mx.port, mta_sts: false },
        shaping: { rules: [{ match: "^421 4\\.7\\.0 .*try again later", action: "suspend", duration: `${SUSPEND_MS}ms` }] }
      })
    )
    node = await spawnNode(config)
    const r = await send(
      port,
      { from: "s@missive.test", to: ["a@busy.test"] },
      rawMessage({ from: "s@missive.test", to: "a@busy.test", subject: "suspended across a restart" })
    )
    expect(r.ok).toBe(true)
    const first = node
    const suspended = await waitFor("the site suspended", () =>
      linesOf(first.output(), "site shaping").find((l) => l["change"] === "SiteSuspended")
    )
    const until = suspended["until"] as number
    expect(suspended["site"]).toBe("site:mx.busy-host.test")
    await node.kill9()
    const seen = mx.connections
    expect(seen).toBe(1)

    node = await spawnNode(config)
    const second = node
    const restored = await waitFor("the suspension restored", () => linesOf(second.output(), "site shaping restored")[0])
    expect(restored).toMatchObject({ site: "site:mx.busy-host.test", change: "SiteSuspended", until })
    // The message is due again every 200-400 ms; the restarted node starts nothing at the site while it is suspended.
    await new Promise((done) => setTimeout(done, Math.max(0, until - Date.now() - 1000)))
    expect(mx.connections).toBe(seen)
    expect(mx.messages).toHaveLength(0)

    await waitFor("delivery after the suspension", () => mx.messages.length === 1, SUSPEND_MS)
    expect(mailAt).toHaveLength(2)
    expect(mailAt[1]!).toBeGreaterThanOrEqual(until)
    await waitFor("the site resumed", () => linesOf(second.output(), "site shaping").some((l) => l["change"] === "SiteResumed"))
  })
})
