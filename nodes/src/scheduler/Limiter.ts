// The scheduler's concurrency and rate control: at most N deliveries at once per site (a destination, or the set of
// MX hosts several domains share: Route.siteOf), M in all, and optionally at most R starts per second and per hour
// for a site (token buckets). FIFO per site; a site that is full or out of tokens never blocks another (round-robin
// across sites). Must not decide what happens to a message.
import { Site } from "@missive/core"
import type { Config } from "../config/Config.js"
import * as Presets from "../config/Presets.js"

export interface Limiter {
  run<T>(key: string, task: () => Promise<T>): Promise<T>
  /** Deliveries running now, per site. */
  running(): ReadonlyMap<string, number>
  waiting(): number
  /**
   * A site's automation change (core/src/Site.ts), in force until `until`: suspended (nothing starts) or throttled
   * (these limits instead of the configured ones); undefined lifts it. Afterwards the configured limits apply again.
   */
  shape(key: string, change: Shaped | undefined): void
  /** The limits in force for a site now (its throttle's, else its configured ones); connections always given. */
  limitsOf(key: string): SiteLimits & { readonly connections: number }
  /** Ms until a suspension of the site ends (0: none in force). */
  suspendedFor(key: string): number
}

export interface Shaped {
  readonly suspended: boolean
  readonly limits?: SiteLimits | undefined
  readonly until: number
}

/** What one site may have: connections (deliveries at once) and starts per second / per hour. */
export interface SiteLimits {
  readonly connections?: number | undefined
  readonly perSecond?: number | undefined
  readonly perHour?: number | undefined
  /** Messages over one SMTP connection before it is closed (delivery.messages_per_connection when unset). */
  readonly messagesPerConnection?: number | undefined
}

export interface LimiterOptions {
  readonly perDestination: number
  readonly total: number
  /** A site's own limits (undefined: perDestination, no rate). */
  readonly sites?: ((key: string) => SiteLimits | undefined) | undefined
  /** The clock the buckets refill by (the node's Clock). */
  readonly now?: (() => number) | undefined
  /** Calls `f` after `ms` (default: an unref'd setTimeout); a site out of tokens is tried again then. */
  readonly later?: ((ms: number, f: () => void) => void) | undefined
  /**
   * The start rates are taken elsewhere (a cluster's shared buckets, Rates.ts, inside `run`): the local buckets are
   * not used. Connections and suspensions still hold here.
   */
  readonly sharedRates?: boolean | undefined
}

interface Lane {
  running: number
  readonly queue: Array<() => void>
}

/** A token bucket: `capacity` tokens, refilled at capacity per `periodMs`. */
interface Bucket {
  tokens: number
  at: number
}

const refill = (b: Bucket, capacity: number, periodMs: number, now: number): void => {
  b.tokens = Math.min(capacity, b.tokens + ((now - b.at) * capacity) / periodMs)
  b.at = now
}

export const make = (opts: LimiterOptions): Limiter => {
  const lanes = new Map<string, Lane>()
  const buckets = new Map<string, { second?: Bucket; hour?: Bucket }>()
  const now = opts.now ?? (() => 0)
  const later =
    opts.later ??
    ((ms: number, f: () => void) => {
      setTimeout(f, ms).unref()
    })
  let total = 0
  let wakeAt: number | undefined
  const ready: Array<string> = []

  const shaped = new Map<string, Shaped>()
  /** The change in force for a site at `t`, if any (one that has run out is dropped). */
  const shapedAt = (key: string, t: number): Shaped | undefined => {
    const s = shaped.get(key)
    if (s && s.until <= t) shaped.delete(key)
    return s && s.until > t ? s : undefined
  }
  // the configured limits of a site, looked up once (the patterns are fixed for the limiter's life); bounded
  const configured = new Map<string, SiteLimits | undefined>()
  const configuredOf = (key: string): SiteLimits | undefined => {
    if (!opts.sites) return undefined
    if (configured.has(key)) return configured.get(key)
    if (configured.size >= 10_000) configured.clear()
    const l = opts.sites(key)
    configured.set(key, l)
    return l
  }
  const limits = (key: string): SiteLimits | undefined => {
    const s = shaped.size > 0 ? shaped.get(key) : undefined
    return s && !s.suspended && s.until > now() ? s.limits : configuredOf(key)
  }

  /** Ms until the site may start one more (0: now); takes the token when it may. */
  const take = (key: string, t: number): number => {
    const l = limits(key)
    if (opts.sharedRates || !l || (l.perSecond === undefined && l.perHour === undefined)) return 0
    let b = buckets.get(key)
    if (!b) buckets.set(key, (b = {}))
    const parts: Array<[Bucket, number, number]> = []
    if (l.perSecond !== undefined) parts.push([(b.second ??= { tokens: l.perSecond, at: t }), l.perSecond, 1000])
    if (l.perHour !== undefined) parts.push([(b.hour ??= { tokens: l.perHour, at: t }), l.perHour, 3_600_000])
    let wait = 0
    for (const [bucket, capacity, period] of parts) {
      refill(bucket, capacity, period, t)
      if (bucket.tokens < 1) wait = Math.max(wait, Math.ceil(((1 - bucket.tokens) * period) / capacity))
    }
    if (wait > 0) return wait
    for (const [bucket] of parts) bucket.tokens -= 1
    return 0
  }
  /** A site's buckets are dropped once full again and idle (they would only say "full"), so the map stays small. */
  const forget = (key: string, t: number): void => {
    const l = limits(key)
    const b = buckets.get(key)
    if (!l || !b) return
    if (b.second && l.perSecond !== undefined) refill(b.second, l.perSecond, 1000, t)
    if (b.hour && l.perHour !== undefined) refill(b.hour, l.perHour, 3_600_000, t)
    if ((b.second?.tokens ?? Infinity) >= (l.perSecond ?? 0) && (b.hour?.tokens ?? Infinity) >= (l.perHour ?? 0)) buckets.delete(key)
  }

  const pump = () => {
    // Start waiting tasks while capacity lasts, round-robin over sites for fairness.
    let progressed = true
    let soonest: number | undefined
    while (progressed && total < opts.total && ready.length > 0) {
      progressed = false
      const t = now()
      for (let i = 0; i < ready.length && total < opts.total; i++) {
        const key = ready[i]!
        const lane = lanes.get(key)
        const cap = limits(key)?.connections ?? opts.perDestination
        if (!lane || lane.running >= cap || lane.queue.length === 0) continue
        const change = shapedAt(key, t)
        const wait = change?.suspended ? change.until - t : take(key, t)
        if (wait > 0) {
          soonest = Math.min(soonest ?? wait, wait)
          continue
        }
        const start = lane.queue.shift()!
        lane.running += 1
        total += 1
        progressed = true
        start()
      }
      for (let i = ready.length - 1; i >= 0; i--) if ((lanes.get(ready[i]!)?.queue.length ?? 0) === 0) ready.splice(i, 1)
    }
    if (soonest !== undefined) {
      const at = now() + soonest
      if (wakeAt === undefined || at < wakeAt) {
        wakeAt = at
        later(soonest, () => {
          wakeAt = undefined
          pump()
        })
      }
    }
  }

  return {
    run: (key, task) =>
      new Promise((resolve, reject) => {
        let lane = lanes.get(key)
        if (!lane) lanes.set(key, (lane = { running: 0, queue: [] }))
        const l = lane
        l.queue.push(() => {
          task()
            .then(resolve, reject)
            .finally(() => {
              l.running -= 1
              total -= 1
              if (l.running === 0 && l.queue.length === 0) {
                lanes.delete(key)
                forget(key, now())
              }
              pump()
            })
        })
        if (!ready.includes(key)) ready.push(key)
        pump()
      }),
    running: () => new Map([...lanes].filter(([, l]) => l.running > 0).map(([k, l]) => [k, l.running])),
    waiting: () => [...lanes.values()].reduce((n, l) => n + l.queue.length, 0),
    shape: (key, change) => {
      if (change) shaped.set(key, change)
      else shaped.delete(key)
      buckets.delete(key)
      pump()
    },
    suspendedFor: (key) => {
      const t = now()
      const s = shapedAt(key, t)
      return s?.suspended ? s.until - t : 0
    },
    limitsOf: (key) => {
      const l = limits(key)
      const mpc = configuredOf(key)?.messagesPerConnection
      return { ...l, connections: l?.connections ?? opts.perDestination, ...(mpc !== undefined ? { messagesPerConnection: mpc } : {}) }
    }
  }
}

/**
 * Site limits from configuration: `patterns` maps an MX host name ("mx.example.com") or a suffix pattern
 * ("*.example.com") to limits; a site (Route.siteOf: "site:" and its MX host names) takes the first pattern one of its
 * hosts matches, any other key (a route) its own name; `defaults` apply to every site nothing matched.
 */
export const fromPatterns =
  (patterns: Readonly<Record<string, SiteLimits>>, defaults?: SiteLimits) =>
  (key: string): SiteLimits | undefined => {
    for (const [pattern, limits] of Object.entries(patterns)) if (Site.matches(pattern, key)) return limits
    return key.startsWith("site:") ? defaults : undefined
  }

/** The limits of every site a node's configuration gives: its `shaping.sites` patterns, then the shipped presets'. */
export const sitesOf = (config: Config): ((site: string) => SiteLimits | undefined) => {
  const limitsOf = (s: Config["shaping"]["defaults"]): SiteLimits => ({
    connections: s.connections,
    perSecond: s.rate_per_second,
    perHour: s.rate_per_hour,
    messagesPerConnection: s.messages_per_connection
  })
  const shaping = Presets.shapingOf(config)
  return fromPatterns(
    Object.fromEntries(Object.entries(shaping.sites).map(([p, s]) => [p, limitsOf(s)])),
    limitsOf(config.shaping.defaults)
  )
}
