// What an attempt records besides its reply, against real servers on loopback: every hop tried with its connect
// outcome, the TLS of the session (version, cipher, verified or why not, the policy that asked), a reused session,
// and a multi-line reply kept line by line. Then the decider copies the trace onto the attempt's events.
import { createServer } from "node:net"
import { Drive, Message, Trace, type Route } from "@missive/core"
import * as E from "fp-ts/lib/Either.js"
import { afterEach, describe, expect, it } from "vitest"
import { makeSmtpPool, type SmtpPool } from "../src/delivery/SmtpClient.js"
import { startCapture } from "../../test/src/CaptureServer.js"
import { startScripted } from "../../test/src/ScriptedSmtp.js"

type SmtpDestination = Extract<Route.Destination, { kind: "smtp" }>

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f()
})

const pool = (tls: "none" | "opportunistic"): SmtpPool => {
  const p = makeSmtpPool({ hostname: "client.missive.test", tls, connectTimeout: 2000, commandTimeout: 5000 })
  cleanup.push(() => p.close())
  return p
}

const to = (...hops: Array<{ host: string; port: number; name?: string }>): SmtpDestination => ({
  kind: "smtp",
  key: `test:${hops.map((s) => s.port).join(",")}`,
  via: "mx",
  hops: hops.map((s) => ({ host: s.host, port: s.port, preference: 0, ...(s.name ? { name: s.name } : {}) }))
})

const closedPort = async (): Promise<number> => {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r))
  const port = (s.address() as { port: number }).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

/** A scripted SMTP server: answers the final dot with `dataReply` (several lines). */
const scripted = async (dataReply: ReadonlyArray<string>): Promise<{ port: number }> => {
  const s = await startScripted({ ehlo: ["250-scripted.test", "250 8BITMIME"], command: () => "250 2.1.0 OK", data: () => dataReply })
  cleanup.push(() => s.close())
  return s
}

const BODY = Buffer.from("From: a@x.test\r\nTo: b@y.test\r\nSubject: t\r\n\r\nhello\r\n")

describe("attempt trace", () => {
  it("records a hop that refused the connection, then the hop that answered with its TLS", async () => {
    const c = await startCapture({ tls: true })
    cleanup.push(() => c.close())
    const dead = await closedPort()
    const r = await pool("opportunistic").send(
      to({ host: "127.0.0.1", port: dead, name: "mx1.y.test" }, { host: "127.0.0.1", port: c.port, name: "mx2.y.test" }),
      { from: "a@x.test", to: ["b@y.test"] },
      BODY
    )
    expect(r.results[0]?.reply.code).toBe(250)
    expect(r.trace?.hops).toEqual([
      expect.objectContaining({
        hop: `127.0.0.1:${dead}`,
        name: "mx1.y.test",
        outcome: "connect-failed",
        detail: expect.stringContaining("ECONNREFUSED")
      }),
      { hop: `127.0.0.1:${c.port}`, name: "mx2.y.test", outcome: "connected" }
    ])
    // the capture server's certificate is self-signed for capture.test: encrypted, not verified, and why
    expect(r.trace?.tls).toMatchObject({ policy: "opportunistic", tls: true, verified: false })
    expect(r.trace?.tls?.version).toMatch(/^TLSv1\.[23]$/)
    expect(r.trace?.tls?.cipher).toBeTruthy()
    expect(r.trace?.tls?.reason).toMatch(/SELF_SIGNED|ALTNAME/)
    expect(c.messages[0]?.secure).toBe(true)
  })

  it("records a reused session as such, and no TLS when the policy is none", async () => {
    const c = await startCapture()
    cleanup.push(() => c.close())
    const p = pool("none")
    const first = await p.send(to(c), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    const second = await p.send(to(c), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    expect(first.trace).toEqual({
      hops: [{ hop: `127.0.0.1:${c.port}`, outcome: "connected" }],
      tls: { policy: "none", tls: false, verified: false }
    })
    expect(second.trace?.hops).toEqual([{ hop: `127.0.0.1:${c.port}`, outcome: "reused" }])
    expect(c.connections).toBe(1)
  })

  it("records every hop when none answers", async () => {
    const [a, b] = [await closedPort(), await closedPort()]
    const r = await pool("none").send(
      to({ host: "127.0.0.1", port: a }, { host: "127.0.0.1", port: b }),
      { from: "", to: ["b@y.test"] },
      BODY
    )
    expect(r.results[0]?.reply).toMatchObject({ code: 451, enhanced: "4.4.1" })
    expect(r.trace?.hops.map((h) => `${h.hop} ${h.outcome}`)).toEqual([`127.0.0.1:${a} connect-failed`, `127.0.0.1:${b} connect-failed`])
  })

  it("keeps a multi-line reply line by line, and the decider copies the trace onto the attempt's events", async () => {
    const lines = ["550-5.7.1 Message rejected by policy", "550-5.7.1 see https://postmaster.y.test/why", "550 5.7.1 ref 42"]
    const s = await scripted(lines)
    const r = await pool("none").send(to({ host: "127.0.0.1", port: s.port }), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    const reply = r.results[0]!.reply
    expect(reply).toEqual({
      code: 550,
      enhanced: "5.7.1",
      text: "Message rejected by policy see https://postmaster.y.test/why ref 42",
      lines
    })

    const ctx = { at: 1_000, node: "n1", policy: "p" }
    const received = Message.decide(
      {
        type: "Receive",
        ctx,
        id: "M",
        sender: "a@x.test",
        recipients: ["b@y.test"],
        size: BODY.length,
        digest: "d",
        client: { ip: "127.0.0.1", helo: "h", tls: false }
      },
      Message.initialState
    )
    if (E.isLeft(received)) throw new Error("receive refused")
    const route = { rcpt: "b@y.test", destination: to({ host: "127.0.0.1", port: s.port }) }
    const begun = Drive.begin(Message.fold(received.right), 1_000, [route], ctx, "dsn")
    if (E.isLeft(begun)) throw new Error("begin refused")
    const attempt = begun.right.attempts[0]!
    const retry = { initialMs: 1000, maxMs: 10_000, multiplier: 2, jitter: 0, lifetimeMs: 60_000 }
    const reported = Message.decide(Drive.reportCommand(ctx, attempt, r, retry, 0, "dsn"), begun.right.state)
    if (E.isLeft(reported)) throw new Error("report refused")
    const failed = reported.right.find((e) => e.type === "AttemptFailed")
    expect(failed).toMatchObject({ type: "AttemptFailed", reply: { lines }, trace: r.trace })
    expect(Trace.format(r.trace!)).toBe(`hops: 127.0.0.1:${s.port} connected; tls: no TLS (policy none)`)
  })
})
