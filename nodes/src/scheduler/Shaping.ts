// Shaping automation per site: after each attempt, the replies are read against the configured rules (core/src/Site.ts);
// a match throttles or suspends the site for the rule's duration: the change is appended to the site's stream
// (`site-<name>`: SiteThrottled / SiteSuspended, then SiteResumed when it runs out) and applied to the limiter. Must
// not decide anything about messages; a failed append is logged and the change not applied (the log stays the truth).
// In a cluster a change one node records reaches every node: after its append the node announces the site's new
// version to its peers (`peers`, a KV bucket in cluster mode), and each peer reads the site's stream from the log and
// applies what it says now (the log stays the truth; the notice only says where to look).
// At start (`restore`) the site streams changed within the longest rule's duration are folded again and the changes
// still in force re-applied to the limiter (a suspension outlives a restart, kill -9 included); one that ran out while
// the node was down is resumed then.
import { Site, type Reply } from "@missive/core"
import { EventStore, StoreError } from "@missive/events"
import type { Clock } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"
import type { Limiter, Shaped } from "./Limiter.js"

export interface Shaping {
  /** The replies of one attempt to `site`. Never rejects. */
  observe(site: string, replies: ReadonlyArray<Reply.Reply>): Promise<void>
  /**
   * Re-applies the changes still in force from the log (the site streams changed within the longest rule's
   * duration, plus a margin for clock skew): to call once at start, before deliveries. Rejects when the log cannot be
   * read (the caller retries). Gives the sites it re-applied.
   */
  restore(): Promise<ReadonlyArray<string>>
  close(): void
}

export interface ShapingDeps {
  readonly events: EventStore.EventStore
  readonly limiter: Limiter
  readonly rules: ReadonlyArray<Site.Rule>
  readonly clock: Clock
  readonly log: Logger
  readonly node: string
  readonly policyHash: string
  /** A cluster's notices of site changes between nodes (none embedded: one node, nothing to tell). */
  readonly peers?: Peers | undefined
}

/** Site change notices: which site's stream a node appended to, and at which version. */
export interface Notice {
  readonly site: string
  readonly node: string
  readonly version: number
}

export interface Peers {
  /** Tells the other nodes that `site`'s stream is at `version`. */
  announce(notice: Notice): Promise<void>
  /** Calls `onNotice` for every notice from now on (its own included); gives the stop function. */
  follow(onNotice: (notice: Notice) => void): () => void
}

/** The stream of a site's changes: its name with anything but letters, digits, "-" and "_" made "_". */
export const streamOf = (site: string): string => `site-${site.replace(/[^A-Za-z0-9_-]/g, "_")}`

const SITE_TYPES = ["SiteThrottled", "SiteSuspended", "SiteResumed"] as const
const isSiteEvent = (e: { readonly type: string }): e is Site.SiteEvent => (SITE_TYPES as ReadonlyArray<string>).includes(e.type)
/** Event times across nodes may be this much out of order: the restore scan starts that much earlier. */
const SKEW_MS = 5 * 60_000
/** A node that follows a peer's change resumes the site this much after its end, unless the recorder has already. */
const FOLLOWER_GRACE_MS = 2_000

/** A site's state from its stream (an event of another kind there still counts for the version). */
const fold = (stored: ReadonlyArray<EventStore.StoredEvent>): Site.State =>
  stored.reduce<Site.State>((s, { event }) => (isSiteEvent(event) ? Site.evolve(s, event) : { ...s, version: s.version + 1 }), Site.initial)

const shapedOf = (e: Site.SiteEvent): Shaped | undefined =>
  e.type === "SiteSuspended"
    ? { suspended: true, until: e.until }
    : e.type === "SiteThrottled"
      ? { suspended: false, until: e.until, limits: { connections: e.connections, perSecond: e.perSecond, perHour: e.perHour } }
      : undefined

export const make = (d: ShapingDeps): Shaping => {
  const states = new Map<string, Promise<Site.State>>()
  const timers = new Set<NodeJS.Timeout>()
  let chain: Promise<void> = Promise.resolve()

  const load = async (site: string): Promise<Site.State> => fold(await d.events.read(streamOf(site)))

  /** The site streams with a throttle or suspension at or after position `after` (the index when the store has one). */
  const changedStreams = async (after: number, head: number): Promise<Set<string>> => {
    const streams = new Set<string>()
    const types = ["SiteThrottled", "SiteSuspended"] as const
    if (d.events.readIndex)
      for (let p = after; p < head; p += 200_000)
        for (const e of await d.events.readIndex(p, Math.min(200_000, head - p), types)) streams.add(e.stream)
    else
      for (let p = after; p < head;) {
        const batch = await d.events.readAll(p, Math.min(1000, head - p))
        if (batch.length === 0) break
        for (const e of batch) if (e.event.type === "SiteThrottled" || e.event.type === "SiteSuspended") streams.add(e.stream)
        p = batch[batch.length - 1]!.position
      }
    return streams
  }

  const restore = async (): Promise<ReadonlyArray<string>> => {
    const longest = Math.max(0, ...d.rules.map((r) => r.durationMs))
    if (longest === 0) return []
    const head = await d.events.head()
    const from = await EventStore.positionAt(d.events, d.clock.now() - longest - SKEW_MS, head)
    const restored: Array<string> = []
    for (const stream of await changedStreams(from - 1, head)) {
      const stored = await d.events.read(stream)
      const last = stored
        .map((e) => e.event)
        .filter(isSiteEvent)
        .at(-1)
      if (!last) continue
      const site = last.site
      const s = fold(stored)
      states.set(site, Promise.resolve(s))
      if (s.action === undefined) continue
      if ((s.until ?? 0) > d.clock.now()) {
        d.limiter.shape(site, shapedOf(last))
        schedule(site, s.until ?? 0)
        d.log("info", "site shaping restored", { site, change: last.type, until: s.until })
        restored.push(site)
      } else void serial(() => record(site, (st) => Site.expire(st, site, ctx())))
    }
    return restored
  }
  const stateOf = (site: string): Promise<Site.State> => {
    let s = states.get(site)
    if (!s) states.set(site, (s = load(site)))
    return s
  }

  /** Appends what `decide` gives at the state's version, deciding again on a conflict; applies it to the limiter. */
  const record = async (site: string, decide: (s: Site.State) => ReadonlyArray<Site.SiteEvent>): Promise<void> => {
    for (let tries = 0; tries < 3; tries++) {
      const s = await stateOf(site)
      const events = decide(s)
      if (events.length === 0) return
      try {
        await d.events.append(streamOf(site), s.version, events)
      } catch (e) {
        if (StoreError.isWrongExpectedVersion(e)) {
          states.delete(site)
          continue
        }
        throw e
      }
      const after = events.reduce(Site.evolve, s)
      states.set(site, Promise.resolve(after))
      for (const e of events) {
        d.limiter.shape(site, shapedOf(e))
        d.log("info", "site shaping", { site, change: e.type, ...(e.type !== "SiteResumed" ? { until: e.until, rule: e.rule } : {}) })
        if (e.type !== "SiteResumed") schedule(site, e.until)
      }
      if (d.peers)
        await d.peers
          .announce({ site, node: d.node, version: after.version })
          .catch((e: unknown) => d.log("warn", "site shaping not announced", { site, error: String((e as Error)?.message ?? e) }))
      return
    }
  }

  const ctx = () => ({ at: d.clock.now(), node: d.node, policy: d.policyHash })
  const serial = (f: () => Promise<void>): Promise<void> => {
    const p = chain.then(f).catch((e: unknown) => d.log("warn", "site shaping not recorded", { error: String((e as Error)?.message ?? e) }))
    chain = p
    return p
  }
  /**
   * A peer's change: the site's stream read again (until it reaches the announced version: a replica may answer
   * before it has the append) and its last change applied, or lifted when the site was resumed. A follower's resume
   * is due a little after the recorder's, which normally records it first (the follower then finds nothing to do).
   */
  const follow = async (n: Notice): Promise<void> => {
    let stored: ReadonlyArray<EventStore.StoredEvent> = []
    for (let tries = 0; tries < 20; tries++) {
      stored = await d.events.read(streamOf(n.site))
      if (stored.length >= n.version) break
      await new Promise((r) => setTimeout(r, 100))
    }
    const s = fold(stored)
    const known = await stateOf(n.site).catch(() => Site.initial)
    if (s.version < known.version) return
    states.set(n.site, Promise.resolve(s))
    const last = stored
      .map((e) => e.event)
      .filter(isSiteEvent)
      .at(-1)
    if (s.action !== undefined && last && (s.until ?? 0) > d.clock.now()) {
      d.limiter.shape(n.site, shapedOf(last))
      schedule(n.site, (s.until ?? 0) + FOLLOWER_GRACE_MS)
      d.log("info", "site shaping followed", { site: n.site, change: last.type, until: s.until, from: n.node })
    } else if (s.action === undefined) {
      d.limiter.shape(n.site, undefined)
      d.log("info", "site shaping followed", { site: n.site, change: "SiteResumed", from: n.node })
    }
  }
  const unfollow = d.peers?.follow((n) => {
    if (n.node !== d.node && d.rules.length > 0) void serial(() => follow(n))
  })

  const schedule = (site: string, until: number): void => {
    const t = setTimeout(
      () => {
        timers.delete(t)
        // Timers run on the monotonic clock and may fire a little before the wall clock reaches `until`: expiring
        // then decides nothing, and the site would stay suspended in the log (the limiter lifts it by time alone).
        if (d.clock.now() < until) return schedule(site, until)
        void serial(() => record(site, (s) => Site.expire(s, site, ctx())))
      },
      Math.max(0, until - d.clock.now())
    )
    t.unref()
    timers.add(t)
  }

  return {
    observe: (site, replies) => {
      if (d.rules.length === 0 || !replies.some((r) => Site.ruleFor(d.rules, r, site))) return Promise.resolve()
      return serial(async () => {
        for (const reply of replies) await record(site, (s) => Site.observe(s, site, reply, d.rules, ctx()))
      })
    },
    restore,
    close: () => {
      unfollow?.()
      for (const t of timers) clearTimeout(t)
      timers.clear()
    }
  }
}
