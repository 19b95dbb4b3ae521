// Hostile input at the filter stage: malformed DKIM signatures and SPF records, SPF include loops and the 10-lookup
// limit, a huge folded header section, DNS that never answers at DATA. Each has a defined reply, and the node keeps
// answering afterwards (no crash, no hung session).
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Message } from "@missive/core"
import type { Node } from "@missive/node"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { startDnsServer, type DnsServer, type Zones } from "../src/DnsServer.js"
import { rawMessage, send, startNode, tempDir, testConfig, waitFor } from "../src/Harness.js"

const verdictsOf = async (node: Node.RunningNode, subject: string, name: string): Promise<Message.Verdict> => {
  return waitFor(`${name} verdict for ${subject}`, async () => {
    const events = (await node.store.events.readAll(0, 100_000)).map((e) => e.event)
    const ids = new Set(events.filter((e) => e.type === "MessageReceived").map((e) => (e as { id: string }).id))
    for (const e of events.reverse())
      if (e.type === "MessageFiltered" && ids.has(e.id)) {
        const v = e.verdicts.find((x) => x.name === name && x.detail?.includes(subject))
        if (v) return v
      }
    return undefined
  })
}

describe("hostile input at the filter stage", () => {
  let dest: CaptureServer
  let dns: DnsServer
  let node: Node.RunningNode
  const dir = tempDir()

  beforeAll(async () => {
    dest = await startCapture()
    const chain: Record<string, { txt: Array<string> }> = {}
    // l0 includes l1 … l11: twelve lookups, over RFC 7208's limit of 10
    for (let i = 0; i <= 11; i++)
      chain[`l${i}.test`] = { txt: [i < 11 ? `v=spf1 include:l${i + 1}.test -all` : "v=spf1 ip4:127.0.0.1 -all"] }
    const zones: Zones = {
      ...chain,
      "broken-spf.test": { txt: ["v=spf1 ip4:999.1.1.1 bogus:mechanism -all"] },
      "loop1.test": { txt: ["v=spf1 include:loop2.test -all"] },
      "loop2.test": { txt: ["v=spf1 include:loop1.test -all"] },
      "plain.test": { txt: ["v=spf1 ip4:127.0.0.1 -all"] },
      "slow-dmarc.test": { txt: ["v=spf1 ip4:127.0.0.1 -all"] },
      "_dmarc.slow-dmarc.test": { drop: true }
    }
    dns = await startDnsServer(zones)
    node = await startNode(
      testConfig(dir.path, {
        dns: { servers: [dns.server], timeout: "300ms" },
        relay: { local_domains: ["missive.test"], relay_domains: ["dest.test"] },
        routes: { "dest.test": `127.0.0.1:${dest.port}` },
        filter: { auth: { smtp: { verify: true, dmarc: "enforce", temperror: "tempfail" } } }
      })
    )
  })
  afterAll(async () => {
    await node?.stop()
    await Promise.all([dest?.close(), dns?.close()])
    dir.remove()
  })

  const smtp = (from: string, raw: string | Buffer) => send(node.ports["smtp"]!, { from, to: ["b@dest.test"] }, raw)

  it("a malformed DKIM signature is a failed check (250, dkim not pass), never an error", async () => {
    const raw = rawMessage({
      from: "a@plain.test",
      to: "b@dest.test",
      subject: "bad sig",
      headers: {
        "DKIM-Signature": "v=1; a=rsa-sha256; c=relaxed/relaxed; d=plain.test; s=gone; h=from:subject; bh=Zm9v; b=!!!%%%not base64"
      }
    })
    const r = await smtp("a@plain.test", raw)
    expect(r.ok, r.response).toBe(true)
    const got = await waitFor("delivery", () => dest.messages.find((m) => m.raw.includes("Subject: bad sig")))
    expect(got.raw.toString("latin1")).toMatch(/^Authentication-Results: mx\.missive\.test;[^]*dkim=(neutral|permerror|fail|policy)/m)
  })

  it("a malformed SPF record, an include loop and more than 10 lookups are permerror (250, recorded)", async () => {
    for (const [domain, subject] of [
      ["broken-spf.test", "broken spf"],
      ["loop1.test", "spf loop"],
      ["l0.test", "spf chain"]
    ] as const) {
      const r = await smtp(`a@${domain}`, rawMessage({ from: `a@${domain}`, to: "b@dest.test", subject }))
      expect(r.ok, `${subject}: ${r.response}`).toBe(true)
      const got = await waitFor(subject, () => dest.messages.find((m) => m.raw.includes(`Subject: ${subject}`)))
      expect(got.raw.toString("latin1"), subject).toMatch(/spf=permerror/)
      const v = await verdictsOf(node, domain, "spf")
      expect(v.result).toBe("permerror")
      expect(v.evidence!.length).toBeLessThanOrEqual(40)
    }
  })

  it("a huge, deeply folded header section is checked and passed on (250), the node answering the next message", async () => {
    const folded = Array.from({ length: 4000 }, (_, i) => `X-Fold-${i}: part one\r\n\tpart two\r\n  part three ${"x".repeat(40)}`).join(
      "\r\n"
    )
    const raw = `${folded}\r\n${rawMessage({ from: "a@plain.test", to: "b@dest.test", subject: "huge headers" })}`
    expect(raw.length).toBeGreaterThan(300_000)
    const r = await smtp("a@plain.test", raw)
    expect(r.ok, r.response).toBe(true)
    const got = await waitFor("huge delivery", () => dest.messages.find((m) => m.raw.includes("Subject: huge headers")))
    expect(got.raw.toString("latin1")).toMatch(/^Authentication-Results: mx\.missive\.test;[^]*spf=pass/m)
    expect(got.raw.includes("X-Fold-3999: part one\r\n\tpart two")).toBe(true)
  })

  it("DNS that never answers the DMARC query gives 451 4.4.3 at the end of DATA, and the node keeps answering", async () => {
    const r = await smtp("a@slow-dmarc.test", rawMessage({ from: "a@slow-dmarc.test", to: "b@dest.test", subject: "dmarc timeout" }))
    expect(r.ok).toBe(false)
    expect(r.response).toMatch(/^451 4\.4\.3/)
    const after = await smtp("a@plain.test", rawMessage({ from: "a@plain.test", to: "b@dest.test", subject: "still alive" }))
    expect(after.ok, after.response).toBe(true)
  })
})
