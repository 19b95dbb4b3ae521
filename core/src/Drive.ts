// The drive plan of one message: what is due at `now`, the Route and StartAttempt commands (one decision, one
// append), the ReportAttempt of an attempt's results, and what follows a decision (finish, park, expire, wait).
// The node's scheduler and what-if both run this plan, so a simulation cannot drift from the node. Pure: no I/O.
import * as E from "fp-ts/lib/Either.js"
import * as Message from "./Message.js"
import type { RetryPolicy } from "./Policy.js"
import type { Destination, RouteDecision } from "./Route.js"
import type { Trace } from "./Trace.js"

/** What a message needs next, from its state, the time and the retry policy in force. */
export type Next =
  /** No message in the state: the stream read back empty (never a reason to drop work). */
  | { readonly kind: "none" }
  /** Completed: queue the DSN if one is due, then remove the work entry and the body. */
  | { readonly kind: "finish" }
  /** Held: parked until released or until its lifetime ends (`until`), whichever is first. */
  | { readonly kind: "park"; readonly until: number }
  /** Held past its lifetime: the Expire command ends it (Postfix's hold queue with maximal_queue_lifetime). */
  | { readonly kind: "expire" }
  /** These recipients are due now: route them. */
  | { readonly kind: "route"; readonly due: ReadonlyArray<Message.Recipient> }
  /** Nothing due yet: come back at `until`. */
  | { readonly kind: "wait"; readonly until: number }

export const expiresAt = (s: Message.Live, retry: RetryPolicy): number => s.receivedAt + retry.lifetimeMs

/**
 * Who is driving, in a cluster: a recipient another node started an attempt for less than `leaseMs` ago is that
 * node's (its attempt may be in flight), not due here until the lease ends; one left attempting by this node or by
 * a node whose lease has run out is due again (a crash left it). Without it, every attempting recipient is due.
 */
export interface Owner {
  readonly node: string
  readonly leaseMs: number
}

const inFlightElsewhere = (r: Message.Recipient, now: number, owner: Owner | undefined): boolean =>
  owner !== undefined &&
  r.status === "attempting" &&
  r.attemptNode !== undefined &&
  r.attemptNode !== owner.node &&
  (r.attemptAt ?? 0) + owner.leaseMs > now

/** The recipients due now, less those a peer is attempting under a live lease. */
export const due = (s: Message.Live, now: number, owner?: Owner): ReadonlyArray<Message.Recipient> =>
  Message.dueRecipients(s, now).filter((r) => !inFlightElsewhere(r, now, owner))

export const next = (state: Message.State, now: number, retry: RetryPolicy, owner?: Owner): Next => {
  if (state.status === "empty") return { kind: "none" }
  if (state.status === "completed") return { kind: "finish" }
  if (state.held) {
    const until = expiresAt(state, retry)
    return now >= until ? { kind: "expire" } : { kind: "park", until }
  }
  const ready = due(state, now, owner)
  if (ready.length > 0) return { kind: "route", due: ready }
  const busy = state.recipients.filter((r) => inFlightElsewhere(r, now, owner)).map((r) => (r.attemptAt ?? now) + owner!.leaseMs)
  const nextDue = Message.nextDue(state)
  const open = state.recipients.filter((r) => r.status === "deferred").map((r) => r.nextAttemptAt ?? now)
  if (busy.length > 0) return { kind: "wait", until: Math.min(...busy, ...open) }
  return { kind: "wait", until: nextDue ?? now }
}

/** One delivery attempt the plan started: its number, its destination and its recipients. */
export interface Attempt {
  readonly attempt: number
  readonly destination: Destination
  readonly rcpts: ReadonlyArray<string>
}

/** Routed recipients grouped by destination key, in recipient order: one attempt per group. */
export const groups = (s: Message.State): ReadonlyArray<{ readonly destination: Destination; readonly rcpts: ReadonlyArray<string> }> => {
  const out = new Map<string, { destination: Destination; rcpts: Array<string> }>()
  if (s.status !== "active") return []
  for (const r of s.recipients) {
    if (r.status !== "routed" || !r.destination) continue
    const g = out.get(r.destination.key) ?? { destination: r.destination, rcpts: [] }
    g.rcpts.push(r.address)
    out.set(r.destination.key, g)
  }
  return [...out.values()]
}

export const routeCommand = (ctx: Message.Ctx, routes: ReadonlyArray<RouteDecision>, dsnId: string): Message.Command => ({
  type: "Route",
  ctx,
  routes,
  dsnId
})

export interface Begun {
  /** Route's events then one AttemptStarted per destination: appended together. */
  readonly events: ReadonlyArray<Message.Event>
  readonly state: Message.State
  readonly attempts: ReadonlyArray<Attempt>
}

/**
 * Routes the recipients of `routes` that are still due in `state` (a reloaded state may have moved on), then
 * starts one attempt per destination key. No route left to apply gives no events and no attempts.
 */
export const begin = (
  state: Message.State,
  now: number,
  routes: ReadonlyArray<RouteDecision>,
  ctx: Message.Ctx,
  dsnId: string,
  owner?: Owner
): E.Either<Message.DecideError, Begun> => {
  if (state.status !== "active") return E.right({ events: [], state, attempts: [] })
  if (state.held) return E.left({ _tag: "MessageHeld", id: state.id })
  const dueNow = new Set(due(state, now, owner).map((r) => r.address))
  const apply = routes.filter((r) => dueNow.has(r.rcpt))
  if (apply.length === 0) return E.right({ events: [], state, attempts: [] })
  const events: Array<Message.Event> = []
  let s = state as Message.State
  const step = (c: Message.Command): E.Either<Message.DecideError, void> => {
    const r = Message.decide(c, s)
    if (E.isLeft(r)) return r
    events.push(...r.right)
    s = Message.fold(r.right, s)
    return E.right(undefined)
  }
  const routed = step(routeCommand(ctx, apply, dsnId))
  if (E.isLeft(routed)) return routed
  const attempts: Array<Attempt> = []
  for (const g of groups(s)) {
    const started = step({ type: "StartAttempt", ctx, rcpts: g.rcpts, destination: g.destination.key })
    if (E.isLeft(started)) return started
    attempts.push({ attempt: (s as Message.Live).attempts, ...g })
  }
  return E.right({ events, state: s, attempts })
}

/** The results of one attempt as the decider's command. */
export const reportCommand = (
  ctx: Message.Ctx,
  attempt: Attempt,
  outcome: { readonly host: string; readonly results: ReadonlyArray<Message.AttemptResult>; readonly trace?: Trace | undefined },
  retry: RetryPolicy,
  jitter: number,
  dsnId: string
): Message.Command => ({
  type: "ReportAttempt",
  ctx,
  attempt: attempt.attempt,
  host: outcome.host,
  results: outcome.results,
  ...(outcome.trace ? { trace: outcome.trace } : {}),
  retry,
  jitter,
  dsnId
})

export const expireCommand = (ctx: Message.Ctx, retry: RetryPolicy, dsnId: string): Message.Command => ({
  type: "Expire",
  ctx,
  retry,
  dsnId
})

/** A decision completes the message without a DSN to queue: its clean-up can share the append's commit. */
export const completesQuietly = (events: ReadonlyArray<Message.Event>): boolean =>
  events.some((e) => e.type === "MessageCompleted") && !events.some((e) => e.type === "BounceQueued")

/** Decides and folds: the events and the state after them. */
export const decideAndFold = (
  command: Message.Command,
  state: Message.State
): E.Either<Message.DecideError, { readonly events: ReadonlyArray<Message.Event>; readonly state: Message.State }> => {
  const r = Message.decide(command, state)
  return E.isLeft(r) ? r : E.right({ events: r.right, state: Message.fold(r.right, state) })
}
