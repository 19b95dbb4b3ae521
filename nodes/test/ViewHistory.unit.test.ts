// The operator's view after a restart: the log's last hour folded back into the throughput series, the feed and the
// search; the counts (and the metrics made of them) still begin at the node's start; a capped fold says since when
// its series is complete.
import { describe, expect, it } from "vitest"
import { EventStore, Work } from "@missive/events"
import type { Message } from "@missive/core"
import * as View from "../src/http/View.js"
import { manualClock } from "../src/runtime/Clock.js"

const MINUTE = 60_000
const NOW = Date.UTC(2026, 11, 1, 12, 30, 20)
const DEST = "route:127.0.0.1:2525"

const ev = (type: string, at: number, node: string, extra: Record<string, unknown> = {}) =>
  ({ v: 1, type, at, node, policy: "p", ...extra }) as unknown as Message.Event

/** One message's lifecycle, received at `at` by `node`, delivered to DEST a second later. */
const relayed = async (events: EventStore.EventStore, id: string, at: number, node = "n1") => {
  const rcpt = `${id}@dest.test`
  await events.append(EventStore.streamOf(id), 0, [
    ev("MessageReceived", at, node, { id, sender: "s@src.test", recipients: [rcpt], size: 10, digest: "d", client: {} })
  ])
  await events.append(EventStore.streamOf(id), 1, [
    ev("AttemptStarted", at + 1000, node, { attempt: 1, rcpts: [rcpt], destination: DEST }),
    ev("RecipientDelivered", at + 1000, node, { rcpt, host: "h", reply: { code: 250, text: "ok" } }),
    ev("MessageCompleted", at + 1000, node, { deleted: false, delivered: 1, bounced: 0, expired: 0 })
  ])
}

const started = async (events: EventStore.EventStore, historyEvents?: number) => {
  const view = View.make({
    events,
    work: Work.makeMemory(),
    clock: manualClock(NOW),
    log: () => undefined,
    node: "n1",
    ...(historyEvents !== undefined ? { historyEvents } : {})
  })
  await view.start()
  for (let i = 0; i < 100 && !view.seeded(); i++) await new Promise((r) => setTimeout(r, 10))
  expect(view.seeded()).toBe(true)
  return view
}

const sum = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0)

describe("the view folds back the log's last hour at start", () => {
  it("draws the hour's messages received and delivered, by minute, and finds them; older ones are not drawn", async () => {
    const events = EventStore.makeMemory()
    await relayed(events, "old1", NOW - 2 * 60 * MINUTE) // two hours ago: not in the hour
    await relayed(events, "a", NOW - 50 * MINUTE)
    await relayed(events, "b", NOW - 50 * MINUTE + 5000)
    await relayed(events, "c", NOW - 2 * MINUTE)
    await relayed(events, "peer", NOW - 2 * MINUTE, "n2") // another node's: in the feed and the search, not its series
    const view = await started(events)
    const s = view.series()
    expect(sum(s.received)).toBe(3)
    expect(s.received[s.minutes.indexOf(Math.floor((NOW - 50 * MINUTE) / MINUTE) * MINUTE)]).toBe(2)
    expect(s.received[s.minutes.indexOf(Math.floor((NOW - 2 * MINUTE) / MINUTE) * MINUTE)]).toBe(1)
    expect(sum(s.delivered[DEST] ?? [])).toBe(3)
    // complete for the whole hour: the log holds older events before it
    expect(s.since).toBe(s.minutes[0])
    expect(s.started).toBe(NOW)
    // the counts begin at the node's start
    expect(view.counts().received).toBe(0)
    expect(view.counts().events.size).toBe(0)
    // the feed and the search
    expect(view.recent(3).map((i) => [i.id, i.type])).toEqual([
      ["peer", "AttemptStarted"],
      ["peer", "RecipientDelivered"],
      ["peer", "MessageCompleted"]
    ])
    expect(view.search("a@dest", 10)).toEqual(["a"])
    expect(view.search("old1@dest", 10)).toEqual([])
    // live events go on from there
    await relayed(events, "d", NOW)
    expect(sum(view.series().received)).toBe(4)
    expect(view.counts().received).toBe(1)
    view.close()
  })

  it("says since when its series is complete when the cap stopped it short of the hour", async () => {
    const events = EventStore.makeMemory()
    for (let i = 0; i < 10; i++) await relayed(events, `m${i}`, NOW - (40 - i) * MINUTE)
    // 4 events a message: the newest 12 events are the last three messages
    const view = await started(events, 12)
    const s = view.series()
    expect(sum(s.received)).toBe(3)
    expect(s.since).toBe(NOW - 33 * MINUTE)
    expect(view.search("m6@dest", 10)).toEqual([])
    expect(view.search("m7@dest", 10)).toEqual(["m7"])
    view.close()
  })

  it("counts from the log's first event when the log began within the hour", async () => {
    const events = EventStore.makeMemory()
    await relayed(events, "first", NOW - 10 * MINUTE)
    const view = await started(events)
    expect(sum(view.series().received)).toBe(1)
    expect(view.series().since).toBe(view.series().minutes[0])
    view.close()
  })
})
