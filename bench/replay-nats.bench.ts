// Replay benchmark on the cluster's log: the replay benchmark's 1,000,000-event synthetic day appended to a JetStream
// event store (`<PREFIX>_EVENTS` on one nats-server 2.10, synced writes, its store on tmpfs so that building the log
// does not take the machine's disk for minutes), then what `missive replay` does with `cluster.nats` set: one
// message's timeline, the queue at a past moment (cold, then with the open-set snapshots in place) and a report
// over the day and one zoomed on an hour (cold: nothing held, then with the segments' digests in place). Reads
// through the EventStore port, as the CLI does. Targets from the replay issue beside each figure.
import { EventStore, JetStreamEventStore, JetStreamSnapshots } from "@missive/events"
import { Replay } from "@missive/simulations"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { existsSync } from "node:fs"
import { startNatsServer, type NatsServer } from "../test/src/Nats.js"
import { cpuMs } from "../test/src/Support.js"
import { DAY, EVENTS, syntheticDay } from "./replay.bench.js"
import { loadavg } from "node:os"

const { Report, Timeline } = Replay
const { queueAt } = Replay.QueueAt

/** Development: a nats-server already holding the log (prefix `bench`), so only the reads run. */
const URL = process.env["REPLAY_NATS_URL"]
const PREFIX = "bench"
/** Appends in flight at once while building (one at a time per message stream: each expects the last one). */
const WINDOW = 2000

const time = async <T>(f: () => Promise<T> | T): Promise<[T, number]> => {
  const t0 = performance.now()
  const v = await f()
  return [v, performance.now() - t0]
}

/** Wall time, this process's CPU time and the nats-server's (when this run started it), in ms. */
const timeCpu = async <T>(f: () => Promise<T> | T, server?: NatsServer): Promise<[T, { wall: number; cpu: number; server: number }]> => {
  const pid = server?.pid()
  const s0 = pid ? cpuMs(pid) : 0
  const c0 = process.cpuUsage()
  const [v, wall] = await time(f)
  const c = process.cpuUsage(c0)
  return [v, { wall, cpu: (c.user + c.system) / 1000, server: pid ? cpuMs(pid) - s0 : Number.NaN }]
}

/** Appends the synthetic day through the port, `WINDOW` appends in flight, each stream's appends in order. */
export const build = async (store: EventStore.EventStore): Promise<{ events: number; messages: number; appends: number }> => {
  const { batches, events } = syntheticDay()
  const versions = new Map<string, number>()
  const tails = new Map<string, Promise<unknown>>()
  const inFlight = new Set<Promise<unknown>>()
  for (const [id, evs] of batches) {
    const s = EventStore.streamOf(id)
    const v = versions.get(s) ?? 0
    versions.set(s, v + evs.length)
    const p = (tails.get(s) ?? Promise.resolve()).then(() => store.append(s, v, evs))
    tails.set(s, p)
    inFlight.add(p)
    void p.finally(() => {
      inFlight.delete(p)
      if (tails.get(s) === p) tails.delete(s)
    })
    if (inFlight.size >= WINDOW) await Promise.race(inFlight)
  }
  await Promise.all(inFlight)
  return { events, messages: versions.size, appends: batches.length }
}

export const run = async (): Promise<string> => {
  let server: NatsServer | undefined
  let nc: NatsConnection | undefined
  try {
    let built = { events: 0, messages: 0, appends: 0 }
    let buildMs = 0
    if (URL === undefined) {
      server = await startNatsServer(existsSync("/dev/shm") ? "/dev/shm" : undefined)
      nc = await connect({ servers: server.url })
      const writer = await JetStreamEventStore.open({ nc, prefix: PREFIX })
      ;[built, buildMs] = await time(() => build(writer))
      await writer.close()
    } else nc = await connect({ servers: URL })

    // A fresh connection's store, as the CLI opens it: nothing cached.
    const store = await JetStreamEventStore.open({ nc, prefix: PREFIX, direct: true })
    const head = await store.head()
    const first = (await store.readAll(0, 1))[0]!.event.at
    const last = (await store.readAll(head - 1, 1))[0]!.event.at
    const span = last - first

    // ---- timeline of one message -------------------------------------------------------------------
    const sample = await store.readAll(Math.floor(head / 2), 1)
    const id = EventStore.idOf(sample[0]!.stream)
    const tl: Array<number> = []
    let lines = 0
    for (let i = 0; i < 21; i++) {
      // Each from a fresh store (no stream cache), as each CLI run is.
      const own = await JetStreamEventStore.open({ nc, prefix: PREFIX, direct: true })
      const [t, ms] = await time(async () => Timeline.format(await Timeline.load(own, id)))
      await own.close()
      if (i > 0) tl.push(ms)
      lines = t.split("\n").length
    }
    tl.sort((a, b) => a - b)

    // ---- queue at a past moment: cold (no snapshot yet: builds them), then with the snapshots ------------
    const at = first + Math.floor(span * 0.6)
    const snapshots = await JetStreamSnapshots.open({ nc, prefix: PREFIX })
    await snapshots.clear()
    // Each query on a store opened for it (nothing cached from the one before), as each CLI run is.
    const fresh = async <T>(f: (s: EventStore.EventStore) => Promise<T>): Promise<T> => {
      const s = await JetStreamEventStore.open({ nc: nc!, prefix: PREFIX, direct: true })
      try {
        return await f(s)
      } finally {
        await s.close()
      }
    }
    const [qCold, qColdT] = await timeCpu(() => fresh((s) => queueAt(s, at, { snapshots })), server)
    const [q, qT] = await timeCpu(() => fresh((s) => queueAt(s, at, { snapshots })), server)
    const at2 = first + Math.floor(span * 0.3)
    const [q2, q2T] = await timeCpu(() => fresh((s) => queueAt(s, at2, { snapshots })), server)
    if (qCold.rows.length !== q.rows.length) throw new Error("queue --at differs cold and with snapshots")

    // ---- report over the day (the whole log), then zoomed on one hour ------------------------------------
    // From nothing held (the log read and decoded, a digest saved per segment), then again (the digests folded): the
    // two must be the same report, the raw log's fold and the digests' fold.
    await snapshots.clear()
    const load0 = loadavg()[0]!
    const day = { from: first, to: first + DAY, snapshots }
    const [repCold, repColdT] = await timeCpu(() => fresh((s) => Report.build(s, day)), server)
    const [rep, repT] = await timeCpu(() => fresh((s) => Report.build(s, day)), server)
    if (JSON.stringify(rep) !== JSON.stringify(repCold)) throw new Error("report differs from the log and from the digests")
    const hour = { from: first + DAY / 2, to: first + DAY / 2 + 3600_000, zoom: true, snapshots }
    const [zoomFirst, repZoomFirstT] = await timeCpu(() => fresh((s) => Report.build(s, hour)), server)
    const [zoom, repZoomT] = await timeCpu(() => fresh((s) => Report.build(s, hour)), server)
    if (JSON.stringify(zoom) !== JSON.stringify(zoomFirst)) throw new Error("zoomed report differs on the second run")
    const load1 = loadavg()[0]!
    const digests = (await snapshots.listDigests()).length
    await store.close()

    const fmt = (n: number) => n.toLocaleString("en-US")
    const ok = (b: boolean) => (b ? "met" : "**missed**")
    const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`
    const cpu = (t: { cpu: number; server: number }) =>
      ` (CPU: replay ${s(t.cpu)}${Number.isNaN(t.server) ? "" : `, nats-server ${s(t.server)}`})`
    const rows = [
      `| \`timeline\` of one message (a fresh store each time: read + fold + format, ${lines - 1} lines) | median **${tl[10]!.toFixed(1)} ms**, max ${tl[19]!.toFixed(1)} ms | < 50 ms | ${ok(tl[10]! < 50)} |`,
      `| \`queue --at\` (60% into the span), the first run: nothing held yet, the log up to T folded and an open set and a digest saved every ${fmt(Replay.Log.SNAPSHOT_EVERY)} positions | **${s(qColdT.wall)}**${cpu(qColdT)}, ${qCold.rows.length} messages queued | – | |`,
      `| \`queue --at\` (60% into the span), again (from the nearest snapshot) | **${s(qT.wall)}**${cpu(qT)} | < 1 s | ${ok(qT.wall < 1000)} |`,
      `| \`queue --at\` (30% into the span: an earlier snapshot) | **${s(q2T.wall)}**${cpu(q2T)}, ${q2.rows.length} messages queued | < 1 s | ${ok(q2T.wall < 1000)} |`,
      `| \`report\` over the first day, the first run (${rep.destinations.length} destinations, ${fmt(rep.total.recipients)} recipients, ${rep.total.series.length} buckets: nothing held yet, the whole log decoded and a digest saved per ${fmt(Replay.Log.SNAPSHOT_EVERY)} positions) | **${s(repColdT.wall)}**${cpu(repColdT)} | – | |`,
      `| \`report\` over the first day, again (the ${digests} segments' digests folded; the same report) | **${s(repT.wall)}**${cpu(repT)} | < 5 s | ${ok(repT.wall < 5000)} |`,
      `| \`report --zoom\` over one hour at mid-day, the first run (the open set from snapshots made from the digests, the run-up and the hour from the digests) | **${s(repZoomFirstT.wall)}**${cpu(repZoomFirstT)} | < 5 s | ${ok(repZoomFirstT.wall < 5000)} |`,
      `| \`report --zoom\` over one hour at mid-day, again | **${s(repZoomT.wall)}**${cpu(repZoomT)} | < 5 s | ${ok(repZoomT.wall < 5000)} |`
    ]
    return [
      "## Replay on JetStream",
      "",
      `Log: ${URL === undefined ? `${fmt(built.events)} events, ${fmt(built.messages)} messages in ${fmt(built.appends)} appends (JetStream messages)` : `(given: ${URL})`}, head ${fmt(head)}, 500 destinations, ${(span / 3600_000).toFixed(1)} h of synthetic traffic, in \`BENCH_EVENTS\` on one nats-server (sync_interval always, store on tmpfs)${URL === undefined ? `, appended through the port in ${s(buildMs)} (${WINDOW} appends in flight)` : ""}.`,
      "",
      "| measure | result | target | |",
      "| --- | --- | --- | --- |",
      ...rows,
      "",
      `Load average (1 min, 2 cores shared with other work) ${load0.toFixed(1)} before the reports, ${load1.toFixed(1)} after.`,
      "",
      `Command: \`npm run bench -- replay-nats\` (node ${process.version}, ${process.platform}/${process.arch}). \`REPLAY_BENCH_EVENTS=N\` changes the log size.`
    ].join("\n")
  } finally {
    await nc?.close().catch(() => {})
    await server?.dispose()
  }
}
