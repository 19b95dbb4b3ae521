// The SMTP client and its pool against real smtp-server instances on loopback: byte-exact bodies, per-recipient
// replies, null sender, STARTTLS, hop fallback and connection reuse.
import { createServer } from "node:net"
import type { Route } from "@missive/core"
import { afterEach, describe, expect, it } from "vitest"
import { deliverSmtp, makeSmtpPool, type SmtpPool, type SmtpPoolOptions } from "../src/delivery/SmtpClient.js"
import { startCapture, type CaptureOptions, type CaptureServer } from "../../test/src/CaptureServer.js"
import { startScripted, type Script } from "../../test/src/ScriptedSmtp.js"

type SmtpDestination = Extract<Route.Destination, { kind: "smtp" }>

const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f()
})

const capture = async (o: CaptureOptions = {}): Promise<CaptureServer> => {
  const c = await startCapture(o)
  cleanup.push(() => c.close())
  return c
}

const pool = (o: Partial<SmtpPoolOptions> = {}): SmtpPool => {
  const p = makeSmtpPool({ hostname: "client.missive.test", tls: "none", connectTimeout: 2000, commandTimeout: 5000, ...o })
  cleanup.push(() => p.close())
  return p
}

const to = (...servers: Array<{ host: string; port: number }>): SmtpDestination => ({
  kind: "smtp",
  key: `test:${servers.map((s) => s.port).join(",")}`,
  via: "route",
  hops: servers.map((s) => ({ host: s.host, port: s.port, preference: 0 }))
})

/** A loopback port nothing listens on. */
const closedPort = async (): Promise<number> => {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r))
  const port = (s.address() as { port: number }).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

// dots at line starts (stuffed on the wire), 8-bit bytes, a lone CR inside a line, and a long line
const BODY = Buffer.concat([
  Buffer.from("From: a@x.test\r\nTo: b@y.test\r\nSubject: t\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nmid.dle\r\n", "latin1"),
  Buffer.from([0xc3, 0xa9, 0xe2, 0x82, 0xac, 0x0d, 0x0a]),
  Buffer.from(`${"x".repeat(990)}\r\nlast line\r\n`, "latin1")
])

describe("SmtpClient", () => {
  it("delivers the body byte-exact and reports 250 for every recipient", async () => {
    const c = await capture()
    const r = await pool().send(to(c), { from: "a@x.test", to: ["b@y.test", "c@y.test"] }, BODY)
    expect(r.host).toBe(`127.0.0.1:${c.port}`)
    expect(r.results.map((x) => x.rcpt)).toEqual(["b@y.test", "c@y.test"])
    for (const x of r.results) expect(x.reply).toMatchObject({ code: 250, enhanced: "2.0.0" })
    expect(c.messages).toHaveLength(1)
    expect(c.messages[0]?.raw.equals(BODY)).toBe(true)
    expect(c.messages[0]).toMatchObject({ from: "a@x.test", to: ["b@y.test", "c@y.test"], helo: "client.missive.test", secure: false })
  })

  it("asks the envelope's fence before the final dot: refused, the server gets no message and the pool a fresh session", async () => {
    const c = await capture()
    const p = pool()
    let asked = 0
    const refused = await p.send(to(c), { from: "a@x.test", to: ["b@y.test"], fence: () => (asked++, false) }, BODY)
    expect(asked).toBe(1)
    expect(refused.results[0]?.reply.code).toBeGreaterThanOrEqual(400)
    expect(c.messages).toHaveLength(0)
    const allowed = await p.send(to(c), { from: "a@x.test", to: ["b@y.test"], fence: () => true }, BODY)
    expect(allowed.results[0]?.reply.code).toBe(250)
    expect(c.messages).toHaveLength(1)
    expect(c.messages[0]?.raw.equals(BODY)).toBe(true)
  })

  it("sends the null reverse-path as MAIL FROM:<>", async () => {
    const froms: string[] = []
    const c = await capture({ onMailFrom: (f) => void froms.push(f) })
    const r = await pool().send(to(c), { from: "", to: ["b@y.test"] }, BODY)
    expect(r.results[0]?.reply.code).toBe(250)
    expect(froms).toEqual([""])
    expect(c.messages[0]?.from).toBe("")
  })

  it("gives a recipient refused at RCPT its own reply and delivers to the others", async () => {
    const c = await capture({ onRcpt: (r) => (r.startsWith("nobody") ? { code: 550, text: "5.1.1 No such user" } : undefined) })
    const r = await pool().send(to(c), { from: "a@x.test", to: ["b@y.test", "nobody@y.test", "c@y.test"] }, BODY)
    expect(r.results).toEqual([
      { rcpt: "b@y.test", reply: expect.objectContaining({ code: 250 }) },
      { rcpt: "nobody@y.test", reply: { code: 550, enhanced: "5.1.1", text: "No such user" } },
      { rcpt: "c@y.test", reply: expect.objectContaining({ code: 250 }) }
    ])
    expect(c.messages[0]?.to).toEqual(["b@y.test", "c@y.test"])
  })

  it("reports each refusal when every recipient is refused", async () => {
    const c = await capture({
      onRcpt: (r) => (r.startsWith("full") ? { code: 452, text: "4.2.2 Mailbox full" } : { code: 550, text: "5.1.1 No such user" })
    })
    const r = await pool().send(to(c), { from: "a@x.test", to: ["full@y.test", "nobody@y.test"] }, BODY)
    expect(r.results.map((x) => [x.rcpt, x.reply.code, x.reply.enhanced])).toEqual([
      ["full@y.test", 452, "4.2.2"],
      ["nobody@y.test", 550, "5.1.1"]
    ])
    expect(c.messages).toHaveLength(0)
  })

  it("applies a refusal after DATA to every accepted recipient", async () => {
    const c = await capture({
      onRcpt: (r) => (r.startsWith("nobody") ? { code: 550, text: "5.1.1 No such user" } : undefined),
      onData: () => ({ code: 451, text: "4.3.0 Try again later" })
    })
    const r = await pool().send(to(c), { from: "a@x.test", to: ["b@y.test", "nobody@y.test", "c@y.test"] }, BODY)
    expect(r.results.map((x) => [x.rcpt, x.reply.code])).toEqual([
      ["b@y.test", 451],
      ["nobody@y.test", 550],
      ["c@y.test", 451]
    ])
    expect(r.results[0]?.reply).toEqual({ code: 451, enhanced: "4.3.0", text: "Try again later" })
  })

  it("gives every recipient the sender's refusal", async () => {
    const c = await capture({ onMailFrom: () => ({ code: 553, text: "5.7.1 Sender rejected" }) })
    const r = await pool().send(to(c), { from: "bad@x.test", to: ["b@y.test", "c@y.test"] }, BODY)
    expect(r.results.map((x) => x.reply)).toEqual([
      { code: 553, enhanced: "5.7.1", text: "Sender rejected" },
      { code: 553, enhanced: "5.7.1", text: "Sender rejected" }
    ])
  })

  it("refuses a message over the size the server advertises without sending it", async () => {
    const c = await capture({ size: 100 })
    const r = await pool().send(to(c), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    expect(r.results[0]?.reply.code).toBe(552)
    expect(c.messages).toHaveLength(0)
  })

  it("upgrades with STARTTLS to a self-signed server in opportunistic mode", async () => {
    const c = await capture({ tls: true })
    const r = await pool({ tls: "opportunistic" }).send(to(c), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    expect(r.results[0]?.reply.code).toBe(250)
    expect(r.tls).toBe(true)
    expect(c.messages[0]?.secure).toBe(true)
    expect(c.messages[0]?.raw.equals(BODY)).toBe(true)
  })

  it("sends in clear when the server offers no STARTTLS in opportunistic mode", async () => {
    const c = await capture()
    const r = await pool({ tls: "opportunistic" }).send(to(c), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    expect(r.results[0]?.reply.code).toBe(250)
    expect(r.tls).toBe(false)
  })

  it("defers when TLS is required but the server has none, or its certificate is not trusted", async () => {
    const plain = await capture()
    const r1 = await pool({ tls: "required" }).send(to(plain), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    expect(r1.results[0]?.reply).toMatchObject({ code: 451, enhanced: "4.4.1" })
    const selfSigned = await capture({ tls: true })
    const r2 = await pool({ tls: "required" }).send(to(selfSigned), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    expect(r2.results[0]?.reply).toMatchObject({ code: 451, enhanced: "4.4.1" })
    expect(plain.messages.length + selfSigned.messages.length).toBe(0)
  })

  it("tries the next hop when the first does not answer", async () => {
    const c = await capture()
    const dead = { host: "127.0.0.1", port: await closedPort() }
    const r = await pool().send(to(dead, c), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    expect(r.host).toBe(`127.0.0.1:${c.port}`)
    expect(r.results[0]?.reply.code).toBe(250)
    expect(c.messages).toHaveLength(1)
  })

  it("defers every recipient when no hop answers", async () => {
    const a = { host: "127.0.0.1", port: await closedPort() }
    const b = { host: "127.0.0.1", port: await closedPort() }
    const r = await pool().send(to(a, b), { from: "a@x.test", to: ["b@y.test", "c@y.test"] }, BODY)
    expect(r.host).toBe(`127.0.0.1:${b.port}`)
    for (const x of r.results) expect(x.reply).toMatchObject({ code: 451, enhanced: "4.4.1" })
    expect(r.results[0]?.reply.text).toContain(`127.0.0.1:${a.port}`)
  })

  it("reuses one connection for messages to the same destination", async () => {
    const c = await capture()
    const p = pool()
    await p.send(to(c), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    await p.send(to(c), { from: "", to: ["c@y.test"] }, BODY)
    expect(c.connections).toBe(1)
    expect(c.messages.map((m) => [m.from, m.to])).toEqual([
      ["a@x.test", ["b@y.test"]],
      ["", ["c@y.test"]]
    ])
    expect(c.messages[0]?.connection).toBe(c.messages[1]?.connection)
  })

  it("reuses a connection after a refused transaction", async () => {
    const c = await capture({ onData: (m) => (m.to.includes("bounce@y.test") ? { code: 554, text: "5.6.0 Rejected" } : undefined) })
    const p = pool()
    const r1 = await p.send(to(c), { from: "a@x.test", to: ["bounce@y.test"] }, BODY)
    const r2 = await p.send(to(c), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    expect([r1.results[0]?.reply.code, r2.results[0]?.reply.code]).toEqual([554, 250])
    expect(c.connections).toBe(1)
  })

  it("opens no more than maxPerDestination connections, queueing the rest", async () => {
    const c = await capture()
    const p = pool({ maxPerDestination: 2 })
    const rs = await Promise.all([1, 2, 3, 4, 5].map((i) => p.send(to(c), { from: "a@x.test", to: [`r${i}@y.test`] }, BODY)))
    expect(rs.every((r) => r.results[0]?.reply.code === 250)).toBe(true)
    expect(c.messages).toHaveLength(5)
    expect(c.connections).toBe(2)
  })

  it("opens a new connection after messagesPerConnection messages", async () => {
    const c = await capture()
    const p = pool({ messagesPerConnection: 2 })
    for (let i = 0; i < 3; i++) await p.send(to(c), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    expect(c.connections).toBe(2)
  })

  it("closes a site's sessions after its own messages_per_connection, other sites' after the pool's", async () => {
    const strict = await capture()
    const other = await capture()
    const p = pool({ messagesPerConnection: 100, messagesPerConnectionOf: (site) => (site === to(strict).key ? 1 : undefined) })
    for (let i = 0; i < 3; i++) await p.send(to(strict), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    for (let i = 0; i < 3; i++) await p.send(to(other), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    expect(strict.connections).toBe(3)
    expect(other.connections).toBe(1)
  })

  it("replaces a pooled connection the server has closed", async () => {
    const c = await capture()
    const p = pool()
    await p.send(to(c), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    await c.close()
    const again = await startCapture({})
    cleanup.push(() => again.close())
    // the old server is gone: the idle session is dead and a fresh connection goes to the new hop
    const r = await p.send({ ...to(c, again), key: to(c).key }, { from: "a@x.test", to: ["b@y.test"] }, BODY)
    expect(r.results[0]?.reply.code).toBe(250)
    expect(r.host).toBe(`127.0.0.1:${again.port}`)
  })

  it("delivers once without a pool", async () => {
    const c = await capture()
    const r = await deliverSmtp({ hostname: "client.missive.test", tls: "none" }, to(c), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    expect(r.results[0]?.reply.code).toBe(250)
    expect(c.messages).toHaveLength(1)
  })

  it("gives every recipient the server's reply when it shuts down during DATA", async () => {
    let arrived!: () => void
    const inData = new Promise<void>((r) => (arrived = r))
    const c = await startCapture({
      onData: () => {
        arrived()
        return new Promise(() => undefined)
      }
    })
    const sending = pool().send(to(c), { from: "a@x.test", to: ["b@y.test", "c@y.test"] }, BODY)
    await inData
    await c.close() // smtp-server says 421 to the connections it cannot finish
    const r = await sending
    for (const x of r.results) expect(x.reply.code).toBe(421)
  })

  const scripted = async (script: Script) => {
    const s = await startScripted(script)
    cleanup.push(() => s.close())
    return s
  }

  it("sends no RSET before reusing a session whose last transaction completed", async () => {
    const s = await scripted({})
    const p = pool()
    for (let i = 0; i < 3; i++) {
      const r = await p.send(to({ host: "127.0.0.1", port: s.port }), { from: "a@x.test", to: ["b@y.test"] }, BODY)
      expect(r.results[0]?.reply.code).toBe(250)
    }
    expect(s.lines).toEqual(["1 EHLO", ...[1, 2, 3].flatMap(() => ["1 MAIL", "1 RCPT", "1 DATA"])])
  })

  it("sends RSET before reusing a session whose last transaction was cut short", async () => {
    const c = await capture({ onRcpt: (r) => (r === "no@y.test" ? { code: 550, text: "5.1.1 no" } : undefined) })
    const p = pool()
    const refused = await p.send(to(c), { from: "a@x.test", to: ["no@y.test"] }, BODY)
    expect(refused.results[0]?.reply.code).toBe(550)
    const r = await p.send(to(c), { from: "a@x.test", to: ["b@y.test"] }, BODY)
    expect(r.results[0]?.reply.code).toBe(250)
    expect(c.connections).toBe(1)
  })

  /** One message of BODY through `p` to the scripted server on `port`. */
  const sendVia = (p: SmtpPool, port: number, from: string, rcpts: Array<string>) =>
    p.send(to({ host: "127.0.0.1", port }), { from, to: rcpts }, BODY)

  /** A server's answer to the first connection's second MAIL only (it had closed the idle session meanwhile). */
  const onSecondMail = (reply: string) => {
    const mails = new Map<number, number>()
    return (line: string, connection: number) => {
      if (!/^MAIL/i.test(line)) return undefined
      mails.set(connection, (mails.get(connection) ?? 0) + 1)
      return connection === 1 && mails.get(connection) === 2 ? reply : undefined
    }
  }

  /** Two messages one after the other through one pool: the codes each got. */
  const sendTwice = async (port: number) => {
    const p = pool()
    const first = await sendVia(p, port, "a@x.test", ["b@y.test"])
    const second = await sendVia(p, port, "a@x.test", ["c@y.test"])
    return [first.results[0]?.reply.code, second.results[0]?.reply.code]
  }

  it("sends again on a new session when a session reused without RSET had been closed by the server", async () => {
    // the server hangs up on the first connection's second MAIL without a word
    const s = await scripted({ command: onSecondMail("hang up") })
    expect(await sendTwice(s.port)).toEqual([250, 250])
    expect(s.lines.filter((l) => l.endsWith("DATA"))).toEqual(["1 DATA", "2 DATA"])
  })

  const PIPELINING = ["250-scripted.test", "250-SIZE 100000", "250 PIPELINING"]

  it("pipelines MAIL, the RCPTs and DATA in one write and the data with its final dot in another when the server offers PIPELINING", async () => {
    const got: string[] = []
    const s = await scripted({ ehlo: PIPELINING, data: (d) => (got.push(d), ["250 2.0.0 queued"]) })
    const p = pool()
    for (let i = 0; i < 2; i++) {
      const r = await sendVia(p, s.port, "a@x.test", ["b@y.test", "c@y.test"])
      expect(r.results.map((x) => x.reply.code)).toEqual([250, 250])
    }
    expect(s.reads).toEqual(["1 EHLO", ...[1, 2].flatMap(() => ["1 MAIL RCPT RCPT DATA", "1 data ."])])
    // the server read the body back byte for byte once unstuffed; SIZE was declared
    expect(got.map((d) => Buffer.from(d.replace(/^\./gm, ""), "latin1").equals(BODY))).toEqual([true, true])
    expect(s.lines.filter((l) => l.endsWith("MAIL"))).toHaveLength(2)
  })

  it("without PIPELINING offered, sends each command after the reply to the one before", async () => {
    const s = await scripted({})
    const r = await pool().send(to({ host: "127.0.0.1", port: s.port }), { from: "a@x.test", to: ["b@y.test", "c@y.test"] }, BODY)
    expect(r.results.map((x) => x.reply.code)).toEqual([250, 250])
    expect(s.reads).toEqual(["1 EHLO", "1 MAIL", "1 RCPT", "1 RCPT", "1 DATA", "1 data ."])
  })

  it("pipelined: a recipient refused at RCPT keeps its reply, the others get the reply to the data", async () => {
    const s = await scripted({ ehlo: PIPELINING, command: (line) => (/^RCPT TO:<no@/i.test(line) ? "550 5.1.1 no such user" : undefined) })
    const r = await pool().send(to({ host: "127.0.0.1", port: s.port }), { from: "a@x.test", to: ["no@y.test", "b@y.test"] }, BODY)
    expect(r.results.map((x) => [x.rcpt, x.reply.code])).toEqual([
      ["no@y.test", 550],
      ["b@y.test", 250]
    ])
  })

  it("pipelined: every recipient refused, each keeps its reply and no data is sent; a server that says 354 all the same loses the connection", async () => {
    const got: string[] = []
    const s = await scripted({
      ehlo: PIPELINING,
      command: (line) => (/^RCPT TO:<no/i.test(line) ? "550 5.1.1 no such user" : undefined),
      data: (d) => (got.push(d), ["250 2.0.0 queued"])
    })
    const p = pool()
    const refused = await sendVia(p, s.port, "a@x.test", ["no1@y.test", "no2@y.test"])
    expect(refused.results.map((x) => [x.reply.code, x.reply.text])).toEqual([
      [550, "no such user"],
      [550, "no such user"]
    ])
    const r = await sendVia(p, s.port, "a@x.test", ["b@y.test"])
    expect(r.results[0]?.reply.code).toBe(250)
    expect(got).toHaveLength(1) // the second message only
    expect(s.reads).toEqual(["1 EHLO", "1 MAIL RCPT RCPT DATA", "2 EHLO", "2 MAIL RCPT DATA", "2 data ."])
  })

  it("pipelined: a refused sender gives every recipient its reply, and the replies to the RCPTs and DATA that follow it are not taken for the next transaction's", async () => {
    let mails = 0
    const s = await scripted({
      ehlo: PIPELINING,
      command: (line) =>
        /^MAIL/i.test(line) && ++mails === 1
          ? "550 5.7.1 sender refused"
          : /^RCPT/i.test(line) && mails === 1
            ? "503 5.5.1 no sender"
            : undefined,
      dataCommand: () => (mails === 1 ? "503 5.5.1 no sender" : undefined)
    })
    const p = pool()
    const first = await sendVia(p, s.port, "bad@x.test", ["b@y.test", "c@y.test"])
    expect(first.results.map((x) => [x.reply.code, x.reply.text])).toEqual([
      [550, "sender refused"],
      [550, "sender refused"]
    ])
    const second = await sendVia(p, s.port, "a@x.test", ["b@y.test"])
    expect(second.results[0]?.reply).toMatchObject({ code: 250, text: "queued" })
    expect(s.reads).toEqual(["1 EHLO", "1 MAIL RCPT RCPT DATA", "1 RSET", "1 MAIL RCPT DATA", "1 data ."])
  })

  it("pipelined: a 421 to MAIL on a reused session sends again on a new session", async () => {
    const s = await scripted({ ehlo: PIPELINING, command: onSecondMail("421 4.4.2 idle too long, closing") })
    expect(await sendTwice(s.port)).toEqual([250, 250])
    expect(s.reads.filter((l) => l.endsWith(" .")).map((l) => l[0])).toEqual(["1", "2"])
  })

  it("defers every recipient when the connection drops after the message was sent", async () => {
    // a server that accepts the envelope, reads the message, and hangs up instead of replying
    const { port } = await scripted({ data: () => "hang up" })
    const r = await pool().send(to({ host: "127.0.0.1", port }), { from: "a@x.test", to: ["b@y.test", "c@y.test"] }, BODY)
    for (const x of r.results) expect(x.reply).toMatchObject({ code: 451, enhanced: "4.4.1" })
  })
})
