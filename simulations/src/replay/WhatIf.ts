// `missive replay what-if`: feeds the recorded arrivals of a window and the recorded behaviour of every destination
// (which reply it gave when, and how long an attempt took) through the pure decider under a virtual clock with an
// alternative policy (retry schedule, lifetime, per-destination and total concurrency), and compares the outcome
// with what was recorded. Deterministic: seeded jitter, ordered event queue, no clock and no I/O beyond reading the log.
import { Message, Reply, Route, type Policy } from "@missive/core"
import { EventStore } from "@missive/events"
import * as E from "fp-ts/lib/Either.js"
import { Clock } from "@missive/node"
import { positionAt, scan, SLACK_MS, type Store } from "./Log.js"
import { percentiles, type Percentiles } from "./Report.js"
import { formatDuration, iso } from "./Time.js"

export interface AltPolicy {
  readonly retry: Policy.RetryPolicy
  readonly concurrencyPerDestination: number
  readonly maxConnections: number
  /** Recorded in the simulated events' `policy`. */
  readonly hash: string
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
  readonly recorded: Outcome
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
export const record = async (store: Store, o: { from: number; to: number; onProgress?: (p: number, t: number) => void }): Promise<Recording> => {
  const head = await store.head()
  const start = Math.max(0, (await positionAt(store, o.from - SLACK_MS, head)) - 1)
  const arrivals: Array<Arrival> = []
  const tracked = new Map<string, { receivedAt: number }>()
  const started = new Map<string, Map<number, { at: number; key: string }>>()
  const routes = new Map<string, Route.RouteDecision>()
  const behaviour = new Map<string, Array<Sample>>()
  const permanent = new Map<string, Reply.Reply>()
  const policies = new Set<string>()
  const latencies: Array<number> = []
  const depthChanges: Array<[number, number]> = []
  let delivered = 0, bounced = 0, expired = 0, attempts = 0, recipients = 0, horizon = o.to, eventsRead = 0
  for await (const batch of scan(store, { after: start, until: head, onProgress: o.onProgress })) {
    eventsRead += batch.length
    for (const { stream, event: e } of batch) {
      if (e.at > horizon) horizon = e.at
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
        case "AttemptStarted": attempts += 1; break
        case "RecipientDelivered": delivered += 1; latencies.push(e.at - t.receivedAt); break
        case "RecipientBounced": bounced += 1; break
        case "RecipientExpired": expired += 1; break
        case "MessageCompleted": depthChanges.push([e.at, -1]); tracked.delete(id); break
        default: break
      }
    }
  }
  for (const list of behaviour.values()) list.sort((a, b) => a.at - b.at)
  return {
    from: o.from, to: o.to, horizon, arrivals, routes, behaviour, permanent, policies: [...policies], eventsRead,
    recorded: { messages: arrivals.length, recipients, delivered, bounced, expired, queued: recipients - delivered - bounced - expired, attempts,
      latency: percentiles(latencies), peakQueue: peakOf(depthChanges) }
  }
}

const peakOf = (changes: Array<[number, number]>): number => {
  changes.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  let cur = 0, peak = 0
  for (const [, d] of changes) { cur += d; if (cur > peak) peak = cur }
  return peak
}

/** The reply a destination gave at time t: its last recorded reply at or before t (or its first, before any). */
const sampleAt = (list: ReadonlyArray<Sample> | undefined, t: number): Sample | undefined => {
  if (!list || list.length === 0) return undefined
  let lo = 0, hi = list.length
  while (lo < hi) { const mid = (lo + hi) >> 1; if (list[mid]!.at <= t) lo = mid + 1; else hi = mid }
  return list[Math.max(0, lo - 1)]
}

// A binary min-heap of timed tasks; ties keep insertion order, so a run is deterministic.
interface Task { readonly t: number; readonly seq: number; readonly run: () => void }
class Heap {
  private a: Array<Task> = []
  get size() { return this.a.length }
  push(x: Task) {
    const a = this.a
    a.push(x)
    let i = a.length - 1
    while (i > 0) { const p = (i - 1) >> 1; if (less(a[p]!, x)) break; a[i] = a[p]!; i = p }
    a[i] = x
  }
  pop(): Task | undefined {
    const a = this.a
    const top = a[0]
    const last = a.pop()
    if (a.length === 0 || last === undefined) return top
    let i = 0
    for (;;) {
      const l = 2 * i + 1, r = l + 1
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
}

/** Runs the recorded arrivals under `alt` on a virtual clock, up to the recording's horizon. */
export const simulate = (rec: Recording, alt: AltPolicy, opts: { seed?: number; node?: string; onEvents?: (id: string, events: ReadonlyArray<Message.Event>) => void } = {}): SimResult => {
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
  const lanes = new Map<string, { running: number; queue: Array<() => void> }>()
  let total = 0
  const waitingKeys: Array<string> = []
  const unknown = new Set<string>()
  let delivered = 0, bounced = 0, expired = 0, attempts = 0, active = 0, peak = 0
  const latencies: Array<number> = []
  const ctx = (): Message.Ctx => ({ at: now, node, policy: alt.hash })

  const apply = (id: string, c: Message.Command): boolean => {
    const s = states.get(id)!
    const r = Message.decide(c, s)
    if (E.isLeft(r)) return false
    let next = s
    for (const e of r.right) {
      next = Message.evolve(next, e)
      if (e.type === "AttemptStarted") attempts += 1
      else if (e.type === "RecipientDelivered") { delivered += 1; latencies.push(e.at - (next as Message.Live).receivedAt) }
      else if (e.type === "RecipientBounced") bounced += 1
      else if (e.type === "RecipientExpired") expired += 1
      else if (e.type === "MessageCompleted") active -= 1
    }
    states.set(id, next)
    opts.onEvents?.(id, r.right)
    return true
  }

  const pump = () => {
    let progressed = true
    while (progressed && total < alt.maxConnections && waitingKeys.length > 0) {
      progressed = false
      for (let i = 0; i < waitingKeys.length && total < alt.maxConnections; i++) {
        const lane = lanes.get(waitingKeys[i]!)!
        if (lane.running >= alt.concurrencyPerDestination || lane.queue.length === 0) continue
        lane.running += 1
        total += 1
        progressed = true
        lane.queue.shift()!()
      }
      for (let i = waitingKeys.length - 1; i >= 0; i--) if (lanes.get(waitingKeys[i]!)!.queue.length === 0) waitingKeys.splice(i, 1)
    }
  }
  const limited = (key: string, task: (release: () => void) => void) => {
    let lane = lanes.get(key)
    if (!lane) lanes.set(key, (lane = { running: 0, queue: [] }))
    const l = lane
    if (l.queue.length === 0) waitingKeys.push(key)
    l.queue.push(() => task(() => { l.running -= 1; total -= 1; pump() }))
    pump()
  }

  const scheduleDrive = (id: string, t: number) => {
    const due = Math.max(t, now)
    if (scheduled.get(id) === due) return
    scheduled.set(id, due)
    at(due, () => { if (scheduled.get(id) === due) { scheduled.delete(id); drive(id) } })
  }

  const settle = (id: string) => {
    const s = states.get(id)!
    if (s.status !== "active" || (inFlight.get(id) ?? 0) > 0) return
    scheduleDrive(id, Message.nextDue(s) ?? now)
  }

  const drive = (id: string) => {
    const s = states.get(id)
    if (!s || s.status !== "active" || s.held || (inFlight.get(id) ?? 0) > 0) return
    const due = Message.dueRecipients(s, now)
    if (due.length === 0) return settle(id)
    const routes = due.map((r): Route.RouteDecision => rec.routes.get(key2(id, r.address)) ?? {
      rcpt: r.address, destination: { kind: "smtp", key: `mx:${Route.domainOf(r.address)}`, hops: [{ host: Route.domainOf(r.address), port: 25, preference: 0 }], via: "mx" }
    })
    if (!apply(id, { type: "Route", ctx: ctx(), routes, dsnId: `what-if-${++nextId}` })) return
    const after = states.get(id)!
    if (after.status !== "active") return
    const groups = new Map<string, Array<string>>()
    for (const r of after.recipients) if (r.status === "routed" && r.destination) {
      const g = groups.get(r.destination.key) ?? []
      g.push(r.address)
      groups.set(r.destination.key, g)
    }
    for (const [key, rcpts] of groups) {
      if (!apply(id, { type: "StartAttempt", ctx: ctx(), rcpts, destination: key })) continue
      const attempt = (states.get(id) as Message.Live).attempts
      inFlight.set(id, (inFlight.get(id) ?? 0) + 1)
      limited(key, (release) => {
        const first = sampleAt(rec.behaviour.get(key), now)
        at(now + (first?.durationMs ?? 0), () => {
          const sample = sampleAt(rec.behaviour.get(key), now)
          if (!sample) unknown.add(key)
          const base: Reply.Reply = sample?.reply ?? { code: 250, enhanced: "2.0.0", text: "no recorded reply (assumed accepted)" }
          const results = rcpts.map((rcpt) => {
            const perm = rec.permanent.get(key2(id, rcpt))
            return { rcpt, reply: perm && Reply.classify(base) !== "transient" ? perm : base }
          })
          apply(id, { type: "ReportAttempt", ctx: ctx(), attempt, host: sample?.host ?? "simulated", results, retry: alt.retry, jitter: random.next(), dsnId: `what-if-${++nextId}` })
          inFlight.set(id, (inFlight.get(id) ?? 1) - 1)
          release()
          settle(id)
        })
      })
    }
  }

  for (const a of rec.arrivals) at(a.event.at, () => {
    const { type: _t, v: _v, at: _at, node: _n, policy: _p, ...rest } = a.event
    states.set(a.id, Message.initialState)
    if (!apply(a.id, { type: "Receive", ctx: ctx(), ...rest })) return
    active += 1
    if (active > peak) peak = active
    drive(a.id)
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
    steps, unknownDestinations: [...unknown].sort(),
    outcome: { messages: rec.arrivals.length, recipients, delivered, bounced, expired, queued: recipients - delivered - bounced - expired, attempts, latency: percentiles(latencies), peakQueue: peak }
  }
}

export const format = (rec: Recording, alt: AltPolicy, sim: SimResult, wallMs: number): string => {
  const r = rec.recorded, a = sim.outcome
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
    ["peak queue (messages)", String(r.peakQueue), String(a.peakQueue)]
  ]
  const w0 = Math.max(...rows.map((x) => x[0].length)), w1 = Math.max(8, ...rows.map((x) => x[1].length)), w2 = Math.max(11, ...rows.map((x) => x[2].length))
  const span = rec.horizon - rec.from
  return [
    `What-if ${iso(rec.from)} .. ${iso(rec.to)}: ${r.messages} arrivals, followed to ${iso(rec.horizon)}`,
    `alternative: retry initial ${formatDuration(alt.retry.initialMs)}, max ${formatDuration(alt.retry.maxMs)}, x${alt.retry.multiplier}, jitter ${alt.retry.jitter}, lifetime ${formatDuration(alt.retry.lifetimeMs)}; ${alt.concurrencyPerDestination} per destination, ${alt.maxConnections} in all`,
    "",
    `${"".padEnd(w0)}  ${"recorded".padStart(w1)}  ${"alternative".padStart(w2)}`,
    ...rows.map(([k, x, y]) => `${k.padEnd(w0)}  ${x.padStart(w1)}  ${y.padStart(w2)}`),
    "",
    `simulated ${formatDuration(span)} of traffic in ${formatDuration(wallMs)} (${wallMs > 0 ? Math.round(span / wallMs) : "∞"}x real time), ${sim.steps} steps` +
      (sim.unknownDestinations.length ? `; no recorded replies for ${sim.unknownDestinations.join(", ")} (assumed 250)` : "")
  ].join("\n")
}
