// The ingress role: Missive's SMTP server (smtp-server) on the smtp and submission listeners.
// Speaks the protocol, enforces limits, relay control, AUTH and STARTTLS, checks DATA, and hands
// a complete message to accept(); it must not store anything itself (accept() makes it durable).
// Security: never an open relay; AUTH only under TLS when requireTls; only <CRLF>.<CRLF> ends
// DATA and bare CR/LF is refused or rewritten; 250 to DATA only once accept() has resolved. BDAT (CHUNKING)
// chunks are read by their length into the same message stream as DATA (Chunking.ts).

import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net"
import { SMTPServer } from "smtp-server"
import type { SMTPServerDataStream, SMTPServerOptions, SMTPServerSession } from "smtp-server"
import { Reply } from "@missive/core"
import { probePort } from "../runtime/Net.js"
import { ChunkingConnection } from "./Chunking.js"
import { Connections } from "./Connections.js"
import { DataCheck, type DataVerdict } from "./DataStream.js"
import * as Relay from "./Relay.js"
import * as Tls from "./Tls.js"
import type { Message } from "@missive/core"
import type { SessionFilters, FilterStage } from "../filter/Stage.js"

export type ListenerName = "smtp" | "submission"

export interface IngressOptions {
  hostname: string
  listeners: { name: ListenerName; host: string; port: number }[]
  /** PEM paths; when null, a self-signed pair is generated once into `<dir>/tls/` and reused. */
  tls: { cert: string | null; key: string | null; dir: string }
  auth: { requireTls: boolean; verify: (user: string, pass: string) => Promise<boolean> }
  relay: { localDomains: string[]; relayDomains: string[]; trustedNetworks: string[] }
  limits: {
    maxConnections: number
    maxConnectionsPerIp: number
    maxRecipients: number
    maxMessageSize: number
    /** Octets per line, line ending not counted; applies to commands and to DATA lines. */
    maxLineLength: number
    idleTimeoutMs: number
    /** 4xx/5xx replies a session may collect before it is closed with 421. */
    maxErrors: number
    bareLf: "reject" | "normalize"
  }
  /**
   * Submission only (nodes/src/suppression): refuses a sender over its quota at MAIL (451 4.7.1) and a suppressed
   * recipient at RCPT (550 5.1.1 with the reason). Relayed mail to a suppressed address is bounced when routed.
   */
  submissionChecks?: { mail(user: string): Reply.Reply | undefined; rcpt(address: string): Reply.Reply | undefined } | undefined
  /** Called once DATA is complete and checks and filters passed; resolves only when the message is durable. */
  accept: (m: AcceptedMessage) => Promise<{ code: number; enhanced?: string; text: string }>
  /**
   * The filter stage (nodes/src/filter): run at connect, MAIL (with the session's HELO filters), RCPT and the end of
   * DATA, before accept(). Absent: no filters.
   */
  filters?: FilterStage | undefined
  /** Records a message the filter stage refused at the end of DATA (its MessageFiltered); must not throw. */
  rejected?: (m: RejectedMessage) => Promise<void>
  /** Structured logger, one JSON-serialisable object per event. */
  log?: (obj: Record<string, unknown>) => void
}

export interface AcceptedMessage {
  /** "" for the null sender <>. */
  sender: string
  recipients: string[]
  /** Dot-unstuffed message, CRLF line endings. */
  body: Buffer
  client: { ip: string; helo: string; tls: boolean; user?: string }
  listener: string
  /** What the filter stage found and did (absent when no filters are configured). */
  filtered?: Message.FilterOutcome
}

export interface RejectedMessage {
  sender: string
  recipients: string[]
  client: AcceptedMessage["client"]
  listener: string
  filtered: Message.FilterOutcome
}

export interface Ingress {
  /** Bound port of each listener, by name (the first listener of a name when names repeat). */
  ports: Record<string, number>
  close: () => Promise<void>
  /** Open SMTP sessions across all listeners. */
  connections: () => number
}

/** Replies only ingress gives, beside core's table (Reply.Replies). */
const IngressReplies = {
  tooManyConnections: { code: 421, enhanced: "4.7.0", text: "Too many connections" },
  tooManyErrors: { code: 421, enhanced: "4.7.0", text: "Too many errors" },
  authRequired: { code: 530, enhanced: "5.7.0", text: "Authentication required" },
  authInvalid: { code: 535, enhanced: "5.7.8", text: "Authentication credentials invalid" },
  authUnavailable: { code: 454, enhanced: "4.7.0", text: "Temporary authentication failure" },
  protocolError: { code: 451, enhanced: "4.3.0", text: "Local error in processing" }
} as const satisfies Record<string, Reply.Reply>

/** How long close() lets open sessions finish before smtp-server answers them 421 and drops them. */
const CLOSE_GRACE_MS = 5_000

/** A reply text that already carries its enhanced status code, as every reply of ours does. */
const CARRIES_ENHANCED = /^[245]\.\d{1,3}\.\d{1,3} /

/** "5.7.1 Relaying denied": the text smtp-server writes after the code. */
const replyText = (r: { code: number; enhanced?: string | undefined; text: string }): string =>
  `${r.enhanced ?? `${Math.floor(r.code / 100)}.0.0`} ${r.text}`

/** The error shape smtp-server's callbacks turn into a reply. */
const refusal = (r: Reply.Reply): Error & { responseCode: number } => Object.assign(new Error(replyText(r)), { responseCode: r.code })

type SmtpConnection = SMTPServer["connections"] extends Set<infer C> ? C : never

/**
 * smtp-server waits a fixed 100 ms before its greeting to catch early talkers (a postscreen-like pause that
 * Postfix's smtpd does not make). On a busy relay that pause, not the CPU, bounds throughput, so the greeting goes
 * out on the next turn of the event loop instead. A client that talks before it is still refused by smtp-server.
 * Only the connections of Missive's own servers (HookedServer below) are of this class: smtp-server is not patched.
 */
class PromptConnection extends ChunkingConnection {
  override init(): void {
    this._setListeners(() => {
      if (this._server.options.maxClients && this._server.connections.size > this._server.options.maxClients)
        return this.send(421, `${this.name} Too many connected clients, try again in a moment`, false)
      setImmediate(() => this.connectionReady())
    })
  }
}

/**
 * smtp-server gives no hook that sees every reply, and ours need one: to keep the enhanced code
 * our texts already carry (smtp-server would prefix a second one from its own table), and to
 * count a session's errors. Each new connection is handed to `onConnection` before its greeting.
 * `connect` is smtp-server's own (3.21) with a PromptConnection in place of an SMTPConnection.
 */
class HookedServer extends SMTPServer {
  constructor(
    options: SMTPServerOptions,
    private readonly onConnection: (connection: SmtpConnection) => void
  ) {
    super(options)
  }

  override connect(...[socket, socketOptions]: Parameters<SMTPServer["connect"]>): void {
    const connection = new PromptConnection(this, socket, socketOptions)
    this.connections.add(connection)
    connection.on("error", (err: Error) => this._onError(err))
    connection.on("connect", (data: Parameters<SMTPServer["_onClientConnect"]>[0]) => this._onClientConnect(data))
    this.onConnection(connection)
    connection.init()
  }
}

/**
 * Listening sockets per listener. libuv (1.45 and later: every Node we run on) accepts one connection per listening
 * socket per turn of the event loop, so a busy node — a turn takes a millisecond or more — left new sessions waiting
 * in the kernel's accept queue for several turns (the relay benchmark: 5 ms from connect to greeting, against 1 ms
 * from accept to greeting). Four sockets bound to the same address with SO_REUSEPORT accept up to four per turn; the
 * kernel spreads new connections over them.
 */
export const ACCEPT_SOCKETS = 4

const bind = (server: NetServer, host: string, port: number): Promise<number> =>
  new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen({ host, port, reusePort: true }, () => {
      server.off("error", reject)
      const address = server.address()
      resolve(typeof address === "object" && address !== null ? address.port : port)
    })
  })

/** Binds the listener's sockets: smtp-server's own, and ACCEPT_SOCKETS − 1 more handing their connections to it. */
const listen = async (server: SMTPServer, host: string, port: number): Promise<{ port: number; extra: Array<NetServer> }> => {
  // a plain bind first fails as it would without SO_REUSEPORT, which alone would join another listener of ours
  if (port !== 0) await probePort(host, port)
  const bound = await bind(server.server, host, port)
  const onConnection = server.server.listeners("connection")[0] as (socket: Socket) => void
  const extra: Array<NetServer> = []
  try {
    for (let i = 1; i < ACCEPT_SOCKETS; i++) {
      const more = createNetServer(onConnection)
      more.on("error", (err) => server.emit("error", err))
      extra.push(more)
      await bind(more, host, bound)
    }
  } catch (e) {
    for (const more of extra) more.close()
    throw e
  }
  return { port: bound, extra }
}

const closeServer = (server: SMTPServer): Promise<void> => new Promise((resolve) => server.close(() => resolve()))

export const startIngress = async (opts: IngressOptions): Promise<Ingress> => {
  const log = (obj: Record<string, unknown>): void => {
    try {
      opts.log?.(obj)
    } catch {
      // a failing logger must not take a session down
    }
  }
  const { limits } = opts
  const certificate = await Tls.load(opts.tls, opts.hostname)
  log({ event: "ingress.tls", source: certificate.source, cert: certificate.certPath })
  const relay = Relay.make(opts.relay, opts.hostname)
  const table = new Connections(limits)
  const filters = opts.filters
  /** Each session's filter state, from connect to close. */
  const sessionFilters = new Map<string, SessionFilters>()
  const clientOf = (session: SMTPServerSession): AcceptedMessage["client"] => ({
    ip: session.remoteAddress,
    helo: session.hostNameAppearsAs || "",
    tls: session.secure,
    ...(typeof session.user === "string" ? { user: session.user } : {})
  })

  /** Each session's current transaction as the filter stage rewrote it: the sender and the expanded recipients. */
  const transactions = new Map<string, { sender: string; recipients: string[] }>()

  const create = (listener: ListenerName): SMTPServer => {
    const submission = listener === "submission"
    const base = (session: SMTPServerSession) => ({ listener, session: session.id, ip: session.remoteAddress })

    const hookReplies = (connection: SmtpConnection): void => {
      const send = connection.send.bind(connection)
      let errors = 0
      connection.send = (code, data, context) => {
        const own = typeof data === "string" && CARRIES_ENHANCED.test(data)
        send(code, data, own ? false : context)
        if (code < 400) return
        log({
          event: "ingress.reply",
          listener,
          session: connection.id,
          ip: connection.remoteAddress,
          code,
          text: Array.isArray(data) ? data.join(" ") : (data ?? "")
        })
        if (code === 421) return
        errors += 1
        if (errors >= limits.maxErrors) {
          log({ event: "ingress.too-many-errors", listener, session: connection.id, ip: connection.remoteAddress, errors })
          send(IngressReplies.tooManyErrors.code, replyText(IngressReplies.tooManyErrors), false)
        }
      }
    }

    const finishData = async (
      verdict: DataVerdict,
      session: SMTPServerSession,
      callback: (err?: Error | null, message?: string) => void
    ): Promise<void> => {
      if (verdict._tag === "Reject") {
        log({ event: "ingress.data-rejected", ...base(session), reason: verdict.reason, code: verdict.reply.code })
        return callback(refusal(verdict.reply))
      }
      const envelope = session.envelope
      const tx = transactions.get(session.id)
      let message: AcceptedMessage = {
        sender: tx ? tx.sender : envelope.mailFrom ? envelope.mailFrom.address : "",
        recipients: tx ? [...tx.recipients] : envelope.rcptTo.map((r) => relay.qualify(r.address)),
        body: verdict.body,
        client: clientOf(session),
        listener
      }
      const sf = sessionFilters.get(session.id)
      if (sf) {
        const outcome = await sf.data(verdict.body)
        sf.reset()
        const filtered = outcome.record
        if (outcome.action === "reject" || outcome.action === "tempfail") {
          const reply = outcome.reply ?? Reply.Replies.storeBusy
          log({ event: "ingress.filtered", ...base(session), action: outcome.action, code: reply.code, verdicts: filtered.verdicts.length })
          const { body: _b, ...rest } = message
          await opts.rejected?.({ ...rest, filtered }).catch(() => {})
          return callback(refusal(reply))
        }
        message = { ...message, body: outcome.message, filtered }
      }
      let reply: { code: number; enhanced?: string; text: string }
      try {
        reply = await opts.accept(message)
      } catch (e) {
        log({ event: "ingress.accept-failed", ...base(session), error: (e as Error)?.message ?? String(e) })
        return callback(refusal(Reply.Replies.storeBusy))
      }
      log({
        event: "ingress.accepted",
        ...base(session),
        size: verdict.body.length,
        normalized: verdict.normalized,
        recipients: message.recipients.length,
        code: reply.code,
        reply: reply.text
      })
      if (reply.code >= 200 && reply.code < 300) return callback(null, replyText(reply))
      if (reply.code >= 400 && reply.code < 600) return callback(refusal(reply))
      return callback(refusal(Reply.Replies.storeBusy))
    }

    const options: SMTPServerOptions = {
      name: opts.hostname,
      key: certificate.key,
      cert: certificate.cert,
      minVersion: "TLSv1.2",
      logger: false,
      disableReverseLookup: true,
      hideENHANCEDSTATUSCODES: false,
      hideDSN: true,
      hideREQUIRETLS: true,
      size: limits.maxMessageSize,
      maxCommandLength: limits.maxLineLength,
      socketTimeout: limits.idleTimeoutMs,
      closeTimeout: CLOSE_GRACE_MS,
      authMethods: ["PLAIN", "LOGIN"],
      // AUTH is never required by smtp-server itself: onMailFrom does it for submission, so the
      // rule holds whether or not AUTH is currently offered.
      authOptional: true,
      allowInsecureAuth: !opts.auth.requireTls,

      onConnect(session, callback) {
        const admission = table.admit(session.id, session.remoteAddress)
        if (!admission.admitted) {
          log({ event: "ingress.refused", ...base(session), reason: admission.reason })
          return callback(refusal(IngressReplies.tooManyConnections))
        }
        // AUTH is neither offered nor accepted before STARTTLS when TLS is required for it.
        session.disabledCommands = opts.auth.requireTls && !session.secure ? ["AUTH"] : []
        log({ event: "ingress.connect", ...base(session), connections: table.size })
        if (!filters) return callback()
        const sf = filters.session(() => ({
          id: session.id,
          listener,
          ip: session.remoteAddress,
          helo: session.hostNameAppearsAs || "",
          tls: session.secure,
          user: typeof session.user === "string" ? session.user : undefined,
          trusted: relay.isTrusted(session.remoteAddress)
        }))
        sessionFilters.set(session.id, sf)
        sf.connect().then(
          (o) => (o.reply ? callback(refusal(o.reply)) : callback()),
          () => callback(refusal(IngressReplies.protocolError))
        )
      },

      onSecure(socket, session, callback) {
        session.disabledCommands = []
        const cipher = "getCipher" in socket && typeof socket.getCipher === "function" ? socket.getCipher() : undefined
        log({ event: "ingress.starttls", ...base(session), cipher: cipher?.name, version: cipher?.version })
        callback()
      },

      onAuth(auth, session, callback) {
        const user = auth.username ?? ""
        if (opts.auth.requireTls && !session.secure) return callback(refusal(IngressReplies.authRequired))
        opts.auth.verify(user, auth.password ?? "").then(
          (ok) => {
            log({ event: ok ? "ingress.auth" : "ingress.auth-failed", ...base(session), user, method: auth.method })
            if (ok) callback(null, { user })
            else callback(null, { responseCode: IngressReplies.authInvalid.code, message: replyText(IngressReplies.authInvalid) })
          },
          (e: unknown) => {
            log({ event: "ingress.auth-error", ...base(session), user, error: (e as Error)?.message ?? String(e) })
            callback(refusal(IngressReplies.authUnavailable))
          }
        )
      },

      onMailFrom(address, session, callback) {
        if (submission && !session.user) return callback(refusal(IngressReplies.authRequired))
        // smtp-server 3.21 checks SIZE= against `size` itself; kept here so the limit does not
        // depend on that.
        const declared = address.args ? address.args["SIZE"] : undefined
        if (typeof declared === "string" && Number(declared) > limits.maxMessageSize) {
          return callback(refusal(Reply.Replies.tooBig))
        }
        const overQuota = submission && session.user ? opts.submissionChecks?.mail(String(session.user)) : undefined
        if (overQuota) return callback(refusal(overQuota))
        transactions.delete(session.id)
        const sf = sessionFilters.get(session.id)
        if (!sf) return callback()
        sf.mail(address.address, (address.args || {}) as Record<string, string | boolean>).then(
          (o) => {
            if (o.reply) return callback(refusal(o.reply))
            transactions.set(session.id, { sender: o.sender, recipients: [] })
            callback()
          },
          () => callback(refusal(IngressReplies.protocolError))
        )
      },

      onRcptTo(address, session, callback) {
        const rcpts = session.envelope.rcptTo
        const key = address.address.toLowerCase()
        if (rcpts.length >= limits.maxRecipients && !rcpts.some((r) => r.address.toLowerCase() === key)) {
          return callback(refusal(Reply.Replies.tooManyRecipients))
        }
        const decision = relay.decide(address.address, { ip: session.remoteAddress, authenticated: Boolean(session.user) })
        if (decision === "denied") {
          log({ event: "ingress.relay-denied", ...base(session), recipient: address.address })
          return callback(refusal(Reply.Replies.relayDenied))
        }
        const suppressed = submission ? opts.submissionChecks?.rcpt(relay.qualify(address.address)) : undefined
        if (suppressed) return callback(refusal(suppressed))
        const sf = sessionFilters.get(session.id)
        const tx = transactions.get(session.id)
        if (!sf || !tx) return callback()
        sf.rcpt(relay.qualify(address.address)).then(
          (o) => {
            if (o.reply) return callback(refusal(o.reply))
            for (const r of o.recipients) if (!tx.recipients.includes(r)) tx.recipients.push(r)
            callback()
          },
          () => callback(refusal(IngressReplies.protocolError))
        )
      },

      onData(stream: SMTPServerDataStream, session, callback) {
        const check = new DataCheck(limits)
        stream.on("data", (chunk: Buffer) => check.push(chunk))
        // The client went away mid-message: nothing to answer, nothing accepted.
        stream.once("error", (err: Error) => log({ event: "ingress.data-aborted", ...base(session), error: err.message }))
        stream.once("end", () => {
          finishData(check.finish(), session, callback).catch((e: unknown) => {
            log({ event: "ingress.error", ...base(session), error: (e as Error)?.message ?? String(e) })
            callback(refusal(IngressReplies.protocolError))
          })
        })
      },

      onClose(session) {
        table.release(session.id)
        sessionFilters.delete(session.id)
        transactions.delete(session.id)
        log({ event: "ingress.close", ...base(session), connections: table.size })
      }
    }

    const server = new HookedServer(options, hookReplies)
    server.on("error", (err: Error & { code?: string }) => log({ event: "ingress.error", listener, error: err.message, code: err.code }))
    return server
  }

  const servers: SMTPServer[] = []
  /** The listeners' further sockets (see ACCEPT_SOCKETS). */
  const sockets: NetServer[] = []
  const ports: Record<string, number> = {}
  const closeAll = () => {
    for (const more of sockets) more.close()
    return Promise.all(servers.map(closeServer))
  }
  try {
    for (const listener of opts.listeners) {
      const server = create(listener.name)
      servers.push(server)
      const { port, extra } = await listen(server, listener.host, listener.port)
      sockets.push(...extra)
      if (!(listener.name in ports)) ports[listener.name] = port
      log({ event: "ingress.listening", listener: listener.name, host: listener.host, port })
    }
  } catch (e) {
    await closeAll()
    throw e
  }

  let closing: Promise<void> | undefined
  return {
    ports,
    connections: () => table.size,
    close: () => {
      closing ??= closeAll().then(() => log({ event: "ingress.closed" }))
      return closing
    }
  }
}
