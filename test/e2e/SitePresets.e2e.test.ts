// The shipped site presets (nodes/assets/site-presets.yaml) apply by MX host name: a domain whose MX is
// gmail-smtp-in.l.google.com (here served on loopback by the test DNS server) gets the Google preset's connections,
// so the receiver never has more of its messages in DATA at once; with `shaping.presets: false` the same traffic
// uses the configured concurrency. The preset's value is read from the shipped file, not repeated here.
import { Presets } from "@missive/node"
import type { Node } from "@missive/node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { startDnsServer, type DnsServer } from "../src/DnsServer.js"
import { rawMessage, send, startNode, tempDir, testConfig, waitFor } from "../src/Harness.js"

describe("site presets for the large providers", () => {
  const preset = Presets.load().sites["*.google.com"]!.connections!
  let mx: CaptureServer
  let dns: DnsServer
  let inData = 0
  let most = 0

  beforeAll(async () => {
    mx = await startCapture({
      onData: async () => {
        most = Math.max(most, ++inData)
        await new Promise((r) => setTimeout(r, 400))
        inData--
        return undefined
      }
    })
    dns = await startDnsServer({
      "gmail.test": { mx: [{ preference: 5, exchange: "gmail-smtp-in.l.google.com" }] },
      "gmail-smtp-in.l.google.com": { a: ["127.0.0.1"] }
    })
  })
  afterAll(async () => {
    await Promise.all([mx?.close(), dns?.close()])
  })

  /** Sends 3x the preset's connections at once through a node with `presets` on or off; the most in DATA at once. */
  const mostAtOnce = async (presets: boolean): Promise<number> => {
    const dir = tempDir()
    let node: Node.RunningNode | undefined
    try {
      node = await startNode(
        testConfig(dir.path, {
          dns: { servers: [dns.server], timeout: "2s" },
          relay: { local_domains: ["missive.test"], trusted_networks: ["127.0.0.0/8"] },
          delivery: { port: mx.port, mta_sts: false, concurrency_per_destination: preset * 3, max_connections: preset * 4 },
          shaping: { presets }
        })
      )
      most = 0
      const before = mx.messages.length
      const n = preset * 3
      const sent = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          send(
            node!.ports["smtp"]!,
            { from: "s@missive.test", to: [`r${i}@gmail.test`] },
            rawMessage({ from: "s@missive.test", to: `r${i}@gmail.test`, subject: `preset ${i}` })
          )
        )
      )
      expect(sent.every((r) => r.ok)).toBe(true)
      await waitFor("all delivered", () => mx.messages.length === before + n, 30_000)
      return most
    } finally {
      await node?.stop()
      dir.remove()
    }
  }

  it(
    "a site whose MX host matches a preset takes the preset's connections; presets off, the configured ones",
    { timeout: 90_000 },
    async () => {
      expect(preset).toBeGreaterThan(0)
      expect(await mostAtOnce(true)).toBe(preset)
      expect(await mostAtOnce(false)).toBeGreaterThan(preset)
    }
  )
})
