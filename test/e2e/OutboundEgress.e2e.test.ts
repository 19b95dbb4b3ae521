// Egress pools end to end: recipient domains mapped to pools of source addresses on loopback (127.0.0.21, .22, .23);
// the receiver sees each session come from the pool's address with the pool's EHLO name, and the default pool
// serves the domains no mapping names.
import type { Node } from "@missive/node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { rawMessage, send, startNode, tempDir, testConfig, waitFor } from "../src/Harness.js"

describe("egress pools", () => {
  const dir = tempDir()
  let mx: CaptureServer
  let node: Node.RunningNode

  beforeAll(async () => {
    mx = await startCapture()
    const route = `127.0.0.1:${mx.port}`
    node = await startNode(
      testConfig(dir.path, {
        relay: { local_domains: ["missive.test"], trusted_networks: ["127.0.0.0/8"] },
        routes: { "blue.test": route, "green.test": route, "other.test": route },
        egress: {
          pools: {
            blue: [{ address: "127.0.0.21", ehlo: "blue.out.missive.test" }],
            green: [{ address: "127.0.0.22", ehlo: "green.out.missive.test", weight: 3 }],
            fallback: [{ address: "127.0.0.23" }]
          },
          default: "fallback",
          domains: { "blue.test": "blue", "green.test": "green" }
        }
      })
    )
  })
  afterAll(async () => {
    await node?.stop()
    await mx?.close()
    dir.remove()
  })

  it("each domain's sessions come from its pool's address, with its EHLO name", async () => {
    for (const to of ["a@blue.test", "b@green.test", "c@other.test"]) {
      const r = await send(
        node.ports["smtp"]!,
        { from: "s@missive.test", to: [to] },
        rawMessage({ from: "s@missive.test", to, subject: `egress ${to}` })
      )
      expect(r.ok).toBe(true)
    }
    await waitFor("three deliveries", () => mx.messages.filter((m) => m.raw.includes("egress")).length === 3)
    const by = (rcpt: string) => mx.messages.find((m) => m.to.includes(rcpt))!
    expect(by("a@blue.test")).toMatchObject({ remote: "127.0.0.21", helo: "blue.out.missive.test" })
    expect(by("b@green.test")).toMatchObject({ remote: "127.0.0.22", helo: "green.out.missive.test" })
    // no EHLO name of its own: the node's hostname
    expect(by("c@other.test")).toMatchObject({ remote: "127.0.0.23", helo: "mx.missive.test" })
  })
})
