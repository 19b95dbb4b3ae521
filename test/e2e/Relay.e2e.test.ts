// End to end through a running node: a real SMTP client in, a capture SMTP server out, a DNS server on loopback.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { nullMx, startDnsServer, type DnsServer } from "../src/DnsServer.js"
import { rawMessage, send, startNode, tempDir, testConfig, waitFor } from "../src/Harness.js"
import { Config, type Node } from "@missive/node"
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"

describe("relay through a single node", () => {
  let dest: CaptureServer
  let senderMx: CaptureServer
  let dns: DnsServer
  let node: Node.RunningNode
  const dir = tempDir()

  beforeAll(async () => {
    dest = await startCapture({
      onRcpt: (rcpt) => (rcpt.startsWith("nobody@") ? { code: 550, text: "5.1.1 No such user here" } : undefined)
    })
    senderMx = await startCapture()
    // Both capture servers listen on 127.0.0.1, on different ports: MX routing reaches `dest` through the DNS
    // server (delivery.port = dest.port); the senders' domain is routed to `senderMx` by a relay route.
    dns = await startDnsServer({
      "mx-routed.test": {
        mx: [
          { preference: 20, exchange: "backup.mx-routed.test" },
          { preference: 10, exchange: "primary.mx-routed.test" }
        ]
      },
      "primary.mx-routed.test": { a: ["127.0.0.1"] },
      "backup.mx-routed.test": { a: ["127.0.0.2"] },
      "a-only.test": { a: ["127.0.0.1"] },
      "no-mail.test": nullMx
    })
    node = await startNode(
      testConfig(dir.path, {
        dns: { servers: [dns.server], timeout: "2s" },
        delivery: { port: dest.port },
        routes: { "routed.test": `127.0.0.1:${dest.port}`, "sender.test": `127.0.0.1:${senderMx.port}` },
        relay: { local_domains: ["missive.test"], trusted_networks: [] },
        auth: { require_tls: true, users: [{ name: "alice", password: await Config.hashPassword("s3cret") }] }
      })
    )
  })
  afterAll(async () => {
    await node?.stop()
    await Promise.all([dest?.close(), senderMx?.close(), dns?.close()])
    dir.remove()
  })

  it("delivers a message to a relay route with the body byte-exact apart from the trace header", async () => {
    const raw = rawMessage({
      from: "a@sender.test",
      to: "b@routed.test",
      subject: "byte exact",
      body: "Line one\r\n.leading dot\r\n\u00e9t\u00e9 8bit\r\n\r\nend\r\n"
    })
    const r = await send(node.ports["submission"]!, { from: "a@sender.test", to: ["b@routed.test"] }, raw, {
      auth: { user: "alice", pass: "s3cret" },
      requireTLS: true
    })
    expect(r.ok, r.response).toBe(true)
    const got = await waitFor("delivery", () => dest.messages.find((m) => m.raw.includes("byte exact")))
    const text = got.raw.toString("utf8")
    expect(text.startsWith("Received: from ")).toBe(true)
    const stripped = text.replace(/^Received: [^\r]*\r\n(\t[^\r]*\r\n)*/, "")
    expect(Buffer.compare(Buffer.from(stripped, "utf8"), Buffer.from(raw, "utf8"))).toBe(0)
    expect(got.from).toBe("a@sender.test")
    expect(got.to).toEqual(["b@routed.test"])
  })

  it("routes by MX through the DNS server on loopback, lowest preference first", async () => {
    const raw = rawMessage({ from: "a@sender.test", to: "x@mx-routed.test", subject: "via mx" })
    const r = await send(node.ports["submission"]!, { from: "a@sender.test", to: ["x@mx-routed.test"] }, raw, {
      auth: { user: "alice", pass: "s3cret" },
      requireTLS: true
    })
    expect(r.ok, r.response).toBe(true)
    await waitFor("mx delivery", () => dest.messages.find((m) => m.raw.includes("via mx")))
    await waitFor("completion", async () =>
      (await node.store.events.read(`message-${r.id}`)).some((e) => e.event.type === "MessageCompleted")
    )
    const events = (await node.store.events.read(`message-${r.id}`)).map((e) => e.event)
    const routed = events.find((e) => e.type === "RecipientsRouted")
    expect(routed?.type === "RecipientsRouted" && routed.routes[0]!.destination).toMatchObject({
      kind: "smtp",
      via: "mx",
      key: "mx:mx-routed.test"
    })
    expect(routed?.type === "RecipientsRouted" && routed.routes[0]!.dns?.some((d) => d.type === "MX" && d.answers.length === 2)).toBe(true)
    const delivered = events.find((e) => e.type === "RecipientDelivered")
    expect(delivered?.type === "RecipientDelivered" && delivered.host).toBe(`127.0.0.1:${dest.port}`)
  })

  it("falls back to the A record when a domain has no MX", async () => {
    const raw = rawMessage({ from: "a@sender.test", to: "y@a-only.test", subject: "a fallback" })
    const r = await send(node.ports["submission"]!, { from: "a@sender.test", to: ["y@a-only.test"] }, raw, {
      auth: { user: "alice", pass: "s3cret" },
      requireTLS: true
    })
    expect(r.ok, r.response).toBe(true)
    await waitFor("A delivery", () => dest.messages.find((m) => m.raw.includes("a fallback")))
  })

  it("bounces a null-MX domain at once, with a DSN to the sender", async () => {
    const raw = rawMessage({ from: "nullmx@sender.test", to: "z@no-mail.test", subject: "null mx" })
    const r = await send(node.ports["submission"]!, { from: "nullmx@sender.test", to: ["z@no-mail.test"] }, raw, {
      auth: { user: "alice", pass: "s3cret" },
      requireTLS: true
    })
    expect(r.ok, r.response).toBe(true)
    const dsn = await waitFor("DSN", () => senderMx.messages.find((m) => m.to.includes("nullmx@sender.test")))
    expect(dsn.from).toBe("")
    const text = dsn.raw.toString()
    expect(text).toMatch(/Content-Type: multipart\/report; report-type=delivery-status/)
    expect(text).toMatch(/Final-Recipient: rfc822; z@no-mail.test/)
    expect(text).toMatch(/Status: 5\.1\.10/)
  })

  it("sends a DSN to the sender when the remote answers 550, and none for the bounce itself", async () => {
    const raw = rawMessage({ from: "bouncer@sender.test", to: "nobody@routed.test", subject: "will bounce" })
    const r = await send(node.ports["submission"]!, { from: "bouncer@sender.test", to: ["nobody@routed.test", "b@routed.test"] }, raw, {
      auth: { user: "alice", pass: "s3cret" },
      requireTLS: true
    })
    expect(r.ok, r.response).toBe(true)
    const dsn = await waitFor("DSN", () => senderMx.messages.find((m) => m.to.includes("bouncer@sender.test")))
    const text = dsn.raw.toString()
    expect(text).toMatch(/Final-Recipient: rfc822; nobody@routed.test/)
    expect(text).toMatch(/Action: failed/)
    expect(text).toMatch(/Diagnostic-Code: smtp; 550 5\.1\.1 No such user here/)
    expect(text).toMatch(/Subject: will bounce/)
    expect(text).not.toMatch(/Final-Recipient: rfc822; b@routed.test/)
    // The other recipient was delivered (partial delivery).
    await waitFor("partial delivery", () => dest.messages.find((m) => m.raw.includes("will bounce") && m.to.includes("b@routed.test")))
  })

  it("refuses relaying for an unauthenticated client and accepts it after AUTH", async () => {
    const raw = rawMessage({ from: "a@sender.test", to: "b@routed.test", subject: "relay attempt" })
    const denied = await send(node.ports["smtp"]!, { from: "a@sender.test", to: ["b@routed.test"] }, raw)
    expect(denied.ok).toBe(false)
    expect(denied.response).toMatch(/550 5\.7\.1/)
    const allowed = await send(node.ports["submission"]!, { from: "a@sender.test", to: ["b@routed.test"] }, raw, {
      auth: { user: "alice", pass: "s3cret" },
      requireTLS: true
    })
    expect(allowed.ok, allowed.response).toBe(true)
    const badAuth = await send(node.ports["submission"]!, { from: "a@sender.test", to: ["b@routed.test"] }, raw, {
      auth: { user: "alice", pass: "wrong" },
      requireTLS: true
    })
    expect(badAuth.ok).toBe(false)
    expect(badAuth.response).toMatch(/535/)
  })

  it("delivers mail for a local domain into a Maildir, unauthenticated on the smtp listener", async () => {
    const raw = rawMessage({ from: "someone@elsewhere.test", to: "carol@missive.test", subject: "local maildir" })
    const r = await send(node.ports["smtp"]!, { from: "someone@elsewhere.test", to: ["carol@missive.test"] }, raw)
    expect(r.ok, r.response).toBe(true)
    const box = join(dir.path, "maildir", "missive.test", "carol", "new")
    const file = await waitFor("maildir file", () => existsSync(box) && readdirSync(box)[0])
    const text = readFileSync(join(box, file), "utf8")
    expect(text).toMatch(/Subject: local maildir/)
    expect(text).toMatch(/^Return-Path: <someone@elsewhere.test>/)
  })
})
