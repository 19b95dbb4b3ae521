// Simulated receiving SMTP servers. A destination receiver misbehaves on cue (latency, 4xx/5xx shares, greylisting,
// throttling, cutting DATA, slow DATA, STARTTLS offered or not) following its scenario behaviour at the current
// scenario time; a DSN collector stands for a sender domain and records every DSN it receives. Both tell the ledger.
// Every random decision is keyed by seed + message tag + recipient + attempt, never by arrival order.
// Loopback only; no AUTH; bodies are counted and dropped (a DSN collector keeps only DSNs, which are small).
import { SMTPServer, type SMTPServerOptions } from "smtp-server"
import * as Ledger from "./Ledger.js"
import * as Random from "./Random.js"
import * as Scenario from "./Scenario.js"
import { sleep, type Now } from "./Time.js"

export interface Receiver {
  readonly domain: string
  readonly address: string
  readonly port: number
  close(): Promise<void>
}

export interface ReceiverOptions {
  readonly address: string
  readonly port: number
  readonly seed: number
  readonly now: Now
  readonly ledger: Ledger.Ledger
  readonly tls?: { readonly key: string; readonly cert: string } | undefined
}

type Callback = (err?: Error | null) => void
const refusal = (code: number, text: string): Error => Object.assign(new Error(text), { responseCode: code })

/** Shared per destination (every MX host of a domain): attempts seen per recipient, messages per minute. */
export interface DestinationState {
  readonly attempts: Map<string, number>
  minute: number
  inMinute: number
}
export const destinationState = (): DestinationState => ({ attempts: new Map(), minute: -1, inMinute: 0 })

const listen = (server: SMTPServer, address: string, port: number): Promise<void> =>
  new Promise<void>((done, fail) => {
    // replies are small writes: without TCP_NODELAY, Nagle waits for the client's delayed ACK (up to 40 ms a reply)
    server.server.on("connection", (socket: import("node:net").Socket) => socket.setNoDelay(true))
    server.server.once("error", fail)
    server.listen(port, address, () => {
      server.server.off("error", fail)
      done()
    })
  })

const close = (server: SMTPServer): Promise<void> => new Promise<void>((done) => server.close(() => done()))

const baseOptions = (o: ReceiverOptions, name: string): SMTPServerOptions => ({
  name,
  logger: false,
  authOptional: true,
  disabledCommands: ["AUTH"],
  disableReverseLookup: true,
  maxClients: 10_000,
  closeTimeout: 200,
  socketTimeout: 60_000,
  ...(o.tls ? { key: o.tls.key, cert: o.tls.cert } : { hideSTARTTLS: true })
})

/** One MX host of a simulated destination. */
export const startDestination = async (d: Scenario.Destination, state: DestinationState, o: ReceiverOptions): Promise<Receiver> => {
  const perConnection = new Map<string, number>()
  const behaviour = (): Scenario.Behaviour => Scenario.behaviourAt(d, o.now())
  const after = (ms: number, f: () => void): void => void (ms > 0 ? sleep(ms).then(f) : f())
  const reply = (code: number | "cut"): void => o.ledger.reply(d.domain, code)
  const refuse = (cb: Callback, code: number, text: string): void => {
    reply(code)
    cb(refusal(code, text))
  }
  let server: SMTPServer | undefined

  const options: SMTPServerOptions = {
    ...baseOptions(o, `mx.${d.domain}`),
    ...(o.tls && d.tls ? {} : { hideSTARTTLS: true }),
    onConnect: (_session, cb) => after(behaviour().latency, () => cb()),
    onClose: (session) => void perConnection.delete(session.id),
    onMailFrom: (_address, session, cb) => {
      const b = behaviour()
      after(b.latency, () => {
        const n = (perConnection.get(session.id) ?? 0) + 1
        perConnection.set(session.id, n)
        if (b.throttle?.per_connection !== undefined && n > b.throttle.per_connection) {
          return refuse(cb, 421, "4.7.0 Too many messages on this connection, come back later")
        }
        const minute = Math.floor(o.now() / 60_000)
        if (minute !== state.minute) {
          state.minute = minute
          state.inMinute = 0
        }
        if (b.throttle?.per_minute !== undefined && ++state.inMinute > b.throttle.per_minute) {
          return refuse(cb, 421, "4.7.0 Rate limit reached, come back later")
        }
        cb()
      })
    },
    onRcptTo: (address, _session, cb) => {
      const b = behaviour()
      after(b.latency, () => {
        const rcpt = address.address.toLowerCase()
        const tag = Ledger.tagOf(rcpt)
        const attempt = (state.attempts.get(rcpt) ?? 0) + 1
        state.attempts.set(rcpt, attempt)
        if (b.greylist && attempt === 1) return refuse(cb, 451, "4.7.1 Greylisted, please try again later")
        if (Random.keyed(o.seed, d.domain, "perm", tag, rcpt) < b.perm_fail) return refuse(cb, 550, "5.1.1 No such user here")
        if (Random.keyed(o.seed, d.domain, "temp", tag, rcpt, attempt) < b.temp_fail)
          return refuse(cb, 451, "4.3.0 Temporary failure, try again later")
        cb()
      })
    },
    onData: (stream, session, cb) => {
      const b = behaviour()
      const rcpts = session.envelope.rcptTo.map((r) => r.address.toLowerCase())
      const first = rcpts[0] ?? ""
      const attempt = state.attempts.get(first) ?? 1
      const cut = Random.keyed(o.seed, d.domain, "cut", Ledger.tagOf(first), first, attempt) < b.disconnect_in_data
      let bytes = 0
      stream.on("data", (c: Buffer) => {
        bytes += c.length
        if (cut && bytes > 0) {
          stream.removeAllListeners("data")
          stream.resume()
          reply("cut")
          for (const conn of (server as unknown as { connections: Set<{ id: string; _socket: { destroy(): void } }> }).connections) {
            if (conn.id === session.id) conn._socket.destroy()
          }
        }
      })
      stream.on("end", () => {
        if (cut) return
        after(b.latency + b.slow_data, () => {
          const at = o.now()
          for (const rcpt of rcpts) o.ledger.delivered(rcpt, d.domain, at)
          reply(250)
          cb(null, "2.0.0 Accepted by the simulation")
        })
      })
    }
  }
  server = new SMTPServer(options)
  server.on("error", () => undefined) // clients that reset are part of the game
  await listen(server, o.address, o.port)
  return { domain: d.domain, address: o.address, port: o.port, close: () => close(server!) }
}

/** One DSN of Missive's (RFC 3464): each Final-Recipient with Action: failed and its Status. */
export const parseDsn = (text: string): ReadonlyArray<{ readonly rcpt: string; readonly action: string; readonly status: string }> => {
  const out: Array<{ rcpt: string; action: string; status: string }> = []
  for (const block of text.split(/\r?\n\r?\n/)) {
    const rcpt = /^Final-Recipient:\s*rfc822;\s*<?([^>\s]+)>?/im.exec(block)?.[1]
    if (rcpt === undefined) continue
    out.push({
      rcpt: rcpt.toLowerCase(),
      action: (/^Action:\s*(\S+)/im.exec(block)?.[1] ?? "").toLowerCase(),
      status: /^Status:\s*(\S+)/im.exec(block)?.[1] ?? ""
    })
  }
  return out
}

/** The receiver of a simulated sender domain: collects DSNs (null sender) and tells the ledger which recipients failed. */
export const startDsnCollector = async (domain: string, o: ReceiverOptions): Promise<Receiver> => {
  const options: SMTPServerOptions = {
    ...baseOptions(o, `mx.${domain}`),
    onData: (stream, session, cb) => {
      const chunks: Array<Buffer> = []
      stream.on("data", (c: Buffer) => chunks.push(c))
      stream.on("end", () => {
        const at = o.now()
        if (session.envelope.mailFrom && session.envelope.mailFrom.address !== "") {
          o.ledger.reply(domain, 550)
          return cb(refusal(550, "5.7.1 This simulated sender domain only takes DSNs"))
        }
        for (const f of parseDsn(Buffer.concat(chunks).toString("latin1"))) {
          if (f.action === "failed") o.ledger.dsn(f.rcpt, f.status, at)
        }
        o.ledger.reply(domain, 250)
        cb(null, "2.0.0 DSN collected")
      })
    }
  }
  const server = new SMTPServer(options)
  server.on("error", () => undefined)
  await listen(server, o.address, o.port)
  return { domain, address: o.address, port: o.port, close: () => close(server) }
}
