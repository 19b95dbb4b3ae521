// The operator's live view, folded from the event log (the one source of every view): counts of outcomes by
// destination, the queue per destination (messages with a recipient still to deliver there, the oldest one's age),
// per-minute throughput over the last hour, queue depth samples, the newest events (for the dashboard's live feed)
// and an index of recent messages by address (the dashboard's search). It subscribes to the EventStore port from the
// log's head and seeds the queue from the work index (folding each queued message once), so a restart shows the queue
// at once; the log's last hour (at most HISTORY_EVENTS events) is folded back into the throughput, the feed and the
// search, so a restart does not blank them either. The counts (and the metrics made of them) and the queue depth
// samples begin at the node's start. Must not write anything; it holds one small entry per queued message.
import { Message } from "@missive/core"
import { EventStore, Timeline, type Work } from "@missive/events"
import type { Clock } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"

export type Outcome = "delivered" | "deferred" | "bounced" | "expired"

/** Destination label of a recipient not routed yet (or routed nowhere). */
export const UNROUTED = "(unrouted)"
/** Beyond this many distinct destinations, new ones are counted as "(other)": the labels stay bounded. */
export const MAX_DESTINATIONS = 500
const OTHER = "(other)"
const MINUTE = 60_000
const HOUR_MINUTES = 60
const SAMPLE_MS = 10_000
const RECENT_EVENTS = 200
const RECENT_MESSAGES = 20_000
const SEED_LIMIT = 100_000
/** At most this many of the log's newest events are folded back at start (the last hour's, or fewer). */
export const HISTORY_EVENTS = 200_000
/** How much earlier than the hour the fold looks, for events appended a little out of time order (nodes' clocks). */
const SKEW_MS = 60_000

export interface FeedItem {
  readonly position: number
  readonly at: number
  readonly node: string
  readonly id: string
  readonly type: string
  readonly summary: string
}

export interface QueueDepth {
  readonly destination: string
  readonly messages: number
  readonly oldestAt: number
}

export interface Counts {
  /** Messages this node accepted (MessageReceived recorded by this node). */
  readonly received: number
  /** Per destination, per outcome: recipients. */
  readonly outcomes: ReadonlyMap<string, Readonly<Record<Outcome, number>>>
  /** Per destination, per reply class ("2xx", "4xx", "5xx"): attempts ended. */
  readonly attempts: ReadonlyMap<string, ReadonlyMap<string, number>>
  /** Every event seen, by type (all nodes). */
  readonly events: ReadonlyMap<string, number>
}

export interface Series {
  /** Minute starts (epoch ms), oldest first: the last hour. */
  readonly minutes: ReadonlyArray<number>
  readonly received: ReadonlyArray<number>
  /** Delivered recipients per minute, per destination. */
  readonly delivered: Readonly<Record<string, ReadonlyArray<number>>>
  /** Queue depth samples (every 10 s) per destination. */
  readonly depth: { readonly times: ReadonlyArray<number>; readonly byDestination: Readonly<Record<string, ReadonlyArray<number>>> }
  /** Since when the throughput series is complete: an hour ago, or the oldest event folded back at start. */
  readonly since: number
  /** The node's start: the queue depth samples, and the counts, begin there. */
  readonly started: number
}

export interface View {
  start(): Promise<void>
  /** True once the queue has been seeded from the work index. */
  seeded(): boolean
  counts(): Counts
  depth(): ReadonlyArray<QueueDepth>
  held(): number
  series(): Series
  recent(n: number): ReadonlyArray<FeedItem>
  /** Live feed: `f` gets every event as it is appended; returns the unsubscribe. */
  follow(f: (item: FeedItem) => void): () => void
  /** Recent message ids whose sender or a recipient contains `needle` (case-insensitive), newest first. */
  search(needle: string, limit: number): ReadonlyArray<string>
  close(): void
}

interface Entry {
  readonly at: number
  version: number
  held: boolean
  /** Recipient → destination of its latest attempt (UNROUTED before one); final recipients are removed. */
  readonly open: Map<string, string>
}

const classOf = (code: number): string => (code >= 200 && code < 600 ? `${Math.floor(code / 100)}xx` : "none")

export const make = (d: {
  events: EventStore.EventStore
  work: Work.Work
  clock: Clock
  log: Logger
  node: string
  /** At most this many of the log's newest events folded back at start (default HISTORY_EVENTS). */
  historyEvents?: number
}): View => {
  const entries = new Map<string, Entry>()
  const destinations = new Set<string>()
  const outcomes = new Map<string, Record<Outcome, number>>()
  const attempts = new Map<string, Map<string, number>>()
  const eventCounts = new Map<string, number>()
  const receivedByMinute = new Map<number, number>()
  const deliveredByMinute = new Map<string, Map<number, number>>()
  const samples: Array<{ at: number; byDestination: Map<string, number> }> = []
  // The newest events as stored: described (a string per event) only when someone reads or follows the feed.
  const feed: Array<EventStore.StoredEvent> = []
  const followers = new Set<(item: FeedItem) => void>()
  const recentMessages = new Map<string, string>()
  let received = 0
  let isSeeded = false
  let buffered: Array<EventStore.StoredEvent> | undefined = []
  let unsubscribe: (() => void) | undefined
  let sampler: NodeJS.Timeout | undefined
  let started = d.clock.now()
  let since = started
  /** While the log's history is folded at start: each message's recipient → destination of its latest attempt. */
  let historyRoutes: Map<string, Map<string, string>> | undefined

  const label = (dest: string): string => {
    if (destinations.has(dest)) return dest
    if (destinations.size >= MAX_DESTINATIONS) return OTHER
    destinations.add(dest)
    return dest
  }

  const outcome = (dest: string, what: Outcome, n = 1) => {
    const l = label(dest)
    const o = outcomes.get(l) ?? { delivered: 0, deferred: 0, bounced: 0, expired: 0 }
    o[what] += n
    outcomes.set(l, o)
  }

  const minuteOf = (at: number) => Math.floor(at / MINUTE) * MINUTE

  const perMinute = (series: Map<number, number>, at: number) => series.set(minuteOf(at), (series.get(minuteOf(at)) ?? 0) + 1)

  /** A recipient delivered to `dest` at `at`: the throughput series. */
  const countDelivered = (dest: string, at: number) => {
    const l = label(dest)
    const series = deliveredByMinute.get(l) ?? new Map<number, number>()
    perMinute(series, at)
    deliveredByMinute.set(l, series)
  }

  const remember = (id: string, addresses: string) => {
    recentMessages.delete(id)
    recentMessages.set(id, addresses)
    if (recentMessages.size > RECENT_MESSAGES) recentMessages.delete(recentMessages.keys().next().value!)
  }

  /**
   * Folds one event. `live` (the subscription): everything. Not live (the log's history, folded back at start): only
   * the throughput series, the feed and the search; the counts and the queue begin at the node's start.
   */
  const apply = (s: EventStore.StoredEvent, live = true) => {
    const e = s.event
    const id = EventStore.idOf(s.stream)
    const mine = e.node === d.node
    if (!live) return history(s, id, mine)
    eventCounts.set(e.type, (eventCounts.get(e.type) ?? 0) + 1)
    const known = entries.get(id)
    // An event the seed's fold already holds is counted, but not applied to the entry twice.
    let entry = known !== undefined && s.version <= known.version ? undefined : known
    if (entry !== undefined) entry.version = s.version
    const destOf = (rcpt: string) => known?.open.get(rcpt) ?? UNROUTED
    switch (e.type) {
      case "MessageReceived":
        if (known === undefined) {
          entry = { at: e.at, version: s.version, held: false, open: new Map(e.recipients.map((r) => [r, UNROUTED])) }
          entries.set(id, entry)
        }
        remember(id, `${e.sender}\n${e.recipients.join("\n")}`.toLowerCase())
        if (mine) {
          received += 1
          perMinute(receivedByMinute, e.at)
        }
        break
      case "AttemptStarted":
        for (const r of e.rcpts) entry?.open.set(r, e.destination)
        break
      case "AttemptSucceeded":
      case "AttemptFailed":
      case "AttemptDeferred": {
        if (!mine) break
        const dest = label(destOf(e.rcpts[0] ?? ""))
        const byClass = attempts.get(dest) ?? new Map<string, number>()
        const c = classOf(e.reply.code)
        byClass.set(c, (byClass.get(c) ?? 0) + 1)
        attempts.set(dest, byClass)
        if (e.type === "AttemptDeferred") for (const r of e.rcpts) outcome(destOf(r), "deferred")
        break
      }
      case "RecipientDelivered":
      case "RecipientBounced":
      case "RecipientExpired": {
        const dest = destOf(e.rcpt)
        if (mine) {
          outcome(dest, e.type === "RecipientDelivered" ? "delivered" : e.type === "RecipientBounced" ? "bounced" : "expired")
          if (e.type === "RecipientDelivered") countDelivered(dest, e.at)
        }
        entry?.open.delete(e.rcpt)
        break
      }
      case "MessageHeld":
        if (entry) entry.held = true
        break
      case "MessageReleased":
        if (entry) entry.held = false
        break
      case "MessageCompleted":
        if (entry) entries.delete(id)
        break
      default:
        break
    }
    feed.push(s)
    if (feed.length > RECENT_EVENTS) feed.shift()
    if (followers.size > 0) {
      const item = itemOf(s)
      for (const f of followers) f(item)
    }
  }

  const history = (s: EventStore.StoredEvent, id: string, mine: boolean) => {
    const e = s.event
    const routes = historyRoutes ?? new Map<string, Map<string, string>>()
    switch (e.type) {
      case "MessageReceived":
        remember(id, `${e.sender}\n${e.recipients.join("\n")}`.toLowerCase())
        if (mine) perMinute(receivedByMinute, e.at)
        break
      case "AttemptStarted": {
        const byRcpt = routes.get(id) ?? new Map<string, string>()
        for (const r of e.rcpts) byRcpt.set(r, e.destination)
        routes.set(id, byRcpt)
        break
      }
      case "RecipientDelivered":
        if (mine) countDelivered(routes.get(id)?.get(e.rcpt) ?? UNROUTED, e.at)
        break
      case "MessageCompleted":
        routes.delete(id)
        break
      default:
        break
    }
    feed.push(s)
    if (feed.length > RECENT_EVENTS) feed.shift()
  }

  /**
   * Folds back the log's last hour up to `head`, at most HISTORY_EVENTS events (a little before the hour, for the
   * nodes' clocks: events are kept by their own time).
   */
  const foldHistory = async (head: number) => {
    const hourAgo = minuteOf(started) - (HOUR_MINUTES - 1) * MINUTE
    const from = Math.max(
      0,
      (await EventStore.positionAt(d.events, hourAgo - SKEW_MS, head)) - 1,
      head - (d.historyEvents ?? HISTORY_EVENTS)
    )
    // the hour is complete unless the cap cut it: the event just before the fold is older than it, or there is none
    const before = from === 0 ? undefined : (await d.events.readAll(from - 1, 1))[0]
    const complete = before === undefined || before.event.at < hourAgo
    historyRoutes = new Map()
    let oldest: number | undefined
    try {
      for (let p = from; p < head;) {
        const batch = await d.events.readAll(p, 1000)
        if (batch.length === 0) break
        for (const s of batch) {
          if (s.position > head) break
          if (s.event.at < hourAgo) continue
          oldest ??= s.event.at
          apply(s, false)
        }
        p = batch[batch.length - 1]!.position
        // an embedded store reads synchronously underneath: let the node's I/O run between pages
        await new Promise((r) => setImmediate(r))
      }
    } finally {
      historyRoutes = undefined
    }
    since = complete ? hourAgo : Math.min(started, oldest ?? started)
  }

  const itemOf = (s: EventStore.StoredEvent): FeedItem => ({
    position: s.position,
    at: s.event.at,
    node: s.event.node,
    id: EventStore.idOf(s.stream),
    type: s.event.type,
    summary: Timeline.describe(s.event).slice(0, 300)
  })

  const depth = (): ReadonlyArray<QueueDepth> => {
    const by = new Map<string, { messages: number; oldestAt: number }>()
    for (const entry of entries.values()) {
      const seen = new Set<string>()
      for (const dest of entry.open.values()) {
        const l = label(dest)
        if (seen.has(l)) continue
        seen.add(l)
        const cur = by.get(l)
        if (cur === undefined) by.set(l, { messages: 1, oldestAt: entry.at })
        else {
          cur.messages += 1
          cur.oldestAt = Math.min(cur.oldestAt, entry.at)
        }
      }
    }
    return [...by.entries()].map(([destination, v]) => ({ destination, ...v })).sort((a, b) => b.messages - a.messages)
  }

  const sample = () => {
    const now = d.clock.now()
    samples.push({ at: now, byDestination: new Map(depth().map((q) => [q.destination, q.messages])) })
    while (samples.length > 0 && samples[0]!.at < now - HOUR_MINUTES * MINUTE) samples.shift()
    const oldest = minuteOf(now) - HOUR_MINUTES * MINUTE
    for (const m of receivedByMinute.keys()) if (m < oldest) receivedByMinute.delete(m)
    for (const s of deliveredByMinute.values()) for (const m of s.keys()) if (m < oldest) s.delete(m)
  }

  /** Folds each queued message once (at most SEED_LIMIT), then applies what arrived meanwhile (by stream version). */
  const seed = async () => {
    const items = await d.work.list(SEED_LIMIT)
    for (let i = 0; i < items.length; i += 64) {
      await Promise.all(
        items.slice(i, i + 64).map(async (item) => {
          let stored = await d.events.read(EventStore.streamOf(item.id))
          const evs = stored.length > 0 ? stored.map((s) => s.event) : [...(item.carried?.events ?? [])]
          const state = Message.fold(evs)
          if (state.status !== "active" || entries.has(item.id)) return
          const open = new Map<string, string>()
          const last = new Map<string, string>()
          for (const e of evs) if (e.type === "AttemptStarted") for (const r of e.rcpts) last.set(r, e.destination)
          for (const r of state.recipients)
            if (r.status !== "delivered" && r.status !== "bounced" && r.status !== "expired")
              open.set(r.address, last.get(r.address) ?? UNROUTED)
          entries.set(item.id, { at: state.receivedAt, version: stored.length, held: state.held, open })
          remember(item.id, `${state.sender}\n${state.recipients.map((r) => r.address).join("\n")}`.toLowerCase())
          stored = []
        })
      )
    }
  }

  return {
    start: async () => {
      started = d.clock.now()
      since = started
      const head = await d.events.head()
      unsubscribe = d.events.subscribe(head, (s) => {
        if (buffered) buffered.push(s)
        else apply(s)
      })
      void foldHistory(head)
        .catch((e: unknown) => d.log("warn", "view: folding back the log's last hour failed", { error: String(e) }))
        .then(() => seed())
        .catch((e: unknown) => d.log("warn", "view: seeding the queue from the work index failed", { error: String(e) }))
        .finally(() => {
          const pending = buffered ?? []
          buffered = undefined
          for (const s of pending) apply(s)
          isSeeded = true
          sample()
        })
      sampler = setInterval(sample, SAMPLE_MS)
    },
    seeded: () => isSeeded,
    counts: () => ({ received, outcomes, attempts, events: eventCounts }),
    depth,
    held: () => {
      let n = 0
      for (const e of entries.values()) if (e.held) n += 1
      return n
    },
    series: () => {
      const now = d.clock.now()
      const first = minuteOf(now) - (HOUR_MINUTES - 1) * MINUTE
      const minutes = Array.from({ length: HOUR_MINUTES }, (_, i) => first + i * MINUTE)
      const delivered: Record<string, Array<number>> = {}
      for (const [dest, s] of deliveredByMinute) delivered[dest] = minutes.map((m) => s.get(m) ?? 0)
      const points = [...samples, { at: now, byDestination: new Map(depth().map((q) => [q.destination, q.messages])) }]
      const names = new Set(points.flatMap((p) => [...p.byDestination.keys()]))
      const byDestination: Record<string, Array<number>> = {}
      for (const n of names) byDestination[n] = points.map((p) => p.byDestination.get(n) ?? 0)
      return {
        minutes,
        received: minutes.map((m) => receivedByMinute.get(m) ?? 0),
        delivered,
        depth: { times: points.map((p) => p.at), byDestination },
        since,
        started
      }
    },
    recent: (n) => (n <= 0 ? [] : feed.slice(-n).map(itemOf)),
    follow: (f) => {
      followers.add(f)
      return () => void followers.delete(f)
    },
    search: (needle, limit) => {
      const q = needle.toLowerCase()
      const out: Array<string> = []
      const ids = [...recentMessages.keys()]
      for (let i = ids.length - 1; i >= 0 && out.length < limit; i--) if (recentMessages.get(ids[i]!)!.includes(q)) out.push(ids[i]!)
      return out
    },
    close: () => {
      unsubscribe?.()
      if (sampler) clearInterval(sampler)
      followers.clear()
    }
  }
}
