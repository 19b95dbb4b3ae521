// The system under test. `embedded`: a Missive node started in-process for the run (temp data dir, DNS pointed at the
// simulated DNS, delivery.port = the receivers' port, the scenario's retry policy), stopped and removed afterwards.
// `smtp://host:port`: an MTA someone else runs (it must resolve through our DNS or route to our receivers itself).
// `direct`: no MTA at all, senders straight into the receivers (the harness's own ceiling). `cluster:N`: N nats-servers
// (one JetStream cluster) and N Missive node processes configured like the embedded node, senders spread over the
// nodes; the scenario's faults (kill -9, restart) are carried out on it. Never changes the scenario.
import { appendFileSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { stringify } from "yaml"
import { Clock, Config, Log, Node } from "@missive/node"
import * as Cluster from "./Cluster.js"
import type * as Scenario from "./Scenario.js"
import type { World } from "./World.js"

export type Spec =
  | { readonly kind: "embedded" }
  | { readonly kind: "direct" }
  | { readonly kind: "smtp"; readonly host: string; readonly port: number }
  | { readonly kind: "cluster"; readonly nodes: number }
  /** A target started by the caller once the world exists (benchmarks start Postfix this way). */
  | { readonly kind: "custom"; readonly name: string; readonly start: (world: World) => Promise<Running> }

export class TargetError extends Error {}

/** "embedded", "direct", "cluster:N" or "smtp://host:port". */
export const parseSpec = (text: string): Spec | string => {
  if (text === "embedded" || text === "direct") return { kind: text }
  const c = /^cluster:(\d+)$/.exec(text)
  if (c) return Number(c[1]) >= 1 ? { kind: "cluster", nodes: Number(c[1]) } : "cluster:N needs N of at least 1"
  const m = /^smtp:\/\/(\[[^\]]+\]|[^:/]+):(\d{1,5})\/?$/.exec(text)
  if (m && Number(m[2]) >= 1 && Number(m[2]) <= 65535) return { kind: "smtp", host: m[1]!.replace(/^\[|\]$/g, ""), port: Number(m[2]) }
  return `unknown target "${text}" (expected embedded, direct, cluster:N or smtp://HOST:PORT)`
}

export const describeSpec = (s: Spec): string =>
  s.kind === "smtp" ? `smtp://${s.host}:${s.port}` : s.kind === "cluster" ? `cluster:${s.nodes}` : s.kind === "custom" ? s.name : s.kind

export interface Running {
  /** Where senders submit; undefined for `direct`. */
  readonly endpoint: { readonly host: string; readonly port: number } | undefined
  /** Every node's endpoint when the target has several (cluster); sender connection k uses endpoints[k mod n]. */
  readonly endpoints?: ReadonlyArray<{ readonly host: string; readonly port: number }> | undefined
  /** Node faults (cluster only); nodes are numbered from 1. */
  readonly faults?: { kill(node: number): Promise<void>; restart(node: number): Promise<void>; readonly nodes: number } | undefined
  /** The in-process node (embedded only). */
  readonly node?: Node.RunningNode | undefined
  /** CPU time the target used so far, ms, when it runs in other processes (in-process targets are in `cpuMs` of the report). */
  cpuMs?(): number
  stop(): Promise<void>
}

const deepMerge = (a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> => {
  const out: Record<string, unknown> = { ...a }
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k]
    out[k] =
      v && typeof v === "object" && !Array.isArray(v) && cur && typeof cur === "object" && !Array.isArray(cur)
        ? deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>)
        : v
  }
  return out
}

/** The embedded node's configuration for a scenario and world (before the scenario's own `node` keys). */
export const embeddedConfig = async (s: Scenario.Scenario, world: World, dataDir: string): Promise<Record<string, unknown>> =>
  deepMerge(
    {
      hostname: "missive.sim",
      node_id: "sim-node",
      data_dir: dataDir,
      listeners: { smtp: { host: "127.0.0.1", port: 0 }, submission: { enabled: false } },
      relay: { local_domains: ["missive.sim"], trusted_networks: s.senders.auth ? [] : ["127.0.0.0/8"] },
      auth: {
        require_tls: s.senders.tls,
        users: s.senders.auth ? [{ name: s.senders.auth.user, password: await Config.hashPassword(s.senders.auth.password) }] : []
      },
      limits: {
        max_connections: Math.max(100, s.senders.connections * 2),
        max_connections_per_ip: Math.max(50, s.senders.connections * 2),
        max_message_size: "12MB"
      },
      dns: { servers: [world.dns.server], timeout: "2s" },
      delivery: { port: world.port, connect_timeout: "5s", command_timeout: "60s" },
      retry: { initial: s.retry.initial, max: s.retry.max, multiplier: s.retry.multiplier, jitter: 0, lifetime: s.retry.lifetime },
      store: { min_free_space: "10MB" }
    },
    s.node
  )

/** The base configuration of every node of a `cluster:N` target (the launcher adds node_id, data_dir, listeners, NATS). */
export const clusterConfig = async (s: Scenario.Scenario, world: World): Promise<Record<string, unknown>> => {
  const { node_id: _id, data_dir: _dir, listeners: _l, ...rest } = await embeddedConfig(s, world, "")
  return deepMerge({ ...rest, cluster: { lease: "3s" } }, s.node)
}

export const start = async (
  spec: Spec,
  s: Scenario.Scenario,
  world: World,
  opts: { logFile?: string | undefined } = {}
): Promise<Running> => {
  if (spec.kind === "custom") return spec.start(world)
  if (spec.kind === "direct") return { endpoint: undefined, stop: async () => undefined }
  if (spec.kind === "smtp") return { endpoint: { host: spec.host, port: spec.port }, stop: async () => undefined }
  if (spec.kind === "cluster") return startCluster(spec.nodes, s, world)
  const dir = mkdtempSync(join(tmpdir(), "missive-sim-"))
  const raw = await embeddedConfig(s, world, dir)
  const parsed = Config.parse(stringify(raw), "embedded node configuration")
  if (!parsed.ok) {
    rmSync(dir, { recursive: true, force: true })
    throw new TargetError(`the scenario's node configuration is invalid:\n${parsed.errors.map((e) => `  ${e}`).join("\n")}`)
  }
  const log = opts.logFile ? Log.makeLogger(Clock.systemClock, { write: (line) => appendFileSync(opts.logFile!, line + "\n") }) : Log.silent
  const node = await Node.start(parsed.config, { log, pollMs: 100 })
  return {
    endpoint: { host: "127.0.0.1", port: node.ports["smtp"]! },
    node,
    stop: async () => {
      await node.stop(5_000)
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

const startCluster = async (n: number, s: Scenario.Scenario, world: World): Promise<Running> => {
  const bad = s.faults.find((f) => f.kill_node > n)
  if (bad) throw new TargetError(`scenario ${s.name} kills node ${bad.kill_node}, but the target has ${n} node(s)`)
  const base = await clusterConfig(s, world)
  const parsed = Config.parse(
    stringify({
      ...base,
      node_id: "check",
      data_dir: "/nonexistent",
      cluster: { ...(base["cluster"] as object), nats: ["nats://127.0.0.1:4222"] }
    }),
    "cluster node configuration"
  )
  if (!parsed.ok) throw new TargetError(`the scenario's node configuration is invalid:\n${parsed.errors.map((e) => `  ${e}`).join("\n")}`)
  let cluster: Cluster.SimCluster
  try {
    cluster = await Cluster.start({ nodes: n, base })
  } catch (e) {
    throw new TargetError(`cannot start a ${n}-node cluster: ${(e as Error).message}`)
  }
  const endpoints = cluster.nodes.map((x) => ({ host: "127.0.0.1", port: x.smtp }))
  return {
    endpoint: endpoints[0],
    endpoints,
    faults: { kill: cluster.kill, restart: cluster.restart, nodes: n },
    cpuMs: cluster.cpuMs,
    stop: cluster.stop
  }
}
