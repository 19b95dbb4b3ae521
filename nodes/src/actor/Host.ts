// The actor host: activates a message when it has work (fresh from intake, or due in the Work index), rebuilds its
// state from its stream, asks the router, runs attempts through the limiter and the deliverer, appends what the
// decider says (optimistic concurrency), then passivates it into the due-time index. Decides nothing itself.
import { Message, Reply, Route, type Policy } from "@missive/core"
import { EventStore, type BodyStore, type Work } from "@missive/events"
import * as E from "fp-ts/lib/Either.js"
import type { Clock, Random } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"
import type { Limiter } from "../scheduler/Limiter.js"
import { dsnFor } from "../bounce/Bounce.js"

export type RouteOutcome =
  | { readonly ok: Route.RouteDecision }
  | { readonly temporary: Reply.Reply; readonly dns: ReadonlyArray<Route.DnsEvidence> }

export interface Router {
  route(rcpt: string): Promise<RouteOutcome>
}

export interface Deliverer {
  deliver(destination: Route.Destination, envelope: { from: string; to: ReadonlyArray<string> }, body: Buffer, id: string):
    Promise<{ host: string; results: ReadonlyArray<Message.AttemptResult> }>
}

export interface Injector {
  accept(m: { id: string; sender: string; recipients: ReadonlyArray<string>; body: Buffer; dsnOf: string; client: Message.Client }): Promise<Reply.Reply>
}

export interface HostDeps {
  readonly events: EventStore.EventStore
  readonly bodies: BodyStore.BodyStore
  readonly work: Work.Work
  readonly clock: Clock
  readonly random: Random
  readonly ids: { next(): string }
  readonly log: Logger
  readonly node: string
  readonly hostname: string
  readonly policyHash: string
  readonly retry: Policy.RetryPolicy
  readonly router: Router
  readonly deliverer: Deliverer
  readonly limiter: Limiter
  readonly leaseMs: number
  readonly pollMs: number
  readonly maxActive: number
  /** Read-only observer: the state the host holds after each of its appends (replay tests compare it with the log's fold). */
  readonly onState?: ((id: string, state: Message.State) => void) | undefined
}

export interface Host {
  /** Intake's hand-off: a message just committed. */
  onReceived(id: string, state: Message.State, body: Buffer): void
  /** Intake for DSNs; set after construction (intake and host refer to each other). */
  setInjector(i: Injector): void
  /** An operator command on one message (hold, release, retry now, delete, bounce), serialised with its driver. */
  operate(id: string, op: Operation, by: string): Promise<OperateResult>
  /** Drives one message now (operator "retry now", tests). */
  drive(id: string): Promise<void>
  start(): Promise<void>
  /** Stops polling and waits (up to `graceMs`) for running deliveries; gives back the leases. */
  stop(graceMs: number): Promise<void>
  active(): number
}

export type Operation = "hold" | "release" | "retry" | "delete" | "bounce"

export type OperateResult =
  | { readonly ok: true; readonly events: ReadonlyArray<Message.EventType> }
  | { readonly ok: false; readonly error: string }

/** A held message waits here until released. */
const FAR_FUTURE = 8.64e15

export const make = (d: HostDeps): Host => {
  const active = new Set<string>()
  const again = new Set<string>()
  const bodyCache = new Map<string, Buffer>()
  let timer: NodeJS.Timeout | undefined
  let stopping = false
  let polling = false
  let backlog = false
  let inject: Injector | undefined

  const ctx = (): Message.Ctx => ({ at: d.clock.now(), node: d.node, policy: d.policyHash })

  const bodyOf = async (id: string, digest: string): Promise<Buffer> => bodyCache.get(id) ?? d.bodies.get(digest)

  const load = async (id: string): Promise<Message.State> =>
    Message.fold((await d.events.read(EventStore.streamOf(id))).map((e) => e.event))

  /** Sends the DSN the log says is due, once; idempotent through the DSN's own id. */
  const ensureBounce = async (s: Message.Live): Promise<void> => {
    const bounceId = s.bounceId
    if (!bounceId || !inject) return
    if ((await d.events.read(EventStore.streamOf(bounceId))).length > 0) return
    const body = await bodyOf(s.id, s.digest).catch(() => undefined)
    const dsn = dsnFor({ ...s, bounceId }, body, d.hostname, d.clock.now())
    const reply = await inject.accept({ ...dsn, client: { ip: "127.0.0.1", helo: d.hostname, tls: false } })
    if (Reply.classify(reply) !== "success") throw new Error(`DSN ${bounceId} not queued: ${Reply.format(reply)}`)
    d.log("info", "bounce queued", { id: s.id, dsn: bounceId, to: s.sender, rcpts: dsn.failed })
  }

  const finish = async (s: Message.State & { status: "completed" }) => {
    await ensureBounce(s)
    await Promise.all([d.work.complete(s.id), d.bodies.delete(s.digest)])
    finished(s)
  }

  const finished = (s: Message.State & { status: "completed" }) => {
    bodyCache.delete(s.id)
    d.log("info", "completed", { id: s.id, delivered: s.recipients.filter((r) => r.status === "delivered").length,
      bounced: s.recipients.filter((r) => r.status === "bounced").length, expired: s.recipients.filter((r) => r.status === "expired").length, deleted: s.deleted })
  }

  const driveOnce = async (id: string, fresh?: Message.State): Promise<void> => {
    let state = fresh ?? (await load(id))
    const stream = EventStore.streamOf(id)
    if (state.status === "empty") return void (await d.work.complete(id))
    if (state.status === "completed") return finish(state)
    if (state.held) return void (await d.work.schedule(id, FAR_FUTURE))
    const now = d.clock.now()
    const due = Message.dueRecipients(state, now)
    if (due.length === 0) return void (await d.work.schedule(id, Message.nextDue(state) ?? now))

    // Route every due recipient; a temporary DNS failure is recorded as a route with no hops and deferred below.
    const temporary = new Map<string, Reply.Reply>()
    const routes = await Promise.all(due.map(async (r): Promise<Route.RouteDecision> => {
      const o = await d.router.route(r.address)
      if ("ok" in o) return o.ok
      temporary.set(r.address, o.temporary)
      const domain = Route.domainOf(r.address)
      return { rcpt: r.address, destination: { kind: "smtp", key: `mx:${domain}`, hops: [], via: "mx" }, dns: o.dns }
    }))
    const pending: Array<Message.Event> = []
    const apply = (c: Message.Command) => {
      const r = Message.decide(c, state)
      if (E.isLeft(r)) throw new Error(`decider refused ${c.type}: ${JSON.stringify(r.left)}`)
      pending.push(...r.right)
      state = Message.fold(r.right, state)
    }
    apply({ type: "Route", ctx: ctx(), routes, dsnId: d.ids.next() })
    const groups = new Map<string, { destination: Route.Destination; rcpts: Array<string> }>()
    if (state.status === "active")
      for (const r of state.recipients) {
        if (r.status !== "routed" || !r.destination) continue
        const g = groups.get(r.destination.key) ?? { destination: r.destination, rcpts: [] }
        g.rcpts.push(r.address)
        groups.set(r.destination.key, g)
      }
    const attempts: Array<{ attempt: number; destination: Route.Destination; rcpts: Array<string> }> = []
    for (const g of groups.values()) {
      apply({ type: "StartAttempt", ctx: ctx(), rcpts: g.rcpts, destination: g.destination.key })
      attempts.push({ attempt: (state as Message.Live).attempts, ...g })
    }
    const version = state.version - pending.length
    await d.events.append(stream, version, pending)
    d.onState?.(id, state)

    // Attempts run in parallel (one per destination); their reports are appended one after another.
    let chain: Promise<void> = Promise.resolve()
    let cleaned = false
    await Promise.all(attempts.map(async (a) => {
      const live = state as Message.Live
      let outcome: { host: string; results: ReadonlyArray<Message.AttemptResult> }
      if (a.destination.kind === "smtp" && a.destination.hops.length === 0) {
        outcome = { host: "dns", results: a.rcpts.map((rcpt) => ({ rcpt, reply: temporary.get(rcpt) ?? Reply.Replies.dnsTempFail })) }
      } else {
        const body = await bodyOf(id, live.digest)
        outcome = await d.limiter.run(a.destination.key, () =>
          d.deliverer.deliver(a.destination, { from: live.sender, to: a.rcpts }, body, id).catch((e: unknown) => ({
            host: "unknown", results: a.rcpts.map((rcpt) => ({ rcpt, reply: Reply.Replies.connectFailed(String((e as Error)?.message ?? e)) }))
          })))
      }
      const report = chain.then(async () => {
        const r = Message.decide({ type: "ReportAttempt", ctx: ctx(), attempt: a.attempt, host: outcome.host, results: outcome.results,
          retry: d.retry, jitter: d.random.next(), dsnId: d.ids.next() }, state)
        if (E.isLeft(r)) throw new Error(`decider refused ReportAttempt: ${JSON.stringify(r.left)}`)
        // A report that completes the message without a DSN commits together with the clean-up: one fsync.
        const done = r.right.some((e) => e.type === "MessageCompleted") && !r.right.some((e) => e.type === "BounceQueued")
        const writes: Array<Promise<unknown>> = [d.events.append(stream, state.version, r.right)]
        if (done) writes.push(d.work.complete(id), d.bodies.delete(live.digest))
        const settled = await Promise.allSettled(writes)
        const failed = settled.find((x) => x.status === "rejected")
        if (failed) {
          // The message must stay in the index whatever failed; a re-drive reads the log and carries on.
          if (done) await d.work.schedule(id, d.clock.now()).catch(() => {})
          throw failed.reason
        }
        if (done) cleaned = true
        state = Message.fold(r.right, state)
        d.onState?.(id, state)
        for (const res of outcome.results)
          d.log("info", "attempt", { id, rcpt: res.rcpt, host: outcome.host, code: res.reply.code, reply: Reply.format(res.reply), attempt: a.attempt })
      })
      chain = report.catch(() => {})
      await report
    }))

    const end = state as Message.State
    if (end.status === "completed") return cleaned ? finished(end) : finish(end)
    await d.work.schedule(id, Message.nextDue(state as Message.Live) ?? d.clock.now())
  }

  const drive = async (id: string, fresh?: Message.State): Promise<void> => {
    if (active.has(id)) {
      again.add(id)
      return
    }
    active.add(id)
    try {
      await driveOnce(id, fresh)
    } catch (e) {
      d.log("error", "drive failed; retrying in 60s", { id, error: String((e as Error)?.stack ?? e) })
      await d.work.schedule(id, d.clock.now() + 60_000).catch(() => {})
    } finally {
      // A passivated message keeps nothing in memory: its body is read from the store on its next drive.
      bodyCache.delete(id)
      active.delete(id)
      if (again.delete(id) && !stopping) void drive(id)
      // More due work waits in the index than the last poll could take: fetch it as soon as there is room.
      if (backlog && !stopping && active.size < d.maxActive / 2) kick()
    }
  }

  const kick = () => {
    if (timer) clearTimeout(timer)
    timer = setTimeout(poll, 0)
  }

  const poll = async () => {
    timer = undefined
    if (stopping || polling) return
    polling = true
    let delay = d.pollMs
    try {
      const room = Math.min(d.maxActive - active.size, 500)
      if (room > 0) {
        const now = d.clock.now()
        const items = await d.work.claim(now, room, d.node, now + d.leaseMs)
        for (const item of items) void drive(item.id)
        backlog = items.length === room
        if (backlog) delay = 10
      }
      const next = await d.work.nextDue()
      if (next !== undefined) delay = Math.max(10, Math.min(delay, next - d.clock.now()))
    } catch (e) {
      d.log("error", "work poll failed", { error: String(e) })
    } finally {
      polling = false
      if (!stopping) timer = setTimeout(poll, delay)
    }
  }

  const operate = async (id: string, op: Operation, by: string): Promise<OperateResult> => {
    // Wait for a running drive of this message to end, then hold the message while deciding.
    for (let i = 0; active.has(id); i++) {
      if (i > 3000) return { ok: false, error: `message ${id} is busy` }
      await new Promise((r) => setTimeout(r, 10))
    }
    active.add(id)
    try {
      const state = await load(id)
      if (state.status === "empty") return { ok: false, error: `no message ${id}` }
      const c = ctx()
      const command: Message.Command =
        op === "hold" ? { type: "Hold", ctx: c, by, reason: "operator" }
        : op === "release" ? { type: "Release", ctx: c, by }
        : op === "retry" ? { type: "RetryNow", ctx: c, by }
        : op === "delete" ? { type: "Delete", ctx: c, by }
        : { type: "Bounce", ctx: c, by, dsnId: d.ids.next() }
      const r = Message.decide(command, state)
      if (E.isLeft(r)) return { ok: false, error: r.left._tag }
      await d.events.append(EventStore.streamOf(id), state.version, r.right)
      const after = Message.fold(r.right, state)
      d.log("info", "operator", { id, op, by, events: r.right.map((e) => e.type) })
      if (after.status === "completed") await finish(after)
      else if (after.status === "active" && after.held) await d.work.schedule(id, FAR_FUTURE)
      else if (after.status === "active") await d.work.schedule(id, op === "retry" || op === "release" ? d.clock.now() : Message.nextDue(after) ?? d.clock.now())
      return { ok: true, events: r.right.map((e) => e.type) }
    } finally {
      active.delete(id)
      kick()
    }
  }

  return {
    operate,
    onReceived: (id, state, body) => {
      if (stopping) return
      if (active.size >= d.maxActive) {
        void d.work.schedule(id, d.clock.now()).catch(() => {})
        return
      }
      bodyCache.set(id, body)
      void drive(id, state)
    },
    setInjector: (i) => void (inject = i),
    drive: (id) => drive(id),
    start: async () => {
      await d.work.releaseAll(d.node)
      kick()
    },
    stop: async (graceMs) => {
      stopping = true
      if (timer) clearTimeout(timer)
      const deadline = d.clock.now() + graceMs
      while (active.size > 0 && d.clock.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      await d.work.releaseAll(d.node).catch(() => {})
    },
    active: () => active.size
  }
}
