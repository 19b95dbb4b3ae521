// Shaping automation per site: after each attempt, the replies are read against the configured rules (core/src/Site.ts);
// a match throttles or suspends the site for the rule's duration: the change is appended to the site's stream
// (`site-<name>`: SiteThrottled / SiteSuspended, then SiteResumed when it runs out) and applied to the limiter. Must
// not decide anything about messages; a failed append is logged and the change not applied (the log stays the truth).
// In a cluster each node applies the changes it recorded itself (peers read them from the log only on restart).
import { Site, type Reply } from "@missive/core"
import { StoreError, type EventStore } from "@missive/events"
import type { Clock } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"
import type { Limiter, Shaped } from "./Limiter.js"

export interface Shaping {
  /** The replies of one attempt to `site`. Never rejects. */
  observe(site: string, replies: ReadonlyArray<Reply.Reply>): Promise<void>
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
}

/** The stream of a site's changes: its name with anything but letters, digits, "-" and "_" made "_". */
export const streamOf = (site: string): string => `site-${site.replace(/[^A-Za-z0-9_-]/g, "_")}`

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

  const load = async (site: string): Promise<Site.State> => {
    let s = Site.initial
    for (const { event } of await d.events.read(streamOf(site))) {
      if (event.type === "SiteThrottled" || event.type === "SiteSuspended" || event.type === "SiteResumed") s = Site.evolve(s, event)
      else s = { ...s, version: s.version + 1 }
    }
    return s
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
      return
    }
  }

  const ctx = () => ({ at: d.clock.now(), node: d.node, policy: d.policyHash })
  const serial = (f: () => Promise<void>): Promise<void> => {
    const p = chain.then(f).catch((e: unknown) => d.log("warn", "site shaping not recorded", { error: String((e as Error)?.message ?? e) }))
    chain = p
    return p
  }
  const schedule = (site: string, until: number): void => {
    const t = setTimeout(
      () => {
        timers.delete(t)
        void serial(() => record(site, (s) => Site.expire(s, site, ctx())))
      },
      Math.max(0, until - d.clock.now())
    )
    t.unref()
    timers.add(t)
  }

  return {
    observe: (site, replies) => {
      if (d.rules.length === 0 || !replies.some((r) => Site.ruleFor(d.rules, r))) return Promise.resolve()
      return serial(async () => {
        for (const reply of replies) await record(site, (s) => Site.observe(s, site, reply, d.rules, ctx()))
      })
    },
    close: () => {
      for (const t of timers) clearTimeout(t)
      timers.clear()
    }
  }
}
