// LMTP delivery against smtp-server in LMTP mode: one reply per recipient after DATA, RCPT refusals kept apart.
import type { Route } from "@missive/core"
import { afterEach, describe, expect, it } from "vitest"
import { deliverLmtp, makeLmtpClient, type LmtpClient } from "../src/delivery/Lmtp.js"
import { startCapture, type CaptureOptions, type CaptureServer } from "../../test/src/CaptureServer.js"

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f()
})

const lmtpServer = async (o: CaptureOptions = {}): Promise<CaptureServer> => {
  const c = await startCapture({ ...o, lmtp: true })
  cleanup.push(() => c.close())
  return c
}

const client = (): LmtpClient => {
  const l = makeLmtpClient({ hostname: "client.missive.test", connectTimeout: 2000, commandTimeout: 5000 })
  cleanup.push(() => l.close())
  return l
}

const dest = (c: CaptureServer): Extract<Route.Destination, { kind: "lmtp" }> => ({
  kind: "lmtp",
  key: `lmtp:127.0.0.1:${c.port}`,
  host: "127.0.0.1",
  port: c.port
})

const BODY = Buffer.from("Subject: lmtp\r\n\r\n.dot\r\nbody \xe9\r\n", "latin1")

describe("Lmtp", () => {
  it("delivers byte-exact with LHLO and gives every recipient its own reply", async () => {
    const c = await lmtpServer()
    const r = await client().send(dest(c), { from: "a@x.test", to: ["b@local.test", "c@local.test"] }, BODY)
    expect(r.host).toBe(`127.0.0.1:${c.port}`)
    expect(r.results).toEqual([
      { rcpt: "b@local.test", reply: { code: 250, enhanced: "2.0.0", text: "<b@local.test> delivered" } },
      { rcpt: "c@local.test", reply: { code: 250, enhanced: "2.0.0", text: "<c@local.test> delivered" } }
    ])
    expect(c.messages[0]?.raw.equals(BODY)).toBe(true)
    expect(c.messages[0]?.helo).toBe("client.missive.test")
  })

  it("keeps per-recipient outcomes apart: refused at RCPT, refused after DATA, delivered", async () => {
    const c = await lmtpServer({
      onRcpt: (r) => (r.startsWith("nobody") ? { code: 550, text: "5.1.1 No such user" } : undefined),
      // one answer per recipient accepted at RCPT, in order: b, full, c
      onData: () => [undefined, { code: 452, text: "4.2.2 Mailbox full" }, undefined]
    })
    const r = await client().send(dest(c), { from: "", to: ["b@local.test", "nobody@local.test", "full@local.test", "c@local.test"] }, BODY)
    expect(r.results.map((x) => [x.rcpt, x.reply.code, x.reply.text])).toEqual([
      ["b@local.test", 250, "<b@local.test> delivered"],
      ["nobody@local.test", 550, "No such user"],
      ["full@local.test", 452, "Mailbox full"],
      ["c@local.test", 250, "<c@local.test> delivered"]
    ])
    expect(c.messages.map((m) => [m.from, m.to])).toEqual([["", ["b@local.test", "c@local.test"]]])
  })

  it("reuses the connection for the next message", async () => {
    const c = await lmtpServer()
    const l = client()
    await l.send(dest(c), { from: "a@x.test", to: ["b@local.test"] }, BODY)
    await l.send(dest(c), { from: "a@x.test", to: ["c@local.test"] }, BODY)
    expect(c.messages).toHaveLength(2)
    expect(c.connections).toBe(1)
  })

  it("delivers once without a pool, and defers when the server is down", async () => {
    const c = await lmtpServer()
    const ok = await deliverLmtp({ hostname: "h" }, dest(c), { from: "a@x.test", to: ["b@local.test"] }, BODY)
    expect(ok.results[0]?.reply.code).toBe(250)
    const d = dest(c)
    await c.close()
    const down = await deliverLmtp({ hostname: "h", connectTimeout: 1000 }, d, { from: "a@x.test", to: ["b@local.test"] }, BODY)
    expect(down.results[0]?.reply).toMatchObject({ code: 451, enhanced: "4.4.1" })
  })
})
