// Segment digests (events/src/Snapshots.ts): what `encodeDigest` keeps of every golden fixture event and of hand-made
// edge cases comes back from `decodeDigest` as the facts the report folds, in log order; other types are left out.
import type { Message } from "@missive/core"
import { readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import type { StoredEvent } from "../src/EventStore.js"
import * as Snapshots from "../src/Snapshots.js"

const DIR = join(import.meta.dirname, "fixtures", "v1")
const fixtures: Array<Message.Event> = readdirSync(DIR)
  .filter((f) => f.endsWith(".json"))
  .sort()
  .map((f) => (JSON.parse(readFileSync(join(DIR, f), "utf8")) as { expected: Message.Event }).expected)

/** The facts of an event the report folds, written out by hand (not by the codec under test). */
const facts = (e: Message.Event): Snapshots.Digested | undefined => {
  switch (e.type) {
    case "MessageReceived":
      return { type: e.type, at: e.at, recipients: e.recipients }
    case "AttemptStarted":
      return { type: e.type, at: e.at, rcpts: e.rcpts }
    case "AttemptSucceeded":
    case "AttemptFailed":
      return {
        type: e.type,
        at: e.at,
        rcpts: e.rcpts,
        reply: e.reply.enhanced === undefined ? { code: e.reply.code } : { code: e.reply.code, enhanced: e.reply.enhanced }
      }
    case "AttemptDeferred":
      return {
        type: e.type,
        at: e.at,
        rcpts: e.rcpts,
        reply: e.reply.enhanced === undefined ? { code: e.reply.code } : { code: e.reply.code, enhanced: e.reply.enhanced },
        nextAttemptAt: e.nextAttemptAt
      }
    case "RecipientDelivered":
    case "RecipientBounced":
    case "RecipientExpired":
      return { type: e.type, at: e.at, rcpt: e.rcpt }
    case "MessageCompleted":
      return { type: e.type, at: e.at }
    default:
      return undefined
  }
}

const expected = (log: ReadonlyArray<StoredEvent>) =>
  log.flatMap((s) => {
    const f = facts(s.event)
    return f ? [{ stream: s.stream, position: s.position, event: f }] : []
  })

describe("segment digests", () => {
  it("keep the folded facts of every fixture event, and leave the other types out", () => {
    const log: Array<StoredEvent> = fixtures.map((event, i) => ({ stream: `message-${i % 3}`, version: 1, position: 1000 + 2 * i, event }))
    const back = Snapshots.decodeDigest(Snapshots.encodeDigest(log))
    expect(back).toEqual(expected(log))
    expect(back).toHaveLength(Snapshots.DIGESTED.length + 2) // + AttemptDeferred.trace, AttemptSucceeded.multiline
    expect(new Set(back.map((e) => e.event.type))).toEqual(new Set(Snapshots.DIGESTED))
  })

  it("keep times out of log order, a deferral without a next attempt, replies without an enhanced code, shared positions", () => {
    const m = { v: 1, node: "n", policy: "p" } as const
    const reply = { code: 451, text: "later" }
    const events: Array<[string, number, Message.Event]> = [
      [
        "message-ü",
        7,
        {
          ...m,
          type: "MessageReceived",
          at: 5000,
          id: "ü",
          sender: "",
          recipients: ["a@x.test", "b@y.test", "a@x.test"],
          size: 1,
          digest: "d",
          client: { ip: "127.0.0.1", helo: "h", tls: false }
        }
      ],
      ["message-ü", 7, { ...m, type: "AttemptStarted", at: 4000, attempt: 1, rcpts: ["a@x.test"], destination: "x.test" }],
      ["message-ü", 9, { ...m, type: "AttemptDeferred", at: 4500, attempt: 1, rcpts: ["a@x.test"], host: "h", reply, nextAttemptAt: null }],
      [
        "message-ü",
        9,
        {
          ...m,
          type: "AttemptDeferred",
          at: 4600,
          attempt: 1,
          rcpts: ["b@y.test"],
          host: "h",
          reply: { ...reply, enhanced: "4.7.1" },
          nextAttemptAt: 4000
        }
      ],
      ["site-x", 10, { ...m, type: "SiteResumed", at: 1, site: "x", by: "op" } as unknown as Message.Event],
      ["message-2", 12, { ...m, type: "RecipientExpired", at: 9_000_000_000_000, rcpt: "b@y.test", reply }],
      ["message-ü", 12, { ...m, type: "MessageCompleted", at: 0, delivered: 0, bounced: 0, expired: 2, deleted: false }]
    ]
    const log = events.map(([stream, position, event]): StoredEvent => ({ stream, version: 1, position, event }))
    expect(Snapshots.decodeDigest(Snapshots.encodeDigest(log))).toEqual(expected(log))
    expect(Snapshots.decodeDigest(Snapshots.encodeDigest([]))).toEqual([])
  })

  it("refuse a digest of another format version", () => {
    expect(() => Snapshots.decodeDigest(JSON.stringify({ v: 2, streams: [], rcpts: [], replies: [], e: [] }))).toThrow(/version 2/)
  })
})
