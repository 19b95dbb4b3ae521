// Replay benchmark: a log of 1,000,000 events (a day of synthetic traffic: skewed destinations, outages, unknown users,
// retries, bounces) in a temp SQLite store, then: full projection rebuild, one message's timeline, the queue at a past
// moment, and a what-if run over the whole log. Targets from the replay issue are printed next to each figure.
import { Message } from "@missive/core"
import { EventStore, SqliteStore } from "@missive/events"
import * as Projection from "./lib/Projection.js"
import { mkdtempSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Replay } from "@missive/simulations"

const { Report, Timeline, WhatIf } = Replay
const { queueAt } = Replay.QueueAt
const { generate, livePolicy, world } = Replay.Synthetic

export const EVENTS = Number(process.env["REPLAY_BENCH_EVENTS"] ?? 1_000_000)
export const START = Date.UTC(2026, 4, 1)
export const DAY = 86_400_000

/** The synthetic day both replay benchmarks store (SQLite here, JetStream in replay-nats): its appends in log order. */
export const syntheticDay = (): { batches: Array<[string, ReadonlyArray<Message.Event>]>; events: number } => {
  const w = world({
    seed: 11,
    start: START,
    spanMs: DAY,
    messages: Math.ceil(EVENTS / 5.6),
    domains: 500,
    tailMs: DAY / 4,
    outageShare: 0.15
  })
  const batches: Array<[string, ReadonlyArray<Message.Event>]> = []
  const events = generate(w, (id, evs) => batches.push([id, evs]), { maxEvents: EVENTS })
  return { batches, events }
}

const time = async <T>(f: () => Promise<T> | T): Promise<[T, number]> => {
  const t0 = performance.now()
  const v = await f()
  return [v, performance.now() - t0]
}

export const run = async (): Promise<string> => {
  const dir = mkdtempSync(join(tmpdir(), "missive-replay-bench-"))
  const path = join(dir, "missive.db")
  try {
    // ---- generate ----------------------------------------------------------------------------------
    const [written, genMs] = await time(async () => {
      const { batches, events: n } = syntheticDay()
      const store = SqliteStore.open({ path, synchronous: "OFF", maxPending: 1e9 })
      const versions = new Map<string, number>()
      for (let i = 0; i < batches.length; i += 20_000) {
        await Promise.all(
          batches.slice(i, i + 20_000).map(([id, evs]) => {
            const s = EventStore.streamOf(id)
            const v = versions.get(s) ?? 0
            versions.set(s, v + evs.length)
            return store.events.append(s, v, evs)
          })
        )
      }
      await store.close()
      return { events: n, messages: versions.size }
    })
    const store = SqliteStore.open({ path, readonly: true })
    const head = await store.events.head()
    const first = (await store.events.readAll(0, 1))[0]!.event.at
    const last = (await store.events.readAll(head - 1, 1))[0]!.event.at
    const span = last - first

    // ---- projection rebuild ------------------------------------------------------------------------
    const cps = Projection.sqliteCheckpoints(join(dir, "projections.db"))
    // The first pass reads a file the OS has not cached yet (it was just written through another connection).
    const [q0, q0Ms] = await time(() => Projection.rebuild(store.events, Projection.queue, cps))
    const [q, qMs] = await time(() => Projection.rebuild(store.events, Projection.queue, cps))
    const [d, dMs] = await time(() => Projection.rebuild(store.events, Projection.destinations, cps))
    await cps.close()
    if (q0.state.size !== q.state.size) throw new Error("queue rebuild is not idempotent")

    // ---- timeline of one message -------------------------------------------------------------------
    const sample = await store.events.readAll(Math.floor(head / 2), 1)
    const id = EventStore.idOf(sample[0]!.stream)
    await Timeline.load(store.events, id)
    const tl: Array<number> = []
    let tlEvents = 0
    for (let i = 0; i < 20; i++) {
      const [t, ms] = await time(async () => Timeline.format(await Timeline.load(store.events, id)))
      tl.push(ms)
      tlEvents = t.split("\n").length
    }
    tl.sort((a, b) => a - b)

    // ---- queue at a past moment --------------------------------------------------------------------
    const at = first + Math.floor(span * 0.6)
    const [qa, qaMs] = await time(() => queueAt(store.events, at))
    // The same through the port without the log's index (as on JetStream): every event up to T decoded.
    const [qaFull, qaFullMs] = await time(() => queueAt({ ...store.events, readIndex: undefined }, at))
    if (qaFull.rows.length !== qa.rows.length) throw new Error("queue --at differs with and without the index")

    // ---- incident report over the day (the whole log: folds from position 0 to the window's end) -------------
    const [rep, repMs] = await time(() => Report.build(store.events, { from: first, to: first + DAY }))
    const [, repZoomMs] = await time(() =>
      Report.build(store.events, { from: first + DAY / 2, to: first + DAY / 2 + 3600_000, zoom: true })
    )

    // ---- what-if over the whole log ----------------------------------------------------------------
    const [rec, recMs] = await time(() => WhatIf.record(store.events, { from: first, to: last }))
    const alt = {
      ...livePolicy,
      retry: { ...livePolicy.retry, initialMs: 60_000, maxMs: 600_000 },
      concurrencyPerDestination: 5,
      hash: "bench-alt"
    }
    const [sim, simMs] = await time(() => WhatIf.simulate(rec, alt, { seed: 1 }))
    const wiMs = recMs + simMs
    await store.close()

    const rate = (n: number, ms: number) => Math.round(n / (ms / 1000))
    const fmt = (n: number) => n.toLocaleString("en-US")
    const ok = (b: boolean) => (b ? "met" : "**missed**")
    const rebuildRate = rate(q.applied, qMs)
    const rows = [
      `| full projection rebuild: queue view, first pass | ${fmt(q0.applied)} events in ${q0Ms.toFixed(0)} ms = **${fmt(rate(q0.applied, q0Ms))} events/s** | ≥ 200,000 events/s | ${ok(rate(q0.applied, q0Ms) >= 200_000)} |`,
      `| full projection rebuild: queue view, again (idempotent: same state) | ${fmt(q.applied)} events in ${qMs.toFixed(0)} ms = **${fmt(rebuildRate)} events/s** (${q.state.size} open messages at the head) | ≥ 200,000 events/s | ${ok(rebuildRate >= 200_000)} |`,
      `| full projection rebuild: per-destination stats | ${fmt(d.applied)} events in ${dMs.toFixed(0)} ms = **${fmt(rate(d.applied, dMs))} events/s** (${Object.keys(d.state).length} destinations) | ≥ 200,000 events/s | ${ok(rate(d.applied, dMs) >= 200_000)} |`,
      `| \`timeline\` of one message (read + fold + format, ${tlEvents - 1} lines) | median **${tl[10]!.toFixed(2)} ms**, max ${tl[19]!.toFixed(2)} ms | < 50 ms | ${ok(tl[10]! < 50)} |`,
      `| \`queue --at\` (60% into the span) | **${(qaMs / 1000).toFixed(2)} s**, ${qa.rows.length} messages queued, ${fmt(qa.position)} log positions scanned (the index; only the open messages' streams decoded) | < 1 s | ${ok(qaMs < 1000)} |`,
      `| \`queue --at\` without the log's index (as on JetStream: every event up to T decoded) | **${(qaFullMs / 1000).toFixed(2)} s** | – | |`,
      `| \`report\` over the first day (${rep.destinations.length} destinations, ${fmt(rep.total.recipients)} recipients, ${rep.total.series.length} buckets) | **${(repMs / 1000).toFixed(2)} s** | < 5 s | ${ok(repMs < 5000)} |`,
      `| \`report --zoom\` over one hour at mid-day (the run-up through the index, the hour decoded) | **${(repZoomMs / 1000).toFixed(2)} s** | < 5 s | ${ok(repZoomMs < 5000)} |`,
      `| what-if over the whole log (${(span / 3600_000).toFixed(1)} h recorded; ${fmt(rec.recorded.messages)} arrivals, ${fmt(sim.steps)} steps) | read ${(recMs / 1000).toFixed(2)} s + simulate ${(simMs / 1000).toFixed(2)} s = **${fmt(Math.round(span / wiMs))}× real time** | ≥ 1,000× | ${ok(span / wiMs >= 1000)} |`
    ]
    return [
      "## Replay",
      "",
      `Log: ${fmt(written.events)} events, ${fmt(written.messages)} messages, 500 destinations, ${(span / 3600_000).toFixed(1)} h of synthetic traffic; SQLite file ${(statSync(path).size / 1e6).toFixed(0)} MB (generated in ${(genMs / 1000).toFixed(1)} s, synchronous=OFF). Reads through the EventStore port, store opened read-only as the CLI does.`,
      "",
      "| measure | result | target | |",
      "| --- | --- | --- | --- |",
      ...rows,
      "",
      `What-if (retry 1m..10m, 5 per destination) vs recorded: delivered ${fmt(sim.outcome.delivered)} vs ${fmt(rec.recorded.delivered)}, attempts ${fmt(sim.outcome.attempts)} vs ${fmt(rec.recorded.attempts)}, p99 latency ${(sim.outcome.latency.p99 / 1000).toFixed(0)} s vs ${(rec.recorded.latency.p99 / 1000).toFixed(0)} s.`,
      "",
      `Command: \`npm run bench -- replay\` (node ${process.version}, ${process.platform}/${process.arch}). \`REPLAY_BENCH_EVENTS=N\` changes the log size.`
    ].join("\n")
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
