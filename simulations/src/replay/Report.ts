// `missive replay report --from T --to T [--domain D]`: an incident report per destination (recipient domain) for a
// time window: messages, attempts, outcomes, reply codes, delivery latency percentiles and queue depth over time.
// Folds the log from position 0 (queue depth needs what was already queued at the window's start); never writes.
import { Reply, Route } from "@missive/core"
import { EventStore } from "@missive/events"
import { positionAt, scan, SLACK_MS, type Store } from "./Log.js"
import { percentiles, type Percentiles } from "../Report.js"
import { formatDuration, iso } from "./Time.js"

export interface DestinationReport {
  readonly destination: string
  readonly messages: number
  readonly attempts: number
  readonly delivered: number
  readonly deferred: number
  readonly bounced: number
  readonly expired: number
  /** "451 4.3.2" → recipients that got it, in the window. */
  readonly replies: Readonly<Record<string, number>>
  /** Received → delivered, ms, for deliveries in the window. */
  readonly latency: Percentiles
  /** Open recipients at the end of each bucket, and the peak inside it. */
  readonly depth: ReadonlyArray<{ readonly at: number; readonly open: number; readonly peak: number }>
  readonly peakDepth: number
}

export interface Report {
  readonly from: number
  readonly to: number
  readonly bucketMs: number
  readonly domain?: string | undefined
  readonly destinations: ReadonlyArray<DestinationReport>
  readonly total: DestinationReport
}

interface Acc {
  messages: number
  attempts: number
  delivered: number
  deferred: number
  bounced: number
  expired: number
  replies: Record<string, number>
  latencies: Array<number>
  open: number
  bucketPeak: number
  depth: Array<{ at: number; open: number; peak: number }>
}

const newAcc = (buckets: number): Acc => ({
  messages: 0,
  attempts: 0,
  delivered: 0,
  deferred: 0,
  bounced: 0,
  expired: 0,
  replies: {},
  latencies: [],
  open: 0,
  bucketPeak: 0,
  depth: Array.from({ length: buckets }, () => ({ at: 0, open: 0, peak: 0 }))
})

const replyKey = (r: Reply.Reply) => `${r.code}${r.enhanced ? ` ${r.enhanced}` : ""}`

export interface ReportOptions {
  readonly from: number
  readonly to: number
  readonly domain?: string | undefined
  /** Queue-depth samples over the window (default 48). */
  readonly buckets?: number
  readonly onProgress?: (position: number, target: number) => void
}

export const build = async (store: Store, o: ReportOptions): Promise<Report> => {
  const buckets = Math.max(1, o.buckets ?? 48)
  const span = Math.max(1, o.to - o.from)
  const bucketMs = Math.ceil(span / buckets)
  const domainFilter = o.domain?.toLowerCase()
  const accs = new Map<string, Acc>()
  const acc = (d: string) => {
    let a = accs.get(d)
    if (!a) accs.set(d, (a = newAcc(buckets)))
    return a
  }
  const want = (d: string) => domainFilter === undefined || d === domainFilter
  // Per open message: received time and its open recipients (for depth and latency).
  const open = new Map<string, { receivedAt: number; rcpts: Set<string> }>()
  let bucket = -1
  const closeBuckets = (upTo: number) => {
    // Record the depth of every bucket that ended before `upTo`.
    while (bucket < buckets - 1 && o.from + (bucket + 1) * bucketMs <= upTo) {
      if (bucket >= 0)
        for (const a of accs.values()) {
          a.depth[bucket] = { at: o.from + (bucket + 1) * bucketMs, open: a.open, peak: Math.max(a.bucketPeak, a.open) }
        }
      bucket += 1
      for (const a of accs.values()) a.bucketPeak = a.open
    }
  }
  const inWindow = (at: number) => at >= o.from && at <= o.to
  // Defined once, outside the loop: a closure made per event costs more than the work it does.
  const change = (rcpt: string, delta: number) => {
    const d = Route.domainOf(rcpt)
    if (!want(d)) return
    const a = acc(d)
    a.open += delta
    if (a.open > a.bucketPeak) a.bucketPeak = a.open
  }
  const head = await store.head()
  const until = Math.min(head, (await positionAt(store, o.to + SLACK_MS + 1, head)) - 1)
  for await (const batch of scan(store, { until, onProgress: o.onProgress })) {
    for (const { stream, event: e } of batch) {
      if (e.at > o.to) continue
      closeBuckets(e.at)
      const id = EventStore.idOf(stream)
      const w = inWindow(e.at)
      switch (e.type) {
        case "MessageReceived": {
          const rcpts = new Set(e.recipients)
          open.set(id, { receivedAt: e.at, rcpts })
          for (const r of rcpts) change(r, +1)
          if (w) for (const d of new Set(e.recipients.map(Route.domainOf))) if (want(d)) acc(d).messages += 1
          break
        }
        case "AttemptStarted": {
          const d = Route.domainOf(e.rcpts[0] ?? "")
          if (w && want(d)) acc(d).attempts += 1
          break
        }
        case "AttemptSucceeded":
        case "AttemptFailed":
        case "AttemptDeferred": {
          if (!w) break
          for (const r of e.rcpts) {
            const d = Route.domainOf(r)
            if (!want(d)) continue
            const a = acc(d)
            const k = replyKey(e.reply)
            a.replies[k] = (a.replies[k] ?? 0) + 1
            if (e.type === "AttemptDeferred" && e.nextAttemptAt !== null) a.deferred += 1
          }
          break
        }
        case "RecipientDelivered":
        case "RecipientBounced":
        case "RecipientExpired": {
          const m = open.get(id)
          if (m?.rcpts.delete(e.rcpt)) change(e.rcpt, -1)
          const d = Route.domainOf(e.rcpt)
          if (!w || !want(d)) break
          const a = acc(d)
          if (e.type === "RecipientDelivered") {
            a.delivered += 1
            if (m) a.latencies.push(e.at - m.receivedAt)
          } else if (e.type === "RecipientBounced") a.bounced += 1
          else a.expired += 1
          break
        }
        case "MessageCompleted": {
          const m = open.get(id)
          if (m) for (const r of m.rcpts) change(r, -1)
          open.delete(id)
          break
        }
        default:
          break
      }
    }
  }
  closeBuckets(o.from + buckets * bucketMs)
  const last = buckets - 1
  for (const a of accs.values())
    if (a.depth[last]!.at === 0) a.depth[last] = { at: o.from + buckets * bucketMs, open: a.open, peak: Math.max(a.bucketPeak, a.open) }
  const finish = (destination: string, a: Acc): DestinationReport => ({
    destination,
    messages: a.messages,
    attempts: a.attempts,
    delivered: a.delivered,
    deferred: a.deferred,
    bounced: a.bounced,
    expired: a.expired,
    replies: Object.fromEntries(Object.entries(a.replies).sort((x, y) => y[1] - x[1])),
    latency: percentiles(a.latencies),
    depth: a.depth,
    peakDepth: a.depth.reduce((m, d) => Math.max(m, d.peak), 0)
  })
  // Only destinations with activity in the window or mail queued during it.
  const destinations = [...accs.entries()]
    .map(([d, a]) => finish(d, a))
    .filter((r) => r.messages + r.attempts + r.delivered + r.bounced + r.expired + r.peakDepth > 0)
    .sort((x, y) => y.messages - x.messages || y.attempts - x.attempts || (x.destination < y.destination ? -1 : 1))
  const t = newAcc(buckets)
  for (const [, a] of accs) {
    t.messages += a.messages
    t.attempts += a.attempts
    t.delivered += a.delivered
    t.deferred += a.deferred
    t.bounced += a.bounced
    t.expired += a.expired
    for (const [k, n] of Object.entries(a.replies)) t.replies[k] = (t.replies[k] ?? 0) + n
    for (const l of a.latencies) t.latencies.push(l)
  }
  t.depth = Array.from({ length: buckets }, (_, i) => {
    let open = 0,
      peak = 0
    for (const a of accs.values()) {
      open += a.depth[i]!.open
      peak += a.depth[i]!.peak
    }
    return { at: o.from + (i + 1) * bucketMs, open, peak }
  })
  return { from: o.from, to: o.to, bucketMs, domain: domainFilter, destinations, total: finish("(all)", t) }
}

const ms = (v: number) => formatDuration(v)

const table = (head: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (r: ReadonlyArray<string>) =>
    r
      .map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!)))
      .join("  ")
      .trimEnd()
  return [line(head), line(w.map((n) => "-".repeat(n))), ...rows.map(line)].join("\n")
}

export const format = (r: Report, opts: { maxDepthColumns?: number } = {}): string => {
  const all = [...r.destinations, r.total]
  const out: Array<string> = []
  out.push(`Incident report ${iso(r.from)} .. ${iso(r.to)} (${ms(r.to - r.from)})${r.domain ? `, domain ${r.domain}` : ""}`)
  out.push("")
  out.push(
    table(
      ["DESTINATION", "MSGS", "ATTEMPTS", "DELIVERED", "DEFERRED", "BOUNCED", "EXPIRED", "P50", "P90", "P99", "MAX", "PEAK QUEUE"],
      all.map((d) => [
        d.destination,
        String(d.messages),
        String(d.attempts),
        String(d.delivered),
        String(d.deferred),
        String(d.bounced),
        String(d.expired),
        ms(d.latency.p50),
        ms(d.latency.p90),
        ms(d.latency.p99),
        ms(d.latency.max),
        String(d.peakDepth)
      ])
    )
  )
  out.push("")
  out.push("Reply codes (recipients)")
  out.push(
    table(
      ["DESTINATION", "REPLY", "COUNT"],
      all.flatMap((d) => Object.entries(d.replies).map(([k, n]) => [d.destination, k, String(n)]))
    )
  )
  out.push("")
  const cols = [...r.destinations].sort((a, b) => b.peakDepth - a.peakDepth).slice(0, opts.maxDepthColumns ?? 6)
  out.push(`Queue depth (open recipients at the end of each ${ms(r.bucketMs)}; peak in brackets)`)
  out.push(
    table(
      ["TIME", ...cols.map((c) => c.destination), "(all)"],
      r.total.depth.map((t, i) => [iso(t.at), ...cols.map((c) => `${c.depth[i]!.open} [${c.depth[i]!.peak}]`), `${t.open} [${t.peak}]`])
    )
  )
  return out.join("\n")
}
