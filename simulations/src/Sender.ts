// Simulated senders: N concurrent SMTP client connections that submit the planned traffic to the target, open loop
// (arrivals on schedule whatever the target does) or closed loop (each connection sends its next message when the
// previous one is answered), with a ramp-up. Every answer goes to the ledger. Plain sessions use the lean pipelining
// client in Client.ts (the harness must be much cheaper than the MTA it measures); STARTTLS or AUTH sessions use
// nodemailer. Stops taking new messages when told; never retries a refused submission (a real client would: that is
// the target's reply to study, not to hide). A connection failure (no SMTP reply at all, e.g. a node killed) is tried
// once more on the next endpoint when the target has several, as a client tries its next MX.
import nodemailer from "nodemailer"
import * as Client from "./Client.js"
import type SMTPPool from "nodemailer/lib/smtp-pool/index.js"
import type * as Ledger from "./Ledger.js"
import type * as Scenario from "./Scenario.js"
import * as Traffic from "./Traffic.js"
import { sleep, type Now } from "./Time.js"

export interface Endpoint {
  readonly host: string
  readonly port: number
}

export interface SenderOptions {
  readonly scenario: Scenario.Scenario
  readonly traffic: ReadonlyArray<Traffic.Message>
  /**
   * Where a message goes from connection `k`: the target (one of its endpoints), or (no MTA) the receiver of its first
   * recipient. `attempt` counts from 0; a route that returns undefined for attempt 1 has no other endpoint to try.
   */
  readonly route: (m: Traffic.Message, k: number, attempt: number) => Endpoint | undefined
  readonly ledger: Ledger.Ledger
  readonly now: Now
}

export interface Senders {
  /** Resolves when every message was submitted (or refused). */
  readonly done: Promise<void>
  /** Scenario time the last submission was answered. */
  lastAnswerAt(): number
  /** Submissions tried again on another endpoint after a connection failure. */
  retried(): number
  stop(): Promise<void>
}

export const start = (o: SenderOptions): Senders => {
  const s = o.scenario.senders
  const queue: Array<Traffic.Message> = []
  const waiting: Array<(m: Traffic.Message | undefined) => void> = []
  let stopped = false
  let lastAnswer = 0
  let producing = true
  let retried = 0
  const plain = !s.tls && !s.auth
  const sessions: Array<Map<string, Promise<Client.Session>>> = []
  const transports: Array<Map<string, nodemailer.Transporter<SMTPPool.SentMessageInfo>>> = []

  const push = (m: Traffic.Message): void => {
    const w = waiting.shift()
    if (w) w(m)
    else queue.push(m)
  }
  const take = (): Promise<Traffic.Message | undefined> => {
    const m = queue.shift()
    if (m || !producing || stopped) return Promise.resolve(m)
    return new Promise((done) => waiting.push(done))
  }
  const endProduction = (): void => {
    producing = false
    for (const w of waiting.splice(0)) w(undefined)
  }

  const transportFor = (k: number, e: Endpoint): nodemailer.Transporter<SMTPPool.SentMessageInfo> => {
    const mine = (transports[k] ??= new Map())
    const key = `${e.host}:${e.port}`
    let t = mine.get(key)
    if (!t) {
      t = nodemailer.createTransport({
        pool: true,
        maxConnections: 1,
        maxMessages: Infinity,
        host: e.host,
        port: e.port,
        secure: false,
        ignoreTLS: !s.tls,
        requireTLS: s.tls,
        tls: { rejectUnauthorized: false },
        ...(s.auth ? { auth: { user: s.auth.user, pass: s.auth.password } } : {}),
        connectionTimeout: 15_000,
        greetingTimeout: 15_000,
        socketTimeout: 120_000
      })
      mine.set(key, t)
    }
    return t
  }

  const sessionFor = async (k: number, e: Endpoint): Promise<Client.Session> => {
    const mine = (sessions[k] ??= new Map())
    const key = `${e.host}:${e.port}`
    let p = mine.get(key)
    if (p) {
      const cur = await p.catch(() => undefined)
      if (cur?.alive()) return cur
    }
    p = Client.open({ host: e.host, port: e.port, helo: `sender${k}.sim`, timeoutMs: 120_000 })
    mine.set(key, p)
    return p
  }

  /** One transaction; resolves with the accepted recipients or rejects with an error carrying `responseCode`. */
  const transfer = async (k: number, e: Endpoint, m: Traffic.Message): Promise<ReadonlyArray<string>> => {
    if (plain) {
      const sent = await (await sessionFor(k, e)).send(m.from, m.to, Traffic.parts(m))
      return sent.accepted
    }
    const info = await transportFor(k, e).sendMail({ envelope: { from: m.from, to: [...m.to] }, raw: Traffic.body(m) })
    return (info.accepted as ReadonlyArray<string | { address: string }>).map((a) => (typeof a === "string" ? a : a.address))
  }

  const submit = async (k: number, m: Traffic.Message): Promise<void> => {
    const started = s.loop === "open" ? Math.min(m.at, o.now()) : o.now()
    o.ledger.sent()
    for (let attempt = 0; ; attempt++) {
      const e = o.route(m, k, attempt)
      if (!e) break
      try {
        const accepted = await transfer(k, e, m)
        const at = o.now()
        o.ledger.accepted(m.tag, accepted, at, at - started)
        break
      } catch (err) {
        const code = (err as { responseCode?: number }).responseCode
        if (code === undefined && attempt === 0 && !stopped && o.route(m, k, 1) !== undefined) {
          retried++
          continue
        }
        o.ledger.refused(code === undefined ? "error" : String(code))
        break
      }
    }
    lastAnswer = o.now()
  }

  const worker = async (k: number): Promise<void> => {
    if (s.loop === "closed" && s.ramp_up > 0) await sleep((s.ramp_up * k) / s.connections - o.now())
    for (;;) {
      const m = await take()
      if (!m || stopped) return
      await submit(k, m)
    }
  }

  const produce = async (): Promise<void> => {
    for (const m of o.traffic) {
      if (stopped) break
      if (s.loop === "open") {
        const wait = m.at - o.now()
        if (wait > 1) await sleep(wait)
      }
      push(m)
    }
    endProduction()
  }

  const workers = Array.from({ length: s.connections }, (_, k) => worker(k))
  const done = Promise.all([produce(), ...workers]).then(() => undefined)
  return {
    done,
    lastAnswerAt: () => lastAnswer,
    retried: () => retried,
    stop: async () => {
      stopped = true
      endProduction()
      await done
      for (const m of transports) for (const t of m?.values() ?? []) t.close()
      for (const m of sessions)
        for (const p of m?.values() ?? [])
          void p.then(
            (c) => c.close(),
            () => undefined
          )
    }
  }
}
