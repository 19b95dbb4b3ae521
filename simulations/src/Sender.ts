// Simulated senders: N concurrent SMTP client connections (nodemailer, one pooled session each) that submit the planned
// traffic to the target, open loop (arrivals on schedule whatever the target does) or closed loop (each connection sends
// its next message when the previous one is answered), with a ramp-up. Every answer goes to the ledger.
// Stops taking new messages when told; never retries a refused submission (a real client would: that is the target's
// reply to study, not to hide).
import nodemailer from "nodemailer"
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
  /** Where a message goes: the target, or (no MTA) the receiver of its first recipient. */
  readonly route: (m: Traffic.Message) => Endpoint
  readonly ledger: Ledger.Ledger
  readonly now: Now
}

export interface Senders {
  /** Resolves when every message was submitted (or refused). */
  readonly done: Promise<void>
  /** Scenario time the last submission was answered. */
  lastAnswerAt(): number
  stop(): Promise<void>
}

export const start = (o: SenderOptions): Senders => {
  const s = o.scenario.senders
  const queue: Array<Traffic.Message> = []
  const waiting: Array<(m: Traffic.Message | undefined) => void> = []
  let stopped = false
  let lastAnswer = 0
  let producing = true
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
        pool: true, maxConnections: 1, maxMessages: Infinity, host: e.host, port: e.port, secure: false,
        ignoreTLS: !s.tls, requireTLS: s.tls, tls: { rejectUnauthorized: false },
        ...(s.auth ? { auth: { user: s.auth.user, pass: s.auth.password } } : {}),
        connectionTimeout: 15_000, greetingTimeout: 15_000, socketTimeout: 120_000
      })
      mine.set(key, t)
    }
    return t
  }

  const submit = async (k: number, m: Traffic.Message): Promise<void> => {
    const started = s.loop === "open" ? Math.min(m.at, o.now()) : o.now()
    o.ledger.sent()
    try {
      const info = await transportFor(k, o.route(m)).sendMail({ envelope: { from: m.from, to: [...m.to] }, raw: Traffic.body(m) })
      const at = o.now()
      const accepted = (info.accepted as ReadonlyArray<string | { address: string }>).map((a) => (typeof a === "string" ? a : a.address))
      o.ledger.accepted(m.tag, accepted, at, at - started)
    } catch (e) {
      const code = (e as { responseCode?: number }).responseCode
      o.ledger.refused(code === undefined ? "error" : String(code))
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
    stop: async () => {
      stopped = true
      endProduction()
      await done
      for (const m of transports) for (const t of m?.values() ?? []) t.close()
    }
  }
}
