// `missive replay report --from T --to T [--domain D] [--zoom]`: an incident report per destination (recipient
// domain) for a time window, every count in a named unit (messages, recipients, attempts), plus time series per
// bucket (open recipients, attempts, outcomes). Folds the log from position 0 (the queue at the window's start needs
// what was queued before it); never writes.
//
// Units and the sums that hold, per destination and in all:
//   queuedAtStart + recipients = delivered + bounced + expired + deleted + openAtEnd   (all recipients)
// `messages` and `attempts` count a message or an attempt once under each destination it had recipients at, and
// once in (all): with several domains behind one next hop the destinations' attempts add up to more than (all)'s.
import { Route } from "@missive/core"
import { Snapshots } from "@missive/events"
import { digested, openStreams, positionAt, readStreams, scan, SLACK_MS, type Store } from "./Log.js"
import { roundDuration } from "../Chart.js"
import { percentiles, type Percentiles } from "../Report.js"
import { formatDuration, iso } from "./Time.js"

/** One bucket of the chart range: [at, at + bucketMs). */
export interface Bucket {
  readonly at: number
  /** Open recipients at the bucket's end, and the most that were open at any moment inside it. */
  readonly open: number
  readonly peak: number
  /** Attempts started in the bucket. */
  readonly attempts: number
  /** Recipients that reached each outcome in the bucket (deferred: recipients given a 4xx and a next attempt). */
  readonly delivered: number
  readonly deferred: number
  readonly bounced: number
  readonly expired: number
}

export interface DestinationReport {
  readonly destination: string
  /** Messages received in the window with at least one recipient here. */
  readonly messages: number
  /** Recipients received in the window. */
  readonly recipients: number
  /** Recipients open (not delivered, bounced, expired or deleted) when the window starts, and when it ends. */
  readonly queuedAtStart: number
  readonly openAtEnd: number
  /** Delivery attempts started in the window that carried at least one recipient here. */
  readonly attempts: number
  /** Recipients delivered, bounced, expired, or closed by an operator's delete, in the window. */
  readonly delivered: number
  readonly bounced: number
  readonly expired: number
  readonly deleted: number
  /** Recipient deferrals: a recipient given a temporary failure and a next attempt (one recipient may defer often). */
  readonly deferrals: number
  /** "451 4.3.2" → recipients that got it as an attempt's reply, in the window. */
  readonly replies: Readonly<Record<string, number>>
  /** Received → delivered, ms, for recipients delivered in the window. */
  readonly latency: Percentiles
  readonly series: ReadonlyArray<Bucket>
  /** Most recipients open at any moment in the window (the chart range when zoomed is inside it). */
  readonly peakDepth: number
}

export interface Report {
  /** The window the counts cover. */
  readonly from: number
  readonly to: number
  /** The range the series cover: the window, or with `zoom` the part of it that has traffic. */
  readonly chart: { readonly from: number; readonly to: number; readonly bucketMs: number; readonly zoomed: boolean }
  readonly domain?: string | undefined
  readonly destinations: ReadonlyArray<DestinationReport>
  readonly total: DestinationReport
}

interface MutableBucket {
  at: number
  open: number
  peak: number
  attempts: number
  delivered: number
  deferred: number
  bounced: number
  expired: number
}

class Acc {
  messages = 0
  recipients = 0
  queuedAtStart = 0
  attempts = 0
  delivered = 0
  bounced = 0
  expired = 0
  deleted = 0
  deferrals = 0
  replies: Record<string, number> = {}
  latencies: Array<number> = []
  open = 0
  windowPeak = 0
  /** Last bucket whose `open`/`peak` are up to date; buckets after it hold the value `open` had then. */
  last = -1
  readonly series: Array<MutableBucket>
  constructor(
    buckets: number,
    readonly chartFrom: number,
    readonly bucketMs: number
  ) {
    this.series = Array.from({ length: buckets }, (_, i) => ({
      at: chartFrom + i * bucketMs,
      open: 0,
      peak: 0,
      attempts: 0,
      delivered: 0,
      deferred: 0,
      bounced: 0,
      expired: 0
    }))
  }
  /** Brings the depth series up to bucket `i` (exclusive of changes at i): buckets without a change keep the level. */
  advance(i: number) {
    for (let b = this.last + 1; b <= i; b++) {
      const s = this.series[b]!
      s.open = this.open
      s.peak = this.open
    }
    if (i > this.last) this.last = i
  }
}

const replyKey = (r: Snapshots.DigestedReply) => `${r.code}${r.enhanced ? ` ${r.enhanced}` : ""}`

export interface ReportOptions {
  readonly from: number
  readonly to: number
  readonly domain?: string | undefined
  /** At most this many buckets over the chart range (default 120), each of a round length. */
  readonly buckets?: number
  /** Narrow the chart range to the window's traffic (first to last event in it), a little padded. */
  readonly zoom?: boolean
  readonly onProgress?: (position: number, target: number) => void
  /** For a log without an index (JetStream): open-set snapshots, so that the part before the window is not decoded. */
  readonly snapshots?: Snapshots.SnapshotStore | undefined
}

/** The chart range: the window, or the span of its events (found by two binary searches, no scan) when zoomed. */
const chartRange = async (store: Store, o: ReportOptions, head: number): Promise<{ from: number; to: number }> => {
  if (!o.zoom) return { from: o.from, to: o.to }
  const first = (await store.readAll(Math.max(0, (await positionAt(store, o.from, head)) - 1), 1))[0]
  const lastPos = (await positionAt(store, o.to + 1, head)) - 1
  const last = lastPos >= 1 ? (await store.readAll(lastPos - 1, 1))[0] : undefined
  if (!first || !last || first.event.at > o.to || last.event.at < o.from || last.event.at < first.event.at)
    return { from: o.from, to: o.to }
  const pad = Math.max(1000, Math.round((last.event.at - first.event.at) * 0.03))
  return { from: Math.max(o.from, first.event.at - pad), to: Math.min(o.to, last.event.at + pad) }
}

/** The event types `build` folds (its switch): a store that can filter (SQLite) reads no others; digests keep only them. */
const FOLDED = Snapshots.DIGESTED
const FOLDED_SET: ReadonlySet<string> = new Set(FOLDED)

export const build = async (store: Store, o: ReportOptions): Promise<Report> => {
  const head = await store.head()
  const range = await chartRange(store, o, head)
  // Buckets of a round length (1 s, 5 min, …), at most the number asked for, covering the chart range.
  const bucketMs = roundDuration(Math.max(1, Math.ceil((range.to - range.from) / Math.max(1, o.buckets ?? 120))))
  const buckets = Math.max(1, Math.ceil((range.to - range.from) / bucketMs))
  const domainFilter = o.domain?.toLowerCase()
  const accs = new Map<string, Acc>()
  const total = new Acc(buckets, range.from, bucketMs)
  const acc = (d: string) => {
    let a = accs.get(d)
    if (!a) accs.set(d, (a = new Acc(buckets, range.from, bucketMs)))
    return a
  }
  const want = (d: string) => domainFilter === undefined || d === domainFilter
  // A recipient's domain, once per address (the events name the same addresses again and again).
  const domains = new Map<string, string>()
  const domainOf = (rcpt: string) => {
    let d = domains.get(rcpt)
    if (d === undefined) domains.set(rcpt, (d = Route.domainOf(rcpt)))
    return d
  }
  // The domains already counted for one event (an event names a few recipients: an array beats a Set here).
  const seen: Array<string> = []
  // Per open message (by stream): received time and its open recipients.
  const open = new Map<string, { receivedAt: number; rcpts: Set<string> }>()
  const inWindow = (at: number) => at >= o.from && at <= o.to
  /** The chart bucket of a time, or -1 before the chart range (after it, events are not read or are clamped). */
  const bucketOf = (at: number) => (at < range.from ? -1 : Math.min(buckets - 1, Math.floor((at - range.from) / bucketMs)))
  let windowStarted = false
  const startWindow = () => {
    windowStarted = true
    for (const a of [...accs.values(), total]) a.queuedAtStart = a.windowPeak = a.open
  }
  // Defined once, outside the loop: a closure made per event costs more than the work it does.
  const level = (a: Acc, at: number, delta: number) => {
    // An event a little out of time order lands in the latest bucket already drawn, never back in time.
    const i = at < 0 ? -1 : Math.max(at, a.last)
    if (i >= 0) {
      a.advance(i)
      a.open += delta
      const s = a.series[i]!
      s.open = a.open
      if (a.open > s.peak) s.peak = a.open
    } else a.open += delta
    if (windowStarted && a.open > a.windowPeak) a.windowPeak = a.open
  }
  const change = (rcpt: string, delta: number, i: number) => {
    const d = domainOf(rcpt)
    if (!want(d)) return
    const a = acc(d)
    level(a, i, delta)
    level(total, i, delta)
  }
  /** An attempt's reply to one recipient, counted under `a` (bucket `i`, or -1). */
  const replied = (a: Acc, k: string, deferral: boolean, i: number) => {
    a.replies[k] = (a.replies[k] ?? 0) + 1
    if (deferral) {
      a.deferrals += 1
      if (i >= 0) a.series[i]!.deferred += 1
    }
  }
  /** A recipient's outcome counted under `a`; the latency when its message's arrival was folded. */
  const closed = (a: Acc, type: "RecipientDelivered" | "RecipientBounced" | "RecipientExpired", i: number, latency: number | undefined) => {
    const s = i >= 0 ? a.series[i] : undefined
    if (type === "RecipientDelivered") {
      a.delivered += 1
      if (s) s.delivered += 1
      if (latency !== undefined) a.latencies.push(latency)
    } else if (type === "RecipientBounced") {
      a.bounced += 1
      if (s) s.bounced += 1
    } else {
      a.expired += 1
      if (s) s.expired += 1
    }
  }
  const until = Math.min(head, (await positionAt(store, o.to + SLACK_MS + 1, head)) - 1)
  // One event in log order; defined once, outside the loops (a closure made per event costs more than its work).
  const apply = (stream: string, e: Snapshots.Digested) => {
    if (e.at > o.to) return
    const w = inWindow(e.at)
    if (w && !windowStarted) startWindow()
    const i = w ? bucketOf(e.at) : -1
    switch (e.type) {
      case "MessageReceived": {
        const rcpts = new Set(e.recipients)
        open.set(stream, { receivedAt: e.at, rcpts })
        for (const r of rcpts) change(r, +1, i)
        if (!w) break
        let any = false
        seen.length = 0
        for (const r of rcpts) {
          const d = domainOf(r)
          if (!want(d)) continue
          const a = acc(d)
          a.recipients += 1
          total.recipients += 1
          any = true
          if (!seen.includes(d)) {
            seen.push(d)
            a.messages += 1
          }
        }
        if (any) total.messages += 1
        break
      }
      case "AttemptStarted": {
        if (!w) break
        let any = false
        seen.length = 0
        for (const r of e.rcpts) {
          const d = domainOf(r)
          if (!want(d) || seen.includes(d)) continue
          seen.push(d)
          any = true
          const a = acc(d)
          a.attempts += 1
          if (i >= 0) a.series[i]!.attempts += 1
        }
        if (any) {
          total.attempts += 1
          if (i >= 0) total.series[i]!.attempts += 1
        }
        break
      }
      case "AttemptSucceeded":
      case "AttemptFailed":
      case "AttemptDeferred": {
        if (!w) break
        const k = replyKey(e.reply)
        const deferral = e.type === "AttemptDeferred" && e.nextAttemptAt !== null
        for (const r of e.rcpts) {
          const d = domainOf(r)
          if (!want(d)) continue
          replied(acc(d), k, deferral, i)
          replied(total, k, deferral, i)
        }
        break
      }
      case "RecipientDelivered":
      case "RecipientBounced":
      case "RecipientExpired": {
        const m = open.get(stream)
        if (m?.rcpts.delete(e.rcpt)) change(e.rcpt, -1, i)
        const d = domainOf(e.rcpt)
        if (!w || !want(d)) break
        const latency = m ? e.at - m.receivedAt : undefined
        closed(acc(d), e.type, i, latency)
        closed(total, e.type, i, latency)
        break
      }
      case "MessageCompleted": {
        // Recipients still open when a message completes were closed by an operator's delete.
        const m = open.get(stream)
        if (m)
          for (const r of m.rcpts) {
            change(r, -1, i)
            const d = domainOf(r)
            if (w && want(d)) {
              acc(d).deleted += 1
              total.deleted += 1
            }
          }
        open.delete(stream)
        break
      }
      default:
        break
    }
  }
  // With the log's index or snapshots (JetStream), the part before the window is not decoded: only the streams of the
  // messages open when it ends are read (their state is what the window starts from); with neither all of it is.
  // Without the index (JetStream), the log is read through the segments' digests (`Log.digested`): the open messages'
  // events before the window from the first one's segment on, then the window; segments without a digest yet are
  // read from the log and their digests saved.
  const snapshots = store.readIndex ? undefined : o.snapshots
  let after = 0
  if (store.readIndex || snapshots) {
    after = Math.min(until, Math.max(0, (await positionAt(store, o.from - SLACK_MS, head)) - 1))
    const streams = (await openStreams(store, after, undefined, undefined, snapshots))!
    if (snapshots) {
      let first = after
      for (const p of streams.values()) if (p - 1 < first) first = p - 1
      for await (const batch of digested(store, snapshots, { after: first, until: after }))
        for (const s of batch) if (streams.has(s.stream)) apply(s.stream, s.event)
    } else {
      const list = [...streams]
      const read = await readStreams(store, list)
      list.forEach(([stream], i) => {
        for (const s of read[i]!) if (s.position <= after && Snapshots.isDigested(s.event)) apply(stream, s.event)
      })
    }
  }
  const window = snapshots
    ? digested(store, snapshots, { after, until, onProgress: o.onProgress })
    : scan(store, { after, until, types: FOLDED, onProgress: o.onProgress })
  // Both kinds of batch hold only the folded types when the store can filter; JetStream's raw scans hold every type.
  for await (const batch of window) for (const s of batch) if (FOLDED_SET.has(s.event.type)) apply(s.stream, s.event as Snapshots.Digested)
  if (!windowStarted) startWindow()
  for (const a of [...accs.values(), total]) a.advance(buckets - 1)
  const finish = (destination: string, a: Acc): DestinationReport => ({
    destination,
    messages: a.messages,
    recipients: a.recipients,
    queuedAtStart: a.queuedAtStart,
    openAtEnd: a.open,
    attempts: a.attempts,
    delivered: a.delivered,
    bounced: a.bounced,
    expired: a.expired,
    deleted: a.deleted,
    deferrals: a.deferrals,
    replies: Object.fromEntries(Object.entries(a.replies).sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1))),
    latency: percentiles(a.latencies),
    series: a.series,
    peakDepth: a.windowPeak
  })
  // Only destinations with activity in the window or mail queued during it.
  const destinations = [...accs.entries()]
    .map(([d, a]) => finish(d, a))
    .filter((r) => r.messages + r.attempts + r.delivered + r.bounced + r.expired + r.deleted + r.queuedAtStart + r.openAtEnd > 0)
    .sort((x, y) => y.recipients - x.recipients || y.attempts - x.attempts || (x.destination < y.destination ? -1 : 1))
  return {
    from: o.from,
    to: o.to,
    chart: { from: range.from, to: range.to, bucketMs, zoomed: o.zoom === true },
    domain: domainFilter,
    destinations,
    total: finish("(all)", total)
  }
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

/** The summary table's columns: header, the unit it counts, and the cell. Shared by the text and HTML renderings. */
export const COLUMNS: ReadonlyArray<readonly [string, string, (d: DestinationReport) => string]> = [
  ["MSGS", "messages received", (d) => String(d.messages)],
  ["RCPTS", "recipients received", (d) => String(d.recipients)],
  ["QUEUED@START", "recipients open at the window's start", (d) => String(d.queuedAtStart)],
  ["ATTEMPTS", "attempts started", (d) => String(d.attempts)],
  ["DELIVERED", "recipients", (d) => String(d.delivered)],
  ["DEFERRALS", "recipient deferrals (4xx, retried later)", (d) => String(d.deferrals)],
  ["BOUNCED", "recipients", (d) => String(d.bounced)],
  ["EXPIRED", "recipients", (d) => String(d.expired)],
  ["DELETED", "recipients (operator delete)", (d) => String(d.deleted)],
  ["OPEN@END", "recipients open at the window's end", (d) => String(d.openAtEnd)],
  ["P50", "received → delivered", (d) => ms(d.latency.p50)],
  ["P90", "", (d) => ms(d.latency.p90)],
  ["P99", "", (d) => ms(d.latency.p99)],
  ["MAX", "", (d) => ms(d.latency.max)],
  ["PEAK QUEUE", "most recipients open at once", (d) => String(d.peakDepth)]
]

export const UNITS_NOTE =
  "Counts of recipients add up: QUEUED@START + RCPTS = DELIVERED + BOUNCED + EXPIRED + DELETED + OPEN@END. " +
  "A message or an attempt with recipients at several destinations counts once under each destination and once in (all)."

export const format = (r: Report, opts: { maxDepthColumns?: number } = {}): string => {
  const all = [...r.destinations, r.total]
  const out: Array<string> = []
  out.push(`Incident report ${iso(r.from)} .. ${iso(r.to)} (${ms(r.to - r.from)})${r.domain ? `, domain ${r.domain}` : ""}`)
  out.push("")
  out.push(
    table(
      ["DESTINATION", ...COLUMNS.map((c) => c[0])],
      all.map((d) => [d.destination, ...COLUMNS.map((c) => c[2](d))])
    )
  )
  out.push(UNITS_NOTE)
  out.push("")
  out.push("Reply codes (recipients given the reply by an attempt)")
  out.push(
    table(
      ["DESTINATION", "REPLY", "RCPTS"],
      all.flatMap((d) => Object.entries(d.replies).map(([k, n]) => [d.destination, k, String(n)]))
    )
  )
  out.push("")
  const cols = [...r.destinations].sort((a, b) => b.peakDepth - a.peakDepth).slice(0, opts.maxDepthColumns ?? 6)
  // The text table samples the series at no more than 24 rows (the HTML page charts every bucket).
  const step = Math.max(1, Math.ceil(r.total.series.length / 24))
  const rows: Array<Array<string>> = []
  for (let i = 0; i < r.total.series.length; i += step) {
    const j = Math.min(r.total.series.length - 1, i + step - 1)
    const peak = (s: ReadonlyArray<Bucket>) => Math.max(...s.slice(i, j + 1).map((b) => b.peak))
    rows.push([
      iso(r.total.series[j]!.at + r.chart.bucketMs),
      ...cols.map((c) => `${c.series[j]!.open} [${peak(c.series)}]`),
      `${r.total.series[j]!.open} [${peak(r.total.series)}]`
    ])
  }
  out.push(`Queue depth (open recipients at each time; the most open at once since the row before in brackets)`)
  out.push(table(["TIME", ...cols.map((c) => c.destination), "(all)"], rows))
  return out.join("\n")
}
