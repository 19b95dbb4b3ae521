// Synthetic traffic for tests and benchmarks: a seeded world (arrivals over a span, recipient domains with skewed
// popularity, outages that answer 4xx, unknown users that answer 5xx) run through the what-if simulator, whose
// decider output is a realistic log. Deterministic for a seed; reads no clock.
import type { Message, Reply } from "@missive/core"
import { Clock } from "@missive/node"
import { simulate, type AltPolicy, type Recording } from "./WhatIf.js"

export interface WorldOptions {
  readonly seed?: number
  readonly start: number
  readonly spanMs: number
  readonly messages: number
  readonly domains: number
  /** Fraction of domains that have one outage (4xx) somewhere in the span. */
  readonly outageShare?: number
  /** Fraction of recipients that do not exist (5xx). */
  readonly unknownUsers?: number
  /** How long the log runs after the last arrival. */
  readonly tailMs?: number
}

const OK: Reply.Reply = { code: 250, enhanced: "2.0.0", text: "OK queued" }
const GREY: Reply.Reply = { code: 451, enhanced: "4.7.1", text: "Greylisted, try again later" }
const BUSY: Reply.Reply = { code: 421, enhanced: "4.3.2", text: "Service not available, closing transmission channel" }
const UNKNOWN: Reply.Reply = { code: 550, enhanced: "5.1.1", text: "User unknown" }

export const world = (o: WorldOptions): Recording => {
  const rnd = Clock.seededRandom(o.seed ?? 7)
  const domains = Array.from({ length: o.domains }, (_, i) => `d${i}.example`)
  // Zipf-like popularity: domain i has weight 1/(i+1).
  const weights = domains.map((_, i) => 1 / (i + 1))
  const cum: Array<number> = []
  weights.reduce((s, w, i) => (cum[i] = s + w), 0)
  const totalW = cum[cum.length - 1]!
  const pick = () => {
    const x = rnd.next() * totalW
    let lo = 0,
      hi = cum.length - 1
    while (lo < hi) {
      const m = (lo + hi) >> 1
      if (cum[m]! < x) lo = m + 1
      else hi = m
    }
    return domains[lo]!
  }
  const end = o.start + o.spanMs + (o.tailMs ?? 0)
  const behaviour = new Map<string, Array<{ at: number; host: string; reply: Reply.Reply; durationMs: number }>>()
  domains.forEach((d, i) => {
    const host = `mx1.${d}:25`
    const list: Array<{ at: number; host: string; reply: Reply.Reply; durationMs: number }> = [
      { at: o.start - 1, host, reply: OK, durationMs: 20 + Math.floor(rnd.next() * 300) }
    ]
    if (rnd.next() < (o.outageShare ?? 0.2) || i === 0) {
      const from = o.start + Math.floor(rnd.next() * o.spanMs * 0.8)
      const len = Math.floor(o.spanMs * (0.02 + rnd.next() * 0.1))
      list.push({ at: from, host, reply: rnd.next() < 0.5 ? GREY : BUSY, durationMs: 5 + Math.floor(rnd.next() * 50) })
      list.push({ at: from + len, host, reply: OK, durationMs: 20 + Math.floor(rnd.next() * 300) })
    }
    behaviour.set(`mx:${d}`, list)
  })
  const permanent = new Map<string, Reply.Reply>()
  const times = Array.from({ length: o.messages }, () => o.start + Math.floor(rnd.next() * o.spanMs)).sort((a, b) => a - b)
  const arrivals = times.map((at, n) => {
    const id = `M${String(n).padStart(9, "0")}`
    const count = rnd.next() < 0.8 ? 1 : 1 + Math.floor(rnd.next() * 3)
    const recipients = [...new Set(Array.from({ length: count }, () => `u${Math.floor(rnd.next() * 1000)}@${pick()}`))]
    for (const r of recipients) if (rnd.next() < (o.unknownUsers ?? 0.02)) permanent.set(`${id}\u0000${r}`, UNKNOWN)
    const event: Message.EventOf<"MessageReceived"> = {
      v: 1,
      at,
      node: "synthetic",
      policy: "synthetic",
      type: "MessageReceived",
      id,
      sender: `s${n % 500}@sender.example`,
      recipients,
      size: 1000 + Math.floor(rnd.next() * 50_000),
      digest: `sha256:${n.toString(16).padStart(64, "0")}`,
      client: { ip: "127.0.0.1", helo: "client.example", tls: false }
    }
    return { id, event }
  })
  return {
    from: o.start,
    to: o.start + o.spanMs,
    horizon: end,
    arrivals,
    routes: new Map(),
    behaviour,
    permanent,
    policies: [],
    eventsRead: 0,
    recorded: {
      messages: 0,
      recipients: 0,
      delivered: 0,
      bounced: 0,
      expired: 0,
      queued: 0,
      attempts: 0,
      latency: { count: 0, p50: 0, p90: 0, p99: 0, max: 0 },
      peakQueue: 0
    }
  }
}

export const livePolicy: AltPolicy = {
  retry: { initialMs: 5 * 60_000, maxMs: 4000_000, multiplier: 2, jitter: 0.1, lifetimeMs: 4 * 3600_000 },
  concurrencyPerDestination: 20,
  maxConnections: 200,
  hash: "live0001"
}

/** Runs the world and hands each decision's events, in log order, to `sink` (at most `maxEvents` in all). */
export const generate = (
  w: Recording,
  sink: (id: string, events: ReadonlyArray<Message.Event>) => void,
  opts: { policy?: AltPolicy; node?: string; seed?: number; maxEvents?: number } = {}
): number => {
  let n = 0
  let written = 0
  const max = opts.maxEvents ?? Infinity
  simulate(w, opts.policy ?? livePolicy, {
    seed: opts.seed ?? 3,
    node: opts.node ?? "node-a",
    onEvents: (id, events) => {
      // A decision's events are one append: a log cut at max keeps whole decisions only.
      if (n >= max || events.length === 0) return
      if (n + events.length > max) {
        n = max
        return
      }
      n += events.length
      written += events.length
      sink(id, events)
    }
  })
  return written
}
