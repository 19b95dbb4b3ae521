// MTA-STS (RFC 8461) end to end: a node discovers each recipient domain's policy through the loopback DNS server
// (TXT _mta-sts and MX), fetches it from an HTTPS server on 127.0.0.1 whose certificate a test CA signed (the node
// trusts that CA through delivery.tls_ca_file and reaches the policy hosts through delivery.mta_sts_hosts), caches it
// in its data directory, and applies it: under `enforce` it delivers only to a listed MX whose certificate verifies,
// defers otherwise and expires the recipient at the end of its lifetime; under `testing` it delivers and records.
import { Message } from "@missive/core"
import { Timeline } from "@missive/events"
import type { Node } from "@missive/node"
import { existsSync, readFileSync } from "node:fs"
import { createServer, type Server } from "node:https"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { startDnsServer, type DnsServer } from "../src/DnsServer.js"
import { rawMessage, send, startNode, tempDir, testConfig, waitFor } from "../src/Harness.js"
import { makeCa } from "../src/Pki.js"
import { freePort } from "../src/Support.js"

const POLICIES: Record<string, string> = {
  "mta-sts.good.test": "version: STSv1\nmode: enforce\nmx: mx.good.test\nmax_age: 86400\n",
  "mta-sts.badcert.test": "version: STSv1\nmode: enforce\nmx: mx.badcert.test\nmax_age: 86400\n",
  "mta-sts.outside.test": "version: STSv1\nmode: enforce\nmx: *.elsewhere.test\nmax_age: 86400\n",
  "mta-sts.testing.test": "version: STSv1\nmode: testing\nmx: mx.testing.test\nmax_age: 86400\n"
}

describe("MTA-STS", () => {
  const dir = tempDir()
  const pki = tempDir("missive-pki-")
  let trusted: CaptureServer
  let mismatched: CaptureServer
  let dns: DnsServer
  let https: Server
  let node: Node.RunningNode
  const fetched: string[] = []

  beforeAll(async () => {
    const ca = makeCa(pki.path)
    // Two receivers on the same port, on two loopback addresses: one whose certificate names its MX hosts, one whose
    // certificate (from the same trusted CA) names some other host.
    const port = await freePort()
    trusted = await startCapture({ host: "127.0.0.2", port, certificate: ca.issue(["mx.good.test", "mx.outside.test"]) })
    mismatched = await startCapture({ host: "127.0.0.3", port, certificate: ca.issue(["wrong.example"]) })
    https = createServer({ ...ca.issue(Object.keys(POLICIES)) }, (req, res) => {
      const host = String(req.headers.host ?? "")
      fetched.push(host)
      const policy = POLICIES[host]
      if (req.url !== "/.well-known/mta-sts.txt" || policy === undefined) return void res.writeHead(404).end()
      res.writeHead(200, { "content-type": "text/plain" }).end(policy)
    })
    await new Promise<void>((r) => https.listen(0, "127.0.0.1", r))
    const httpsPort = (https.address() as { port: number }).port
    const zone = (mx: string, address: string) => ({
      [`${mx.replace(/^mx\./, "")}`]: { mx: [{ preference: 10, exchange: mx }] },
      [mx]: { a: [address] },
      [`_mta-sts.${mx.replace(/^mx\./, "")}`]: { txt: ["v=STSv1; id=20261130"] }
    })
    dns = await startDnsServer({
      ...zone("mx.good.test", "127.0.0.2"),
      ...zone("mx.badcert.test", "127.0.0.3"),
      ...zone("mx.outside.test", "127.0.0.2"),
      ...zone("mx.testing.test", "127.0.0.3")
    })
    node = await startNode(
      testConfig(dir.path, {
        dns: { servers: [dns.server], timeout: "2s" },
        relay: { local_domains: ["missive.test"], trusted_networks: ["127.0.0.0/8"] },
        retry: { initial: "300ms", max: "1s", multiplier: 2, jitter: 0, lifetime: "5s" },
        delivery: {
          port,
          tls: "opportunistic",
          tls_ca_file: ca.certFile,
          mta_sts_hosts: Object.fromEntries(Object.keys(POLICIES).map((h) => [h, `127.0.0.1:${httpsPort}`]))
        }
      })
    )
  })
  afterAll(async () => {
    await node?.stop()
    await Promise.all([trusted?.close(), mismatched?.close(), dns?.close(), new Promise((r) => https?.close(r))])
    dir.remove()
    pki.remove()
  })

  const submit = async (rcpt: string, subject: string): Promise<string> => {
    const r = await send(
      node.ports["smtp"]!,
      { from: "sender@missive.test", to: [rcpt] },
      rawMessage({ from: "sender@missive.test", to: rcpt, subject })
    )
    expect(r.ok).toBe(true)
    return r.id!
  }
  const eventsOf = async (id: string): Promise<ReadonlyArray<Message.Event>> =>
    (await node.store.events.read(`message-${id}`)).map((e) => e.event)
  const completed = (id: string) =>
    waitFor(`completion of ${id}`, async () => (await eventsOf(id)).some((e) => e.type === "MessageCompleted"), 15_000)

  it("enforce: delivers to the listed MX over a verified session, and caches the policy in the data directory", async () => {
    const id = await submit("alice@good.test", "sts good")
    await completed(id)
    const ok = (await eventsOf(id)).find((e) => e.type === "AttemptSucceeded")
    expect(ok?.type === "AttemptSucceeded" && ok.trace?.tls).toMatchObject({
      policy: "mta-sts",
      mode: "enforce",
      tls: true,
      verified: true
    })
    expect(trusted.messages.find((m) => m.raw.includes("sts good"))?.secure).toBe(true)
    const cache = JSON.parse(readFileSync(join(dir.path, "mta-sts.json"), "utf8")) as Record<
      string,
      { id: string; policy: { mode: string } }
    >
    expect(cache["good.test"]).toMatchObject({ id: "20261130", policy: { mode: "enforce", mx: ["mx.good.test"], maxAge: 86400 } })
  })

  it("enforce: a certificate that does not name the MX defers, then the recipient expires at the end of its lifetime", async () => {
    const id = await submit("bob@badcert.test", "sts badcert")
    await completed(id)
    const events = await eventsOf(id)
    const deferred = events.filter((e) => e.type === "AttemptDeferred")
    expect(deferred.length).toBeGreaterThan(0)
    for (const d of deferred) {
      expect(d.type === "AttemptDeferred" && d.reply).toMatchObject({ code: 451, enhanced: "4.7.5" })
      const trace = d.type === "AttemptDeferred" ? d.trace : undefined
      expect(trace?.hops).toEqual([expect.objectContaining({ name: "mx.badcert.test", outcome: "tls-failed" })])
      expect(trace?.tls).toMatchObject({
        policy: "mta-sts",
        mode: "enforce",
        tls: true,
        verified: false,
        reason: "ERR_TLS_CERT_ALTNAME_INVALID"
      })
    }
    expect(events.some((e) => e.type === "RecipientExpired")).toBe(true)
    // the timeline (replay timeline, queue show) tells the same story
    const text = Timeline.format(await Timeline.load(node.store.events, id))
    expect(text).toContain("mx.badcert.test 127.0.0.3:")
    expect(text).toContain("tls-failed")
    expect(text).toContain("certificate not verified: ERR_TLS_CERT_ALTNAME_INVALID (policy mta-sts enforce)")
    expect(events.some((e) => e.type === "RecipientDelivered")).toBe(false)
    expect(mismatched.messages.some((m) => m.raw.includes("sts badcert"))).toBe(false)
  })

  it("enforce: an MX outside the policy is never dialled", async () => {
    const before = trusted.connections
    const id = await submit("carol@outside.test", "sts outside")
    const first = await waitFor("a deferral", async () => (await eventsOf(id)).find((e) => e.type === "AttemptDeferred"))
    expect(first.type === "AttemptDeferred" && first.trace?.hops).toEqual([
      expect.objectContaining({ name: "mx.outside.test", outcome: "policy-excluded" })
    ])
    expect(first.type === "AttemptDeferred" && first.reply.enhanced).toBe("4.7.5")
    await completed(id)
    expect(trusted.connections).toBe(before)
    expect(trusted.messages.some((m) => m.raw.includes("sts outside"))).toBe(false)
  })

  it("testing: delivers in spite of the certificate and records why it did not verify", async () => {
    const id = await submit("dave@testing.test", "sts testing")
    await completed(id)
    const ok = (await eventsOf(id)).find((e) => e.type === "AttemptSucceeded")
    expect(ok?.type === "AttemptSucceeded" && ok.trace?.tls).toMatchObject({
      policy: "mta-sts",
      mode: "testing",
      tls: true,
      verified: false,
      reason: "ERR_TLS_CERT_ALTNAME_INVALID"
    })
    expect(mismatched.messages.some((m) => m.raw.includes("sts testing"))).toBe(true)
    // each policy was fetched once: later attempts used the cache
    expect(fetched.filter((h) => h === "mta-sts.badcert.test")).toHaveLength(1)
    expect(existsSync(join(dir.path, "mta-sts.json"))).toBe(true)
  })
})
