// A busy receiving site for shaping tests: domain busy.test whose MX mx.busy-host.test (on the loopback DNS server)
// answers the first message with "421 4.7.0 Try again later" and accepts the rest, and a node whose one shaping rule
// suspends the site on that reply for `suspendMs`. The site's stream is `site-site_mx_busy-host_test`.
import type { Node } from "@missive/node"
import { startCapture, type CaptureServer } from "./CaptureServer.js"
import { startDnsServer, type DnsServer } from "./DnsServer.js"
import { startNode, testConfig } from "./Harness.js"

export const BUSY_RULE = "^421 4\\.7\\.0 .*try again later"
export const BUSY_STREAM = "site-site_mx_busy-host_test"

export interface BusySite {
  readonly mx: CaptureServer
  readonly dns: DnsServer
  readonly node: Node.RunningNode
  close(): Promise<void>
}

export const startBusySite = async (dataDir: string, suspendMs: number): Promise<BusySite> => {
  let refused = 0
  const mx = await startCapture({
    onData: () => (refused++ === 0 ? { code: 421, text: "4.7.0 Try again later, closing connection." } : undefined)
  })
  const dns = await startDnsServer({
    "busy.test": { mx: [{ preference: 10, exchange: "mx.busy-host.test" }] },
    "mx.busy-host.test": { a: ["127.0.0.1"] }
  })
  const node = await startNode(
    testConfig(dataDir, {
      dns: { servers: [dns.server], timeout: "2s" },
      relay: { local_domains: ["missive.test"], trusted_networks: ["127.0.0.0/8"] },
      retry: { initial: "200ms", max: "400ms", multiplier: 2, jitter: 0, lifetime: "1h" },
      delivery: { port: mx.port, mta_sts: false },
      shaping: { rules: [{ match: BUSY_RULE, action: "suspend", duration: `${suspendMs}ms` }] }
    })
  )
  return {
    mx,
    dns,
    node,
    close: async () => {
      await node.stop()
      await Promise.all([mx.close(), dns.close()])
    }
  }
}
