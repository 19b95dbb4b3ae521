// DNSBL/DNSWL at connect (Postscreen-style weights and threshold, resolved through the node's DNS: the loopback DNS
// server) and in-process hooks loaded from a TypeScript module the test writes, through a running node and a real
// SMTP client.
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Node } from "@missive/node"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { startDnsServer, type DnsServer } from "../src/DnsServer.js"
import { rawMessage, send, startNode, tempDir, testConfig, waitFor } from "../src/Harness.js"

const plugin = (queuedLog: string) => `
import { appendFileSync } from "node:fs"
// A hook module as an operator would write one (TypeScript, erasable types only).
interface Session { readonly ip: string; readonly helo: string }
export const name = "test-plugin"
export function helo(ctx: { session: Session; helo: string }) {
  if (ctx.helo === "bad.helo.test") return { action: "reject", reply: { code: 550, enhanced: "5.7.1", text: "HELO refused by plugin" } }
  return undefined
}
export function mail(ctx: { sender: string }) {
  if (ctx.sender.startsWith("blocked@")) return { action: "reject", reply: { code: 553, enhanced: "5.7.1", text: "Sender blocked by plugin" } }
  return undefined
}
export function rcpt(ctx: { recipient: string }) {
  if (ctx.recipient.startsWith("later@")) return { action: "tempfail", reply: { code: 450, enhanced: "4.2.1", text: "Mailbox busy, says plugin" } }
  return undefined
}
export async function data(ctx: { message: Buffer; recipients: ReadonlyArray<string> }) {
  const text = ctx.message.toString("latin1")
  if (text.includes("Subject: crash")) throw new Error("plugin crashed")
  if (text.includes("Subject: slow")) await new Promise((r) => setTimeout(r, 3000))
  return { headers: { "X-Plugin": \`seen by test-plugin for \${ctx.recipients.length} recipient(s)\` }, result: "tagged" }
}
export function queued(ctx: { id: string; sender: string; recipients: ReadonlyArray<string> }) {
  appendFileSync(${JSON.stringify(queuedLog)}, JSON.stringify(ctx) + "\\n")
}
`

describe("DNSBL at connect and hooks", () => {
  let dns: DnsServer
  let dest: CaptureServer
  let node: Node.RunningNode
  const dir = tempDir()
  const pluginPath = join(dir.path, "plugin.ts")
  const queuedLog = join(dir.path, "queued.jsonl")

  beforeAll(async () => {
    dns = await startDnsServer()
    dest = await startCapture()
    writeFileSync(pluginPath, plugin(queuedLog))
    node = await startNode(
      testConfig(dir.path, {
        dns: { servers: [dns.server], timeout: "1s" },
        routes: { "dest.test": `127.0.0.1:${dest.port}` },
        // not a trusted network: trusted clients are not looked up in DNSBLs
        relay: { local_domains: ["missive.test"], relay_domains: ["dest.test"], trusted_networks: [] },
        filter: {
          dnsbl: {
            zones: [
              { zone: "bl.test", weight: 2 },
              { zone: "weak.test", weight: 1, answers: ["127.0.0.10"] },
              { zone: "wl.test", weight: -5 }
            ],
            threshold: 3
          },
          hooks: [pluginPath],
          hook_timeout: "500ms"
        }
      })
    )
  })

  afterAll(async () => {
    await node?.stop()
    await Promise.all([dest?.close(), dns?.close()])
    dir.remove()
  })

  const sendAs = (from: string, to: ReadonlyArray<string>, subject: string, opts: { name?: string } = {}) =>
    send(node.ports["smtp"]!, { from, to }, rawMessage({ from, to: to[0]!, subject }), opts)

  it("sums the weights of the zones that list the client; refuses at the threshold, allowlists subtract", async () => {
    // Listed nowhere: accepted; each zone was asked through the node's DNS server.
    expect((await sendAs("a@client.test", ["b@dest.test"], "unlisted")).ok).toBe(true)
    expect(dns.queries.map((q) => q.name)).toEqual(
      expect.arrayContaining(["1.0.0.127.bl.test", "1.0.0.127.weak.test", "1.0.0.127.wl.test"])
    )
    // weak.test answers a code it does not count, bl.test lists: 2 < 3, accepted.
    dns.setZone("1.0.0.127.weak.test", { a: ["127.0.0.11"] })
    dns.setZone("1.0.0.127.bl.test", { a: ["127.0.0.2"] })
    expect((await sendAs("a@client.test", ["b@dest.test"], "below threshold")).ok).toBe(true)
    // weak.test now answers the counted code: 2 + 1 = 3, refused before the greeting.
    dns.setZone("1.0.0.127.weak.test", { a: ["127.0.0.10"] })
    const refused = await sendAs("a@client.test", ["b@dest.test"], "listed")
    expect(refused.ok).toBe(false)
    expect(refused.response).toMatch(/^554 5\.7\.1 Service unavailable; client \[127\.0\.0\.1\] blocked using bl\.test, weak\.test/)
    // An allowlist entry outweighs them.
    dns.setZone("1.0.0.127.wl.test", { a: ["127.0.0.5"] })
    expect((await sendAs("a@client.test", ["b@dest.test"], "allowlisted")).ok).toBe(true)
    for (const z of ["bl", "weak", "wl"]) dns.setZone(`1.0.0.127.${z}.test`, undefined)
    // The connect stage's verdict follows the message: score and the DNS answers it rested on.
    const allowlisted = await waitFor("the allowlisted message's MessageFiltered", async () =>
      (await node.store.events.readAll(0, 10_000))
        .map((e) => e.event)
        .find((e) => e.type === "MessageFiltered" && e.verdicts.some((v) => v.name === "dnsbl" && v.score === -2))
    )
    const verdict = allowlisted.type === "MessageFiltered" ? allowlisted.verdicts.find((v) => v.name === "dnsbl") : undefined
    expect(verdict?.result).toBe("below-threshold")
    expect(verdict?.evidence).toEqual(
      expect.arrayContaining([{ name: "1.0.0.127.wl.test", type: "A", rcode: "NOERROR", answers: ["127.0.0.5"] }])
    )
    await waitFor("deliveries", () => dest.messages.length >= 3)
    expect(dest.messages.some((m) => m.raw.includes("Subject: listed\r\n"))).toBe(false)
  })

  it("runs the plugin's hooks at HELO, MAIL, RCPT and DATA, and tells it of the queued message", async () => {
    expect((await sendAs("a@client.test", ["b@dest.test"], "bad helo", { name: "bad.helo.test" })).response).toMatch(
      /^550 5\.7\.1 HELO refused by plugin/
    )
    expect((await sendAs("blocked@client.test", ["b@dest.test"], "blocked")).response).toMatch(/^553 5\.7\.1 Sender blocked by plugin/)
    expect((await sendAs("a@client.test", ["later@dest.test"], "later")).response).toMatch(/^450 4\.2\.1 Mailbox busy, says plugin/)
    const ok = await sendAs("a@client.test", ["b@dest.test", "c@dest.test"], "hooked")
    expect(ok.ok, ok.response).toBe(true)
    const got = await waitFor("hooked delivery", () => dest.messages.find((m) => m.raw.includes("Subject: hooked\r\n")))
    expect(got.raw.toString("latin1")).toContain("\r\nX-Plugin: seen by test-plugin for 2 recipient(s)\r\n")
    // queued: told once the message is durable, with the id the client was given
    const id = /queued as (\S+)/.exec(ok.response)?.[1]
    const told = await waitFor("the queued hook", () =>
      existsSync(queuedLog)
        ? readFileSync(queuedLog, "utf8")
            .trim()
            .split("\n")
            .map((l) => JSON.parse(l) as { id: string; recipients: Array<string> })
            .find((e) => e.id === id)
        : undefined
    )
    expect(told.recipients).toEqual(["b@dest.test", "c@dest.test"])
  })

  it("a hook that throws or does not answer in time gives 451 4.3.0", async () => {
    expect((await sendAs("a@client.test", ["b@dest.test"], "crash")).response).toMatch(/^451 4\.3\.0 /)
    expect((await sendAs("a@client.test", ["b@dest.test"], "slow")).response).toMatch(/^451 4\.3\.0 /)
  })
})
