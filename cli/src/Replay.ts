// `missive replay …`: incident replay over the recorded log (timeline, the recorded policy, report, queue at a moment,
// what-if, re-inject). Opens the node's SQLite store read-only (safe next to a running node); only `inject` sends
// anything, and only to the --target it is given. Bad arguments get a precise message and exit code 2.
import { EmbeddedStore, type BodyStore, type EventStore, type Snapshots } from "@missive/events"
import { existsSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { QueueView } from "@missive/events"
import { Clock, ClusterRuntime, Config as Configuration, Node, Presets, Redact } from "@missive/node"
import { Replay } from "@missive/simulations"
export { REPLAY_HELP as HELP } from "./Help.js"
import { parseFlags } from "./Help.js"

import Html = Replay.Html
import Inject = Replay.Inject
import Policy = Replay.Policy
import Progress = Replay.Progress
import Report = Replay.Report
import Timeline = Replay.Timeline
import TlsRpt = Replay.TlsRpt
import WhatIf = Replay.WhatIf
type Config = Configuration.Config
const { load } = Configuration
const { policyHashOf } = Node
const { systemClock } = Clock
const { queueAt } = Replay.QueueAt
const { expected: timeExpected, iso, parseTime } = Replay.Time

class Usage extends Error {}

const OPTIONS: Record<string, "value" | "bool"> = {
  config: "value",
  data: "value",
  json: "bool",
  from: "value",
  to: "value",
  at: "value",
  domain: "value",
  html: "value",
  target: "value",
  speed: "value",
  "synthetic-bodies": "bool",
  seed: "value",
  buckets: "value",
  zoom: "bool",
  replies: "value",
  day: "value",
  org: "value",
  contact: "value",
  out: "value",
  "filter-dmarc": "value",
  "filter-temperror": "value",
  diff: "bool"
}

const parse = (argv: ReadonlyArray<string>) => {
  const r = parseFlags(argv, OPTIONS)
  if (typeof r === "string") throw new Usage(r)
  const { positional, flags } = r
  const str = (k: string) => {
    const v = flags.get(k)
    return typeof v === "string" ? v : undefined
  }
  return { positional, flags, str }
}

const configOf = (path: string | undefined): Config => {
  const r = load(path)
  if (!r.ok) throw new Usage(`invalid configuration${path ? ` in ${path}` : ""}:\n${r.errors.map((e) => `  ${e}`).join("\n")}`)
  return r.config
}

interface Log {
  readonly events: EventStore.EventStore
  readonly bodies: BodyStore.BodyStore
  /** On JetStream (no index): the open-set snapshots `queue --at` and `report` start from, in `<PREFIX>_REPLAY`. */
  readonly snapshots?: Snapshots.SnapshotStore
  close(): Promise<void>
}

/** The embedded SQLite log (read-only), or with `cluster.nats` set (and no --data) the JetStream log through the same port. */
const openLog = async (config: Config, dataDir: string | undefined): Promise<Log> => {
  if (dataDir === undefined && config.cluster.nats.length > 0) {
    const { JetStreamBodyStore, JetStreamEventStore, JetStreamSnapshots } = await import("@missive/events")
    const Cluster = ClusterRuntime
    const nc = await Cluster.connectTo(config.cluster, `missive-replay-${config.node_id}`)
    const replicas = Cluster.replicasOf(config.cluster)
    const events = await JetStreamEventStore.open({ nc, prefix: config.cluster.prefix, replicas, direct: true })
    const bodies = await JetStreamBodyStore.open({ nc, prefix: config.cluster.prefix, replicas })
    const snapshots = await JetStreamSnapshots.open({ nc, prefix: config.cluster.prefix, replicas })
    return {
      events,
      bodies,
      snapshots,
      close: async () => {
        await events.close()
        await bodies.close()
        await nc.drain().catch(() => nc.close())
      }
    }
  }
  const path = join(resolve(dataDir ?? config.data_dir), "missive.db")
  if (!existsSync(path)) throw new Usage(`no log at ${path} (has a node run with this data_dir?)`)
  return EmbeddedStore.open({ path, readonly: true, eventstoredb: config.store.eventstoredb })
}

const time = (name: string, v: string | undefined, now: number, required = true): number | undefined => {
  if (v === undefined) {
    if (required) throw new Usage(`--${name} is required`)
    return undefined
  }
  const t = parseTime(v, now)
  if (t === undefined) throw new Usage(`--${name}: expected ${timeExpected}, got "${v}"`)
  return t
}

const window = (a: ReturnType<typeof parse>, now: number) => {
  const from = time("from", a.str("from"), now)!
  const to = time("to", a.str("to"), now)!
  if (to < from) throw new Usage(`--to (${iso(to)}) is before --from (${iso(from)})`)
  return { from, to }
}

const progress = (label: string) => {
  let bar: Progress.Progress | undefined
  return {
    onProgress: (p: number, total: number) => {
      bar ??= Progress.start(label, total)
      bar.update(p, total)
    },
    stop: () => bar?.stop()
  }
}

const out = (s: string) => void process.stdout.write(s.endsWith("\n") ? s : `${s}\n`)

export const replay = async (argv: ReadonlyArray<string>): Promise<number> => {
  try {
    return await run(argv)
  } catch (e) {
    if (e instanceof Usage) {
      process.stderr.write(`missive replay: ${e.message}\nRun "missive help" for usage.\n`)
      return 2
    }
    throw e
  }
}

const run = async (argv: ReadonlyArray<string>): Promise<number> => {
  const a = parse(argv)
  const [sub, ...rest] = a.positional
  const now = systemClock.now()
  const json = a.flags.has("json")
  const known = ["timeline", "policy", "report", "queue", "what-if", "inject", "tls-rpt"]
  if (!sub || !known.includes(sub)) throw new Usage(`usage: missive replay ${known.join("|")} … (got ${sub ? `"${sub}"` : "nothing"})`)
  if (sub === "policy" && rest.length !== (a.flags.has("diff") ? 2 : 1))
    throw new Usage("usage: missive replay policy HASH | missive replay policy --diff HASH_A HASH_B [--config FILE] [--json]")
  const config = configOf(a.str("config"))
  const store = await openLog(config, a.str("data"))
  try {
    if (sub === "timeline") {
      const [id, ...more] = rest
      if (!id || more.length > 0) throw new Usage("usage: missive replay timeline ID [--config FILE] [--json]")
      const t = await Timeline.load(store.events, id)
      if (t.entries.length === 0) {
        process.stderr.write(`missive replay: no message ${id}\n`)
        return 1
      }
      out(json ? JSON.stringify(Timeline.toJson(t), null, 2) : Timeline.format(t))
      return 0
    }
    if (sub === "policy") {
      const diff = a.flags.has("diff")
      const found = await Promise.all(rest.map((h) => Policy.find(store.events, h)))
      const missing = rest.filter((_, i) => !found[i])
      if (missing.length > 0) {
        const known = (await Policy.recorded(store.events)).map((e) => e.hash)
        process.stderr.write(
          `missive replay: no recorded policy ${missing.join(", ")} (recorded: ${[...new Set(known)].join(", ") || "none"})\n`
        )
        return 1
      }
      const [x, y] = found as Array<Policy.Activated>
      if (json) out(JSON.stringify(diff ? { from: x, to: y, diff: Policy.diff(x!.config, y!.config) } : x, null, 2))
      else out(diff ? Policy.formatDiff(x!, y!) : Policy.format(x!))
      return 0
    }
    if (rest.length > 0) throw new Usage(`replay ${sub} takes no arguments (got ${rest.join(" ")})`)
    if (sub === "tls-rpt") {
      const day = a.str("day") ?? iso(now - 86_400_000).slice(0, 10)
      if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) throw new Usage(`--day: expected YYYY-MM-DD, got "${day}"`)
      const organization = a.str("org") ?? config.hostname
      const p = progress("tls-rpt")
      const r = await TlsRpt.build(store.events, {
        day,
        organization,
        contact: a.str("contact") ?? `postmaster@${organization}`,
        onProgress: p.onProgress
      }).finally(p.stop)
      const file = a.str("out")
      if (file) {
        writeFileSync(file, JSON.stringify(r, null, 2))
        process.stderr.write(`missive replay: wrote ${file}\n`)
      } else out(JSON.stringify(r, null, 2))
      return 0
    }
    if (sub === "queue") {
      const at = time("at", a.str("at"), now)!
      const p = progress("queue --at")
      const r = await queueAt(store.events, at, { onProgress: p.onProgress, snapshots: store.snapshots }).finally(p.stop)
      out(
        json
          ? JSON.stringify({ at: iso(r.at), position: r.position, rows: r.rows }, null, 2)
          : `queue at ${iso(r.at)} (log position ${r.position})\n${QueueView.formatTable(r.rows)}`
      )
      return 0
    }
    if (sub === "report") {
      const { from, to } = window(a, now)
      const buckets = a.str("buckets") === undefined ? undefined : Number(a.str("buckets"))
      if (buckets !== undefined && !(Number.isInteger(buckets) && buckets >= 1 && buckets <= 10_000))
        throw new Usage(`--buckets: expected an integer from 1 to 10000`)
      const p = progress("report")
      const r = await Report.build(store.events, {
        from,
        to,
        domain: a.str("domain"),
        buckets,
        zoom: a.flags.has("zoom"),
        onProgress: p.onProgress,
        snapshots: store.snapshots
      }).finally(p.stop)
      const html = a.str("html")
      if (html) {
        writeFileSync(html, Html.render(r))
        process.stderr.write(`missive replay: wrote ${html}\n`)
      }
      out(json ? JSON.stringify(r, null, 2) : Report.format(r))
      return 0
    }
    if (sub === "what-if" && (a.str("filter-dmarc") !== undefined || a.str("filter-temperror") !== undefined)) {
      const { from, to } = window(a, now)
      const dmarc = a.str("filter-dmarc")
      const temperror = a.str("filter-temperror")
      if (dmarc !== undefined && dmarc !== "enforce" && dmarc !== "record")
        throw new Usage(`--filter-dmarc: expected enforce or record, got "${dmarc}"`)
      if (temperror !== undefined && temperror !== "tempfail" && temperror !== "record")
        throw new Usage(`--filter-temperror: expected tempfail or record, got "${temperror}"`)
      const policy = { dmarc, temperror } as Replay.FilterWhatIf.FilterPolicy
      const r = await Replay.FilterWhatIf.run(store.events, policy, { from, to })
      out(json ? JSON.stringify({ from: iso(from), to: iso(to), policy, ...r }, null, 2) : Replay.FilterWhatIf.format(r, policy))
      return 0
    }
    if (sub === "what-if") {
      const { from, to } = window(a, now)
      if (!a.str("config")) throw new Usage("what-if needs --config ALT.yaml (the alternative policy)")
      const seed = a.str("seed") === undefined ? 1 : Number(a.str("seed"))
      if (!Number.isSafeInteger(seed)) throw new Usage(`--seed: expected an integer`)
      const replies = a.str("replies") ?? "destination"
      if (replies !== "destination" && replies !== "message")
        throw new Usage(`--replies: expected destination or message, got "${replies}"`)
      const p = progress("what-if")
      const rec = await WhatIf.record(store.events, { from, to, onProgress: p.onProgress }).finally(p.stop)
      const alt: WhatIf.AltPolicy = {
        retry: Configuration.policyOf(config),
        concurrencyPerDestination: config.delivery.concurrency_per_destination,
        maxConnections: config.delivery.max_connections,
        hash: policyHashOf(config),
        rules: Presets.shapingOf(config).rules
      }
      const t0 = performance.now()
      const sim = WhatIf.simulate(rec, alt, { seed, replies })
      const wall = performance.now() - t0
      const policyDiff = await Policy.againstAlternative(store.events, rec.policies, { hash: alt.hash, config: Redact.redact(config) })
      out(
        json
          ? JSON.stringify(
              {
                from: iso(from),
                to: iso(to),
                horizon: iso(rec.horizon),
                recorded: rec.recorded,
                alternative: sim.outcome,
                policy: alt,
                siteChanges: { recorded: rec.siteChanges, redecided: sim.siteChanges },
                steps: sim.steps,
                wallMs: wall,
                unknownDestinations: sim.unknownDestinations,
                policyDiff
              },
              null,
              2
            )
          : [WhatIf.format(rec, alt, sim, wall), "", ...policyDiff].join("\n")
      )
      return 0
    }
    // inject
    const { from, to } = window(a, now)
    const target = a.str("target")
    const m = target === undefined ? null : /^smtp:\/\/(\[[^\]]+\]|[^:/]+):(\d{1,5})\/?$/.exec(target)
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535)
      throw new Usage(`--target: expected smtp://HOST:PORT, got ${target === undefined ? "nothing" : `"${target}"`}`)
    const speed = a.str("speed") === undefined ? 1 : Number(a.str("speed"))
    if (!(Number.isFinite(speed) && speed > 0)) throw new Usage(`--speed: expected a positive number, got "${a.str("speed")}"`)
    const p = progress("inject")
    const r = await Inject.inject(store.events, store.bodies, {
      from,
      to,
      host: m[1]!.replace(/^\[|\]$/g, ""),
      port: Number(m[2]),
      speed,
      syntheticBodies: a.flags.has("synthetic-bodies"),
      clock: systemClock,
      onProgress: p.onProgress
    }).finally(p.stop)
    out(json ? JSON.stringify(r, null, 2) : Inject.format(r, target!))
    return r.failed === 0 ? 0 : 1
  } finally {
    await store.close()
  }
}
