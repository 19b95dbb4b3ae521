// `missive replay what-if`: feeds the recorded arrivals of a window and the recorded behaviour of every destination
// (which reply it gave when, and how long an attempt took) through the pure decider under a virtual clock with an
// alternative policy (retry schedule, lifetime, per-destination and total concurrency), and compares the outcome
// with what was recorded. Deterministic: seeded jitter, ordered event queue, no clock and no I/O beyond reading the log.
// Each message follows core's drive plan (core/src/Drive.ts), the node's own: what-if cannot drift from the node.
// The sites' automation is re-decided too: every simulated attempt's replies go through core's Site decider with the
// alternative's `shaping.rules` (the node's Shaping does the same), so a throttle or suspension happens when the
// alternative rules say, not when the recorded ones did; recorded and re-decided site changes are both counted.
import { Drive, Message, Reply, Route, Site, type Policy } from "@missive/core"
import { EventStore } from "@missive/events"
import * as E from "fp-ts/lib/Either.js"
import { Clock } from "@missive/node"
import { positionAt, scan, SLACK_MS, type Store } from "./Log.js"
import { percentiles, type Percentiles } from "../Report.js"
import { formatDuration, iso } from "./Time.js"

export interface AltPolicy {
  readonly retry: Policy.RetryPolicy
  readonly concurrencyPerDestination: number
  readonly maxConnections: number
  /** Recorded in the simulated events' `policy`. */
  readonly hash: string
  /** The sites' automation rules (`shaping.rules`): re-decided on the simulated attempts' replies. */
  readonly rules?: ReadonlyArray<Site.Rule> | undefined
}

/** Site automation changes (SiteThrottled, SiteSuspended, SiteResumed), counted. */
export interface SiteChanges {
  readonly throttled: number
  readonly suspended: number
  readonly resumed: number
}

interface Arrival {
  readonly id: string
  readonly event: Message.EventOf<"MessageReceived">
}

interface Sample {
  readonly at: number
  readonly host: string
  readonly reply: Reply.Reply
  readonly durationMs: number
}

/** An operator command the log records (by whom, when), replayed at its time. */
export interface Operation {
  readonly id: string
  readonly at: number
  readonly op: "hold" | "release" | "retry" | "delete"
  readonly by: string
  readonly reason?: string | undefined
}

/** One recorded attempt of one message: who answered, how long it took, each recipient's reply. */
export interface RecordedAttempt {
  readonly host: string
  readonly durationMs: number
  readonly replies: ReadonlyMap<string, Reply.Reply>
}

/** What the log says: arrivals in the window, routes, destination behaviour, per-recipient permanent replies. */
export interface Recording {
  readonly from: number
  readonly to: number
  /** Time of the last event read: neither side is followed past it. */
  readonly horizon: number
  readonly arrivals: ReadonlyArray<Arrival>
  readonly routes: ReadonlyMap<string, Route.RouteDecision>
  readonly behaviour: ReadonlyMap<string, ReadonlyArray<Sample>>
  readonly permanent: ReadonlyMap<string, Reply.Reply>
  /** Every attempt of the window's messages, by message and attempt number (`replies: "message"` replays these). */
  readonly attempts?: ReadonlyMap<string, RecordedAttempt> | undefined
  /** Operator commands on the window's messages, in log order. */
  readonly operations?: ReadonlyArray<Operation> | undefined
  readonly recorded: Outcome
  /** The site changes the log records from the window's start to its horizon. */
  readonly siteChanges?: SiteChanges | undefined
  readonly policies: ReadonlyArray<string>
  readonly eventsRead: number
}

export interface Outcome {
  readonly messages: number
  readonly recipients: number
  readonly delivered: number
  readonly bounced: number
  readonly expired: number
  readonly queued: number
  readonly attempts: number
  readonly latency: Percentiles
  readonly peakQueue: number
}

const key2 = (id: string, rcpt: string) => `${id}\u0000${rcpt}`

/** Reads the window's arrivals and everything that happened to them (up to the head), and every attempt as behaviour. */
export const record = async (
  store: Store,
  o: { from: number; to: number; onProgress?: (p: number, t: number) => void }
): Promise<Recording> => {
  const head = await store.head()
  const start = Math.max(0, (await positionAt(store, o.from - SLACK_MS, head)) - 1)
  const arrivals: Array<Arrival> = []
  const tracked = new Map<string, { receivedAt: number }>()
  const started = new Map<string, Map<number, { at: number; key: string }>>()
  const routes = new Map<string, Route.RouteDecision>()
  const behaviour = new Map<string, Array<Sample>>()
  const permanent = new Map<string, Reply.Reply>()
  const recordedAttempts = new Map<string, { host: string; durationMs: number; replies: Map<string, Reply.Reply> }>()
  const operations: Array<Operation> = []
  const policies = new Set<string>()
  const latencies: Array<number> = []
  const depthChanges: Array<[number, number]> = []
  const siteChanges = { throttled: 0, suspended: 0, resumed: 0 }
  let delivered = 0,
    bounced = 0,
    expired = 0,
    attempts = 0,
    recipients = 0,
    horizon = o.to,
    eventsRead = 0
  for await (const batch of scan(store, { after: start, until: head, onProgress: o.onProgress })) {
    eventsRead += batch.length
    for (const { stream, event: e } of batch) {
      if (e.at > horizon) horizon = e.at
      if (e.type === "SiteThrottled" || e.type === "SiteSuspended" || e.type === "SiteResumed") {
        if (e.at >= o.from)
          siteChanges[e.type === "SiteThrottled" ? "throttled" : e.type === "SiteSuspended" ? "suspended" : "resumed"] += 1
        continue
      }
      const id = EventStore.idOf(stream)
      if (e.type === "AttemptStarted") {
        let m = started.get(id)
        if (!m) started.set(id, (m = new Map()))
        m.set(e.attempt, { at: e.at, key: e.destination })
      } else if (e.type === "AttemptSucceeded" || e.type === "AttemptDeferred" || e.type === "AttemptFailed") {
        const s = started.get(id)?.get(e.attempt)
        if (s) {
          if (e.type === "AttemptFailed") for (const r of e.rcpts) permanent.set(key2(id, r), e.reply)
          else {
            let list = behaviour.get(s.key)
            if (!list) behaviour.set(s.key, (list = []))
            list.push({ at: e.at, host: e.host, reply: e.reply, durationMs: Math.max(0, e.at - s.at) })
          }
        }
      } else if (e.type === "MessageCompleted") started.delete(id)
      if (e.type === "MessageReceived") {
        if (e.at < o.from || e.at > o.to || e.dsnOf !== undefined || e.sender === "") continue
        arrivals.push({ id, event: e })
        tracked.set(id, { receivedAt: e.at })
        recipients += e.recipients.length
        depthChanges.push([e.at, +1])
        policies.add(e.policy)
        continue
      }
      const t = tracked.get(id)
      if (!t) continue
      policies.add(e.policy)
      switch (e.type) {
        case "RecipientsRouted":
          for (const r of e.routes) if (!routes.has(key2(id, r.rcpt))) routes.set(key2(id, r.rcpt), r)
          break
        case "AttemptStarted":
          attempts += 1
          break
        case "AttemptSucceeded":
        case "AttemptDeferred":
        case "AttemptFailed": {
          const k = key2(id, String(e.attempt))
          const a = recordedAttempts.get(k) ?? {
            host: e.host,
            durationMs: Math.max(0, e.at - (started.get(id)?.get(e.attempt)?.at ?? e.at)),
            replies: new Map()
          }
          for (const r of e.rcpts) a.replies.set(r, e.reply)
          recordedAttempts.set(k, a)
          break
        }
        case "MessageHeld":
          operations.push({ id, at: e.at, op: "hold", by: e.by, reason: e.reason })
          break
        case "MessageReleased":
          operations.push({ id, at: e.at, op: "release", by: e.by })
          break
        case "RetryRequested":
          operations.push({ id, at: e.at, op: "retry", by: e.by })
          break
        case "MessageDeleted":
          operations.push({ id, at: e.at, op: "delete", by: e.by })
          break
        case "RecipientDelivered":
          delivered += 1
          latencies.push(e.at - t.receivedAt)
          break
        case "RecipientBounced":
          bounced += 1
          break
        case "RecipientExpired":
          expired += 1
          break
        case "MessageCompleted":
          depthChanges.push([e.at, -1])
          tracked.delete(id)
          break
        default:
          break
      }
    }
  }
  for (const list of behaviour.values()) list.sort((a, b) => a.at - b.at)
  return {
    from: o.from,
    to: o.to,
    horizon,
    arrivals,
    routes,
    behaviour,
    permanent,
    attempts: recordedAttempts,
    operations,
    siteChanges,
    policies: [...policies],
    eventsRead,
    recorded: {
      messages: arrivals.length,
      recipients,
      delivered,
      bounced,
      expired,
      queued: recipients - delivered - bounced - expired,
      attempts,
      latency: percentiles(latencies),
      peakQueue: peakOf(depthChanges)
    }
  }
}

const peakOf = (changes: Array<[number, number]>): number => {
  changes.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  let cur = 0,
    peak = 0
  for (const [, d] of changes) {
    cur += d
    if (cur > peak) peak = cur
  }
  return peak
}

/** The reply a destination gave at time t: its last recorded reply at or before t (or its first, before any). */
const sampleAt = (list: ReadonlyArray<Sample> | undefined, t: number): Sample | undefined => {
  if (!list || list.length === 0) return undefined
  let lo = 0,
    hi = list.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (list[mid]!.at <= t) lo = mid + 1
    else hi = mid
  }
  return list[Math.max(0, lo - 1)]
}

// A binary min-heap of timed tasks; ties keep insertion order, so a run is deterministic.
interface Task {
  readonly t: number
  readonly seq: number
  readonly run: () => void
}
class Heap {
  private a: Array<Task> = []
  get size() {
    return this.a.length
  }
  push(x: Task) {
    const a = this.a
    a.push(x)
    let i = a.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (less(a[p]!, x)) break
      a[i] = a[p]!
      i = p
    }
    a[i] = x
  }
  pop(): Task | undefined {
    const a = this.a
    const top = a[0]
    const last = a.pop()
    if (a.length === 0 || last === undefined) return top
    let i = 0
    for (;;) {
      const l = 2 * i + 1,
        r = l + 1
      let m = i
      if (l < a.length && less(a[l]!, last)) m = l
      if (r < a.length && less(a[r]!, m === i ? last : a[m]!)) m = r
      if (m === i) break
      a[i] = a[m]!
      i = m
    }
    a[i] = last
    return top
  }
}
const less = (x: Task, y: Task) => x.t < y.t || (x.t === y.t && x.seq < y.seq)

export interface SimResult {
  readonly outcome: Outcome
  /** Tasks the virtual clock ran. */
  readonly steps: number
  readonly unknownDestinations: ReadonlyArray<string>
  /** The site changes the alternative's rules decided on the simulated replies. */
  readonly siteChanges: SiteChanges
}

export interface SimOptions {
  readonly seed?: number
  readonly node?: string
  /**
   * Where an attempt's replies come from. "destination" (default): the reply the destination gave at that moment
   * (its last recorded reply at or before it), the model for another policy. "message": the reply each recipient got
   * on the same attempt of the same message (falling back to "destination" past the recording), the model for
   * replaying the recorded policy exactly.
   */
  readonly replies?: "destination" | "message"
  readonly onEvents?: (id: string, events: ReadonlyArray<Message.Event>) => void
}

/** Runs the recorded arrivals (and operator commands) under `alt` on a virtual clock, up to the recording's horizon. */
export const simulate = (rec: Recording, alt: AltPolicy, opts: SimOptions = {}): SimResult => {
  const random = Clock.seededRandom(opts.seed ?? 1)
  const node = opts.node ?? "what-if"
  const heap = new Heap()
  let seq = 0
  let now = rec.from
  let steps = 0
  let nextId = 0
  const at = (t: number, run: () => void) => heap.push({ t, seq: seq++, run })
  const states = new Map<string, Message.State>()
  const inFlight = new Map<string, number>()
  const scheduled = new Map<string, number>()
  const lanes = new Map<string, { running: number; readonly site: string; queue: Array<() => void> }>()
  // The sites' automation, as the node's Shaping runs it: each site's state, the change in force, deliveries running.
  const rules = alt.rules ?? []
  const sites = new Map<string, Site.State>()
  const shaped = new Map<string, { suspended: boolean; until: number; connections?: number | undefined }>()
  const siteRunning = new Map<string, number>()
  const siteChanges = { throttled: 0, suspended: 0, resumed: 0 }
  let total = 0
  const waitingKeys: Array<string> = []
  const unknown = new Set<string>()
  let delivered = 0,
    bounced = 0,
    expired = 0,
    attempts = 0,
    active = 0,
    peak = 0
  const latencies: Array<number> = []
  const ctx = (): Message.Ctx => ({ at: now, node, policy: alt.hash })
  const dsnId = () => `what-if-${++nextId}`

  /** The node's command handler without a store: decide on the current state, fold, count. No conflicts here. */
  const commit = (id: string, events: ReadonlyArray<Message.Event>) => {
    let next = states.get(id)!
    for (const e of events) {
      next = Message.evolve(next, e)
      if (e.type === "AttemptStarted") attempts += 1
      else if (e.type === "RecipientDelivered") {
        delivered += 1
        latencies.push(e.at - (next as Message.Live).receivedAt)
      } else if (e.type === "RecipientBounced") bounced += 1
      else if (e.type === "RecipientExpired") expired += 1
      else if (e.type === "MessageCompleted") active -= 1
    }
    states.set(id, next)
    if (events.length > 0) opts.onEvents?.(id, events)
  }
  const apply = (id: string, c: Message.Command): boolean => {
    const r = Message.decide(c, states.get(id)!)
    if (E.isLeft(r)) return false
    commit(id, r.right)
    return true
  }

  const pump = () => {
    let progressed = true
    while (progressed && total < alt.maxConnections && waitingKeys.length > 0) {
      progressed = false
      for (let i = 0; i < waitingKeys.length && total < alt.maxConnections; i++) {
        const lane = lanes.get(waitingKeys[i]!)!
        if (lane.running >= alt.concurrencyPerDestination || lane.queue.length === 0) continue
        const change = shaped.get(lane.site)
        if (change && change.until > now && (change.suspended || (siteRunning.get(lane.site) ?? 0) >= (change.connections ?? Infinity)))
          continue
        lane.running += 1
        siteRunning.set(lane.site, (siteRunning.get(lane.site) ?? 0) + 1)
        total += 1
        progressed = true
        lane.queue.shift()!()
      }
      for (let i = waitingKeys.length - 1; i >= 0; i--) if (lanes.get(waitingKeys[i]!)!.queue.length === 0) waitingKeys.splice(i, 1)
    }
  }
  const limited = (key: string, site: string, task: (release: () => void) => void) => {
    let lane = lanes.get(key)
    if (!lane) lanes.set(key, (lane = { running: 0, site, queue: [] }))
    const l = lane
    if (l.queue.length === 0) waitingKeys.push(key)
    l.queue.push(() =>
      task(() => {
        l.running -= 1
        siteRunning.set(l.site, (siteRunning.get(l.site) ?? 1) - 1)
        total -= 1
        pump()
      })
    )
    pump()
  }

  /** A site change decided by core's Site decider: folded, counted, applied; a throttle or suspension ends at `until`. */
  const changeSite = (site: string, events: ReadonlyArray<Site.SiteEvent>) => {
    for (const e of events) {
      sites.set(site, Site.evolve(sites.get(site) ?? Site.initial, e))
      if (e.type === "SiteResumed") {
        siteChanges.resumed += 1
        shaped.delete(site)
        continue
      }
      if (e.type === "SiteSuspended") siteChanges.suspended += 1
      else siteChanges.throttled += 1
      shaped.set(site, {
        suspended: e.type === "SiteSuspended",
        until: e.until,
        connections: e.type === "SiteThrottled" ? e.connections : undefined
      })
      at(e.until, () => {
        changeSite(site, Site.expire(sites.get(site) ?? Site.initial, site, { at: now, node, policy: alt.hash }))
        pump()
      })
    }
  }
  /** The replies of one attempt read against the alternative's rules, as the node's Shaping reads them. */
  const observeSite = (site: string, replies: ReadonlyArray<Reply.Reply>) => {
    if (rules.length === 0) return
    for (const reply of replies)
      changeSite(site, Site.observe(sites.get(site) ?? Site.initial, site, reply, rules, { at: now, node, policy: alt.hash }))
  }

  const scheduleDrive = (id: string, t: number) => {
    const due = Math.max(t, now)
    if (scheduled.get(id) === due) return
    scheduled.set(id, due)
    at(due, () => {
      if (scheduled.get(id) === due) {
        scheduled.delete(id)
        drive(id)
      }
    })
  }

  /** The reply and timing of one attempt: the recorded one of this message, or the destination's at that moment. */
  const replyOf = (id: string, a: Drive.Attempt, t: number) => {
    const key = a.destination.key
    const mine = opts.replies === "message" ? rec.attempts?.get(key2(id, String(a.attempt))) : undefined
    if (mine && a.rcpts.every((r) => mine.replies.has(r)))
      return { durationMs: mine.durationMs, host: mine.host, results: a.rcpts.map((rcpt) => ({ rcpt, reply: mine.replies.get(rcpt)! })) }
    const sample = sampleAt(rec.behaviour.get(key), t)
    if (!sample) unknown.add(key)
    const base: Reply.Reply = sample?.reply ?? { code: 250, enhanced: "2.0.0", text: "no recorded reply (assumed accepted)" }
    return {
      durationMs: sample?.durationMs ?? 0,
      host: sample?.host ?? "simulated",
      results: a.rcpts.map((rcpt) => {
        const perm = rec.permanent.get(key2(id, rcpt))
        return { rcpt, reply: perm && Reply.classify(base) !== "transient" ? perm : base }
      })
    }
  }

  /** One drive, as the node's Driver runs it: follow the plan until it waits, parks or finishes. */
  const drive = (id: string) => {
    for (let step = 0; step < 8; step++) {
      const s = states.get(id)
      if (!s || (inFlight.get(id) ?? 0) > 0) return
      const plan = Drive.next(s, now, alt.retry)
      switch (plan.kind) {
        case "none":
        case "finish":
          return
        case "park":
        case "wait":
          return scheduleDrive(id, plan.until)
        case "expire":
          if (!apply(id, Drive.expireCommand(ctx(), alt.retry, dsnId()))) return
          continue
        case "route": {
          const routes = plan.due.map(
            (r): Route.RouteDecision =>
              rec.routes.get(key2(id, r.address)) ?? {
                rcpt: r.address,
                destination: {
                  kind: "smtp",
                  key: `mx:${Route.domainOf(r.address)}`,
                  hops: [{ host: Route.domainOf(r.address), port: 25, preference: 0 }],
                  via: "mx"
                }
              }
          )
          const begun = Drive.begin(s, now, routes, ctx(), dsnId())
          if (E.isLeft(begun)) return
          commit(id, begun.right.events)
          for (const a of begun.right.attempts) attempt(id, a)
          if (begun.right.attempts.length > 0) return
          continue
        }
      }
    }
    scheduleDrive(id, now)
  }

  const attempt = (id: string, a: Drive.Attempt) => {
    inFlight.set(id, (inFlight.get(id) ?? 0) + 1)
    const site = Route.siteOf(a.destination)
    limited(a.destination.key, site, (release) => {
      const first = replyOf(id, a, now)
      at(now + first.durationMs, () => {
        const outcome = opts.replies === "message" ? first : replyOf(id, a, now)
        observeSite(
          site,
          outcome.results.map((r) => r.reply)
        )
        apply(id, Drive.reportCommand(ctx(), a, outcome, alt.retry, random.next(), dsnId()))
        inFlight.set(id, (inFlight.get(id) ?? 1) - 1)
        release()
        drive(id)
      })
    })
  }

  for (const a of rec.arrivals)
    at(a.event.at, () => {
      const { type: _t, v: _v, at: _at, node: _n, policy: _p, ...rest } = a.event
      states.set(a.id, Message.initialState)
      if (!apply(a.id, { type: "Receive", ctx: ctx(), ...rest })) return
      active += 1
      if (active > peak) peak = active
      drive(a.id)
    })

  // Operator commands at their recorded times, as the node's host runs them: decide, then follow the plan.
  for (const o of rec.operations ?? [])
    at(o.at, () => {
      if (!states.has(o.id)) return
      const c = ctx()
      const command: Message.Command =
        o.op === "hold"
          ? { type: "Hold", ctx: c, by: o.by, reason: o.reason ?? "operator" }
          : o.op === "release"
            ? { type: "Release", ctx: c, by: o.by }
            : o.op === "retry"
              ? { type: "RetryNow", ctx: c, by: o.by }
              : { type: "Delete", ctx: c, by: o.by }
      if (apply(o.id, command)) drive(o.id)
    })

  for (;;) {
    const task = heap.pop()
    if (!task || task.t > rec.horizon) break
    now = task.t
    steps += 1
    task.run()
  }
  const recipients = rec.arrivals.reduce((n, a) => n + new Set(a.event.recipients).size, 0)
  return {
    steps,
    unknownDestinations: [...unknown].sort(),
    siteChanges,
    outcome: {
      messages: rec.arrivals.length,
      recipients,
      delivered,
      bounced,
      expired,
      queued: recipients - delivered - bounced - expired,
      attempts,
      latency: percentiles(latencies),
      peakQueue: peak
    }
  }
}

/** Rows for the site changes: recorded (from the log) and re-decided (by the alternative's rules). */
const siteRows = (recorded: SiteChanges | undefined, redecided: SiteChanges): Array<[string, string, string]> => {
  const r = recorded ?? { throttled: 0, suspended: 0, resumed: 0 }
  return [
    ["site throttled", String(r.throttled), String(redecided.throttled)],
    ["site suspended", String(r.suspended), String(redecided.suspended)],
    ["site resumed", String(r.resumed), String(redecided.resumed)]
  ]
}

export const format = (rec: Recording, alt: AltPolicy, sim: SimResult, wallMs: number): string => {
  const r = rec.recorded,
    a = sim.outcome
  const rows: Array<[string, string, string]> = [
    ["policy", rec.policies.join(", ") || "-", alt.hash],
    ["messages", String(r.messages), String(a.messages)],
    ["recipients", String(r.recipients), String(a.recipients)],
    ["delivered", String(r.delivered), String(a.delivered)],
    ["bounced", String(r.bounced), String(a.bounced)],
    ["expired", String(r.expired), String(a.expired)],
    ["still queued", String(r.queued), String(a.queued)],
    ["attempts", String(r.attempts), String(a.attempts)],
    ["latency p50", formatDuration(r.latency.p50), formatDuration(a.latency.p50)],
    ["latency p90", formatDuration(r.latency.p90), formatDuration(a.latency.p90)],
    ["latency p99", formatDuration(r.latency.p99), formatDuration(a.latency.p99)],
    ["latency max", formatDuration(r.latency.max), formatDuration(a.latency.max)],
    ["peak queue (messages)", String(r.peakQueue), String(a.peakQueue)],
    ...siteRows(rec.siteChanges, sim.siteChanges)
  ]
  const w0 = Math.max(...rows.map((x) => x[0].length)),
    w1 = Math.max(8, ...rows.map((x) => x[1].length)),
    w2 = Math.max(11, ...rows.map((x) => x[2].length))
  const span = rec.horizon - rec.from
  return [
    `What-if ${iso(rec.from)} .. ${iso(rec.to)}: ${r.messages} arrivals, followed to ${iso(rec.horizon)}`,
    `alternative: retry initial ${formatDuration(alt.retry.initialMs)}, max ${formatDuration(alt.retry.maxMs)}, x${alt.retry.multiplier}, jitter ${alt.retry.jitter}, lifetime ${formatDuration(alt.retry.lifetimeMs)}; ${alt.concurrencyPerDestination} per destination, ${alt.maxConnections} in all`,
    `site changes re-decided by ${(alt.rules ?? []).length} shaping rule(s) on the simulated replies (recorded ones are not copied)`,
    "",
    `${"".padEnd(w0)}  ${"recorded".padStart(w1)}  ${"alternative".padStart(w2)}`,
    ...rows.map(([k, x, y]) => `${k.padEnd(w0)}  ${x.padStart(w1)}  ${y.padStart(w2)}`),
    "",
    `simulated ${formatDuration(span)} of traffic in ${formatDuration(wallMs)} (${wallMs > 0 ? Math.round(span / wallMs) : "∞"}x real time), ${sim.steps} steps` +
      (sim.unknownDestinations.length ? `; no recorded replies for ${sim.unknownDestinations.join(", ")} (assumed 250)` : "")
  ].join("\n")
}
