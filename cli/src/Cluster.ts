// `missive cluster up|status` and the cluster side of `missive queue`: the CLI talks to NATS directly (any server of
// the cluster), so it works whichever node it asks. Bad arguments give a precise message; nothing here changes mail.
import { EventStore, JetStreamEventStore, JetStreamInbox, QueueView, Timeline } from "@missive/events"
import { Message } from "@missive/core"
import { jetstreamManager } from "@nats-io/jetstream"
import { readFileSync } from "node:fs"
import { resolve } from "node:path"
import { parse as parseYaml } from "yaml"
import { Clock, ClusterRuntime, Launcher, Membership, Placement, Service, type Config as Configuration } from "@missive/node"
import { ClusterUsageError, natsFlag, withNats } from "./Help.js"
import { drain } from "./Drain.js"
import { rootWarning } from "./Root.js"
export { CLUSTER_HELP as HELP, ClusterUsageError, natsFlag, withNats } from "./Help.js"

type Config = Configuration.Config
const { connectTo } = ClusterRuntime
/** What the nodes would create if this command is the first to open the cluster's streams: the same replicas and shards. */
const layout = (c: Config["cluster"]) => ({ prefix: c.prefix, replicas: ClusterRuntime.replicasOf(c), shards: ClusterRuntime.shardsOf(c) })
const { systemClock } = Clock

const flag = (argv: ReadonlyArray<string>, name: string): string | undefined => {
  const i = argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`))
  if (i < 0) return undefined
  const a = argv[i]!
  if (a.includes("=")) return a.slice(a.indexOf("=") + 1)
  const v = argv[i + 1]
  if (v === undefined || v.startsWith("--")) throw new ClusterUsageError(`option --${name} needs a value`)
  return v
}

const intFlag = (argv: ReadonlyArray<string>, name: string, dflt: number, min: number, max: number): number => {
  const v = flag(argv, name)
  if (v === undefined) return dflt
  const n = Number(v)
  if (!Number.isInteger(n) || n < min || n > max)
    throw new ClusterUsageError(`--${name}: expected an integer from ${min} to ${max}, got ${v}`)
  return n
}

const age = (ms: number) => QueueView.formatAge(ms)

export const status = async (config: Config, json: boolean, out: (s: string) => void): Promise<number> => {
  const c = config.cluster
  if (c.nats.length === 0) throw new ClusterUsageError("no cluster: give --nats URLS or cluster.nats in the configuration")
  const nc = await connectTo(c, "missive-cli")
  try {
    const now = systemClock.now()
    const [answers, beats] = await Promise.all([Service.gather(nc, c.prefix), Membership.read(nc, c.prefix).catch(() => [])])
    const jsm = await jetstreamManager(nc)
    const streams: Array<{
      name: string
      messages: number
      bytes: number
      configured: number
      leader: string | undefined
      replicas: Array<{ name: string; current: boolean; lag: number | undefined }>
    }> = []
    for await (const si of jsm.streams.list()) {
      if (!si.config.name.toLowerCase().includes(c.prefix.toLowerCase())) continue
      streams.push({
        name: si.config.name,
        messages: si.state.messages,
        bytes: si.state.bytes,
        configured: si.config.num_replicas,
        leader: si.cluster?.leader,
        replicas: (si.cluster?.replicas ?? []).map((r) => ({ name: r.name, current: r.current, lag: r.lag }))
      })
    }
    const servers = new Set<string>()
    for (const s of streams) {
      if (s.leader) servers.add(s.leader)
      for (const r of s.replicas) servers.add(r.name)
    }
    const nodes = beats.map((b) => {
      const a = answers.find((x) => x.node === b.node)
      return {
        node: b.node,
        alive: now - b.at < c.lease,
        since: b.since,
        heartbeatAge: now - b.at,
        active: b.active,
        owned: b.held,
        partitions: b.partitions,
        ports: b.ports,
        answered: a !== undefined,
        fenced: a?.fenced
      }
    })
    const report = { connectedTo: nc.info?.server_name, servers: [...servers].sort(), nodes, streams }
    if (json) {
      out(JSON.stringify(report, null, 2))
      return 0
    }
    const lines = [
      `NATS: connected to ${report.connectedTo ?? "?"}; JetStream servers seen: ${report.servers.join(", ") || "(none)"}`,
      "",
      "Nodes:"
    ]
    for (const n of nodes)
      lines.push(
        `  ${n.node.padEnd(12)} ${n.alive ? "alive" : "DEAD "} up ${age(now - n.since).padEnd(6)} active ${String(n.active).padStart(5)}  owned ${String(n.owned).padStart(6)}  partitions ${n.partitions.length}  smtp ${n.ports["smtp"] ?? "-"}${n.answered ? "" : "  (no answer)"}`
      )
    if (nodes.length === 0) lines.push("  (none)")
    lines.push("", "Streams:")
    for (const s of streams) {
      const reps = s.replicas.map((r) => `${r.name}${r.current ? "" : " (behind" + (r.lag ? ` ${r.lag}` : "") + ")"}`).join(", ")
      const healthy = s.replicas.every((r) => r.current) && s.replicas.length === s.configured - 1 && s.leader !== undefined
      lines.push(
        `  ${s.name.padEnd(22)} ${String(s.messages).padStart(8)} msgs  R${s.configured}  leader ${s.leader ?? "-"}  replicas ${reps || "-"}  ${healthy ? "ok" : "DEGRADED"}`
      )
    }
    out(lines.join("\n"))
    return 0
  } finally {
    await nc.close()
  }
}

/** `missive queue list|show` against the cluster's JetStream. */
export const queue = async (
  config: Config,
  sub: string | undefined,
  rest: ReadonlyArray<string>,
  json: boolean,
  out: (s: string) => void,
  err: (s: string) => void
): Promise<number> => {
  const c = config.cluster
  const nc = await connectTo(c, "missive-cli")
  try {
    const events = await JetStreamEventStore.open({ nc, prefix: c.prefix, replicas: layout(c).replicas })
    if (sub === "list") {
      // Every message with work has a carrier in the inbox; one not driven yet has its first events only there.
      const inbox = await JetStreamInbox.open({ nc, ...layout(c) })
      const now = systemClock.now()
      const rows: Array<QueueView.QueueRow> = []
      const entries = await inbox.list(100_000)
      const carried = new Map(entries.filter((e) => e.events).map((e) => [e.id, e.events!]))
      for (const id of new Set(entries.map((e) => e.id))) {
        let evs = (await events.read(EventStore.streamOf(id))).map((e) => e.event)
        if (evs.length === 0) evs = [...(carried.get(id) ?? (await inbox.find(id))?.events ?? [])]
        const row = QueueView.rowOf(Message.fold(evs), now)
        if (row && row.status === "active") rows.push(row)
      }
      await inbox.close()
      rows.sort((x, y) => x.receivedAt - y.receivedAt)
      out(json ? JSON.stringify(rows, null, 2) : QueueView.formatTable(rows))
      return 0
    }
    const [id] = rest
    const evs = await events.read(EventStore.streamOf(id!))
    if (evs.length === 0) {
      err(`missive: no message ${id}`)
      return 1
    }
    const tl = Timeline.build(id!, evs)
    out(json ? JSON.stringify(Timeline.toJson(tl), null, 2) : Timeline.format(tl))
    return 0
  } finally {
    await nc.close()
  }
}

export const cluster = async (argv: ReadonlyArray<string>, loadConfig: (path: string | undefined) => Config): Promise<number> => {
  const [sub] = argv
  const out = (s: string) => void process.stdout.write(`${s}\n`)
  if (sub === "status") {
    const config = withNats(loadConfig(flag(argv, "config")), natsFlag(flag(argv, "nats")))
    return status(config, argv.includes("--json"), out)
  }
  if (sub === "balance") {
    const config = withNats(loadConfig(flag(argv, "config")), natsFlag(flag(argv, "nats")))
    const nc = await connectTo(config.cluster, "missive-cli")
    try {
      const inbox = await JetStreamInbox.open({ nc, ...layout(config.cluster) })
      const placed = await Placement.spread(nc, ClusterRuntime.placementOf(config.cluster.prefix, inbox))
      if (placed.length === 0) out("missive cluster: one server: nothing to spread")
      for (const p of placed)
        out(
          `  ${p.stream.padEnd(24)} leader ${String(p.leader ?? "-").padEnd(8)} wanted ${p.wanted}${p.consumerLeader === undefined ? "" : `  consumer leader ${p.consumerLeader}`}${p.leader === p.wanted ? "" : "  (not moved: try again)"}`
        )
      return placed.every((p) => p.leader === p.wanted) ? 0 : 1
    } finally {
      await nc.close()
    }
  }
  if (sub === "drain") {
    const node = argv[1]
    if (!node || node.startsWith("--"))
      throw new ClusterUsageError("missive cluster drain: which node? (e.g. missive cluster drain node-2)")
    const config = withNats(loadConfig(flag(argv, "config")), natsFlag(flag(argv, "nats")))
    const nc = await connectTo(config.cluster, "missive-cli")
    try {
      return await drain(
        nc,
        config.cluster.prefix,
        node,
        intFlag(argv, "timeout", 120, 1, 86_400) * 1000,
        out,
        (s) => void process.stderr.write(`${s}\n`)
      )
    } finally {
      await nc.close()
    }
  }
  if (sub === "up") {
    // As root: warned once here (cli/src/Root.ts); its nodes get --allow-root so they do not each warn again.
    const warning = rootWarning(argv.includes("--allow-root"))
    if (warning !== undefined) process.stderr.write(warning)
    const allowRoot = process.geteuid?.() === 0
    const file = flag(argv, "config")
    const base = file ? ((parseYaml(readFileSync(file, "utf8")) ?? {}) as Record<string, unknown>) : {}
    if (file) loadConfig(file)
    const basePort = flag(argv, "base-port") === undefined ? undefined : intFlag(argv, "base-port", 0, 1, 65000)
    const natsPort = intFlag(argv, "nats-port", basePort ?? 4222, 1, 65000)
    const smtpPort = intFlag(argv, "smtp-port", basePort === undefined ? 2525 : basePort + 20, 1, 65000)
    let launched: Launcher.Launched
    try {
      launched = await Launcher.up({
        nodes: intFlag(argv, "nodes", 3, 1, 9),
        dir: flag(argv, "dir") ?? "./data/cluster",
        natsPort,
        routePort: basePort === undefined ? natsPort + 1000 : basePort + 10,
        smtpPort,
        submissionPort: intFlag(argv, "submission-port", basePort === undefined ? smtpPort + 100 : basePort + 30, 1, 65000),
        base,
        missive: resolve(import.meta.dirname, "../../bin/missive.mjs"),
        // --allow-unsynced: this flag's name while it covered only servers before 2.10.23
        allowOldNats: argv.includes("--allow-old-nats") || argv.includes("--allow-unsynced"),
        allowRoot,
        out
      })
    } catch (e) {
      // Refused (nats-server too old or missing) or a process that did not come up: the launcher has stopped
      // whatever it started; the message names the process and its log.
      process.stderr.write(`missive cluster: ${e instanceof Launcher.LaunchRefused ? "" : "cannot start: "}${(e as Error).message}\n`)
      return 1
    }
    const nats = launched.nats.join(",")
    const first = launched.nodes[0]!
    out(
      `  try:     swaks --server 127.0.0.1:${first.smtp} --from alice@example.org --to bob@localhost   (delivered to ${first.name}'s maildir)`
    )
    out(`  status:  missive cluster status --nats ${nats}`)
    out(`  queue:   missive queue list --nats ${nats}`)
    out(`missive cluster: from here on only a node or server going down is reported; Ctrl-C stops all (nodes first, then NATS)`)
    await new Promise<void>((done) => {
      const stop = (sig: string) => {
        process.stderr.write(`missive cluster: ${sig}: stopping nodes (drain and hand over), then NATS\n`)
        void launched.stop().then(done)
      }
      process.once("SIGINT", () => stop("SIGINT"))
      process.once("SIGTERM", () => stop("SIGTERM"))
    })
    return 0
  }
  throw new ClusterUsageError("usage: missive cluster up|status …")
}
