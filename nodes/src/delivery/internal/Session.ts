// One SMTP or LMTP client connection (nodemailer's SMTPConnection) turned into promises that never reject:
// open a hop, run transactions that yield one reply per recipient, RSET, QUIT. It must not choose hops or pool.
// Security stance: the peer is untrusted; its replies are parsed as data and the message body is sent as given
// (only dot-stuffed). In "opportunistic" TLS mode the peer's certificate is not verified (RFC 7435), in "required" it is.
import { isAscii } from "node:buffer"
import { Readable } from "node:stream"
import type { ConnectionOptions } from "node:tls"
import type { TLSSocket } from "node:tls"
import { Reply, type Trace } from "@missive/core"
import SMTPConnection from "nodemailer/lib/smtp-connection/index.js"
import { allGet, type Envelope, type RecipientResult } from "../Delivery.js"
import * as Pipelined from "./Pipelined.js"

export type TlsMode = "opportunistic" | "none" | "required"

export interface SessionOptions {
  /** Our name in EHLO/LHLO. */
  readonly hostname: string
  readonly tls: TlsMode
  /** Extra TLS options (a CA for "required" in tests, ciphers, ...). */
  readonly tlsOptions?: ConnectionOptions | undefined
  /** TCP connect and greeting timeout, ms. */
  readonly connectTimeout: number
  /** Longest wait for any reply (including the one after the final dot) and idle time on the socket, ms. */
  readonly commandTimeout: number
  readonly lmtp: boolean
  /** The local address to connect from (an egress pool's source address). */
  readonly localAddress?: string | undefined
  /**
   * A TLS policy that authenticates the peer (MTA-STS, DANE): TLS is required, the certificate is checked after the
   * handshake and a session that fails the check is closed before MAIL. Absent: the mode alone decides.
   */
  readonly verify?: VerifyPolicy | undefined
}

export interface VerifyPolicy {
  readonly source: Trace.TlsPolicySource
  readonly mode?: string | undefined
  /** True: a certificate that fails the check ends the session ("enforce", "dane-only"); false only records it. */
  readonly enforce: boolean
  /**
   * Checks the peer's certificate; gives the reason it fails, or undefined when it passes. Default: the chain and the
   * name as Node verified them (`authorized`, `authorizationError`).
   */
  readonly check?: ((socket: TLSSocket, endpoint: Endpoint) => string | undefined) | undefined
}

export interface Endpoint {
  readonly host: string
  readonly port: number
  /** The MX host name: sent as SNI and checked against the certificate when a policy verifies it. */
  readonly name?: string | undefined
}

type SmtpError = Error & { code?: string; response?: string; responseCode?: number; command?: string; recipient?: string }

/** The envelope object nodemailer fills in while it runs a transaction (it mutates what it is given). */
interface LiveEnvelope {
  from: string
  to: string[]
  size: number
  use8BitMime: boolean
  rejectedErrors?: SmtpError[]
}

/** Private hook of SMTPConnection that sees each per-recipient LMTP reply after DATA (nodemailer 8). */
interface LmtpHook {
  _actionLMTPStream?: (recipient: string, final: boolean, str: string, callback: unknown) => unknown
}

export const showEndpoint = (e: Endpoint): string => (e.host.includes(":") ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`)

/** Bodies up to this size are written with their final dot at once: half a socket's default buffer (16 KiB), for the dot-stuffing. */
const CORK_MAX = 8 * 1024

/** Native scan: a per-byte callback costs about 1 ms per 100 KB. */
const has8bit = (body: Buffer): boolean => !isAscii(body)

const detailOf = (err: unknown): string => {
  const e = err as SmtpError
  return e && typeof e.message === "string" ? e.message.replace(/\s+/g, " ").trim() : String(err)
}

/** A failure to reach a usable session on one hop. */
export interface OpenFailure {
  readonly detail: string
  readonly tlsFailed: boolean
  /** The TLS that was negotiated before a policy refused the certificate. */
  readonly tls?: Trace.TlsOutcome | undefined
}

const policyOf = (options: SessionOptions): Pick<Trace.TlsOutcome, "policy" | "mode"> =>
  options.verify
    ? { policy: options.verify.source, ...(options.verify.mode ? { mode: options.verify.mode } : {}) }
    : { policy: options.tls === "none" ? "none" : options.tls }

/** What a session's TLS is: version, cipher, and whether (or why not) the certificate verified, per `check`. */
const tlsOf = (conn: SMTPConnection, options: SessionOptions, endpoint: Endpoint): Trace.TlsOutcome => {
  const base = policyOf(options)
  const socket = (conn as unknown as { _socket?: TLSSocket })._socket
  if (!conn.secure || !socket || typeof socket.getProtocol !== "function") return { ...base, tls: false, verified: false }
  const version = socket.getProtocol() ?? undefined
  const cipher = socket.getCipher()?.name
  const failed = options.verify?.check
    ? options.verify.check(socket, endpoint)
    : socket.authorized
      ? undefined
      : String(socket.authorizationError ?? "not authorized")
  return {
    ...base,
    tls: true,
    ...(version ? { version } : {}),
    ...(cipher ? { cipher } : {}),
    verified: failed === undefined,
    ...(failed !== undefined ? { reason: failed } : {})
  }
}

export class Session {
  private alive = true
  /** Data received from the peer so far (counted, never read): whether a transaction heard anything back. */
  private heard = 0
  /**
   * `heard` when the last transaction ended with the server's reply to the data (its state is then reset, RFC 5321
   * §4.1.1.4); -1 when it did not. Anything heard since (a 421 before closing) means the session needs RSET.
   */
  private complete = -1
  private pending: ((err: SmtpError) => void) | undefined
  private deadListeners: Array<() => void> = []
  readonly ended: Promise<void>

  private constructor(
    private readonly conn: SMTPConnection,
    readonly endpoint: Endpoint,
    private readonly lmtp: boolean,
    /** The TLS as negotiated when the session opened. */
    readonly tls: Trace.TlsOutcome
  ) {
    let ended!: () => void
    this.ended = new Promise<void>((r) => (ended = r))
    const die = (err: SmtpError): void => {
      if (this.alive) {
        this.alive = false
        for (const f of this.deadListeners) f()
      }
      const p = this.pending
      this.pending = undefined
      p?.(err)
    }
    conn.on("error", (err: SmtpError) => die(err))
    const hook = conn as unknown as {
      _onData: (chunk: Buffer) => unknown
      _createSendStream: (callback: unknown) => NodeJS.ReadableStream
      _socket?: { cork(): void; uncork(): void }
    }
    const onData = hook._onData
    hook._onData = (chunk: Buffer) => {
      this.heard++
      return onData.call(conn, chunk)
    }
    // A small message's data and its final dot go out in one write (nodemailer pipes them as two chunks): the socket
    // is corked from the 354 until the data stream has ended. Only while the whole of it fits under the socket's
    // buffer limit: a larger one would wait for a drain that a corked socket never gives.
    const createSendStream = hook._createSendStream
    hook._createSendStream = (callback: unknown) => {
      const socket = this.corkData ? hook._socket : undefined
      socket?.cork()
      const stream = createSendStream.call(conn, callback)
      if (socket) {
        let corked = true
        const uncork = (): void => {
          if (!corked) return
          corked = false
          process.nextTick(() => socket.uncork())
        }
        stream.once("end", uncork)
        stream.once("close", uncork)
        stream.once("error", uncork)
      }
      return stream
    }
    conn.once("end", () => {
      die(Object.assign(new Error("connection closed"), { code: "ECONNECTION" }))
      ended()
    })
  }

  get host(): string {
    return showEndpoint(this.endpoint)
  }
  get isAlive(): boolean {
    return this.alive
  }
  /** The previous transaction completed (the reply after the final dot came): the next needs no RSET first. */
  get reusable(): boolean {
    return this.alive && this.complete === this.heard
  }
  get secure(): boolean {
    return this.conn.secure
  }

  onDead(f: () => void): void {
    this.deadListeners.push(f)
  }

  /** Connects, reads the greeting, says EHLO/LHLO and negotiates STARTTLS as the mode asks. */
  // nodemailer leaves Nagle's algorithm on: the small final write of a message (".\r\n", then the next
  // command) then waits for the peer's delayed ACK, up to 40 ms a message. Every write here is a whole
  // command or a whole message, so sending at once is what we want.
  static open(endpoint: Endpoint, options: SessionOptions): Promise<Session | OpenFailure> {
    const conn = new SMTPConnection({
      host: endpoint.host,
      port: endpoint.port,
      ...(endpoint.name ? { servername: endpoint.name } : {}),
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
      name: options.hostname,
      lmtp: options.lmtp,
      secure: false,
      logger: false,
      connectionTimeout: options.connectTimeout,
      greetingTimeout: options.connectTimeout,
      socketTimeout: options.commandTimeout,
      ignoreTLS: options.tls === "none" && !options.verify,
      opportunisticTLS: options.tls === "opportunistic" && !options.verify?.enforce,
      requireTLS: options.tls === "required" || options.verify?.enforce === true,
      // a verifying policy checks the certificate itself after the handshake, so that the reason can be recorded
      tls: { rejectUnauthorized: options.tls === "required" && !options.verify, ...options.tlsOptions }
    })
    return new Promise((resolve) => {
      let settled = false
      const fail = (err: SmtpError): void => {
        if (settled) return
        settled = true
        conn.close()
        const response = err.response ? ` (${err.response.replace(/\s+/g, " ").trim()})` : ""
        resolve({ detail: `${showEndpoint(endpoint)}: ${detailOf(err)}${response}`, tlsFailed: err.code === "ETLS" })
      }
      conn.on("error", fail)
      conn.once("end", () => fail(Object.assign(new Error("connection closed before the session started"), { code: "ECONNECTION" })))
      conn.connect(() => {
        if (settled) return
        const tls = tlsOf(conn, options, endpoint)
        if (options.verify?.enforce && !tls.verified) {
          settled = true
          conn.close()
          const why = tls.tls ? `certificate not verified: ${tls.reason ?? "unknown"}` : "TLS not negotiated"
          resolve({
            detail: `${showEndpoint(endpoint)}: ${why} (${options.verify.source} ${options.verify.mode ?? ""})`.trim(),
            tlsFailed: true,
            tls
          })
          return
        }
        settled = true
        noDelay(conn)
        conn.removeAllListeners("error")
        conn.removeAllListeners("end")
        resolve(new Session(conn, endpoint, options.lmtp, tls))
      })
    })
  }

  /**
   * Runs MAIL, RCPT for each recipient, DATA with the body as given (already CRLF; only dot-stuffed on the wire).
   * Gives one reply per recipient: its RCPT refusal, its LMTP reply, or the reply to the message; when the
   * connection breaks, a 4xx for every recipient without a reply of its own.
   */
  transact(envelope: Envelope, body: Buffer): Promise<ReadonlyArray<RecipientResult>> {
    return this.transaction(envelope, body).then((r) => r.results)
  }

  /**
   * `transact`, and whether the server closed the session before it took the message: no answer at all, or 421 (it
   * is closing the channel, RFC 5321 §3.8) to MAIL. A session reused without RSET that did so had been closed by the
   * peer while idle: the send can be made again on a new session, the server has taken nothing.
   */
  transaction(envelope: Envelope, body: Buffer): Promise<{ results: ReadonlyArray<RecipientResult>; closedBefore: boolean }> {
    const heard = this.heard
    this.complete = -1
    this.closingAtMail = false
    this.corkData = body.length <= CORK_MAX
    return this.run(envelope, body).then((results) => ({ results, closedBefore: this.heard === heard || this.closingAtMail }))
  }

  private closingAtMail = false
  /** The next data transfer is small enough to be sent in one write. */
  private corkData = false

  private run(envelope: Envelope, body: Buffer): Promise<ReadonlyArray<RecipientResult>> {
    const wire = this.conn as unknown as Pipelined.Wire
    if (!this.lmtp && Pipelined.canPipeline(wire)) return this.pipelined(wire, envelope, body)
    const live: LiveEnvelope = { from: envelope.from, to: [...envelope.to], size: body.length, use8BitMime: has8bit(body) }
    const lmtpReplies = new Map<string, Reply.Reply>()
    const hook = this.conn as unknown as LmtpHook
    const original = hook._actionLMTPStream
    if (this.lmtp && original) {
      hook._actionLMTPStream = function (this: unknown, recipient, final, str, callback) {
        lmtpReplies.set(recipient, Reply.parse(str))
        return original.call(this, recipient, final, str, callback)
      }
    }
    return new Promise((resolve) => {
      let done = false
      const finish = (general: Reply.Reply): void => {
        if (done) return
        done = true
        this.pending = undefined
        if (original) hook._actionLMTPStream = original
        const refused = new Map<string, Reply.Reply>()
        for (const e of live.rejectedErrors ?? []) {
          if (e.recipient !== undefined && e.response) refused.set(e.recipient, Reply.parse(e.response))
        }
        resolve(
          envelope.to.map((rcpt) => {
            const key = rcpt.trim()
            return { rcpt, reply: lmtpReplies.get(key) ?? refused.get(key) ?? general }
          })
        )
      }
      if (!this.alive) return finish(Reply.Replies.connectFailed(`${this.host}: connection closed`))
      let fenced = false
      const cut = () => Reply.Replies.connectFailed(`${this.host}: fenced before the end of data`)
      this.pending = (err) => finish(fenced ? cut() : Reply.Replies.connectFailed(`${this.host}: ${detailOf(err)}`))
      this.conn.send(
        live as unknown as Parameters<SMTPConnection["send"]>[0],
        fencedBody(body, envelope.fence, () => (fenced = true)),
        (err, info) => {
          if (fenced) {
            // The data is cut short without its final dot: the connection goes, the server discards the transaction.
            this.conn.close()
            return finish(cut())
          }
          if (err) {
            const e = err as SmtpError
            this.closingAtMail = e.command === "MAIL FROM" && e.responseCode === 421
            return finish(this.replyOf(e))
          }
          this.complete = this.heard
          finish(Reply.parse(info.response))
        }
      )
    })
  }

  /** The transaction in two writes, when the server offered PIPELINING (`Pipelined.ts`); LMTP and the rest go through nodemailer. */
  private pipelined(wire: Pipelined.Wire, envelope: Envelope, body: Buffer): Promise<ReadonlyArray<RecipientResult>> {
    if (!this.alive) return Promise.resolve(allGet(envelope.to, Reply.Replies.connectFailed(`${this.host}: connection closed`)))
    let fenced = false
    const cut = (): Reply.Reply => Reply.Replies.connectFailed(`${this.host}: fenced before the end of data`)
    return Pipelined.transact(
      wire,
      envelope,
      body,
      has8bit(body),
      (broken) => (this.pending = (err) => broken(fenced ? cut() : Reply.Replies.connectFailed(`${this.host}: ${detailOf(err)}`))),
      () => {
        fenced = true
        return cut()
      }
    ).then((outcome) => {
      this.pending = undefined
      if (outcome.complete) this.complete = this.heard
      this.closingAtMail = outcome.closingAtMail
      return outcome.results
    })
  }

  /** The reply a failed transaction gives the recipients that have none of their own. */
  private replyOf(err: SmtpError): Reply.Reply {
    if (err.response) return Reply.parse(err.response)
    // nodemailer refuses before MAIL FROM when the message exceeds the SIZE the server advertised
    if (err.code === "EMESSAGE" && err.command === "MAIL FROM") return Reply.Replies.tooBig
    // an address nodemailer will not put on the wire (contains <, > or a line break)
    if (err.code === "EENVELOPE") return Reply.Replies.badSyntax
    return Reply.Replies.connectFailed(`${this.host}: ${detailOf(err)}`)
  }

  /** RSET before reusing a session whose last transaction did not complete; false means the session is unusable. */
  reset(): Promise<boolean> {
    return new Promise((resolve) => {
      if (!this.alive) return resolve(false)
      this.pending = () => resolve(false)
      this.conn.reset((err) => {
        this.pending = undefined
        this.complete = err ? -1 : this.heard
        resolve(!err)
      })
    })
  }

  /** Says QUIT and waits for the close, cutting the connection if the peer does not answer within `graceMs`. */
  async quit(graceMs = 2000): Promise<void> {
    if (this.alive) this.conn.quit()
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.ended, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))])
    clearTimeout(timer)
    this.conn.close()
    await this.ended
  }
}

/** The body as given, or, with a fence, a stream that asks it after the body and before its end (the final dot). */
const fencedBody = (body: Buffer, fence: Envelope["fence"], refused: () => void): Buffer | Readable => {
  if (!fence) return body
  let sent = false
  let asked = false
  return new Readable({
    read() {
      if (!sent) {
        sent = true
        this.push(body)
        return
      }
      if (asked) return
      asked = true
      const end = (ok: boolean): void => {
        if (ok) this.push(null)
        else {
          refused()
          this.destroy(new Error("fenced before the end of data"))
        }
      }
      const ok = fence()
      if (typeof ok === "boolean") end(ok)
      else ok.then(end, () => end(false))
    }
  })
}

/** Turns Nagle's algorithm off on the session's socket (plain or TLS); nodemailer keeps it in a private field. */
const noDelay = (conn: unknown): void => {
  const socket = (conn as { _socket?: { setNoDelay?: (on: boolean) => unknown } })._socket
  if (socket && typeof socket.setNoDelay === "function") socket.setNoDelay(true)
}
