// Replay over a synthetic log in the memory store: time arguments, timeline, queue at a moment, report, HTML, what-if.
import { Message } from "@missive/core"
import { EventStore, QueueView, Snapshots, Timeline } from "@missive/events"
import { describe, expect, it } from "vitest"
import * as Html from "../src/replay/Html.js"
import { positionAt } from "../src/replay/Log.js"
import { queueAt } from "../src/replay/QueueAt.js"
import * as Report from "../src/replay/Report.js"
import { generate, livePolicy, world } from "../src/replay/Synthetic.js"
import { parseTime } from "../src/replay/Time.js"
import * as WhatIf from "../src/replay/WhatIf.js"

const START = Date.UTC(2026, 4, 1, 0, 0, 0)
const H = 3600_000

const synthetic = async (messages = 1500, spanMs = 6 * H) => {
  const store = EventStore.makeMemory()
  const w = world({ start: START, spanMs, messages, domains: 15, tailMs: 6 * H, outageShare: 0.3 })
  const batches: Array<[string, ReadonlyArray<Message.Event>]> = []
  generate(w, (id, evs) => batches.push([id, evs]))
  const versions = new Map<string, number>()
  for (const [id, evs] of batches) {
    const s = EventStore.streamOf(id)
    const v = versions.get(s) ?? 0
    await store.append(s, v, evs)
    versions.set(s, v + evs.length)
  }
  return store
}

describe("time arguments", () => {
  const now = Date.UTC(2026, 4, 2, 12, 0, 0)
  it.each([
    ["now", now],
    ["-2h", now - 2 * H],
    ["-1d30m", now - 24 * H - 30 * 60_000],
    ["+90s", now + 90_000],
    ["2026-05-01T14:00:00Z", Date.UTC(2026, 4, 1, 14)],
    ["2026-05-01T14:00:00+02:00", Date.UTC(2026, 4, 1, 12)],
    ["2026-05-01T14:00", Date.UTC(2026, 4, 1, 14)],
    ["2026-05-01", Date.UTC(2026, 4, 1)]
  ])("%s", (text, expected) => expect(parseTime(text, now)).toBe(expected))
  it.each(["yesterday", "-2x", "14:00", "2026-13-45T99:00:00Z", ""])("rejects %j", (text) => expect(parseTime(text, now)).toBeUndefined())
})

describe("timeline", () => {
  it("lists every event of a message with relative times, delays before retries and attempt hosts and replies", async () => {
    const store = EventStore.makeMemory()
    const policy = "p1"
    const m = { v: 1, policy } as const
    const events: Array<Message.Event> = [
      {
        ...m,
        at: 1000,
        node: "a",
        type: "MessageReceived",
        id: "X",
        sender: "s@x.test",
        recipients: ["r@y.test"],
        size: 10,
        digest: "sha256:0",
        client: { ip: "127.0.0.1", helo: "h", tls: false }
      },
      {
        ...m,
        at: 1010,
        node: "a",
        type: "RecipientsRouted",
        routes: [
          {
            rcpt: "r@y.test",
            destination: { kind: "smtp", key: "mx:y.test", hops: [{ host: "mx.y.test", port: 25, preference: 10 }], via: "mx" },
            dns: [{ name: "y.test", type: "MX", rcode: "NOERROR", answers: ["10 mx.y.test"] }]
          }
        ]
      },
      { ...m, at: 1010, node: "a", type: "AttemptStarted", attempt: 1, rcpts: ["r@y.test"], destination: "mx:y.test" },
      {
        ...m,
        at: 1500,
        node: "a",
        type: "AttemptDeferred",
        attempt: 1,
        rcpts: ["r@y.test"],
        host: "mx.y.test:25",
        reply: { code: 451, enhanced: "4.7.1", text: "Greylisted" },
        nextAttemptAt: 301_500
      },
      {
        ...m,
        at: 301_600,
        node: "b",
        type: "RecipientsRouted",
        routes: [
          {
            rcpt: "r@y.test",
            destination: { kind: "smtp", key: "mx:y.test", hops: [{ host: "mx.y.test", port: 25, preference: 10 }], via: "mx" }
          }
        ]
      },
      { ...m, at: 301_600, node: "b", type: "AttemptStarted", attempt: 2, rcpts: ["r@y.test"], destination: "mx:y.test" },
      {
        ...m,
        at: 301_900,
        node: "b",
        type: "AttemptSucceeded",
        attempt: 2,
        rcpts: ["r@y.test"],
        host: "mx.y.test:25",
        reply: { code: 250, enhanced: "2.0.0", text: "Ok: queued as 123" }
      },
      {
        ...m,
        at: 301_900,
        node: "b",
        type: "RecipientDelivered",
        rcpt: "r@y.test",
        host: "mx.y.test:25",
        reply: { code: 250, enhanced: "2.0.0", text: "Ok: queued as 123" }
      },
      { ...m, at: 301_900, node: "b", type: "MessageCompleted", delivered: 1, bounced: 0, expired: 0, deleted: false }
    ]
    await store.append("message-X", 0, events)
    const t = await Timeline.load(store, "X")
    expect(t.entries.map((e) => e.type)).toEqual(events.map((e) => e.type))
    expect(t.entries.map((e) => e.sinceStartMs)).toEqual(events.map((e) => e.at - 1000))
    expect(t.entries[3]).toMatchObject({ attemptMs: 490, nextDelayMs: 300_000, node: "a" })
    expect(t.entries[6]).toMatchObject({ attemptMs: 300, node: "b", sincePreviousMs: 300 })
    expect(t.state).toEqual(Message.fold(events))
    const text = Timeline.format(t)
    expect(text).toMatch(/451 4\.7\.1 Greylisted/)
    expect(text).toMatch(/next attempt after 5m00s/)
    expect(text).toMatch(/MX y\.test NOERROR \[10 mx\.y\.test\]/)
    expect(text).toMatch(/nodes: a, b; policy: p1/)
    expect(text).toMatch(/received under policy p1, routed under policy p1 \(see one: missive replay policy p1\)/)
    expect(text).toMatch(/r@y\.test: delivered, 1 attempt|r@y\.test: delivered, 2 attempt/)
  })
})

describe("queue at a past moment", () => {
  it("equals the fold of every message's events up to that moment", async () => {
    const store = await synthetic()
    const all = await store.readAll(0, 1e9)
    const snapshots = Snapshots.makeMemory(100)
    for (const t of [START + H, START + 3 * H + 17_000, START + 20 * H]) {
      const byId = new Map<string, Array<Message.Event>>()
      for (const e of all) if (e.event.at <= t) byId.set(e.stream.slice(8), [...(byId.get(e.stream.slice(8)) ?? []), e.event])
      const expected = [...byId.values()]
        .map((evs) => Message.fold(evs))
        .filter((s) => s.status === "active")
        .map((s) => QueueView.rowOf(s, t)!)
        .sort((a, b) => a.receivedAt - b.receivedAt || (a.id < b.id ? -1 : 1))
      const r = await queueAt(store, t)
      expect(r.rows).toEqual(expected)
      // The same through a store without the log's index (as JetStream): the whole log up to t is decoded.
      expect((await queueAt({ ...store, readIndex: undefined }, t)).rows).toEqual(expected)
      // And from open-set snapshots (as on JetStream): those taken by the first run, then those already there.
      const noIndex = { ...store, readIndex: undefined }
      for (const _ of [1, 2]) expect((await queueAt(noIndex, t, { snapshots })).rows).toEqual(expected)
    }
    expect((await snapshots.list()).length).toBeGreaterThan(10)
    // The synthetic world has outages: some messages are queued at some moment.
    const counts = await Promise.all([1, 2, 3, 4, 5].map(async (h) => (await queueAt(store, START + h * H)).rows.length))
    expect(Math.max(...counts)).toBeGreaterThan(0)
  })

  it("finds log positions by time", async () => {
    const store = await synthetic(300)
    const all = await store.readAll(0, 1e9)
    const t = all[200]!.event.at
    const p = await positionAt(store, t)
    expect(all[p - 1]!.event.at).toBeGreaterThanOrEqual(t)
    expect(all[p - 2]!.event.at).toBeLessThan(t)
    expect(await positionAt(store, START + 1000 * H)).toBe(all.length + 1)
  })
})

describe("incident report", () => {
  it("counts per destination what the log holds in the window", async () => {
    const store = await synthetic()
    const from = START + H,
      to = START + 4 * H
    const r = await Report.build(store, { from, to, buckets: 12 })
    expect(await Report.build({ ...store, readIndex: undefined }, { from, to, buckets: 12 })).toEqual(r)
    // From open-set snapshots and segment digests (as on JetStream): the first run reads the log and saves them, the
    // second reads only the positions of incomplete segments from the log. Each equals the fold of the raw
    // log (no index, no snapshots: every event from position 0 through the store's plain reads).
    const raw: EventStore.EventStore = { ...store, readIndex: undefined, readAllOf: undefined }
    expect(await Report.build(raw, { from, to, buckets: 12 })).toEqual(r)
    const snapshots = Snapshots.makeMemory(100)
    let read = 0
    const counted: EventStore.EventStore = {
      ...raw,
      readAll: async (after, limit) => {
        const events = await store.readAll(after, limit)
        if (limit > 1) read += events.length
        return events
      }
    }
    const head = await store.head()
    for (const run of [1, 2]) {
      read = 0
      expect(await Report.build(counted, { from, to, buckets: 12, snapshots })).toEqual(r)
      if (run === 1) expect(read).toBeGreaterThan(head / 2)
      // The incomplete segments only: the one the window starts in (read for the open set and for the run-up) and the
      // last one.
      else expect(read).toBeLessThan(3 * 100)
    }
    expect((await snapshots.list()).length).toBeGreaterThan(0)
    // One digest per complete segment up to the window's end, none twice.
    const digests = [...(await snapshots.listDigests())].sort((a, b) => a - b)
    expect(digests.length).toBeGreaterThan(10)
    expect(digests).toEqual(digests.map((_, i) => 100 * (i + 1)))
    // Zoomed, and a window that starts with messages open (its run-up folds their events from the digests).
    for (const o of [
      { from, to, zoom: true },
      { from: START + 3 * H, to: START + 3.5 * H, buckets: 30 }
    ])
      expect(await Report.build(counted, { ...o, snapshots })).toEqual(await Report.build(raw, o))
    // A digest that cannot be read is read from the log instead.
    const broken = Snapshots.makeMemory(100)
    for (const p of await snapshots.listDigests())
      await broken.saveDigest(p, p === 300 ? Uint8Array.from([1, 255, 255, 255, 255]) : (await snapshots.loadDigest(p))!)
    expect(await Report.build(counted, { from, to, buckets: 12, snapshots: broken })).toEqual(r)
    const all = (await store.readAll(0, 1e9)).map((e) => e.event).filter((e) => e.at >= from && e.at <= to)
    const count = (type: Message.EventType) => all.filter((e) => e.type === type).length
    expect(r.total.delivered).toBe(count("RecipientDelivered"))
    expect(r.total.bounced).toBe(count("RecipientBounced"))
    expect(r.total.attempts).toBe(count("AttemptStarted"))
    expect(r.destinations.reduce((n, d) => n + d.delivered, 0)).toBe(r.total.delivered)
    expect(Object.values(r.total.replies).reduce((a, b) => a + b, 0)).toBe(
      all.reduce(
        (n, e) => n + (e.type === "AttemptSucceeded" || e.type === "AttemptDeferred" || e.type === "AttemptFailed" ? e.rcpts.length : 0),
        0
      )
    )
    expect(r.total.series).toHaveLength(12)
    expect(r.total.series.reduce((n, b) => n + b.attempts, 0)).toBe(r.total.attempts)
    expect(r.total.queuedAtStart + r.total.recipients).toBe(
      r.total.delivered + r.total.bounced + r.total.expired + r.total.deleted + r.total.openAtEnd
    )
    expect(r.total.latency.count).toBe(r.total.delivered)
    const only = await Report.build(store, { from, to, domain: "d0.example" })
    expect(only.destinations.map((d) => d.destination)).toEqual(["d0.example"])
    expect(only.destinations[0]).toEqual({
      ...r.destinations.find((d) => d.destination === "d0.example")!,
      series: only.destinations[0]!.series
    })
    expect(Report.format(r)).toMatch(/DESTINATION\s+MSGS\s+RCPTS\s+QUEUED@START\s+ATTEMPTS\s+DELIVERED\s+DEFERRALS\s+BOUNCED/)
  })

  it("renders a self-contained HTML page with inline SVG charts", async () => {
    const store = await synthetic(400)
    const html = Html.render(await Report.build(store, { from: START, to: START + 6 * H }))
    expect(html).toMatch(/^<!doctype html>/)
    expect((html.match(/<svg /g) ?? []).length).toBeGreaterThan(3)
    expect(html).not.toMatch(/<script|<link|src=|url\(|https?:\/\//i)
    expect(html).toMatch(/d0\.example/)
  })
})

describe("what-if", () => {
  it("is deterministic for a seed and reproduces the recording under the recorded policy", async () => {
    const store = await synthetic()
    const rec = await WhatIf.record(store, { from: START, to: START + 6 * H })
    const a = WhatIf.simulate(rec, livePolicy, { seed: 3 })
    const b = WhatIf.simulate(rec, livePolicy, { seed: 3 })
    expect(a).toEqual(b)
    expect(a.outcome.messages).toBe(rec.recorded.messages)
    expect(a.outcome.bounced).toBe(rec.recorded.bounced)
    expect(a.outcome.delivered).toBe(rec.recorded.delivered)
    expect(Math.abs(a.outcome.attempts - rec.recorded.attempts)).toBeLessThanOrEqual(rec.recorded.attempts * 0.02)
  })

  it("answers how another retry schedule and lifetime would have done", async () => {
    const store = await synthetic()
    const rec = await WhatIf.record(store, { from: START, to: START + 6 * H })
    const eager = WhatIf.simulate(rec, { ...livePolicy, retry: { ...livePolicy.retry, initialMs: 30_000, maxMs: 60_000 }, hash: "eager" })
    const short = WhatIf.simulate(rec, { ...livePolicy, retry: { ...livePolicy.retry, lifetimeMs: 10 * 60_000 }, hash: "short" })
    expect(eager.outcome.attempts).toBeGreaterThan(rec.recorded.attempts)
    expect(eager.outcome.latency.p99).toBeLessThan(rec.recorded.latency.p99)
    expect(short.outcome.expired).toBeGreaterThan(0)
    expect(short.outcome.delivered).toBeLessThan(rec.recorded.delivered)
    const text = WhatIf.format(rec, { ...livePolicy, hash: "eager" }, eager, 5)
    expect(text).toMatch(/recorded\s+alternative/)
    expect(text).toMatch(/peak queue \(messages\)/)
  })

  it("holds a destination to the alternative's concurrency", async () => {
    const store = await synthetic()
    const rec = await WhatIf.record(store, { from: START, to: START + 6 * H })
    const narrow = WhatIf.simulate(rec, { ...livePolicy, concurrencyPerDestination: 1, maxConnections: 1 })
    const wide = WhatIf.simulate(rec, livePolicy)
    expect(narrow.outcome.latency.p90).toBeGreaterThan(wide.outcome.latency.p90)
  })
})

describe("progress bar", () => {
  it("draws on a terminal and stays silent otherwise", async () => {
    const { PassThrough } = await import("node:stream")
    const { start } = await import("../src/replay/Progress.js")
    const capture = (tty: boolean) => {
      const s = new PassThrough() as unknown as NodeJS.WriteStream & { isTTY: boolean }
      s.isTTY = tty
      ;(s as unknown as { columns: number }).columns = 100
      ;(s as unknown as { cursorTo: () => boolean }).cursorTo = () => true
      ;(s as unknown as { clearLine: () => boolean }).clearLine = () => true
      ;(s as unknown as { moveCursor: () => boolean }).moveCursor = () => true
      let out = ""
      ;(s as unknown as NodeJS.ReadableStream).on("data", (b: Buffer) => {
        out += b.toString()
      })
      return { s, out: () => out }
    }
    const tty = capture(true)
    const bar = start("scan", 1000, tty.s)
    bar.update(500)
    bar.stop()
    const pipe = capture(false)
    const none = start("scan", 1000, pipe.s)
    none.update(500)
    none.stop()
    await new Promise((r) => setImmediate(r))
    expect(tty.out()).toMatch(/scan \[/)
    expect(pipe.out()).toBe("")
  })
})
