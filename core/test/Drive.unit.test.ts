// Given/When/Then specs for the drive plan: given a message's events and a time, then what is due, which commands
// the plan issues (Route with StartAttempt per destination, ReportAttempt, Expire) and what follows. Pure: literals only.
import * as E from "fp-ts/lib/Either.js"
import { describe, expect, it } from "vitest"
import * as Drive from "../src/Drive.js"
import { decide, fold, SCHEMA_VERSION, type Ctx, type Event, type State } from "../src/Message.js"
import type { RetryPolicy } from "../src/Policy.js"
import type { Reply } from "../src/Reply.js"
import type { Destination, RouteDecision } from "../src/Route.js"

const T0 = 1_700_000_000_000
const S = 1000
const retry: RetryPolicy = { initialMs: 60 * S, maxMs: 600 * S, multiplier: 2, jitter: 0, lifetimeMs: 3600 * S }
const meta = (at: number) => ({ v: SCHEMA_VERSION, at, node: "n1", policy: "p" })
const ctx = (at: number): Ctx => ({ at, node: "n1", policy: "p" })
const A = "a@one.example",
  B = "b@two.example",
  C = "c@one.example"
const smtp = (domain: string): Destination => ({
  kind: "smtp",
  key: domain,
  hops: [{ host: `mx.${domain}`, port: 25, preference: 10 }],
  via: "mx"
})
const route = (rcpt: string): RouteDecision => ({ rcpt, destination: smtp(rcpt.split("@")[1]!) })
const r451: Reply = { code: 451, enhanced: "4.7.1", text: "Greylisted" }
const r250: Reply = { code: 250, enhanced: "2.0.0", text: "OK" }

const received = (rcpts: ReadonlyArray<string>, sender = "s@origin.example"): Event => ({
  ...meta(T0),
  type: "MessageReceived",
  id: "M1",
  sender,
  recipients: rcpts,
  size: 10,
  digest: "sha256:0",
  client: { ip: "192.0.2.1", helo: "h", tls: false }
})
const given = (events: ReadonlyArray<Event>): State => fold(events)
const live = (s: State) => {
  if (s.status !== "active") throw new Error(`expected an active message, got ${s.status}`)
  return s
}

describe("what a message needs next", () => {
  it("given no events: none (an empty read is never a finished message)", () => {
    expect(Drive.next(given([]), T0, retry)).toEqual({ kind: "none" })
  })

  it("given a peer's attempt younger than its lease: not due here until the lease ends; then due again", () => {
    const started: Event = { ...meta(T0 + 10), node: "n2", type: "AttemptStarted", attempt: 1, rcpts: [A], destination: "one.example" }
    const routed: Event = { ...meta(T0 + 5), type: "RecipientsRouted", routes: [route(A)], dns: [] } as unknown as Event
    const s = given([received([A]), routed, started])
    const owner = { node: "n1", leaseMs: 4 * S }
    expect(Drive.next(s, T0 + 1 * S, retry, owner)).toEqual({ kind: "wait", until: T0 + 10 + 4 * S })
    const later = Drive.next(s, T0 + 10 + 4 * S, retry, owner)
    expect(later.kind === "route" && later.due.map((r) => r.address)).toEqual([A])
    // The node that started it (restarted after a crash) finds it due at once; so does a plan with no owner.
    expect(Drive.next(s, T0 + 1 * S, retry, { node: "n2", leaseMs: 4 * S }).kind).toBe("route")
    expect(Drive.next(s, T0 + 1 * S, retry).kind).toBe("route")
  })

  it("given a fresh message: every recipient is due now", () => {
    const n = Drive.next(given([received([A, B])]), T0, retry)
    expect(n.kind === "route" && n.due.map((r) => r.address)).toEqual([A, B])
  })

  it("given a deferred recipient: wait until its next attempt, then route it", () => {
    const s = given([
      received([A]),
      { ...meta(T0), type: "RecipientsRouted", routes: [route(A)] },
      { ...meta(T0), type: "AttemptStarted", attempt: 1, rcpts: [A], destination: "one.example" },
      { ...meta(T0 + S), type: "AttemptDeferred", attempt: 1, rcpts: [A], host: "mx", reply: r451, nextAttemptAt: T0 + 61 * S }
    ])
    expect(Drive.next(s, T0 + 2 * S, retry)).toEqual({ kind: "wait", until: T0 + 61 * S })
    expect(Drive.next(s, T0 + 61 * S, retry).kind).toBe("route")
  })

  it("given a held message: parked until its lifetime ends, then expired", () => {
    const s = given([received([A]), { ...meta(T0 + S), type: "MessageHeld", by: "ops", reason: "check" }])
    expect(Drive.next(s, T0 + 2 * S, retry)).toEqual({ kind: "park", until: T0 + retry.lifetimeMs })
    expect(Drive.next(s, T0 + retry.lifetimeMs, retry)).toEqual({ kind: "expire" })
  })

  it("given a completed message: finish", () => {
    const s = given([
      received([A]),
      { ...meta(T0), type: "MessageDeleted", by: "ops" },
      { ...meta(T0), type: "MessageCompleted", delivered: 0, bounced: 0, expired: 0, deleted: true }
    ])
    expect(Drive.next(s, T0, retry)).toEqual({ kind: "finish" })
  })
})

describe("begin: Route, then one StartAttempt per destination key", () => {
  it("groups routed recipients by destination and numbers the attempts", () => {
    const r = Drive.begin(given([received([A, B, C])]), T0, [route(A), route(B), route(C)], ctx(T0), "D1")
    if (E.isLeft(r)) throw new Error(JSON.stringify(r.left))
    expect(r.right.events.map((e) => e.type)).toEqual(["RecipientsRouted", "AttemptStarted", "AttemptStarted"])
    expect(r.right.attempts.map((a) => [a.attempt, a.destination.key, a.rcpts])).toEqual([
      [1, "one.example", [A, C]],
      [2, "two.example", [B]]
    ])
    expect(r.right.state).toEqual(fold(r.right.events, given([received([A, B, C])])))
  })

  it("routes only the recipients still due in the state it is given (a reload may have moved on)", () => {
    const s = given([
      received([A, B]),
      { ...meta(T0), type: "RecipientsRouted", routes: [route(A)] },
      { ...meta(T0), type: "AttemptStarted", attempt: 1, rcpts: [A], destination: "one.example" },
      { ...meta(T0 + S), type: "AttemptDeferred", attempt: 1, rcpts: [A], host: "mx", reply: r451, nextAttemptAt: T0 + 61 * S }
    ])
    const r = Drive.begin(s, T0 + 2 * S, [route(A), route(B)], ctx(T0 + 2 * S), "D1")
    expect(E.isRight(r) && r.right.attempts.map((a) => a.rcpts)).toEqual([[B]])
  })

  it("refuses a held message and gives nothing for a completed one", () => {
    const held = given([received([A]), { ...meta(T0), type: "MessageHeld", by: "ops", reason: "x" }])
    expect(Drive.begin(held, T0, [route(A)], ctx(T0), "D1")).toEqual(E.left({ _tag: "MessageHeld", id: "M1" }))
    const done = given([
      received([A]),
      { ...meta(T0), type: "MessageDeleted", by: "ops" },
      { ...meta(T0), type: "MessageCompleted", delivered: 0, bounced: 0, expired: 0, deleted: true }
    ])
    expect(Drive.begin(done, T0, [route(A)], ctx(T0), "D1")).toEqual(E.right({ events: [], state: done, attempts: [] }))
  })
})

describe("report and what follows", () => {
  const begun = () => {
    const r = Drive.begin(given([received([A])]), T0, [route(A)], ctx(T0), "D1")
    if (E.isLeft(r)) throw new Error("begin refused")
    return r.right
  }

  it("a 4xx defers: the plan waits for the next attempt", () => {
    const b = begun()
    const c = Drive.reportCommand(ctx(T0 + S), b.attempts[0]!, { host: "mx:25", results: [{ rcpt: A, reply: r451 }] }, retry, 0.5, "D2")
    const r = Drive.decideAndFold(c, b.state)
    if (E.isLeft(r)) throw new Error("report refused")
    expect(r.right.events.map((e) => e.type)).toEqual(["AttemptDeferred"])
    expect(Drive.next(r.right.state, T0 + S, retry)).toEqual({ kind: "wait", until: T0 + S + 60 * S })
  })

  it("a 250 completes without a DSN: its clean-up may share the append", () => {
    const b = begun()
    const r = Drive.decideAndFold(
      Drive.reportCommand(ctx(T0 + S), b.attempts[0]!, { host: "mx:25", results: [{ rcpt: A, reply: r250 }] }, retry, 0.5, "D2"),
      b.state
    )
    if (E.isLeft(r)) throw new Error("report refused")
    expect(Drive.completesQuietly(r.right.events)).toBe(true)
    expect(Drive.next(r.right.state, T0 + S, retry)).toEqual({ kind: "finish" })
  })

  it("a held message past its lifetime: Expire expires every open recipient and queues the DSN", () => {
    const s = given([received([A]), { ...meta(T0 + S), type: "MessageHeld", by: "ops", reason: "x" }])
    const at = T0 + retry.lifetimeMs
    expect(Drive.next(s, at, retry)).toEqual({ kind: "expire" })
    const r = decide(Drive.expireCommand(ctx(at), retry, "D3"), s)
    expect(E.isRight(r) && r.right.map((e) => e.type)).toEqual(["RecipientExpired", "BounceQueued", "MessageCompleted"])
  })
})
