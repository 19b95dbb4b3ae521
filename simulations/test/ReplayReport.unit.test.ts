// The incident report against a hand-computed table: a log written as the node writes it (every event made by the
// decider from the commands the node gives, appended through the EventStore port) with two domains behind one next
// hop, a partial delivery, retries, a bounce with its DSN, an expiry, an operator's delete and traffic outside the window.
import { Message, Route, type Reply } from "@missive/core"
import { EventStore } from "@missive/events"
import * as E from "fp-ts/lib/Either.js"
import { describe, expect, it } from "vitest"
import * as Html from "../src/replay/Html.js"
import * as Report from "../src/replay/Report.js"

const T = Date.UTC(2026, 4, 1, 9, 0, 0)
const at = (hhmm: string) => {
  const [h, m] = hhmm.split(":").map(Number)
  return T + (h! - 9) * 3600_000 + m! * 60_000
}
const FROM = at("10:00"),
  TO = at("11:00")

const OK: Reply.Reply = { code: 250, enhanced: "2.0.0", text: "OK" }
const BUSY: Reply.Reply = { code: 451, enhanced: "4.3.0", text: "try later" }
const UNKNOWN: Reply.Reply = { code: 550, enhanced: "5.1.1", text: "no such user" }
const retry = { initialMs: 10 * 60_000, maxMs: 3600_000, multiplier: 2, jitter: 0, lifetimeMs: 40 * 60_000 }
const shared: Route.Destination = {
  kind: "smtp",
  key: "mx.shared.test:25",
  hops: [{ host: "mx.shared.test", port: 25, preference: 0 }],
  via: "mx"
}
const cKey: Route.Destination = { kind: "smtp", key: "mx.c.test:25", hops: [{ host: "mx.c.test", port: 25, preference: 0 }], via: "mx" }
const local: Route.Destination = { kind: "maildir", key: "maildir", mailbox: "/tmp/none" }

/** A log written through the port by running the node's commands through the decider. */
const makeLog = () => {
  const store = EventStore.makeMemory()
  const states = new Map<string, Message.State>()
  const run = async (id: string, hhmm: string, command: Record<string, unknown>) => {
    const s = states.get(id) ?? Message.initialState
    const d = Message.decide({ ...command, ctx: { at: at(hhmm), node: "n1", policy: "p1" } } as Message.Command, s)
    if (E.isLeft(d)) throw new Error(`${id} ${String(command["type"])}: ${JSON.stringify(d.left)}`)
    await store.append(EventStore.streamOf(id), s.version, d.right)
    states.set(id, Message.fold(d.right, s))
    return d.right
  }
  const client = { ip: "127.0.0.1", helo: "c", tls: false }
  const receive = (id: string, hhmm: string, recipients: Array<string>, sender = "s@src.test", dsnOf?: string) =>
    run(id, hhmm, { type: "Receive", id, sender, recipients, size: 100, digest: "d", client, dsnOf })
  const route = (id: string, hhmm: string, routes: Array<[string, Route.Destination]>) =>
    run(id, hhmm, { type: "Route", routes: routes.map(([rcpt, destination]) => ({ rcpt, destination })), dsnId: `${id}-dsn` })
  const tryOnce = async (id: string, hhmm: string, dest: Route.Destination, results: Array<[string, Reply.Reply]>) => {
    await route(
      id,
      hhmm,
      results.map(([r]) => [r, dest])
    )
    const started = await run(id, hhmm, { type: "StartAttempt", rcpts: results.map(([r]) => r), destination: dest.key })
    const n = (started[0] as Message.EventOf<"AttemptStarted">).attempt
    return run(id, hhmm, {
      type: "ReportAttempt",
      attempt: n,
      host: "mx",
      results: results.map(([rcpt, reply]) => ({ rcpt, reply })),
      retry,
      jitter: 0.5,
      dsnId: `${id}-dsn`
    })
  }
  return { store, receive, tryOnce, run, route }
}

const scenario = async () => {
  const l = makeLog()
  // Before the window: M0 to a.test, deferred once.
  await l.receive("M0", "09:50", ["x@a.test"])
  await l.tryOnce("M0", "09:51", shared, [["x@a.test", BUSY]])
  // M1: a.test and b.test share the next hop; a partial delivery, then the retry delivers a2.
  await l.receive("M1", "10:02", ["a1@a.test", "a2@a.test", "b1@b.test"])
  await l.tryOnce("M1", "10:03", shared, [
    ["a1@a.test", OK],
    ["a2@a.test", BUSY],
    ["b1@b.test", OK]
  ])
  await l.tryOnce("M0", "10:05", shared, [["x@a.test", OK]])
  // M2: b2 bounces at the shared hop, c1 is deferred three times and expires; its DSN D2 stays queued.
  await l.receive("M2", "10:12", ["b2@b.test", "c1@c.test"])
  await l.tryOnce("M2", "10:13", shared, [["b2@b.test", UNKNOWN]])
  await l.tryOnce("M2", "10:13", cKey, [["c1@c.test", BUSY]])
  await l.tryOnce("M1", "10:15", shared, [["a2@a.test", OK]])
  await l.tryOnce("M2", "10:25", cKey, [["c1@c.test", BUSY]])
  // M3: both recipients deferred in one attempt, still queued at the end.
  await l.receive("M3", "10:32", ["a3@a.test", "b3@b.test"])
  await l.tryOnce("M3", "10:33", shared, [
    ["a3@a.test", BUSY],
    ["b3@b.test", BUSY]
  ])
  // M4: deleted by an operator while queued.
  await l.receive("M4", "10:40", ["c2@c.test"])
  await l.route("M4", "10:40", [["c2@c.test", cKey]])
  await l.tryOnce("M2", "10:45", cKey, [["c1@c.test", BUSY]])
  await l.run("M4", "10:50", { type: "Delete", by: "op" })
  const expired = await l.run("M2", "10:52", { type: "Expire", retry, dsnId: "D2" })
  expect(expired.map((e) => e.type)).toEqual(["RecipientExpired", "BounceQueued", "MessageCompleted"])
  await l.receive("D2", "10:52", ["s@src.test"], "", "M2")
  await l.route("D2", "10:52", [["s@src.test", local]])
  // After the window.
  await l.receive("M5", "11:10", ["late@a.test"])
  await l.tryOnce("M5", "11:11", shared, [["late@a.test", OK]])
  return l.store
}

type Row = [string, number, number, number, number, number, number, number, number, number, number, number]
// destination, messages, recipients, queued@start, attempts, delivered, deferrals, bounced, expired, deleted, open@end, peak
const EXPECTED: Array<Row> = [
  ["a.test", 2, 3, 1, 4, 3, 2, 0, 0, 0, 1, 3],
  ["b.test", 3, 3, 0, 3, 1, 1, 1, 0, 0, 1, 1],
  ["c.test", 2, 2, 0, 3, 0, 3, 0, 1, 1, 0, 2],
  ["src.test", 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1],
  ["(all)", 5, 9, 1, 8, 4, 6, 1, 1, 1, 3, 4]
]

const rowOf = (d: Report.DestinationReport): Row => [
  d.destination,
  d.messages,
  d.recipients,
  d.queuedAtStart,
  d.attempts,
  d.delivered,
  d.deferrals,
  d.bounced,
  d.expired,
  d.deleted,
  d.openAtEnd,
  d.peakDepth
]

describe("incident report against a hand-computed table", () => {
  it("counts messages, recipients and attempts per destination, attempts to a shared next hop under each domain", async () => {
    const r = await Report.build(await scenario(), { from: FROM, to: TO, buckets: 6 })
    expect([...r.destinations.map(rowOf)].sort((x, y) => (x[0] < y[0] ? -1 : 1))).toEqual(EXPECTED.slice(0, 4))
    expect(rowOf(r.total)).toEqual(EXPECTED[4])
    for (const d of [...r.destinations, r.total])
      expect(d.queuedAtStart + d.recipients, d.destination).toBe(d.delivered + d.bounced + d.expired + d.deleted + d.openAtEnd)
    // The same without the log's index (as JetStream): the part before the window is decoded rather than skipped.
    const store = await scenario()
    expect(await Report.build({ ...store, readIndex: undefined }, { from: FROM, to: TO, buckets: 6 })).toEqual(r)
    const by = (name: string) => r.destinations.find((d) => d.destination === name)!
    expect(by("a.test").replies).toEqual({ "250 2.0.0": 3, "451 4.3.0": 2 })
    expect(by("b.test").replies).toEqual({ "250 2.0.0": 1, "451 4.3.0": 1, "550 5.1.1": 1 })
    expect(by("c.test").replies).toEqual({ "451 4.3.0": 3 })
    // Received → delivered: x 15 min, a1 and b1 1 min, a2 13 min.
    expect(r.total.latency.count).toBe(4)
    expect(r.total.latency.max).toBe(15 * 60_000)
  })

  it("gives a queue-depth series (open at each bucket's end, peak inside it) and attempts and outcomes per bucket", async () => {
    const r = await Report.build(await scenario(), { from: FROM, to: TO, buckets: 6 })
    expect(r.chart).toEqual({ from: FROM, to: TO, bucketMs: 10 * 60_000, zoomed: false })
    const depth = (d: Report.DestinationReport) => d.series.map((b) => [b.open, b.peak])
    const by = (name: string) => r.destinations.find((d) => d.destination === name)!
    expect(r.total.series.map((b) => b.at)).toEqual(["10:00", "10:10", "10:20", "10:30", "10:40", "10:50"].map(at))
    expect(depth(by("a.test"))).toEqual([
      [1, 3],
      [0, 1],
      [0, 0],
      [1, 1],
      [1, 1],
      [1, 1]
    ])
    expect(depth(by("b.test"))).toEqual([
      [0, 1],
      [0, 1],
      [0, 0],
      [1, 1],
      [1, 1],
      [1, 1]
    ])
    expect(depth(by("c.test"))).toEqual([
      [0, 0],
      [1, 1],
      [1, 1],
      [1, 1],
      [2, 2],
      [0, 2]
    ])
    expect(depth(by("src.test"))).toEqual([
      [0, 0],
      [0, 0],
      [0, 0],
      [0, 0],
      [0, 0],
      [1, 1]
    ])
    // (all) is the whole queue's own peak, not the sum of the destinations' peaks (5 in the last bucket).
    expect(depth(r.total)).toEqual([
      [1, 4],
      [1, 3],
      [1, 1],
      [3, 3],
      [4, 4],
      [3, 4]
    ])
    expect(r.total.series.map((b) => b.attempts)).toEqual([2, 3, 1, 1, 1, 0])
    expect(r.total.series.map((b) => b.delivered)).toEqual([3, 1, 0, 0, 0, 0])
    expect(r.total.series.map((b) => b.deferred)).toEqual([1, 1, 1, 2, 1, 0])
    expect(r.total.series.map((b) => b.bounced)).toEqual([0, 1, 0, 0, 0, 0])
    expect(r.total.series.map((b) => b.expired)).toEqual([0, 0, 0, 0, 0, 1])
    expect(by("b.test").series.map((b) => b.attempts)).toEqual([1, 1, 0, 1, 0, 0])
  })

  it("zooms the chart range to the window's traffic when asked, the counts unchanged", async () => {
    const store = await scenario()
    const wide = { from: at("09:55"), to: at("13:00") }
    const plain = await Report.build(store, { ...wide, buckets: 10 })
    const zoomed = await Report.build(store, { ...wide, buckets: 10, zoom: true })
    expect(plain.chart).toMatchObject({ from: wide.from, to: wide.to })
    expect(zoomed.chart.zoomed).toBe(true)
    // Traffic in the window runs 10:02 .. 11:11; the range is that, padded by 3 %.
    expect(zoomed.chart.from).toBeGreaterThan(at("09:59"))
    expect(zoomed.chart.from).toBeLessThanOrEqual(at("10:02"))
    expect(zoomed.chart.to).toBeGreaterThanOrEqual(at("11:11"))
    expect(zoomed.chart.to).toBeLessThan(at("11:15"))
    const counts = (r: Report.Report) => [...r.destinations, r.total].map(rowOf)
    expect(counts(zoomed)).toEqual(counts(plain))
    expect(zoomed.total.peakDepth).toBe(4)
  })

  it("renders the counts with their units, and a self-contained page", async () => {
    const r = await Report.build(await scenario(), { from: FROM, to: TO, buckets: 6 })
    const text = Report.format(r)
    expect(text).toMatch(
      /^DESTINATION\s+MSGS\s+RCPTS\s+QUEUED@START\s+ATTEMPTS\s+DELIVERED\s+DEFERRALS\s+BOUNCED\s+EXPIRED\s+DELETED\s+OPEN@END/m
    )
    expect(text).toMatch(/^b\.test\s+3\s+3\s+0\s+3\s+1\s+1\s+1\s+0\s+0\s+1\s/m)
    const html = Html.render(r)
    expect(html).not.toMatch(/<script|<link|src=|url\(|https?:\/\//i)
    expect(html).toMatch(/recipients open at the window(&#39;|')s start/)
  })
})
