import { X509Certificate } from "node:crypto"
import { mkdtemp, readFile, rm, stat } from "node:fs/promises"
import net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import tls from "node:tls"
import nodemailer from "nodemailer"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { ACCEPT_SOCKETS, type AcceptedMessage, type Ingress, type IngressOptions, startIngress } from "../src/ingress/Ingress.js"

// ---------------------------------------------------------------------------------------------
// Harness: an ingress on 127.0.0.1 with port 0, recording what reaches accept().

interface Harness {
  ingress: Ingress
  accepted: AcceptedMessage[]
  logs: Record<string, unknown>[]
  dir: string
}

type Overrides = Partial<Omit<IngressOptions, "limits" | "relay" | "auth">> & {
  limits?: Partial<IngressOptions["limits"]>
  relay?: Partial<IngressOptions["relay"]>
  auth?: Partial<IngressOptions["auth"]>
}

const running: Ingress[] = []
const dirs: string[] = []
const sockets: net.Socket[] = []
/** One generated certificate for the whole file (RSA generation is the slow part of a start). */
let sharedTlsDir = ""

beforeAll(async () => {
  sharedTlsDir = await mkdtemp(join(tmpdir(), "missive-ingress-tls-"))
})
afterAll(async () => {
  await rm(sharedTlsDir, { recursive: true, force: true })
})

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy()
  await Promise.all(running.splice(0).map((i) => i.close()))
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

const tempDir = async (): Promise<string> => {
  const dir = await mkdtemp(join(tmpdir(), "missive-ingress-"))
  dirs.push(dir)
  return dir
}

const start = async (o: Overrides = {}, dir?: string): Promise<Harness> => {
  const accepted: AcceptedMessage[] = []
  const logs: Record<string, unknown>[] = []
  const tlsDir = dir ?? sharedTlsDir
  let n = 0
  const ingress = await startIngress({
    hostname: "mx.local.test",
    listeners: [
      { name: "smtp", host: "127.0.0.1", port: 0 },
      { name: "submission", host: "127.0.0.1", port: 0 }
    ],
    tls: { cert: null, key: null, dir: tlsDir },
    ...o,
    auth: {
      requireTls: true,
      verify: async (user, pass) => user === "alice" && pass === "secret",
      ...o.auth
    },
    relay: { localDomains: ["local.test"], relayDomains: ["partner.test"], trustedNetworks: [], ...o.relay },
    limits: {
      maxConnections: 20,
      maxConnectionsPerIp: 10,
      maxRecipients: 3,
      maxMessageSize: 10_000,
      maxLineLength: 998,
      idleTimeoutMs: 10_000,
      maxErrors: 10,
      bareLf: "reject",
      ...o.limits
    },
    accept:
      o.accept ??
      (async (m) => {
        accepted.push(m)
        n += 1
        return { code: 250, enhanced: "2.0.0", text: `OK queued as Q${n}` }
      }),
    log: (obj) => logs.push(obj)
  })
  running.push(ingress)
  return { ingress, accepted, logs, dir: tlsDir }
}

/** A line-level SMTP client over a raw socket: sees every reply exactly as the server wrote it. */
class Raw {
  private buffer = ""
  private readonly replies: string[] = []
  private waiter: (() => void) | undefined
  readonly closed: Promise<void>

  private constructor(private socket: net.Socket | tls.TLSSocket) {
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()))
    this.listen(socket)
  }

  static async open(port: number): Promise<Raw> {
    const socket = net.connect(port, "127.0.0.1")
    sockets.push(socket)
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve)
      socket.once("error", reject)
    })
    return new Raw(socket)
  }

  private listen(socket: net.Socket | tls.TLSSocket): void {
    socket.on("data", (d: Buffer) => {
      this.buffer += d.toString("latin1")
      let end: number
      while ((end = this.buffer.search(/^\d{3} [^\n]*\n/m)) >= 0) {
        const lineEnd = this.buffer.indexOf("\n", end) + 1
        this.replies.push(this.buffer.slice(0, lineEnd).trimEnd())
        this.buffer = this.buffer.slice(lineEnd)
      }
      this.waiter?.()
    })
    socket.on("end", () => socket.destroy())
    socket.on("error", () => undefined)
    socket.on("close", () => this.waiter?.())
  }

  /** The next complete reply; "" when the connection closed without one. */
  async reply(): Promise<string> {
    while (this.replies.length === 0) {
      if (this.socket.destroyed) return ""
      await new Promise<void>((resolve) => (this.waiter = resolve))
      this.waiter = undefined
    }
    return this.replies.shift() as string
  }

  /** Every reply until the server closes the connection. */
  async rest(): Promise<string[]> {
    await this.closed
    return this.replies.splice(0)
  }

  write(data: string): void {
    this.socket.write(Buffer.from(data, "latin1"))
  }

  async command(line: string): Promise<string> {
    this.write(`${line}\r\n`)
    return this.reply()
  }

  /** STARTTLS, then TLS on the same socket; returns the server's certificate. */
  async starttls(): Promise<tls.PeerCertificate> {
    expect(await this.command("STARTTLS")).toMatch(/^220 /)
    const plain = this.socket
    plain.removeAllListeners("data")
    plain.removeAllListeners("end")
    plain.removeAllListeners("close")
    const secure = tls.connect({ socket: plain as net.Socket, rejectUnauthorized: false, servername: "mx.local.test" })
    await new Promise<void>((resolve, reject) => {
      secure.once("secureConnect", resolve)
      secure.once("error", reject)
    })
    this.socket = secure
    this.listen(secure)
    return secure.getPeerCertificate()
  }

  static async session(port: number, helo = "client.test"): Promise<Raw> {
    const raw = await Raw.open(port)
    expect(await raw.reply()).toMatch(/^220 /)
    expect(await raw.command(`EHLO ${helo}`)).toMatch(/^250/)
    return raw
  }
}

const message = (body = "hello\r\n") => `From: a@remote.test\r\nTo: u@local.test\r\nSubject: test\r\n\r\n${body}`

const smtpTransport = (port: number, extra: Record<string, unknown> = {}) =>
  nodemailer.createTransport({ host: "127.0.0.1", port, secure: false, ignoreTLS: true, ...extra })

// ---------------------------------------------------------------------------------------------

describe("Ingress: ESMTP", () => {
  it("lists its capabilities, AUTH only once TLS is up", async () => {
    const h = await start()
    const raw = await Raw.open(h.ingress.ports.smtp!)
    expect(await raw.reply()).toMatch(/^220 mx\.local\.test ESMTP/)
    const ehlo = await raw.command("EHLO client.test")
    for (const cap of ["PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE 10000", "STARTTLS"]) {
      expect(ehlo).toMatch(new RegExp(`^250[- ]${cap}$`, "m"))
    }
    expect(ehlo).not.toMatch(/AUTH|DSN/)
    await raw.starttls()
    const secured = await raw.command("EHLO client.test")
    expect(secured).toMatch(/^250[- ]AUTH PLAIN LOGIN$/m)
    expect(secured).not.toMatch(/STARTTLS/)
    expect(await raw.command("QUIT")).toMatch(/^221 2\.0\.0/)
  })

  it("accepts a message for a local domain, passing the unstuffed bytes to accept()", async () => {
    const h = await start()
    const raw = await Raw.session(h.ingress.ports.smtp!)
    expect(await raw.command("MAIL FROM:<>")).toBe("250 2.1.0 Accepted")
    expect(await raw.command("RCPT TO:<u@local.test>")).toBe("250 2.1.5 Accepted")
    expect(await raw.command("DATA")).toMatch(/^354 /)
    raw.write("Subject: dots\r\n\r\n..leading dot\r\n.\r\n")
    expect(await raw.reply()).toBe("250 2.0.0 OK queued as Q1")
    expect(h.accepted).toHaveLength(1)
    expect(h.accepted[0]).toMatchObject({
      sender: "",
      recipients: ["u@local.test"],
      client: { ip: "127.0.0.1", helo: "client.test", tls: false },
      listener: "smtp"
    })
    expect(h.accepted[0]!.body.toString("latin1")).toBe("Subject: dots\r\n\r\n.leading dot\r\n")
  })

  it("refuses a declared SIZE over the limit at MAIL with 552 5.3.4", async () => {
    const h = await start()
    const raw = await Raw.session(h.ingress.ports.smtp!)
    expect(await raw.command("MAIL FROM:<a@remote.test> SIZE=10001")).toMatch(/^552 5\.3\.4 /)
    expect(await raw.command("MAIL FROM:<a@remote.test> SIZE=10000")).toMatch(/^250 2\.1\.0/)
  })

  it("reads an oversized message to its end, answers 552 5.3.4 and carries on", async () => {
    const h = await start()
    const raw = await Raw.session(h.ingress.ports.smtp!)
    await raw.command("MAIL FROM:<a@remote.test>")
    await raw.command("RCPT TO:<u@local.test>")
    expect(await raw.command("DATA")).toMatch(/^354 /)
    raw.write(message(`${"x".repeat(70)}\r\n`.repeat(200)) + ".\r\n")
    expect(await raw.reply()).toMatch(/^552 5\.3\.4 /)
    expect(await raw.command("NOOP")).toMatch(/^250 /)
    expect(h.accepted).toHaveLength(0)

    // and through a real client
    const err = await smtpTransport(h.ingress.ports.smtp!)
      .sendMail({ envelope: { from: "a@remote.test", to: ["u@local.test"] }, raw: message("y".repeat(12_000)) })
      .then(
        () => undefined,
        (e: { responseCode?: number; response?: string }) => e
      )
    expect(err?.responseCode).toBe(552)
    expect(err?.response).toMatch(/^552 5\.3\.4/)
    expect(h.accepted).toHaveLength(0)
  })

  it("refuses a DATA line longer than the limit with 500 5.5.6 after DATA", async () => {
    const h = await start({ limits: { maxLineLength: 100 } })
    const raw = await Raw.session(h.ingress.ports.smtp!)
    await raw.command("MAIL FROM:<a@remote.test>")
    await raw.command("RCPT TO:<u@local.test>")
    await raw.command("DATA")
    raw.write(message(`${"z".repeat(101)}\r\n`) + ".\r\n")
    expect(await raw.reply()).toMatch(/^500 5\.5\.6 /)
    expect(h.accepted).toHaveLength(0)
  })

  it("closes on a command line longer than the limit", async () => {
    const h = await start({ limits: { maxLineLength: 100 } })
    const raw = await Raw.session(h.ingress.ports.smtp!)
    raw.write(`MAIL FROM:<${"a".repeat(120)}@remote.test>\r\n`)
    const replies = await raw.rest()
    expect(replies).toHaveLength(1)
    expect(replies[0]).toMatch(/^421 4\.\d\.\d /)
  })
})

describe("Ingress: CHUNKING (BDAT, RFC 3030)", () => {
  const accepted = async (h: Harness, n: number) => {
    for (let i = 0; i < 100 && h.accepted.length < n; i++) await new Promise((r) => setTimeout(r, 20))
    return h.accepted
  }

  it("offers CHUNKING and takes a message in chunks, pipelined, octet for octet (no dot-unstuffing)", async () => {
    const h = await start()
    const raw = await Raw.open(h.ingress.ports.smtp!)
    expect(await raw.reply()).toMatch(/^220 /)
    expect(await raw.command("EHLO client.test")).toMatch(/^250[- ]CHUNKING\r?$/m)
    // An end-of-data line and a leading dot inside a chunk are content; the chunk boundary splits a line.
    const first = "Subject: chunks\r\n\r\n..two dots\r\n.\r\nstill the messa"
    const second = "ge\r\n"
    raw.write(
      `MAIL FROM:<a@remote.test>\r\nRCPT TO:<u@local.test>\r\nBDAT ${first.length}\r\n${first}BDAT ${second.length} LAST\r\n${second}NOOP\r\n`
    )
    expect(await raw.reply()).toBe("250 2.1.0 Accepted")
    expect(await raw.reply()).toBe("250 2.1.5 Accepted")
    expect(await raw.reply()).toBe(`250 2.0.0 ${first.length} octets received`)
    expect(await raw.reply()).toBe("250 2.0.0 OK queued as Q1")
    expect(await raw.reply()).toMatch(/^250 /)
    expect(h.accepted).toHaveLength(1)
    expect(h.accepted[0]!.body.toString("latin1")).toBe(first + second)
    expect(h.accepted[0]).toMatchObject({ sender: "a@remote.test", recipients: ["u@local.test"] })
    // The next transaction on the session: BDAT 0 LAST ends a message whose chunks came before it.
    await raw.command("MAIL FROM:<a@remote.test>")
    await raw.command("RCPT TO:<u@local.test>")
    const body = message()
    raw.write(`BDAT ${body.length}\r\n${body}`)
    expect(await raw.reply()).toBe(`250 2.0.0 ${body.length} octets received`)
    expect(await raw.command("BDAT 0 LAST")).toBe("250 2.0.0 OK queued as Q2")
    expect(h.accepted[1]!.body.toString("latin1")).toBe(body)
  })

  it("reads a refused chunk in full: its octets are never taken for commands", async () => {
    const h = await start()
    const raw = await Raw.session(h.ingress.ports.smtp!)
    // No RCPT yet: 503, and the chunk's "commands" are content that is thrown away.
    const smuggled = "RCPT TO:<u@local.test>\r\nQUIT\r\n"
    raw.write(`BDAT ${smuggled.length} LAST\r\n${smuggled}`)
    expect(await raw.reply()).toMatch(/^503 5\.5\.1 /)
    expect(await raw.command("NOOP")).toMatch(/^250 /)
    // DATA after BDAT in one transaction is refused; RSET gives the transaction up: nothing of it is accepted.
    await raw.command("MAIL FROM:<a@remote.test>")
    await raw.command("RCPT TO:<u@local.test>")
    raw.write("BDAT 5\r\nhello")
    expect(await raw.reply()).toBe("250 2.0.0 5 octets received")
    expect(await raw.command("DATA")).toMatch(/^503 5\.5\.1 /)
    expect(await raw.command("RSET")).toMatch(/^250 /)
    await raw.command("MAIL FROM:<a@remote.test>")
    await raw.command("RCPT TO:<u@local.test>")
    expect(await raw.command("DATA")).toMatch(/^354 /)
    raw.write(`${message("after the reset\r\n")}.\r\n`)
    expect(await raw.reply()).toBe("250 2.0.0 OK queued as Q1")
    expect(await accepted(h, 1)).toHaveLength(1)
    expect(h.accepted[0]!.body.toString("latin1")).toContain("after the reset")
    expect(h.accepted[0]!.body.toString("latin1")).not.toContain("hello")
  })

  it("checks a chunked message as DATA's: over the size limit 552 5.3.4, a bare LF 550 5.6.11", async () => {
    const h = await start()
    const raw = await Raw.session(h.ingress.ports.smtp!)
    await raw.command("MAIL FROM:<a@remote.test>")
    await raw.command("RCPT TO:<u@local.test>")
    const line = `${"x".repeat(70)}\r\n`
    const big = line.repeat(100)
    raw.write(`BDAT ${big.length}\r\n${big}BDAT ${big.length} LAST\r\n${big}`)
    expect(await raw.reply()).toBe(`250 2.0.0 ${big.length} octets received`)
    expect(await raw.reply()).toMatch(/^552 5\.3\.4 /)
    await raw.command("MAIL FROM:<a@remote.test>")
    await raw.command("RCPT TO:<u@local.test>")
    const bare = "Subject: x\r\n\r\nbare\nline\r\n"
    expect(await raw.command(`BDAT ${bare.length} LAST\r\n${bare.slice(0, -2)}`)).toMatch(/^550 5\.6\.11 /)
    expect(await raw.command("NOOP")).toMatch(/^250 /)
    expect(h.accepted).toHaveLength(0)
  })

  it("waits for a slow accept after the LAST chunk past the idle timeout, as after DATA's final dot", async () => {
    const h = await start({
      limits: { idleTimeoutMs: 300 },
      accept: async () => {
        await new Promise((r) => setTimeout(r, 900))
        return { code: 250, enhanced: "2.0.0", text: "OK queued as SLOW" }
      }
    })
    const raw = await Raw.session(h.ingress.ports.smtp!)
    await raw.command("MAIL FROM:<a@remote.test>")
    await raw.command("RCPT TO:<u@local.test>")
    const body = message()
    expect(await raw.command(`BDAT ${body.length} LAST\r\n${body.slice(0, -2)}`)).toBe("250 2.0.0 OK queued as SLOW")
  })

  it("accepts nothing of a session closed mid-chunk; closes on a malformed BDAT", async () => {
    const h = await start()
    const raw = await Raw.session(h.ingress.ports.smtp!)
    await raw.command("MAIL FROM:<a@remote.test>")
    await raw.command("RCPT TO:<u@local.test>")
    const body = message()
    raw.write(`BDAT ${body.length + 100} LAST\r\n${body}`)
    await new Promise((r) => setTimeout(r, 100))
    sockets.at(-1)!.destroy()
    await new Promise((r) => setTimeout(r, 200))
    expect(h.accepted).toHaveLength(0)
    expect(h.logs.some((l) => l["event"] === "ingress.data-aborted")).toBe(true)

    const bad = await Raw.session(h.ingress.ports.smtp!)
    await bad.command("MAIL FROM:<a@remote.test>")
    await bad.command("RCPT TO:<u@local.test>")
    bad.write("BDAT many\r\nRSET\r\n")
    const rest = await bad.rest()
    expect(rest[0]).toMatch(/^501 5\.5\.4 /)
    expect(rest).toHaveLength(1)
    expect(h.accepted).toHaveLength(0)
  })
})

describe("Ingress: relay control", () => {
  it("denies an unauthenticated client a remote domain, accepts local and relay domains", async () => {
    const h = await start()
    const raw = await Raw.session(h.ingress.ports.smtp!)
    await raw.command("MAIL FROM:<a@remote.test>")
    expect(await raw.command("RCPT TO:<x@elsewhere.test>")).toBe("550 5.7.1 Relaying denied")
    expect(await raw.command("RCPT TO:<u@LOCAL.test>")).toMatch(/^250 2\.1\.5/)
    expect(await raw.command("RCPT TO:<p@partner.test>")).toMatch(/^250 2\.1\.5/)
    expect(await raw.command("RCPT TO:<bad@@address>")).toMatch(/^501 5\.1\.3 /)
    expect(h.logs.some((l) => l.event === "ingress.relay-denied" && l.recipient === "x@elsewhere.test")).toBe(true)

    const err = await smtpTransport(h.ingress.ports.smtp!)
      .sendMail({ envelope: { from: "a@remote.test", to: ["x@elsewhere.test"] }, raw: message() })
      .then(
        () => undefined,
        (e: { responseCode?: number; response?: string }) => e
      )
    expect(err?.responseCode).toBe(550)
    expect(err?.response).toBe("550 5.7.1 Relaying denied")
    expect(h.accepted).toHaveLength(0)
  })

  it("relays for a trusted network", async () => {
    const h = await start({ relay: { trustedNetworks: ["10.0.0.0/8", "127.0.0.0/8"] } })
    const info = await smtpTransport(h.ingress.ports.smtp!).sendMail({
      envelope: { from: "a@local.test", to: ["x@elsewhere.test"] },
      raw: message()
    })
    expect(info.accepted).toEqual(["x@elsewhere.test"])
    expect(h.accepted.map((m) => m.recipients)).toEqual([["x@elsewhere.test"]])
  })

  it("always accepts postmaster, bare or at a local domain", async () => {
    const h = await start()
    const raw = await Raw.session(h.ingress.ports.smtp!)
    await raw.command("MAIL FROM:<a@remote.test>")
    expect(await raw.command("RCPT TO:<postmaster>")).toMatch(/^250 2\.1\.5/)
    expect(await raw.command("RCPT TO:<Postmaster@local.test>")).toMatch(/^250 2\.1\.5/)
    expect(await raw.command("RCPT TO:<postmaster@elsewhere.test>")).toBe("550 5.7.1 Relaying denied")
    await raw.command("DATA")
    raw.write(message() + ".\r\n")
    expect(await raw.reply()).toMatch(/^250 2\.0\.0/)
    expect(h.accepted[0]!.recipients).toEqual(["postmaster@local.test", "Postmaster@local.test"])
  })

  it("answers 452 4.5.3 past the recipient limit", async () => {
    const h = await start({ limits: { maxRecipients: 2 } })
    const raw = await Raw.session(h.ingress.ports.smtp!)
    await raw.command("MAIL FROM:<a@remote.test>")
    expect(await raw.command("RCPT TO:<a@local.test>")).toMatch(/^250 /)
    expect(await raw.command("RCPT TO:<b@local.test>")).toMatch(/^250 /)
    expect(await raw.command("RCPT TO:<c@local.test>")).toBe("452 4.5.3 Too many recipients")
    await raw.command("DATA")
    raw.write(message() + ".\r\n")
    expect(await raw.reply()).toMatch(/^250 /)
    expect(h.accepted[0]!.recipients).toEqual(["a@local.test", "b@local.test"])
  })
})

describe("Ingress: submission", () => {
  it("refuses AUTH before STARTTLS and mail before AUTH", async () => {
    const h = await start()
    const raw = await Raw.session(h.ingress.ports.submission!)
    const plain = Buffer.from("\0alice\0secret").toString("base64")
    expect(await raw.command(`AUTH PLAIN ${plain}`)).toMatch(/^5\d\d 5\.\d\.\d /)
    expect(await raw.command("MAIL FROM:<alice@local.test>")).toBe("530 5.7.0 Authentication required")

    const err = await smtpTransport(h.ingress.ports.submission!, { auth: { user: "alice", pass: "secret" } })
      .sendMail({ envelope: { from: "alice@local.test", to: ["x@elsewhere.test"] }, raw: message() })
      .then(
        () => undefined,
        (e: Error) => e
      )
    expect(err).toBeInstanceOf(Error)
    expect(h.accepted).toHaveLength(0)
  })

  it("authenticates with AUTH PLAIN after STARTTLS and then relays", async () => {
    const h = await start()
    const transport = nodemailer.createTransport({
      host: "127.0.0.1",
      port: h.ingress.ports.submission!,
      secure: false,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: "alice", pass: "secret", method: "PLAIN" }
    })
    const info = await transport.sendMail({ envelope: { from: "alice@local.test", to: ["x@elsewhere.test"] }, raw: message() })
    expect(info.accepted).toEqual(["x@elsewhere.test"])
    expect(h.accepted).toHaveLength(1)
    expect(h.accepted[0]).toMatchObject({ listener: "submission", client: { tls: true, user: "alice" } })
  })

  it("refuses wrong credentials with 535 5.7.8", async () => {
    const h = await start()
    const raw = await Raw.session(h.ingress.ports.submission!)
    await raw.starttls()
    expect(await raw.command("EHLO client.test")).toMatch(/AUTH PLAIN LOGIN/)
    const bad = Buffer.from("\0alice\0wrong").toString("base64")
    expect(await raw.command(`AUTH PLAIN ${bad}`)).toBe("535 5.7.8 Authentication credentials invalid")
    expect(await raw.command("MAIL FROM:<alice@local.test>")).toBe("530 5.7.0 Authentication required")
    const good = Buffer.from("\0alice\0secret").toString("base64")
    expect(await raw.command(`AUTH PLAIN ${good}`)).toMatch(/^235 2\.7\.0/)
    expect(await raw.command("MAIL FROM:<alice@local.test>")).toMatch(/^250 2\.1\.0/)
    expect(await raw.command("RCPT TO:<x@elsewhere.test>")).toMatch(/^250 2\.1\.5/)
  })

  it("offers AUTH without TLS when requireTls is false", async () => {
    const h = await start({ auth: { requireTls: false } })
    const raw = await Raw.session(h.ingress.ports.submission!)
    const good = Buffer.from("\0alice\0secret").toString("base64")
    expect(await raw.command(`AUTH PLAIN ${good}`)).toMatch(/^235 /)
    expect(await raw.command("MAIL FROM:<alice@local.test>")).toMatch(/^250 /)
  })
})

describe("Ingress: limits", () => {
  it("refuses connections over the per-IP limit with 421 4.7.0 and closes them", async () => {
    const h = await start({ limits: { maxConnectionsPerIp: 2 } })
    const port = h.ingress.ports.smtp!
    const a = await Raw.open(port)
    expect(await a.reply()).toMatch(/^220 /)
    const b = await Raw.open(h.ingress.ports.submission!)
    expect(await b.reply()).toMatch(/^220 /)
    const c = await Raw.open(port)
    expect(await c.rest()).toEqual(["421 4.7.0 Too many connections"])
    expect(h.ingress.connections()).toBe(2)
    expect(h.logs.some((l) => l.event === "ingress.refused" && l.reason === "per-ip")).toBe(true)

    await a.command("QUIT")
    await a.closed
    await expect.poll(() => h.ingress.connections()).toBe(1)
    const d = await Raw.open(port)
    expect(await d.reply()).toMatch(/^220 /)
  })

  it("refuses connections over the total limit", async () => {
    const h = await start({ limits: { maxConnections: 1 } })
    const a = await Raw.open(h.ingress.ports.smtp!)
    expect(await a.reply()).toMatch(/^220 /)
    const b = await Raw.open(h.ingress.ports.smtp!)
    expect(await b.rest()).toEqual(["421 4.7.0 Too many connections"])
  })

  it("closes a session after maxErrors error replies with 421 4.7.0", async () => {
    const h = await start({ limits: { maxErrors: 3 } })
    const raw = await Raw.session(h.ingress.ports.smtp!)
    expect(await raw.command("FOO")).toMatch(/^500 5\.5\.2 /)
    expect(await raw.command("RCPT TO:<u@local.test>")).toMatch(/^503 5\.5\.1 /)
    raw.write("BAR\r\nNOOP\r\n")
    expect(await raw.rest()).toEqual([expect.stringMatching(/^500 /), "421 4.7.0 Too many errors"])
  })

  it("closes an idle session with 421", async () => {
    const h = await start({ limits: { idleTimeoutMs: 300 } })
    const raw = await Raw.session(h.ingress.ports.smtp!)
    expect(await raw.rest()).toEqual([expect.stringMatching(/^421 4\.\d\.\d /)])
  })
})

describe("Ingress: DATA", () => {
  const smuggle = async (bareLf: "reject" | "normalize", separator: string) => {
    const h = await start({ limits: { bareLf } })
    const raw = await Raw.session(h.ingress.ports.smtp!)
    await raw.command("MAIL FROM:<a@remote.test>")
    await raw.command("RCPT TO:<u@local.test>")
    expect(await raw.command("DATA")).toMatch(/^354 /)
    raw.write(
      `Subject: first\r\n\r\nhello${separator}` +
        "MAIL FROM:<evil@remote.test>\r\nRCPT TO:<victim@local.test>\r\nDATA\r\n" +
        "Subject: smuggled\r\n\r\nsecond\r\n.\r\nQUIT\r\n"
    )
    return { h, replies: await raw.rest() }
  }

  for (const separator of ["\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r\n"]) {
    const shown = JSON.stringify(separator)
    it(`does not end DATA at ${shown} (bareLf reject): one message, refused`, async () => {
      const { h, replies } = await smuggle("reject", separator)
      expect(replies).toEqual(["550 5.6.11 Bare CR or LF in message content is not allowed", expect.stringMatching(/^221 /)])
      expect(h.accepted).toHaveLength(0)
    })

    it(`does not end DATA at ${shown} (bareLf normalize): one message, smuggled text is content`, async () => {
      const { h, replies } = await smuggle("normalize", separator)
      expect(replies).toEqual(["250 2.0.0 OK queued as Q1", expect.stringMatching(/^221 /)])
      expect(h.accepted).toHaveLength(1)
      const body = h.accepted[0]!.body.toString("latin1")
      expect(body).toContain("MAIL FROM:<evil@remote.test>\r\nRCPT TO:<victim@local.test>\r\nDATA\r\n")
      expect(body).toContain("Subject: smuggled")
      expect(body).not.toMatch(/[^\r]\n|\r(?!\n)/)
      expect(h.accepted[0]!.recipients).toEqual(["u@local.test"])
    })
  }

  // nodemailer rewrites bare LF itself, so this takes a raw socket.
  for (const [name, content] of [
    ["LF", "line1\nline2\r\n"],
    ["CR", "line1\rline2\r\n"]
  ] as const) {
    it(`bare ${name}: refused with 550 5.6.11, or rewritten to CRLF`, async () => {
      const send = async (bareLf: "reject" | "normalize") => {
        const h = await start({ limits: { bareLf } })
        const raw = await Raw.session(h.ingress.ports.smtp!)
        await raw.command("MAIL FROM:<a@remote.test>")
        await raw.command("RCPT TO:<u@local.test>")
        await raw.command("DATA")
        raw.write(`Subject: x\r\n\r\n${content}.\r\n`)
        return { h, reply: await raw.reply() }
      }
      const rejected = await send("reject")
      expect(rejected.reply).toBe("550 5.6.11 Bare CR or LF in message content is not allowed")
      expect(rejected.h.accepted).toHaveLength(0)
      const normalized = await send("normalize")
      expect(normalized.reply).toMatch(/^250 2\.0\.0 /)
      expect(normalized.h.accepted[0]!.body.toString("latin1")).toBe("Subject: x\r\n\r\nline1\r\nline2\r\n")
    })
  }

  it("answers 451 4.3.0 when accept() fails, and passes on its 452", async () => {
    let fail = true
    const h = await start({
      accept: async () => {
        if (fail) throw new Error("store down")
        return { code: 452, enhanced: "4.3.1", text: "Insufficient system storage" }
      }
    })
    const raw = await Raw.session(h.ingress.ports.smtp!)
    const send = async () => {
      await raw.command("MAIL FROM:<a@remote.test>")
      await raw.command("RCPT TO:<u@local.test>")
      await raw.command("DATA")
      raw.write(message() + ".\r\n")
      return raw.reply()
    }
    expect(await send()).toBe("451 4.3.0 Temporary storage failure, try again later")
    fail = false
    expect(await send()).toBe("452 4.3.1 Insufficient system storage")
    expect(h.logs.some((l) => l.event === "ingress.accept-failed" && l.error === "store down")).toBe(true)
  })

  it("answers DATA only once accept() has resolved, with accept()'s reply", async () => {
    let release: ((id: string) => void) | undefined
    let signal: (() => void) | undefined
    const called = new Promise<void>((resolve) => (signal = resolve))
    const h = await start({
      accept: () => {
        signal?.()
        return new Promise((resolve) => (release = (id) => resolve({ code: 250, text: `OK queued as ${id}` })))
      }
    })
    const raw = await Raw.session(h.ingress.ports.smtp!)
    await raw.command("MAIL FROM:<a@remote.test>")
    await raw.command("RCPT TO:<u@local.test>")
    await raw.command("DATA")
    // NOOP pipelined behind the message: its reply must come after DATA's. The queue id only
    // exists once accept() resolves, so an early 250 could not carry it.
    raw.write(message() + ".\r\nNOOP\r\n")
    await called
    release!("LATE-ID")
    expect(await raw.reply()).toBe("250 2.0.0 OK queued as LATE-ID")
    expect(await raw.reply()).toMatch(/^250 2\.0\.0 OK/)
  })
})

describe("Ingress: TLS certificate", () => {
  it("generates a self-signed certificate once and reuses it", async () => {
    const dir = await tempDir()
    const first = await start({}, dir)
    const certPath = join(dir, "tls", "cert.pem")
    const keyPath = join(dir, "tls", "key.pem")
    const cert = await readFile(certPath, "utf8")
    expect((await stat(keyPath)).mode & 0o777).toBe(0o600)
    expect(first.logs.find((l) => l.event === "ingress.tls")?.source).toBe("generated")

    const raw = await Raw.session(first.ingress.ports.smtp!)
    const served = await raw.starttls()
    expect(served.fingerprint256).toBe(new X509Certificate(cert).fingerprint256)
    await raw.command("QUIT")
    await first.ingress.close()

    const second = await start({}, dir)
    expect(second.logs.find((l) => l.event === "ingress.tls")?.source).toBe("reused")
    expect(await readFile(certPath, "utf8")).toBe(cert)
  })

  it("uses configured PEM files", async () => {
    const dir = await tempDir()
    await (await start({}, dir)).ingress.close()
    const h = await start({ tls: { cert: join(dir, "tls", "cert.pem"), key: join(dir, "tls", "key.pem"), dir: await tempDir() } })
    expect(h.logs.find((l) => l.event === "ingress.tls")?.source).toBe("configured")
  })
})

/** The sockets listening on 127.0.0.1:port, from the kernel's table (state 0A: LISTEN). */
const listeningSockets = async (port: number): Promise<number> => {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`
  const rows = (await readFile("/proc/net/tcp", "utf8")).split("\n").map((l) => l.trim().split(/\s+/))
  return rows.filter((r) => r[1] === local && r[3] === "0A").length
}

/** Connects without waiting; resolves with the first line the server sends. */
const greetingOf = (port: number): Promise<string> =>
  new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1")
    sockets.push(socket)
    socket.once("data", (d: Buffer) => resolve(d.toString("latin1").split("\r\n")[0] ?? ""))
    socket.once("error", reject)
  })

describe("Ingress: listening sockets", () => {
  it("binds several sockets to a listener's port, so a busy node accepts several sessions per turn of its loop", async () => {
    const h = await start({ limits: { maxConnectionsPerIp: 64, maxConnections: 64 } })
    const port = h.ingress.ports["smtp"] as number
    expect(ACCEPT_SOCKETS).toBeGreaterThan(1)
    expect(await listeningSockets(port)).toBe(ACCEPT_SOCKETS)
    // 32 clients connect while this process is kept busy: each turn of its loop burns 5 ms before it polls again,
    // as a node under load does. One socket accepts one connection per turn (libuv), so 32 greetings would take more
    // than 32 turns; spread by the kernel over four sockets, about a third as many (the busiest socket's share, ~12,
    // and two turns to the greeting: a socket with 22 of the 32 is what it would take to reach 24).
    let turns = 0
    let busy = true
    const spin = () => {
      if (!busy) return
      turns += 1
      const until = performance.now() + 5
      while (performance.now() < until) {
        // a turn's work
      }
      setImmediate(spin)
    }
    const greetings = Array.from({ length: 32 }, () => greetingOf(port))
    setImmediate(spin)
    const lines = await Promise.all(greetings)
    busy = false
    expect(lines.every((l) => l.startsWith("220 "))).toBe(true)
    expect(turns).toBeLessThan(24)
  })

  it("still refuses a client that talks before the greeting: one turn of the loop lies between its first read and the 220", async () => {
    const h = await start({})
    const port = h.ingress.ports["smtp"] as number
    const socket = net.connect(port, "127.0.0.1", () => socket.write("EHLO early.test\r\n"))
    sockets.push(socket)
    let got = ""
    await new Promise<void>((resolve) => {
      socket.on("data", (d: Buffer) => {
        got += d.toString("latin1")
        if (/^\d{3} /m.test(got)) resolve()
      })
      socket.on("close", () => resolve())
    })
    expect(got).toMatch(/^421 .*You talk too soon/m)
    expect(got).not.toMatch(/^250/m)
  })

  it("fails with EADDRINUSE on a port taken, its own or another server's, and frees every socket on close", async () => {
    const first = await start({ listeners: [{ name: "smtp", host: "127.0.0.1", port: 0 }] })
    const port = first.ingress.ports["smtp"] as number
    // SO_REUSEPORT alone would let a second node share the port: it is refused as a plain bind would be
    await expect(start({ listeners: [{ name: "smtp", host: "127.0.0.1", port }] })).rejects.toMatchObject({ code: "EADDRINUSE" })
    expect(await listeningSockets(port)).toBe(ACCEPT_SOCKETS)
    expect(await greetingOf(port)).toMatch(/^220 /)
    await first.ingress.close()
    expect(await listeningSockets(port)).toBe(0)

    const other = net.createServer()
    await new Promise<void>((resolve) => other.listen(port, "127.0.0.1", resolve))
    try {
      await expect(start({ listeners: [{ name: "smtp", host: "127.0.0.1", port }] })).rejects.toMatchObject({ code: "EADDRINUSE" })
    } finally {
      await new Promise((resolve) => other.close(resolve))
    }
  })
})

describe("no library patched", () => {
  it("leaves smtp-server's own connections as they are: only Missive's servers greet at once", async () => {
    await start({})
    const { SMTPConnection } = await import("smtp-server/lib/smtp-connection.js")
    // The library's init keeps its 100 ms early-talker pause for every other smtp-server in the process
    // (the simulations' receivers, the tests' capture server); Missive's servers build their own connections.
    expect(SMTPConnection.prototype.init.toString()).toContain("setTimeout")
    expect(Object.keys(SMTPConnection.prototype)).toEqual([])
  })
})
