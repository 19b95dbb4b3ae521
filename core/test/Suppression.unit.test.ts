// Given / When / Then for the suppression list's aggregate and for the message facts issue #12 added: the feedback
// report recorded once on a message (even a completed one) and the delay notice decided once, only when due.
import * as E from "fp-ts/lib/Either.js"
import { describe, expect, it } from "vitest"
import { decide as decideMessage, fold as foldMessage, type Ctx, type Event } from "../src/Message.js"
import { decide, fold, initialState } from "../src/Suppression.js"

const T0 = 1_746_093_600_000
const ctx = (at = T0): Ctx => ({ at, node: "n1", policy: "p" })
const right = <A>(r: E.Either<unknown, A>): A => {
  if (E.isLeft(r)) throw new Error(`expected Right, got ${JSON.stringify(r.left)}`)
  return r.right
}

describe("suppression list", () => {
  it("given an empty list, when addresses are added, then one SuppressionAdded each, normalised and without repeats", () => {
    const events = right(
      decide(
        {
          type: "Add",
          ctx: ctx(),
          by: "missive",
          entries: [
            { address: "Bob@Example.NET", reason: "bounce", source: "M1" },
            { address: "bob@example.net", reason: "manual" }
          ]
        },
        initialState
      )
    )
    expect(events).toEqual([
      {
        v: 1,
        at: T0,
        node: "n1",
        policy: "p",
        type: "SuppressionAdded",
        address: "bob@example.net",
        reason: "bounce",
        by: "missive",
        source: "M1"
      }
    ])
    expect(fold(events).entries.get("bob@example.net")?.reason).toBe("bounce")
  })

  it("given a listed address, when it is added again, then nothing is appended (a replayed bounce adds nothing)", () => {
    const listed = fold(
      right(decide({ type: "Add", ctx: ctx(), by: "x", entries: [{ address: "a@b.c", reason: "bounce" }] }, initialState))
    )
    expect(right(decide({ type: "Add", ctx: ctx(), by: "x", entries: [{ address: "A@b.c", reason: "complaint" }] }, listed))).toEqual([])
  })

  it("given a listed address, when it is removed, then SuppressionRemoved; removing an unlisted one is refused", () => {
    const listed = fold(
      right(decide({ type: "Add", ctx: ctx(), by: "x", entries: [{ address: "a@b.c", reason: "manual" }] }, initialState))
    )
    const removed = right(decide({ type: "Remove", ctx: ctx(), by: "ops", addresses: ["a@b.c"] }, listed))
    expect(removed.map((e) => e.type)).toEqual(["SuppressionRemoved"])
    expect(fold(removed, listed).entries.size).toBe(0)
    expect(decide({ type: "Remove", ctx: ctx(), by: "ops", addresses: ["z@b.c"] }, listed)).toEqual(
      E.left({ _tag: "NotSuppressed", address: "z@b.c" })
    )
    expect(E.isLeft(decide({ type: "Add", ctx: ctx(), by: "x", entries: [{ address: "not an address", reason: "manual" }] }, listed))).toBe(
      true
    )
  })
})

const received: Event = {
  v: 1,
  at: T0,
  node: "n1",
  policy: "p",
  type: "MessageReceived",
  id: "M1",
  sender: "alice@example.org",
  recipients: ["bob@example.net"],
  size: 10,
  digest: "d",
  client: { ip: "127.0.0.1", helo: "h", tls: false }
}
const reply = { code: 451, enhanced: "4.2.2", text: "Mailbox full" }
const deferred: ReadonlyArray<Event> = [
  received,
  {
    v: 1,
    at: T0 + 1,
    node: "n1",
    policy: "p",
    type: "AttemptStarted",
    attempt: 1,
    rcpts: ["bob@example.net"],
    destination: "mx:example.net"
  },
  {
    v: 1,
    at: T0 + 2,
    node: "n1",
    policy: "p",
    type: "AttemptDeferred",
    attempt: 1,
    rcpts: ["bob@example.net"],
    host: "mx:25",
    reply,
    nextAttemptAt: T0 + 600_000
  }
]

describe("delay notice", () => {
  const HOUR = 3_600_000
  it("given a deferred recipient, when the delay has not passed, then nothing; when it has, then DelayNotified once", () => {
    const s = foldMessage(deferred)
    expect(right(decideMessage({ type: "NotifyDelay", ctx: ctx(T0 + HOUR - 1), afterMs: HOUR, dsnId: "D1" }, s))).toEqual([])
    const notified = right(decideMessage({ type: "NotifyDelay", ctx: ctx(T0 + HOUR), afterMs: HOUR, dsnId: "D1" }, s))
    expect(notified).toEqual([
      { v: 1, at: T0 + HOUR, node: "n1", policy: "p", type: "DelayNotified", dsnId: "D1", rcpts: ["bob@example.net"] }
    ])
    const after = foldMessage(notified, s)
    expect(right(decideMessage({ type: "NotifyDelay", ctx: ctx(T0 + 2 * HOUR), afterMs: HOUR, dsnId: "D2" }, after))).toEqual([])
  })

  it("given a message from the null sender, when the delay has passed, then no notice", () => {
    const s = foldMessage([{ ...received, sender: "" }, ...deferred.slice(1)])
    expect(right(decideMessage({ type: "NotifyDelay", ctx: ctx(T0 + HOUR), afterMs: HOUR, dsnId: "D1" }, s))).toEqual([])
  })
})

describe("complaint", () => {
  it("given a completed message, when a report is recorded twice, then one ComplaintReceived", () => {
    const done = foldMessage([
      received,
      { v: 1, at: T0 + 5, node: "n1", policy: "p", type: "MessageCompleted", delivered: 1, bounced: 0, expired: 0, deleted: false }
    ])
    const command = {
      type: "RecordComplaint" as const,
      ctx: ctx(T0 + 9),
      reportId: "<r1@isp>",
      rcpts: ["bob@example.net"],
      feedbackType: "abuse"
    }
    const first = right(decideMessage(command, done))
    expect(first.map((e) => e.type)).toEqual(["ComplaintReceived"])
    expect(right(decideMessage(command, foldMessage(first, done)))).toEqual([])
  })
})
