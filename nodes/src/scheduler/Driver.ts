// Drives one message once: takes its state (fresh from intake, carried with its work entry, or read from its
// stream), follows core's drive plan (route, attempt through the limiter and the deliverer, report, expire, finish)
// and writes through the command handler. Decides nothing itself; an empty read is reported, never acted on.
import { Drive, Message, Reply, Route, type Policy, type Trace } from "@missive/core"
import { EventStore, type BodyStore, type Work } from "@missive/events"
import * as E from "fp-ts/lib/Either.js"
import { delayNoticeFor, dsnFor } from "../bounce/Bounce.js"
import type { Clock, Random } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"
import * as Commands from "./Commands.js"
import type { Limiter } from "./Limiter.js"
import type { Shaping } from "./Shaping.js"

export type RouteOutcome =
  { readonly ok: Route.RouteDecision } | { readonly temporary: Reply.Reply; readonly dns: ReadonlyArray<Route.DnsEvidence> }

export interface Router {
  route(rcpt: string): Promise<RouteOutcome>
}

export interface Deliverer {
  deliver(
    destination: Route.Destination,
    envelope: { from: string; to: ReadonlyArray<string>; fence?: (() => boolean) | undefined },
    body: Buffer,
    id: string
  ): Promise<{ host: string; results: ReadonlyArray<Message.AttemptResult>; trace?: Trace.Trace | undefined }>
}

export interface Injector {
  accept(m: {
    id: string
    sender: string
    recipients: ReadonlyArray<string>
    body: Buffer
    dsnOf: string
    client: Message.Client
  }): Promise<Reply.Reply>
}

/** Events not yet in the log, and the body, handed over with a work entry (cluster intake). */
export interface Carried {
  readonly events: ReadonlyArray<Message.Event>
  readonly body: Buffer
}

export interface DriverDeps {
  readonly events: EventStore.EventStore
  readonly bodies: BodyStore.BodyStore
  readonly work: Work.Work
  readonly commands: Commands.Commands
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
  /** Shaping automation per site (rules on replies); none when no rule is configured. */
  readonly shaping?: Shaping | undefined
  readonly injector: () => Injector | undefined
  /** How long a node's hold on a message lasts: a peer's attempt younger than this is in flight (Drive.Owner). */
  readonly leaseMs?: number | undefined
  readonly onState?: ((id: string, state: Message.State) => void) | undefined
  /** Postfix's delay_warning_time: a message still deferred this long after arrival gets one delay notice (null: off). */
  readonly delayWarningMs?: number | null | undefined
}

/** "empty": the stream read back empty and nothing was carried; the caller retries later and keeps the work entry. */
export type Driven = "driven" | "empty"

export interface Driver {
  driveOnce(id: string, start?: { fresh?: Message.State | undefined; carried?: Carried | undefined }): Promise<Driven>
  /** Clean-up of a completed message: its DSN (once), its work entry, its body. */
  finish(s: Message.State & { status: "completed" }): Promise<void>
  /** Keeps a body in memory while its message is driven (intake's hand-off). */
  remember(id: string, body: Buffer): void
  forget(id: string): void
}

/** How long a drive keeps trying to record an attempt's outcome while the store is unavailable. */
const REPORT_PATIENCE_MS = 20_000

/** Plan steps one drive may take before it hands the message back to the index. */
const MAX_STEPS = 8

export const make = (d: DriverDeps): Driver => {
  const bodyCache = new Map<string, Buffer>()
  const ctx = (): Message.Ctx => ({ at: d.clock.now(), node: d.node, policy: d.policyHash })
  const owner: Drive.Owner | undefined = d.leaseMs === undefined ? undefined : { node: d.node, leaseMs: d.leaseMs }
  const bodyOf = async (id: string, digest: string): Promise<Buffer> => bodyCache.get(id) ?? d.bodies.get(digest, id)

  /**
   * The delay notice of a waiting message: decided by core once it is due (DelayNotified, never twice), then queued
   * through intake under its own id (idempotent, as the DSN); a message not yet due wakes up when it is. Gives the
   * time to come back.
   */
  const delayNotice = async (s: Message.State, until: number): Promise<number> => {
    const after = d.delayWarningMs
    if (after == null || s.status !== "active" || s.sender === "" || s.dsnOf !== undefined) return until
    let state: Message.State = s
    if (s.delayNoticeId === undefined) {
      if (d.clock.now() < s.receivedAt + after) return Math.min(until, s.receivedAt + after)
      const h = await d.commands.handle(s.id, Commands.command({ type: "NotifyDelay", ctx: ctx(), afterMs: after, dsnId: d.ids.next() }), {
        known: s
      })
      state = h.state
    }
    const inject = d.injector()
    if (state.status !== "active" || state.delayNoticeId === undefined || !inject) return until
    const noticeId = state.delayNoticeId
    if ((await d.events.read(EventStore.streamOf(noticeId))).length > 0) return until
    const body = await bodyOf(state.id, state.digest).catch(() => undefined)
    const notice = delayNoticeFor(
      { ...state, delayNoticeId: noticeId },
      body,
      d.hostname,
      d.clock.now(),
      state.receivedAt + d.retry.lifetimeMs
    )
    const reply = await inject.accept({ ...notice, client: { ip: "127.0.0.1", helo: d.hostname, tls: false } })
    if (Reply.classify(reply) !== "success") throw new Error(`delay notice ${noticeId} not queued: ${Reply.format(reply)}`)
    d.log("info", "delay notice queued", { id: state.id, dsn: noticeId, to: state.sender, rcpts: notice.failed })
    return until
  }

  /** Sends the DSN the log says is due, once; idempotent through the DSN's own id. */
  const ensureBounce = async (s: Message.Live): Promise<void> => {
    const bounceId = s.bounceId
    const inject = d.injector()
    if (!bounceId || !inject) return
    if ((await d.events.read(EventStore.streamOf(bounceId))).length > 0) return
    const body = await bodyOf(s.id, s.digest).catch(() => undefined)
    const dsn = dsnFor({ ...s, bounceId }, body, d.hostname, d.clock.now())
    const reply = await inject.accept({ ...dsn, client: { ip: "127.0.0.1", helo: d.hostname, tls: false } })
    if (Reply.classify(reply) !== "success") throw new Error(`DSN ${bounceId} not queued: ${Reply.format(reply)}`)
    d.log("info", "bounce queued", { id: s.id, dsn: bounceId, to: s.sender, rcpts: dsn.failed })
  }

  const finished = (s: Message.State & { status: "completed" }) => {
    bodyCache.delete(s.id)
    d.log("info", "completed", {
      id: s.id,
      delivered: s.recipients.filter((r) => r.status === "delivered").length,
      bounced: s.recipients.filter((r) => r.status === "bounced").length,
      expired: s.recipients.filter((r) => r.status === "expired").length,
      deleted: s.deleted
    })
  }

  const finish = async (s: Message.State & { status: "completed" }) => {
    await ensureBounce(s)
    await Promise.all([d.work.complete(s.id), d.bodies.delete(s.digest)])
    finished(s)
  }

  /** Routes the due recipients; a temporary DNS failure becomes a route with no hops, reported below as a 4xx. */
  const routeAll = async (due: ReadonlyArray<Message.Recipient>) => {
    const temporary = new Map<string, Reply.Reply>()
    const routes = await Promise.all(
      due.map(async (r): Promise<Route.RouteDecision> => {
        const o = await d.router.route(r.address)
        if ("ok" in o) return o.ok
        temporary.set(r.address, o.temporary)
        return { rcpt: r.address, destination: { kind: "smtp", key: `mx:${Route.domainOf(r.address)}`, hops: [], via: "mx" }, dns: o.dns }
      })
    )
    return { routes, temporary }
  }

  const driveOnce = async (
    id: string,
    start: { fresh?: Message.State | undefined; carried?: Carried | undefined } = {}
  ): Promise<Driven> => {
    let state = start.fresh ?? (await d.commands.load(id))
    let carried = state.status === "empty" ? start.carried?.events : undefined
    if (state.status === "empty" && !carried) return "empty"
    // A carried body serves this drive even when the log already has the message (a redelivered cluster carrier).
    if (start.carried) bodyCache.set(id, start.carried.body)
    // The route and attempt-start events of the attempt under way: appended with its report, in one append.
    let pending: ReadonlyArray<Message.Event> = []
    const logged = (): Message.State => (carried ? Message.fold(carried, state) : state)
    const view = (): Message.State => (pending.length > 0 ? Message.fold(pending, logged()) : logged())
    const write = async <A>(decide: Commands.Decider<A>, opts: Commands.HandleOptions = {}) => {
      const h = await d.commands.handle(id, decide, { known: state, carried, ...opts })
      state = h.state
      carried = undefined
      pending = []
      d.onState?.(id, state)
      return h
    }

    for (let step = 0; step < MAX_STEPS; step++) {
      const plan = Drive.next(view(), d.clock.now(), d.retry, owner)
      switch (plan.kind) {
        case "none":
          return "empty"
        case "finish":
          await finish(view() as Message.State & { status: "completed" })
          return "driven"
        case "park":
          await d.work.schedule(id, plan.until)
          return "driven"
        case "wait":
          await d.work.schedule(id, await delayNotice(view(), plan.until))
          return "driven"
        case "expire":
          await write(Commands.command(Drive.expireCommand(ctx(), d.retry, d.ids.next())))
          continue
        case "route": {
          const now = d.clock.now()
          const { routes, temporary } = await routeAll(plan.due)
          // Route and start the attempts without an append of their own where this node alone drives the message:
          // their events go with the first report, in one append (decided again there, against the state the handler
          // reads). A crash before it leaves no trace of the attempt, and the message is attempted again — as after a
          // crash between an attempt and its report. That is always so in an embedded node (one drive per message at
          // a time) and, in a cluster, for the first attempt of a message not yet in the log (its carrier is held by
          // one node). A cluster's retry may be driven by two nodes at once (a wake token beside the carrier's
          // redelivery): there the route and start are appended first, and that append's compare-and-set decides
          // which node attempts. A node whose lease is gone does not deliver (the fence, also before the final dot).
          const c = ctx(),
            dsnId = d.ids.next()
          const begin = (s: Message.State) => Drive.begin(s, now, routes, c, dsnId, owner)
          const begun = begin(view())
          if (E.isLeft(begun)) throw new Commands.Refused(id, begun.left)
          // (A work index that commits apart from the log is the cluster's inbox; a local one drives alone.)
          const alone = d.work.commitsWithLog !== false || carried !== undefined
          let attempts = begun.right.attempts
          if (attempts.length > 0 && alone) pending = begun.right.events
          else {
            // Appended alone: a route with nothing to attempt (a null MX bounced the recipients), or a cluster's retry.
            if (begun.right.events.length === 0) continue
            const h = await write((s) => {
              const r = begin(s)
              return E.isLeft(r) ? r : E.right({ events: r.right.events, value: r.right.attempts })
            })
            attempts = h.value
            if (attempts.length === 0) continue
          }
          if (await attempt(id, attempts, temporary, view, write, pending.length > 0 ? begin : undefined)) {
            finished(state as Message.State & { status: "completed" })
            return "driven"
          }
          continue
        }
      }
    }
    // A plan that keeps finding work due now goes back to the index rather than looping here.
    await d.work.schedule(id, d.clock.now())
    return "driven"
  }

  /**
   * Runs the attempts in parallel (one per destination, each through its limiter); their reports are appended one
   * after another. True when a report completed the message and its clean-up shared the report's commit.
   */
  const attempt = async (
    id: string,
    attempts: ReadonlyArray<Drive.Attempt>,
    temporary: ReadonlyMap<string, Reply.Reply>,
    get: () => Message.State,
    write: <A>(decide: Commands.Decider<A>, opts?: Commands.HandleOptions) => Promise<Commands.Handled<A>>,
    /** Given when the attempts' route and start are not in the log yet: they are decided again with the first report. */
    begin: ((s: Message.State) => E.Either<Message.DecideError, Drive.Begun>) | undefined
  ): Promise<boolean> => {
    let chain: Promise<void> = Promise.resolve()
    let cleaned = false
    // The first report to be written carries the route and attempt-start events, decided against what the handler
    // reads (the state they were planned on, or a newer one after a conflict); the attempt numbers it gives hold for
    // the later reports.
    let unlogged = begin !== undefined
    const numbers = new Map(attempts.map((a) => [a.destination.key, a.attempt]))
    const reportOf =
      (a: Drive.Attempt, command: (n: number) => Message.Command): Commands.Decider<undefined> =>
      (s) => {
        if (!unlogged || !begin) return Commands.command(command(numbers.get(a.destination.key) ?? a.attempt))(s)
        const b = begin(s)
        if (E.isLeft(b)) return b
        const mine = b.right.attempts.find((x) => x.destination.key === a.destination.key)
        // Nothing to start on the state read: our own append landed before its acknowledgement was lost (the decider
        // knows the report again), or the message moved on meanwhile (a peer, an operator: the decider refuses it).
        if (!mine) return Commands.command(command(a.attempt))(s)
        const r = Message.decide(command(mine.attempt), b.right.state)
        return E.isLeft(r) ? r : E.right({ events: [...b.right.events, ...r.right], value: undefined })
      }
    await Promise.all(
      attempts.map(async (a) => {
        const live = get() as Message.Live
        let outcome: { host: string; results: ReadonlyArray<Message.AttemptResult>; trace?: Trace.Trace | undefined }
        if (a.destination.kind === "smtp" && a.destination.hops.length === 0) {
          outcome = { host: "dns", results: a.rcpts.map((rcpt) => ({ rcpt, reply: temporary.get(rcpt) ?? Reply.Replies.dnsTempFail })) }
        } else {
          const body = await bodyOf(id, live.digest)
          outcome = await d.limiter.run(Route.siteOf(a.destination), () =>
            d.deliverer.deliver(a.destination, { from: live.sender, to: a.rcpts }, body, id).catch((e: unknown) => {
              // A fenced delivery (this node's lease is gone) was never made: nothing to report, the drive ends here.
              if ((e as { _tag?: string })?._tag === "LeaseLost") throw e
              return {
                host: "unknown",
                results: a.rcpts.map((rcpt) => ({ rcpt, reply: Reply.Replies.connectFailed(String((e as Error)?.message ?? e)) }))
              }
            })
          )
          // the site's automation rules read the replies (a throttle or suspension is the site's own event)
          void d.shaping?.observe(
            Route.siteOf(a.destination),
            outcome.results.map((r) => r.reply)
          )
        }
        const report = chain.then(async () => {
          const c = ctx(),
            jitter = d.random.next(),
            dsnId = d.ids.next()
          const decide = reportOf(a, (n) => Drive.reportCommand(c, { ...a, attempt: n }, outcome, d.retry, jitter, dsnId))
          let quiet = false
          // The remote server has answered: that fact is worth waiting for a store that is briefly away (a leader
          // election), since giving up means attempting the delivery again. The same command is re-sent, so an append
          // that did land before its acknowledgement was lost is recognised as ours, not written twice.
          const patience = d.clock.now() + REPORT_PATIENCE_MS
          const record = async (tries: number): Promise<Commands.Handled<undefined>> => {
            try {
              return await recordOnce()
            } catch (e) {
              if ((e as { _tag?: string })?._tag !== "StoreUnavailable" || d.clock.now() > patience) throw e
              d.log("warn", "attempt report not recorded yet; retrying", {
                id,
                attempt: a.attempt,
                tries,
                error: String((e as Error)?.message ?? e)
              })
              await new Promise((r) => setTimeout(r, Math.min(2_000, 250 * 2 ** tries)))
              return record(tries + 1)
            }
          }
          const recordOnce = () =>
            write(decide, {
              // A report that completes the message without a DSN commits together with the clean-up: one fsync.
              alongside: (_after, events) => {
                quiet = Drive.completesQuietly(events)
                return quiet && d.work.commitsWithLog !== false ? [d.work.complete(id), d.bodies.delete(live.digest)] : []
              },
              // The message must stay in the index whatever failed; a re-drive reads the log and carries on.
              repair: () => d.work.schedule(id, d.clock.now()).catch(() => {})
            })
          const h = await record(0)
          if (unlogged) {
            unlogged = false
            for (const e of h.events) if (e.type === "AttemptStarted") numbers.set(e.destination, e.attempt)
          }
          // Where the clean-up cannot share the append's commit (cluster: the ack removes the carrier, i.e. the body),
          // it follows the append, never precedes it: a failed append must leave the message whole.
          if (quiet && d.work.commitsWithLog === false) await Promise.all([d.work.complete(id), d.bodies.delete(live.digest)])
          if (quiet) cleaned = true
          for (const res of outcome.results)
            d.log("info", "attempt", {
              id,
              rcpt: res.rcpt,
              host: outcome.host,
              code: res.reply.code,
              reply: Reply.format(res.reply),
              attempt: a.attempt
            })
        })
        chain = report.catch(() => {})
        await report
      })
    )
    return cleaned && get().status === "completed"
  }

  return {
    driveOnce,
    finish,
    remember: (id, body) => void bodyCache.set(id, body),
    forget: (id) => void bodyCache.delete(id)
  }
}
