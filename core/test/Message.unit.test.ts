// Given/When/Then specs for the message decider: given these events, when this command, then these events or this error.
// Pure and in memory: no clock, no I/O; every time below is a literal.
import * as E from "fp-ts/lib/Either.js"
import { describe, expect, it } from "vitest"
import {
  type Command,
  type Ctx,
  type DecideError,
  type Event,
  type EventOf,
  type State,
  decide,
  dueRecipients,
  EVENT_TYPES,
  evolve,
  fold,
  initialState,
  nextDue,
  SCHEMA_VERSION
} from "../src/Message.js"
import type { RetryPolicy } from "../src/Policy.js"
import { Replies, type Reply } from "../src/Reply.js"
import type { Destination, RouteDecision } from "../src/Route.js"

// ---- fixtures ------------------------------------------------------------------------------------

const T0 = 1_700_000_000_000
const MIN = 60_000
const DAY = 24 * 3600_000
const policy: RetryPolicy = { initialMs: 5 * MIN, maxMs: 4000_000, multiplier: 2, jitter: 0.1, lifetimeMs: 5 * DAY }
const EXPIRES = T0 + policy.lifetimeMs
const NODE = "node-1"
const HASH = "cafebabe"
const ID = "01JMSG"
const SENDER = "sender@origin.example"
const A = "a@one.example"
const B = "b@two.example"
const C = "c@three.example"
const D = "d@one.example"
const client = { ip: "192.0.2.10", helo: "client.origin.example", tls: true }

const ctx = (at: number): Ctx => ({ at, node: NODE, policy: HASH })
const meta = (at: number) => ({ v: SCHEMA_VERSION, at, node: NODE, policy: HASH })

const smtp = (domain: string): Destination => ({
  kind: "smtp",
  key: domain,
  hops: [{ host: `mx.${domain}`, port: 25, preference: 10 }],
  via: "mx"
})
const nullMx = (domain: string): Destination => ({ kind: "unroutable", key: domain, reply: Replies.nullMx })
const route = (rcpt: string, destination: Destination = smtp(rcpt.split("@")[1] ?? "")): RouteDecision => ({ rcpt, destination })

const r250: Reply = { code: 250, enhanced: "2.0.0", text: "OK queued as X1" }
const r250b: Reply = { code: 250, enhanced: "2.6.0", text: "Message accepted" }
const r451: Reply = { code: 451, enhanced: "4.7.1", text: "Greylisted, try again later" }
const r452: Reply = { code: 452, enhanced: "4.2.2", text: "Mailbox full" }
const r550: Reply = { code: 550, enhanced: "5.1.1", text: "User unknown" }

// ---- events --------------------------------------------------------------------------------------

const ev = {
  received: (at: number, recipients: ReadonlyArray<string>, opts: { sender?: string; dsnOf?: string } = {}): Event => ({
    ...meta(at),
    type: "MessageReceived",
    id: ID,
    sender: opts.sender ?? SENDER,
    recipients,
    size: 1234,
    digest: "sha256:abc",
    client,
    ...(opts.dsnOf !== undefined ? { dsnOf: opts.dsnOf } : {})
  }),
  routed: (at: number, routes: ReadonlyArray<RouteDecision>): Event => ({ ...meta(at), type: "RecipientsRouted", routes }),
  started: (at: number, attempt: number, rcpts: ReadonlyArray<string>, destination: string): Event => ({
    ...meta(at),
    type: "AttemptStarted",
    attempt,
    rcpts,
    destination
  }),
  succeeded: (at: number, attempt: number, rcpts: ReadonlyArray<string>, host: string, reply: Reply): Event => ({
    ...meta(at),
    type: "AttemptSucceeded",
    attempt,
    rcpts,
    host,
    reply
  }),
  deferred: (
    at: number,
    attempt: number,
    rcpts: ReadonlyArray<string>,
    host: string,
    reply: Reply,
    nextAttemptAt: number | null
  ): Event => ({ ...meta(at), type: "AttemptDeferred", attempt, rcpts, host, reply, nextAttemptAt }),
  failed: (at: number, attempt: number, rcpts: ReadonlyArray<string>, host: string, reply: Reply): Event => ({
    ...meta(at),
    type: "AttemptFailed",
    attempt,
    rcpts,
    host,
    reply
  }),
  delivered: (at: number, rcpt: string, host: string, reply: Reply): Event => ({
    ...meta(at),
    type: "RecipientDelivered",
    rcpt,
    host,
    reply
  }),
  bounced: (at: number, rcpt: string, reply: Reply): Event => ({ ...meta(at), type: "RecipientBounced", rcpt, reply }),
  expired: (at: number, rcpt: string, reply: Reply): Event => ({ ...meta(at), type: "RecipientExpired", rcpt, reply }),
  bounceQueued: (at: number, dsnId: string, rcpts: ReadonlyArray<string>): Event => ({ ...meta(at), type: "BounceQueued", dsnId, rcpts }),
  completed: (at: number, counts: { delivered?: number; bounced?: number; expired?: number; deleted?: boolean }): Event => ({
    ...meta(at),
    type: "MessageCompleted",
    delivered: counts.delivered ?? 0,
    bounced: counts.bounced ?? 0,
    expired: counts.expired ?? 0,
    deleted: counts.deleted ?? false
  }),
  held: (at: number, by: string, reason: string): Event => ({ ...meta(at), type: "MessageHeld", by, reason }),
  released: (at: number, by: string): Event => ({ ...meta(at), type: "MessageReleased", by }),
  deleted: (at: number, by: string): Event => ({ ...meta(at), type: "MessageDeleted", by }),
  retryRequested: (at: number, by: string): Event => ({ ...meta(at), type: "RetryRequested", by })
}

// ---- commands ------------------------------------------------------------------------------------

const DSN = "01JDSN"

const cmd = {
  receive: (at: number, recipients: ReadonlyArray<string>, opts: { sender?: string; dsnOf?: string } = {}): Command => ({
    type: "Receive",
    ctx: ctx(at),
    id: ID,
    sender: opts.sender ?? SENDER,
    recipients,
    size: 1234,
    digest: "sha256:abc",
    client,
    ...(opts.dsnOf !== undefined ? { dsnOf: opts.dsnOf } : {})
  }),
  route: (at: number, routes: ReadonlyArray<RouteDecision>): Command => ({ type: "Route", ctx: ctx(at), routes, dsnId: DSN }),
  start: (at: number, rcpts: ReadonlyArray<string>, destination: string): Command => ({
    type: "StartAttempt",
    ctx: ctx(at),
    rcpts,
    destination
  }),
  report: (
    at: number,
    attempt: number,
    results: ReadonlyArray<readonly [string, Reply]>,
    opts: { host?: string; jitter?: number; retry?: RetryPolicy } = {}
  ): Command => ({
    type: "ReportAttempt",
    ctx: ctx(at),
    attempt,
    host: opts.host ?? "mx.one.example",
    results: results.map(([rcpt, reply]) => ({ rcpt, reply })),
    retry: opts.retry ?? policy,
    jitter: opts.jitter ?? 0.5,
    dsnId: DSN
  }),
  expire: (at: number, retry: RetryPolicy = policy): Command => ({ type: "Expire", ctx: ctx(at), retry, dsnId: DSN }),
  hold: (at: number, reason = "suspicious"): Command => ({ type: "Hold", ctx: ctx(at), by: "ops", reason }),
  release: (at: number): Command => ({ type: "Release", ctx: ctx(at), by: "ops" }),
  retryNow: (at: number): Command => ({ type: "RetryNow", ctx: ctx(at), by: "ops" }),
  delete: (at: number): Command => ({ type: "Delete", ctx: ctx(at), by: "ops" }),
  bounce: (at: number): Command => ({ type: "Bounce", ctx: ctx(at), by: "ops", dsnId: DSN })
}

// ---- given / when / then -------------------------------------------------------------------------

type Expected = ReadonlyArray<Event> | DecideError["_tag"] | DecideError

const given = (events: ReadonlyArray<Event>) => ({
  when: (command: Command) => ({
    then: (expected: Expected): ReadonlyArray<Event> => {
      const result = decide(command, fold(events))
      if (typeof expected === "string") {
        expect(E.isLeft(result) ? result.left._tag : { unexpectedEvents: result.right }).toBe(expected)
        return []
      }
      if (!Array.isArray(expected)) {
        expect(result).toEqual(E.left(expected))
        return []
      }
      expect(result).toEqual(E.right(expected))
      return E.isRight(result) ? result.right : []
    }
  })
})

const live = (s: State) => {
  if (s.status === "empty") throw new Error("expected a received message")
  return s
}
const rcptOf = (s: State, address: string) => live(s).recipients.find((r) => r.address === address)

// Shared histories, built from the start of the lifecycle.
const receivedA = [ev.received(T0, [A])]
const routedA = [...receivedA, ev.routed(T0 + 10, [route(A)])]
const attemptingA = [...routedA, ev.started(T0 + 20, 1, [A], "one.example")]
const receivedAB = [ev.received(T0, [A, B])]
const attemptingAB = [...receivedAB, ev.routed(T0 + 10, [route(A), route(B)]), ev.started(T0 + 20, 1, [A, B], "relay")]

// ---- Receive -------------------------------------------------------------------------------------

describe("Receive", () => {
  it("records the message with its recipients, duplicates removed", () => {
    given([])
      .when(cmd.receive(T0, [A, B, A]))
      .then([ev.received(T0, [A, B])])
  })

  it("records dsnOf on a DSN message", () => {
    given([])
      .when(cmd.receive(T0, [A], { sender: "", dsnOf: "01JORIG" }))
      .then([ev.received(T0, [A], { sender: "", dsnOf: "01JORIG" })])
  })

  it("refuses a message with no recipients", () => {
    given([]).when(cmd.receive(T0, [])).then("NoRecipients")
  })

  it("refuses to receive the same message twice", () => {
    given(receivedA)
      .when(cmd.receive(T0 + 1, [A]))
      .then({ _tag: "AlreadyReceived", id: ID })
  })

  it("starts every recipient pending, not held, at version 1", () => {
    const s = live(fold(receivedAB))
    expect(s.status).toBe("active")
    expect(s.receivedAt).toBe(T0)
    expect(s.held).toBe(false)
    expect(s.version).toBe(1)
    expect(s.recipients.map((r) => [r.address, r.status, r.attempts])).toEqual([
      [A, "pending", 0],
      [B, "pending", 0]
    ])
  })
})

// ---- the happy path ------------------------------------------------------------------------------

describe("lifecycle: receive, route, attempt, deliver", () => {
  it("routes a pending recipient", () => {
    given(receivedA)
      .when(cmd.route(T0 + 10, [route(A)]))
      .then([ev.routed(T0 + 10, [route(A)])])
    expect(rcptOf(fold(routedA), A)).toMatchObject({ status: "routed", destination: smtp("one.example") })
  })

  it("starts attempt 1 for routed recipients, then attempt 2", () => {
    given(routedA)
      .when(cmd.start(T0 + 20, [A], "one.example"))
      .then([ev.started(T0 + 20, 1, [A], "one.example")])
    const twoRouted = [...receivedAB, ev.routed(T0 + 10, [route(A), route(B)]), ev.started(T0 + 20, 1, [A], "one.example")]
    given(twoRouted)
      .when(cmd.start(T0 + 21, [B], "two.example"))
      .then([ev.started(T0 + 21, 2, [B], "two.example")])
    expect(rcptOf(fold(attemptingA), A)).toMatchObject({ status: "attempting", attempts: 1 })
  })

  it("a 2xx delivers the recipient and completes the message, with no DSN", () => {
    given(attemptingA)
      .when(cmd.report(T0 + 30, 1, [[A, r250]]))
      .then([
        ev.succeeded(T0 + 30, 1, [A], "mx.one.example", r250),
        ev.delivered(T0 + 30, A, "mx.one.example", r250),
        ev.completed(T0 + 30, { delivered: 1 })
      ])
  })

  it("the folded end state is completed, delivered, with the last reply and host", () => {
    const events = [
      ...attemptingA,
      ...given(attemptingA)
        .when(cmd.report(T0 + 30, 1, [[A, r250]]))
        .then([
          ev.succeeded(T0 + 30, 1, [A], "mx.one.example", r250),
          ev.delivered(T0 + 30, A, "mx.one.example", r250),
          ev.completed(T0 + 30, { delivered: 1 })
        ])
    ]
    const s = fold(events)
    expect(s).toMatchObject({ status: "completed", deleted: false, version: events.length, attempts: 1 })
    expect(rcptOf(s, A)).toMatchObject({ status: "delivered", lastReply: r250, lastHost: "mx.one.example", attempts: 1 })
  })
})

// ---- partial and mixed outcomes ------------------------------------------------------------------

describe("partial delivery across recipients", () => {
  it("a report for some recipients of an attempt leaves the others attempting and the message open", () => {
    const out = given(attemptingAB)
      .when(cmd.report(T0 + 30, 1, [[A, r250]]))
      .then([ev.succeeded(T0 + 30, 1, [A], "mx.one.example", r250), ev.delivered(T0 + 30, A, "mx.one.example", r250)])
    const s = fold([...attemptingAB, ...out])
    expect(s.status).toBe("active")
    expect(rcptOf(s, B)?.status).toBe("attempting")
  })

  it("the last recipient's outcome completes the message and counts every recipient", () => {
    const history = [
      ...attemptingAB,
      ev.succeeded(T0 + 30, 1, [A], "mx.one.example", r250),
      ev.delivered(T0 + 30, A, "mx.one.example", r250)
    ]
    given(history)
      .when(cmd.report(T0 + 31, 1, [[B, r250b]]))
      .then([
        ev.succeeded(T0 + 31, 1, [B], "mx.one.example", r250b),
        ev.delivered(T0 + 31, B, "mx.one.example", r250b),
        ev.completed(T0 + 31, { delivered: 2 })
      ])
  })

  it("one recipient delivered, the other deferred then delivered on a later attempt", () => {
    const next = T0 + 30 + 5 * MIN
    const history = [
      ...attemptingAB,
      ev.succeeded(T0 + 30, 1, [A], "mx", r250),
      ev.delivered(T0 + 30, A, "mx", r250),
      ev.deferred(T0 + 30, 1, [B], "mx", r451, next)
    ]
    expect(dueRecipients(live(fold(history)), next - 1)).toEqual([])
    expect(dueRecipients(live(fold(history)), next).map((r) => r.address)).toEqual([B])
    const retried = [...history, ev.routed(next, [route(B)]), ev.started(next + 1, 2, [B], "two.example")]
    given(retried)
      .when(cmd.report(next + 2, 2, [[B, r250]], { host: "mx" }))
      .then([ev.succeeded(next + 2, 2, [B], "mx", r250), ev.delivered(next + 2, B, "mx", r250), ev.completed(next + 2, { delivered: 2 })])
  })
})

describe("mixed replies in one attempt", () => {
  const four = [
    ev.received(T0, [A, B, C, D]),
    ev.routed(T0 + 10, [route(A), route(B), route(C), route(D)]),
    ev.started(T0 + 20, 1, [A, B, C, D], "relay")
  ]
  const at = T0 + 30

  it("emits one Attempt* event per distinct reply, each followed by its recipients' outcomes", () => {
    given(four)
      .when(
        cmd.report(
          at,
          1,
          [
            [A, r250],
            [B, r550],
            [C, r451],
            [D, r250]
          ],
          { host: "relay" }
        )
      )
      .then([
        ev.succeeded(at, 1, [A, D], "relay", r250),
        ev.delivered(at, A, "relay", r250),
        ev.delivered(at, D, "relay", r250),
        ev.failed(at, 1, [B], "relay", r550),
        ev.bounced(at, B, r550),
        ev.deferred(at, 1, [C], "relay", r451, at + 5 * MIN)
      ])
  })

  it("two different 2xx replies make two AttemptSucceeded events; two 4xx make two AttemptDeferred", () => {
    given(four)
      .when(
        cmd.report(
          at,
          1,
          [
            [A, r250],
            [B, r451],
            [C, r452],
            [D, r250b]
          ],
          { host: "relay" }
        )
      )
      .then([
        ev.succeeded(at, 1, [A], "relay", r250),
        ev.delivered(at, A, "relay", r250),
        ev.succeeded(at, 1, [D], "relay", r250b),
        ev.delivered(at, D, "relay", r250b),
        ev.deferred(at, 1, [B], "relay", r451, at + 5 * MIN),
        ev.deferred(at, 1, [C], "relay", r452, at + 5 * MIN)
      ])
  })

  it("replies that differ only in the enhanced code are distinct", () => {
    const other: Reply = { ...r550, enhanced: "5.1.2" }
    const out = given(four)
      .when(
        cmd.report(at, 1, [
          [A, r550],
          [B, other]
        ])
      )
      .then([
        ev.failed(at, 1, [A], "mx.one.example", r550),
        ev.bounced(at, A, r550),
        ev.failed(at, 1, [B], "mx.one.example", other),
        ev.bounced(at, B, other)
      ])
    expect(out.filter((e) => e.type === "AttemptFailed")).toHaveLength(2)
  })

  it("a 5xx for one and 2xx for the other completes with one DSN naming only the bounced recipient", () => {
    given(attemptingAB)
      .when(
        cmd.report(
          at,
          1,
          [
            [A, r250],
            [B, r550]
          ],
          { host: "relay" }
        )
      )
      .then([
        ev.succeeded(at, 1, [A], "relay", r250),
        ev.delivered(at, A, "relay", r250),
        ev.failed(at, 1, [B], "relay", r550),
        ev.bounced(at, B, r550),
        ev.bounceQueued(at, DSN, [B]),
        ev.completed(at, { delivered: 1, bounced: 1 })
      ])
  })
})

// ---- deferral and expiry -------------------------------------------------------------------------

describe("deferral", () => {
  const at = T0 + 30

  it("the first 4xx schedules the next attempt initialMs later (jitter sample 0.5 is no jitter)", () => {
    const out = given(attemptingA)
      .when(cmd.report(at, 1, [[A, r451]]))
      .then([ev.deferred(at, 1, [A], "mx.one.example", r451, at + 5 * MIN)])
    expect(rcptOf(fold([...attemptingA, ...out]), A)).toMatchObject({ status: "deferred", nextAttemptAt: at + 5 * MIN, lastReply: r451 })
    expect(nextDue(live(fold([...attemptingA, ...out])))).toBe(at + 5 * MIN)
  })

  it("jitter moves the delay within +-policy.jitter", () => {
    given(attemptingA)
      .when(cmd.report(at, 1, [[A, r451]], { jitter: 0 }))
      .then([ev.deferred(at, 1, [A], "mx.one.example", r451, at + 270_000)])
    given(attemptingA)
      .when(cmd.report(at, 1, [[A, r451]], { jitter: 0.75 }))
      .then([ev.deferred(at, 1, [A], "mx.one.example", r451, at + 315_000)])
  })

  it("the delay doubles with each attempt the recipient has had", () => {
    const t1 = at + 5 * MIN
    const secondAttempt = [
      ...attemptingA,
      ev.deferred(at, 1, [A], "mx", r451, t1),
      ev.routed(t1, [route(A)]),
      ev.started(t1 + 1, 2, [A], "one.example")
    ]
    expect(rcptOf(fold(secondAttempt), A)?.attempts).toBe(2)
    given(secondAttempt)
      .when(cmd.report(t1 + 2, 2, [[A, r451]], { host: "mx" }))
      .then([ev.deferred(t1 + 2, 2, [A], "mx", r451, t1 + 2 + 10 * MIN)])
  })

  it("a group's delay follows the recipient with the most attempts", () => {
    const t1 = at + 5 * MIN
    const history = [
      ...receivedAB,
      ev.routed(T0 + 10, [route(A)]),
      ev.started(T0 + 20, 1, [A], "one.example"),
      ev.deferred(at, 1, [A], "mx", r451, t1),
      ev.routed(t1, [route(A), route(B)]),
      ev.started(t1 + 1, 2, [A, B], "relay")
    ]
    given(history)
      .when(
        cmd.report(
          t1 + 2,
          2,
          [
            [A, r451],
            [B, r451]
          ],
          { host: "mx" }
        )
      )
      .then([ev.deferred(t1 + 2, 2, [A, B], "mx", r451, t1 + 2 + 10 * MIN)])
  })

  it("the next attempt is capped at receivedAt + lifetime", () => {
    const late = EXPIRES - MIN
    given(attemptingA)
      .when(cmd.report(late, 1, [[A, r451]]))
      .then([ev.deferred(late, 1, [A], "mx.one.example", r451, EXPIRES)])
  })

  it("a short lifetime caps even the first delay", () => {
    const short: RetryPolicy = { ...policy, lifetimeMs: 1000 }
    given(attemptingA)
      .when(cmd.report(T0 + 30, 1, [[A, r451]], { retry: short }))
      .then([ev.deferred(T0 + 30, 1, [A], "mx.one.example", r451, T0 + 1000)])
  })

  it("the delay never exceeds maxMs", () => {
    const capped: RetryPolicy = { ...policy, initialMs: 4000_000, jitter: 0.5 }
    given(attemptingA)
      .when(cmd.report(at, 1, [[A, r451]], { retry: capped, jitter: 0.999 }))
      .then([ev.deferred(at, 1, [A], "mx.one.example", r451, at + 4000_000)])
  })
})

describe("expiry", () => {
  it("a 4xx at or after receivedAt + lifetime expires the recipient, queues a DSN and completes", () => {
    given(attemptingA)
      .when(cmd.report(EXPIRES, 1, [[A, r451]]))
      .then([
        ev.deferred(EXPIRES, 1, [A], "mx.one.example", r451, null),
        ev.expired(EXPIRES, A, r451),
        ev.bounceQueued(EXPIRES, DSN, [A]),
        ev.completed(EXPIRES, { expired: 1 })
      ])
  })

  it("mid-retry: the third attempt's 4xx past the lifetime expires it", () => {
    const short: RetryPolicy = { ...policy, lifetimeMs: 20 * MIN }
    const t1 = T0 + 5 * MIN
    const t2 = t1 + 10 * MIN
    const history = [
      ...routedA,
      ev.started(T0 + 1, 1, [A], "one.example"),
      ev.deferred(T0 + 2, 1, [A], "mx", r451, t1),
      ev.routed(t1, [route(A)]),
      ev.started(t1, 2, [A], "one.example"),
      ev.deferred(t1 + 1, 2, [A], "mx", r452, t2),
      ev.routed(t2, [route(A)]),
      ev.started(t2, 3, [A], "one.example")
    ]
    const tooLate = T0 + 20 * MIN
    given(history)
      .when(cmd.report(tooLate, 3, [[A, r451]], { host: "mx", retry: short }))
      .then([
        ev.deferred(tooLate, 3, [A], "mx", r451, null),
        ev.expired(tooLate, A, r451),
        ev.bounceQueued(tooLate, DSN, [A]),
        ev.completed(tooLate, { expired: 1 })
      ])
  })

  it("after the lifetime a 2xx still delivers and a 5xx still bounces", () => {
    given(attemptingAB)
      .when(
        cmd.report(
          EXPIRES + 1,
          1,
          [
            [A, r250],
            [B, r550]
          ],
          { host: "mx" }
        )
      )
      .then([
        ev.succeeded(EXPIRES + 1, 1, [A], "mx", r250),
        ev.delivered(EXPIRES + 1, A, "mx", r250),
        ev.failed(EXPIRES + 1, 1, [B], "mx", r550),
        ev.bounced(EXPIRES + 1, B, r550),
        ev.bounceQueued(EXPIRES + 1, DSN, [B]),
        ev.completed(EXPIRES + 1, { delivered: 1, bounced: 1 })
      ])
  })

  it("Expire before the lifetime decides nothing", () => {
    given(attemptingA)
      .when(cmd.expire(EXPIRES - 1))
      .then([])
  })

  it("Expire after the lifetime expires every open recipient, quoting its last reply", () => {
    const history = [
      ...attemptingAB,
      ev.succeeded(T0 + 30, 1, [A], "mx", r250),
      ev.delivered(T0 + 30, A, "mx", r250),
      ev.deferred(T0 + 30, 1, [B], "mx", r451, T0 + 30 + 5 * MIN)
    ]
    const expiredReply = { ...Replies.expired, text: `${Replies.expired.text}; last reply: 451 ${r451.text}` }
    given(history)
      .when(cmd.expire(EXPIRES))
      .then([ev.expired(EXPIRES, B, expiredReply), ev.bounceQueued(EXPIRES, DSN, [B]), ev.completed(EXPIRES, { delivered: 1, expired: 1 })])
  })

  it("Expire on a recipient never attempted uses the plain expiry reply", () => {
    given(receivedA)
      .when(cmd.expire(EXPIRES))
      .then([ev.expired(EXPIRES, A, Replies.expired), ev.bounceQueued(EXPIRES, DSN, [A]), ev.completed(EXPIRES, { expired: 1 })])
  })
})

// ---- bounces and DSNs ----------------------------------------------------------------------------

describe("bounces and DSNs", () => {
  it("a null MX bounces the recipient immediately on routing", () => {
    const r = route(A, nullMx("one.example"))
    given(receivedA)
      .when(cmd.route(T0 + 10, [r]))
      .then([
        ev.routed(T0 + 10, [r]),
        ev.bounced(T0 + 10, A, Replies.nullMx),
        ev.bounceQueued(T0 + 10, DSN, [A]),
        ev.completed(T0 + 10, { bounced: 1 })
      ])
  })

  it("an unroutable recipient next to a routable one bounces alone and the message stays open", () => {
    const routes = [route(A), route(B, nullMx("two.example"))]
    const out = given(receivedAB)
      .when(cmd.route(T0 + 10, routes))
      .then([ev.routed(T0 + 10, routes), ev.bounced(T0 + 10, B, Replies.nullMx)])
    const s = fold([...receivedAB, ...out])
    expect(s.status).toBe("active")
    expect([rcptOf(s, A)?.status, rcptOf(s, B)?.status]).toEqual(["routed", "bounced"])
  })

  it("the DSN queued at completion names every failed recipient, bounced earlier or expired now", () => {
    const history = [
      ...receivedAB,
      ev.routed(T0 + 10, [route(A, nullMx("one.example")), route(B)]),
      ev.bounced(T0 + 10, A, Replies.nullMx),
      ev.started(T0 + 20, 1, [B], "two.example")
    ]
    given(history)
      .when(cmd.report(EXPIRES, 1, [[B, r451]], { host: "mx" }))
      .then([
        ev.deferred(EXPIRES, 1, [B], "mx", r451, null),
        ev.expired(EXPIRES, B, r451),
        ev.bounceQueued(EXPIRES, DSN, [A, B]),
        ev.completed(EXPIRES, { bounced: 1, expired: 1 })
      ])
  })

  it("no DSN for a null sender: a 5xx completes with no BounceQueued", () => {
    const history = [ev.received(T0, [A], { sender: "" }), ev.routed(T0 + 10, [route(A)]), ev.started(T0 + 20, 1, [A], "one.example")]
    given(history)
      .when(cmd.report(T0 + 30, 1, [[A, r550]]))
      .then([ev.failed(T0 + 30, 1, [A], "mx.one.example", r550), ev.bounced(T0 + 30, A, r550), ev.completed(T0 + 30, { bounced: 1 })])
  })

  it("no DSN for a null sender on null MX, on expiry nor on operator bounce", () => {
    const nul = [ev.received(T0, [A], { sender: "" })]
    const r = route(A, nullMx("one.example"))
    given(nul)
      .when(cmd.route(T0 + 1, [r]))
      .then([ev.routed(T0 + 1, [r]), ev.bounced(T0 + 1, A, Replies.nullMx), ev.completed(T0 + 1, { bounced: 1 })])
    given(nul)
      .when(cmd.expire(EXPIRES))
      .then([ev.expired(EXPIRES, A, Replies.expired), ev.completed(EXPIRES, { expired: 1 })])
    given(nul)
      .when(cmd.bounce(T0 + 1))
      .then([ev.bounced(T0 + 1, A, Replies.operatorBounce("ops")), ev.completed(T0 + 1, { bounced: 1 })])
  })

  it("no DSN about a DSN: a message with dsnOf set bounces without BounceQueued, even with a sender", () => {
    const history = [ev.received(T0, [A], { dsnOf: "01JORIG" }), ev.routed(T0 + 10, [route(A)]), ev.started(T0 + 20, 1, [A], "one.example")]
    given(history)
      .when(cmd.report(T0 + 30, 1, [[A, r550]]))
      .then([ev.failed(T0 + 30, 1, [A], "mx.one.example", r550), ev.bounced(T0 + 30, A, r550), ev.completed(T0 + 30, { bounced: 1 })])
  })

  it("the DSN id is recorded on the state", () => {
    const r = route(A, nullMx("one.example"))
    const out = given(receivedA)
      .when(cmd.route(T0 + 10, [r]))
      .then([
        ev.routed(T0 + 10, [r]),
        ev.bounced(T0 + 10, A, Replies.nullMx),
        ev.bounceQueued(T0 + 10, DSN, [A]),
        ev.completed(T0 + 10, { bounced: 1 })
      ])
    expect(live(fold([...receivedA, ...out])).bounceId).toBe(DSN)
  })
})

// ---- operator commands ---------------------------------------------------------------------------

describe("operator commands", () => {
  const deferredA = [...attemptingA, ev.deferred(T0 + 30, 1, [A], "mx", r451, T0 + 30 + 5 * MIN)]
  const heldA = [...deferredA, ev.held(T0 + 40, "ops", "suspicious")]

  it("Hold holds the message; holding a held message decides nothing", () => {
    given(deferredA)
      .when(cmd.hold(T0 + 40))
      .then([ev.held(T0 + 40, "ops", "suspicious")])
    expect(live(fold(heldA)).held).toBe(true)
    given(heldA)
      .when(cmd.hold(T0 + 41))
      .then([])
  })

  it("a held message can be neither routed nor attempted", () => {
    given(heldA)
      .when(cmd.route(T0 + 50, [route(A)]))
      .then({ _tag: "MessageHeld", id: ID })
    const heldRouted = [...routedA, ev.held(T0 + 15, "ops", "x")]
    given(heldRouted)
      .when(cmd.start(T0 + 20, [A], "one.example"))
      .then({ _tag: "MessageHeld", id: ID })
  })

  it("an attempt in flight when the hold came still reports", () => {
    const history = [...attemptingA, ev.held(T0 + 25, "ops", "x")]
    given(history)
      .when(cmd.report(T0 + 30, 1, [[A, r250]]))
      .then([
        ev.succeeded(T0 + 30, 1, [A], "mx.one.example", r250),
        ev.delivered(T0 + 30, A, "mx.one.example", r250),
        ev.completed(T0 + 30, { delivered: 1 })
      ])
  })

  it("Release releases a held message; releasing one not held is NotHeld", () => {
    given(heldA)
      .when(cmd.release(T0 + 50))
      .then([ev.released(T0 + 50, "ops")])
    expect(live(fold([...heldA, ev.released(T0 + 50, "ops")])).held).toBe(false)
    given(deferredA)
      .when(cmd.release(T0 + 50))
      .then({ _tag: "NotHeld", id: ID })
  })

  it("after Release the message routes again", () => {
    const released = [...heldA, ev.released(T0 + 50, "ops")]
    given(released)
      .when(cmd.route(T0 + 60, [route(A)]))
      .then([ev.routed(T0 + 60, [route(A)])])
  })

  it("RetryNow makes every deferred recipient due at once", () => {
    const now = T0 + 60
    given(deferredA)
      .when(cmd.retryNow(now))
      .then([ev.retryRequested(now, "ops")])
    expect(dueRecipients(live(fold(deferredA)), now)).toEqual([])
    const after = live(fold([...deferredA, ev.retryRequested(now, "ops")]))
    expect(dueRecipients(after, now).map((r) => r.address)).toEqual([A])
    expect(nextDue(after)).toBe(now)
  })

  it("Delete completes the message as deleted, with the counts so far and no DSN", () => {
    const history = [
      ...attemptingAB,
      ev.failed(T0 + 30, 1, [A], "mx", r550),
      ev.bounced(T0 + 30, A, r550),
      ev.deferred(T0 + 30, 1, [B], "mx", r451, T0 + 30 + 5 * MIN)
    ]
    given(history)
      .when(cmd.delete(T0 + 40))
      .then([ev.deleted(T0 + 40, "ops"), ev.completed(T0 + 40, { bounced: 1, deleted: true })])
    const s = fold([...history, ev.deleted(T0 + 40, "ops"), ev.completed(T0 + 40, { bounced: 1, deleted: true })])
    expect(s).toMatchObject({ status: "completed", deleted: true })
    expect(rcptOf(s, B)?.status).toBe("deferred")
  })

  it("Delete works on a held message", () => {
    given(heldA)
      .when(cmd.delete(T0 + 50))
      .then([ev.deleted(T0 + 50, "ops"), ev.completed(T0 + 50, { deleted: true })])
  })

  it("Bounce fails every open recipient with the operator reply, leaves delivered ones, queues a DSN", () => {
    const history = [
      ...attemptingAB,
      ev.succeeded(T0 + 30, 1, [A], "mx", r250),
      ev.delivered(T0 + 30, A, "mx", r250),
      ev.deferred(T0 + 30, 1, [B], "mx", r451, T0 + 30 + 5 * MIN)
    ]
    given(history)
      .when(cmd.bounce(T0 + 40))
      .then([
        ev.bounced(T0 + 40, B, Replies.operatorBounce("ops")),
        ev.bounceQueued(T0 + 40, DSN, [B]),
        ev.completed(T0 + 40, { delivered: 1, bounced: 1 })
      ])
  })
})

// ---- errors --------------------------------------------------------------------------------------

describe("errors", () => {
  it("every command but Receive on an empty stream is MessageNotFound", () => {
    for (const c of [
      cmd.route(T0, [route(A)]),
      cmd.start(T0, [A], "x"),
      cmd.report(T0, 1, [[A, r250]]),
      cmd.expire(T0),
      cmd.hold(T0),
      cmd.release(T0),
      cmd.retryNow(T0),
      cmd.delete(T0),
      cmd.bounce(T0)
    ])
      given([]).when(c).then("MessageNotFound")
  })

  const done = [
    ...attemptingA,
    ev.succeeded(T0 + 30, 1, [A], "mx", r250),
    ev.delivered(T0 + 30, A, "mx", r250),
    ev.completed(T0 + 30, { delivered: 1 })
  ]
  const deleted = [...receivedA, ev.deleted(T0 + 1, "ops"), ev.completed(T0 + 1, { deleted: true })]

  it.each([
    ["Route", cmd.route(T0 + 40, [route(A)])],
    ["StartAttempt", cmd.start(T0 + 40, [A], "one.example")],
    ["ReportAttempt", cmd.report(T0 + 40, 1, [[A, r250]])],
    ["Expire", cmd.expire(EXPIRES)],
    ["Hold", cmd.hold(T0 + 40)],
    ["Release", cmd.release(T0 + 40)],
    ["RetryNow", cmd.retryNow(T0 + 40)],
    ["Delete", cmd.delete(T0 + 40)],
    ["Bounce", cmd.bounce(T0 + 40)]
  ] as const)("%s on a completed or deleted message is MessageFinished", (_name, c) => {
    given(done).when(c).then({ _tag: "MessageFinished", id: ID })
    given(deleted).when(c).then({ _tag: "MessageFinished", id: ID })
  })

  it("Receive on a completed message is AlreadyReceived", () => {
    given(done)
      .when(cmd.receive(T0 + 40, [A]))
      .then("AlreadyReceived")
  })

  it("routing a terminal or unknown recipient is RecipientNotEligible", () => {
    const history = [...attemptingAB, ev.succeeded(T0 + 30, 1, [A], "mx", r250), ev.delivered(T0 + 30, A, "mx", r250)]
    given(history)
      .when(cmd.route(T0 + 40, [route(A)]))
      .then({ _tag: "RecipientNotEligible", rcpt: A, status: "delivered" })
    given(receivedA)
      .when(cmd.route(T0 + 40, [route(C)]))
      .then({ _tag: "RecipientNotEligible", rcpt: C, status: "unknown" })
  })

  it("starting an attempt for a recipient that is not routed is RecipientNotEligible", () => {
    given(receivedA)
      .when(cmd.start(T0 + 1, [A], "one.example"))
      .then({ _tag: "RecipientNotEligible", rcpt: A, status: "pending" })
    given(attemptingA)
      .when(cmd.start(T0 + 30, [A], "one.example"))
      .then({ _tag: "RecipientNotEligible", rcpt: A, status: "attempting" })
    given(routedA)
      .when(cmd.start(T0 + 30, [C], "three.example"))
      .then({ _tag: "RecipientNotEligible", rcpt: C, status: "unknown" })
    given(routedA)
      .when(cmd.start(T0 + 30, [], "one.example"))
      .then("NoRecipients")
  })

  it("reporting for a recipient not attempting is RecipientNotEligible", () => {
    const history = [...receivedAB, ev.routed(T0 + 10, [route(A), route(B)]), ev.started(T0 + 20, 1, [A], "one.example")]
    given(history)
      .when(cmd.report(T0 + 30, 1, [[B, r250]]))
      .then({ _tag: "RecipientNotEligible", rcpt: B, status: "routed" })
    given(history)
      .when(cmd.report(T0 + 30, 1, []))
      .then("NoRecipients")
  })

  it("reporting an attempt number never started is AttemptMismatch", () => {
    given(attemptingA)
      .when(cmd.report(T0 + 30, 2, [[A, r250]]))
      .then({ _tag: "AttemptMismatch", expected: 1, got: 2 })
    given(attemptingA)
      .when(cmd.report(T0 + 30, 0, [[A, r250]]))
      .then({ _tag: "AttemptMismatch", expected: 1, got: 0 })
  })

  it("a stale driver's report of an attempt its recipient has since left is AttemptMismatch", () => {
    // Attempt 1 was taken over: the recipient was routed and attempted again (attempt 2) by a peer.
    const takenOver = [
      ...routedA,
      ev.started(T0 + 20, 1, [A], "one.example"),
      ev.routed(T0 + 40, [route(A)]),
      ev.started(T0 + 41, 2, [A], "one.example")
    ]
    given(takenOver)
      .when(cmd.report(T0 + 50, 1, [[A, r250]]))
      .then({ _tag: "AttemptMismatch", expected: 2, got: 1 })
    expect(E.isRight(decide(cmd.report(T0 + 50, 2, [[A, r250]]), fold(takenOver)))).toBe(true)
  })

  it("a recipient named twice in one command is RecipientNotEligible, not two outcomes", () => {
    given(attemptingA)
      .when(
        cmd.report(T0 + 30, 1, [
          [A, r250],
          [A, r550]
        ])
      )
      .then({ _tag: "RecipientNotEligible", rcpt: A, status: "attempting" })
    const twice = [route(A, nullMx("one.example")), route(A, nullMx("one.example"))]
    given(receivedA)
      .when(cmd.route(T0 + 10, twice))
      .then({ _tag: "RecipientNotEligible", rcpt: A, status: "pending" })
    given(routedA)
      .when(cmd.start(T0 + 20, [A, A], "one.example"))
      .then({ _tag: "RecipientNotEligible", rcpt: A, status: "routed" })
  })
})

// ---- crash recovery and scheduling views ---------------------------------------------------------

describe("dueRecipients and nextDue", () => {
  it("after a crash, recipients left routed or attempting are due again, with pending ones", () => {
    const history = [
      ev.received(T0, [A, B, C, D]),
      ev.routed(T0 + 10, [route(A), route(B), route(C)]),
      ev.started(T0 + 20, 1, [A], "one.example"),
      ev.started(T0 + 20, 2, [C], "three.example"),
      ev.succeeded(T0 + 30, 2, [C], "mx", r250),
      ev.delivered(T0 + 30, C, "mx", r250)
    ]
    const s = live(fold(history))
    expect(dueRecipients(s, T0 + 40).map((r) => [r.address, r.status])).toEqual([
      [A, "attempting"],
      [B, "routed"],
      [D, "pending"]
    ])
  })

  it("an attempting recipient can be routed again after a crash and attempted anew", () => {
    given(attemptingA)
      .when(cmd.route(T0 + 100, [route(A)]))
      .then([ev.routed(T0 + 100, [route(A)])])
    const again = [...attemptingA, ev.routed(T0 + 100, [route(A)])]
    given(again)
      .when(cmd.start(T0 + 101, [A], "one.example"))
      .then([ev.started(T0 + 101, 2, [A], "one.example")])
  })

  it("a deferred recipient is due from its nextAttemptAt on, never before", () => {
    const at = T0 + 30
    const s = live(fold([...attemptingA, ev.deferred(at, 1, [A], "mx", r451, at + 5 * MIN)]))
    expect(dueRecipients(s, at + 5 * MIN - 1)).toHaveLength(0)
    expect(dueRecipients(s, at + 5 * MIN)).toHaveLength(1)
  })

  it("nextDue is the earliest deferral, receivedAt while anything is not deferred, undefined when all are terminal", () => {
    const deferBoth = [
      ...attemptingAB,
      ev.deferred(T0 + 30, 1, [A], "mx", r451, T0 + 900),
      ev.deferred(T0 + 30, 1, [B], "mx", r452, T0 + 600)
    ]
    expect(nextDue(live(fold(deferBoth)))).toBe(T0 + 600)
    expect(nextDue(live(fold(receivedAB)))).toBe(T0)
    const oneDeferred = [...attemptingAB, ev.deferred(T0 + 30, 1, [A], "mx", r451, T0 + 900)]
    expect(nextDue(live(fold(oneDeferred)))).toBe(T0)
    const allDone = [...attemptingA, ev.succeeded(T0 + 30, 1, [A], "mx", r250), ev.delivered(T0 + 30, A, "mx", r250)]
    expect(nextDue(live(fold(allDone)))).toBeUndefined()
  })
})

// ---- evolve --------------------------------------------------------------------------------------

describe("evolve", () => {
  it("counts every event in the version, even one that does not apply", () => {
    const stray = ev.delivered(T0, A, "mx", r250)
    expect(evolve(initialState, stray)).toEqual({ status: "empty", version: 1 })
    const s = fold(receivedA)
    const again = evolve(s, ev.received(T0 + 1, [B]))
    expect(again).toEqual({ ...s, version: 2 })
  })

  it("a terminal recipient stays terminal whatever follows", () => {
    const history = [
      ...attemptingA,
      ev.delivered(T0 + 30, A, "mx", r250),
      ev.bounced(T0 + 31, A, r550),
      ev.expired(T0 + 32, A, r451),
      ev.deferred(T0 + 33, 1, [A], "mx", r451, T0 + 99),
      ev.routed(T0 + 34, [route(A)]),
      ev.started(T0 + 35, 2, [A], "x")
    ]
    expect(rcptOf(fold(history), A)).toMatchObject({ status: "delivered", lastReply: r250, attempts: 1 })
  })

  it("fold from a snapshot equals fold from the start", () => {
    const all = [...attemptingAB, ev.deferred(T0 + 30, 1, [A, B], "mx", r451, T0 + 999)]
    const snapshot = fold(all.slice(0, 2))
    expect(fold(all.slice(2), snapshot)).toEqual(fold(all))
  })

  it("EVENT_TYPES lists each event type once", () => {
    const emitted: Array<EventOf<Event["type"]>["type"]> = [
      "MessageReceived",
      "RecipientsRouted",
      "AttemptStarted",
      "AttemptSucceeded",
      "AttemptDeferred",
      "AttemptFailed",
      "RecipientDelivered",
      "RecipientBounced",
      "RecipientExpired",
      "BounceQueued",
      "MessageCompleted",
      "MessageHeld",
      "MessageFiltered",
      "MessageReleased",
      "MessageDeleted",
      "RetryRequested",
      "SuppressionAdded",
      "SuppressionRemoved",
      "FilterReloaded",
      "SiteThrottled",
      "SiteSuspended",
      "SiteResumed",
      "PolicyActivated",
      "ComplaintReceived",
      "DelayNotified"
    ]
    expect([...EVENT_TYPES].sort()).toEqual([...emitted].sort())
  })
})
