// What-if re-decides the sites' automation on a recorded log (memory store): the log records a throttle under the
// node's rules; the alternative's rules decide their own changes on the simulated replies, and what they decide
// changes when attempts start. Recorded and re-decided changes are counted apart; the recorded ones are never copied.
import { Message, type Reply, type Site } from "@missive/core"
import { EventStore } from "@missive/events"
import { describe, expect, it } from "vitest"
import * as WhatIf from "../src/replay/WhatIf.js"

const SITE = "site:mx.y.test"
const TRY_LATER: Reply.Reply = { code: 421, enhanced: "4.7.0", text: "Try again later" }
const OK: Reply.Reply = { code: 250, enhanced: "2.0.0", text: "Ok" }
const m = { v: 1, policy: "recorded", node: "a" } as const
const destination = { kind: "smtp", key: "mx:y.test", hops: [{ host: "mx.y.test", port: 25, preference: 10 }], via: "mx" } as const

/** A message to r@y.test received at `at`, whose attempts got `replies` (each `ms` long, retried 200 ms later). */
const message = (id: string, at: number, replies: ReadonlyArray<Reply.Reply>): Array<Message.Event> => {
  const rcpts = ["r@y.test"]
  const events: Array<Message.Event> = [
    {
      ...m,
      at,
      type: "MessageReceived",
      id,
      sender: "s@x.test",
      recipients: rcpts,
      size: 10,
      digest: "sha256:0",
      client: { ip: "127.0.0.1", helo: "h", tls: false }
    }
  ]
  let t = at
  replies.forEach((reply, i) => {
    events.push(
      { ...m, at: t, type: "RecipientsRouted", routes: [{ rcpt: rcpts[0]!, destination }] },
      { ...m, at: t, type: "AttemptStarted", attempt: i + 1, rcpts, destination: destination.key }
    )
    t += 100
    if (reply.code >= 400)
      events.push({ ...m, at: t, type: "AttemptDeferred", attempt: i + 1, rcpts, host: "mx.y.test:25", reply, nextAttemptAt: t + 200 })
    else
      events.push(
        { ...m, at: t, type: "AttemptSucceeded", attempt: i + 1, rcpts, host: "mx.y.test:25", reply },
        { ...m, at: t, type: "RecipientDelivered", rcpt: rcpts[0]!, host: "mx.y.test:25", reply },
        { ...m, at: t, type: "MessageCompleted", delivered: 1, bounced: 0, expired: 0, deleted: false }
      )
    t += 200
  })
  return events
}

/** A: 421 then delivered; B (arriving meanwhile) delivered at once; the site throttled at A's 421, resumed a minute later. */
const recorded = async () => {
  const store = EventStore.makeMemory()
  await store.append("message-A", 0, message("A", 0, [TRY_LATER, OK]))
  await store.append("message-B", 0, message("B", 200, [OK]))
  await store.append("site-site_mx_y_test", 0, [
    { ...m, at: 100, type: "SiteThrottled", site: SITE, rule: "^421", reply: TRY_LATER, until: 60_100, connections: 5 },
    { ...m, at: 60_100, type: "SiteResumed", site: SITE }
  ])
  return WhatIf.record(store, { from: 0, to: 1000 })
}

const retry = { initialMs: 200, maxMs: 400, multiplier: 2, jitter: 0, lifetimeMs: 3_600_000 }
const simulate = (rec: WhatIf.Recording, rules: ReadonlyArray<Site.Rule>) => {
  const delivered = new Map<string, number>()
  const alt = { retry, concurrencyPerDestination: 4, maxConnections: 100, hash: "alt", rules }
  const sim = WhatIf.simulate(rec, alt, {
    onEvents: (id, events) => {
      for (const e of events) if (e.type === "RecipientDelivered") delivered.set(id, e.at)
    }
  })
  return { sim, alt, delivered }
}

describe("what-if re-decides site changes", () => {
  it("counts the recorded site changes", async () => {
    const rec = await recorded()
    expect(rec.siteChanges).toEqual({ throttled: 1, suspended: 0, resumed: 1 })
    expect(rec.recorded).toMatchObject({ messages: 2, delivered: 2 })
  })

  it("without rules decides no change and copies none: both messages go as soon as they are due", async () => {
    const rec = await recorded()
    const { sim, delivered } = simulate(rec, [])
    expect(sim.siteChanges).toEqual({ throttled: 0, suspended: 0, resumed: 0 })
    expect(sim.outcome).toMatchObject({ delivered: 2, queued: 0 })
    expect(delivered.get("B")!).toBeLessThan(1000)
    expect(delivered.get("A")!).toBeLessThan(1000)
  })

  it("a suspend rule the 421 matches suspends the site: nothing starts there until it ends, then it resumes", async () => {
    const rec = await recorded()
    const { sim, alt, delivered } = simulate(rec, [{ match: "^421 4\\.7\\.0 ", action: "suspend", durationMs: 10_000 }])
    expect(sim.siteChanges).toEqual({ throttled: 0, suspended: 1, resumed: 1 })
    expect(sim.outcome).toMatchObject({ delivered: 2, queued: 0 })
    // A's 421 ends its first attempt at 100: the suspension lasts until 10 100
    expect(delivered.get("A")!).toBeGreaterThanOrEqual(10_100)
    expect(delivered.get("B")!).toBeGreaterThanOrEqual(10_100)
    const text = WhatIf.format(rec, alt, sim, 1)
    expect(text).toMatch(/site throttled\s+1\s+0/)
    expect(text).toMatch(/site suspended\s+0\s+1/)
    expect(text).toMatch(/site resumed\s+1\s+1/)
  })

  it("a rule the reply does not match (another threshold) decides nothing", async () => {
    const rec = await recorded()
    const { sim, delivered } = simulate(rec, [{ match: "4\\.7\\.28", action: "suspend", durationMs: 10_000 }])
    expect(sim.siteChanges).toEqual({ throttled: 0, suspended: 0, resumed: 0 })
    expect(delivered.get("B")!).toBeLessThan(1000)
  })

  it("a throttle rule limits the site's connections while it lasts", async () => {
    const rec = await recorded()
    const { sim } = simulate(rec, [{ match: "^421", action: "throttle", durationMs: 10_000, connections: 1 }])
    expect(sim.siteChanges).toEqual({ throttled: 1, suspended: 0, resumed: 1 })
    expect(sim.outcome).toMatchObject({ delivered: 2, queued: 0 })
  })
})
