// The composition root of a single node: opens the store, wires intake, router, scheduler, delivery and bounce
// around the actor host, and starts the SMTP listeners, each resource acquired in an Effect scope and released
// by it in reverse order. Must not hold protocol or domain logic of its own.
import { Policy } from "@missive/core"
import { SqliteStore } from "@missive/events"
import { Cause, Effect, Exit, Scope } from "effect"
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import * as Host from "./scheduler/Host.js"
import { startAdmin } from "./admin/Admin.js"
import * as Fence from "./cluster/Fence.js"
import * as Cluster from "./cluster/Runtime.js"
import type { Config } from "./config/Config.js"
import { policyOf, verifyPassword } from "./config/Config.js"
import { makeDeliverer } from "./delivery/Deliverer.js"
import { startIngress } from "./ingress/Ingress.js"
import * as Intake from "./intake/Intake.js"
import { makeResolver } from "./router/Resolver.js"
import { makeRouter } from "./router/Router.js"
import { systemClock, systemRandom, type Clock, type Random } from "./runtime/Clock.js"
import { makeIds } from "./runtime/Ids.js"
import { makeLogger, type Logger } from "./runtime/Log.js"
import * as Limiter from "./scheduler/Limiter.js"

export interface RunningNode {
  readonly ports: Readonly<Record<string, number>>
  readonly dataDir: string
  readonly host: Host.Host
  readonly store: SqliteStore.SqliteStore
  /** Set in cluster mode (`cluster.nats`). */
  readonly cluster: Cluster.ClusterRuntime | undefined
  /** Resolves when an operator asked this node to drain (`missive cluster drain`): its runner then stops it. */
  readonly drainRequested: Promise<void>
  /** Clean stop: stop accepting, let running deliveries finish (up to graceMs), commit, close. */
  readonly stop: (graceMs?: number) => Promise<void>
}

export interface NodeOptions {
  readonly clock?: Clock
  readonly random?: Random
  readonly log?: Logger
  /** Poll interval of the due-time index, ms. */
  readonly pollMs?: number
  /** Most messages driven at once; more wait in the index. */
  readonly maxActive?: number
  /** Benchmarks only: "NORMAL" weakens the durability contract and is reported as such. */
  readonly synchronous?: "FULL" | "NORMAL"
  /** Read-only observer of the actor host's state after each append (replay tests). */
  readonly onState?: Host.HostDeps["onState"]
}

/** The hash of everything in the configuration that decides what happens to a message. */
export const policyHashOf = (config: Config): string =>
  Policy.hash({ retry: config.retry, routes: config.routes, local: config.relay.local_domains, delivery: config.delivery })

/** Refuses a second node on the same data directory; a lock left by a killed process is taken over. */
const lockDataDir = (dir: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      mkdirSync(dir, { recursive: true })
      const path = join(dir, "missive.lock")
      try {
        const pid = Number(readFileSync(path, "utf8").trim())
        if (pid && pid !== process.pid) {
          let alive = true
          try { process.kill(pid, 0) } catch { alive = false }
          if (alive) throw new Error(`data directory ${dir} is in use by process ${pid} (${path})`)
        }
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e
      }
      writeFileSync(path, `${process.pid}\n`)
      const fd = openSync(path, "r")
      closeSync(fd)
      return path
    }),
    (path) => Effect.sync(() => rmSync(path, { force: true }))
  )

const program = (config: Config, opts: NodeOptions, stopGrace: { ms: number }) => Effect.gen(function* () {
  const clock = opts.clock ?? systemClock
  const random = opts.random ?? systemRandom
  const log = opts.log ?? makeLogger(clock)
  const dataDir = resolve(config.data_dir)
  yield* lockDataDir(dataDir)
  // Cluster mode: the JetStream adapters and the fences instead of SQLite; the embedded path is unchanged.
  const cluster = config.cluster.nats.length === 0 ? undefined : yield* Effect.acquireRelease(
    Effect.tryPromise(() => Cluster.open(config, clock, log)),
    (c) => Effect.promise(() => c.close())
  )
  const leaseMs = cluster ? config.cluster.lease : 10 * 60_000
  const store: SqliteStore.SqliteStore = cluster
    ? { events: cluster.events, bodies: cluster.bodies, work: cluster.work, pending: () => 0, close: async () => {} }
    : yield* Effect.acquireRelease(
    Effect.sync(() => SqliteStore.open({ path: join(dataDir, "missive.db"), groupCommitMs: config.store.group_commit, synchronous: opts.synchronous ?? "FULL" })),
    (s) => Effect.promise(() => s.close())
  )
  const ids = makeIds(clock, random)
  const policyHash = policyHashOf(config)
  const router = makeRouter({
    localDomains: config.relay.local_domains, relayRoutes: Object.fromEntries(Object.entries(config.routes).map(([d, hp]) => [d, hostPort(hp)])),
    lmtp: config.local.lmtp === null ? null : hostPort(config.local.lmtp), maildirRoot: config.local.maildir,
    mxPort: config.delivery.port,
    resolver: makeResolver({ servers: config.dns.servers, timeoutMs: config.dns.timeout })
  })
  const deliverer = yield* Effect.acquireRelease(
    Effect.sync(() => makeDeliverer(config)),
    (dl) => Effect.promise(() => dl.close())
  )
  const localLimiter = Limiter.make({ perDestination: config.delivery.concurrency_per_destination, total: config.delivery.max_connections })
  // Cluster mode: a delivery also holds one of the destination's cluster-wide slots (nodes/src/cluster/Slots.ts).
  const limiter = cluster ? cluster.limiter(localLimiter) : localLimiter
  const host = Host.make({
    events: store.events, bodies: store.bodies, work: store.work, clock, random, ids, log, node: config.node_id, hostname: config.hostname,
    policyHash, retry: policyOf(config), router, deliverer: cluster ? Fence.deliverer(deliverer, cluster.work, log, cluster.fenced) : deliverer,
    limiter, leaseMs, pollMs: opts.pollMs ?? 1000,
    maxActive: opts.maxActive ?? 2000, onState: opts.onState
  })
  const intake = Intake.make({
    events: store.events, bodies: store.bodies, work: store.work, clock, ids, log, node: config.node_id, hostname: config.hostname,
    policyHash, dataDir, minFreeBytes: config.store.min_free_space, leaseMs, commit: cluster?.commit,
    onReceived: (id, state, body) => host.onReceived(id, state, body)
  })
  host.setInjector({ accept: (m) => intake.accept(m) })
  yield* Effect.acquireRelease(
    Effect.promise(() => host.start()).pipe(Effect.as(host)),
    (h) => Effect.promise(() => h.stop(stopGrace.ms))
  )
  yield* Effect.acquireRelease(
    Effect.promise(() => startAdmin(dataDir, host)),
    (a) => Effect.promise(() => a.close())
  )
  const users = new Map(config.auth.users.map((u) => [u.name, u.password]))
  const listeners = (["smtp", "submission"] as const)
    .filter((name) => config.listeners[name].enabled)
    .map((name) => ({ name, host: config.listeners[name].host, port: config.listeners[name].port }))
  const ingress = yield* Effect.acquireRelease(
    Effect.promise(() => startIngress({
      hostname: config.hostname, listeners,
      tls: { cert: config.tls.cert, key: config.tls.key, dir: dataDir },
      auth: { requireTls: config.auth.require_tls, verify: async (user, pass) => { const h = users.get(user); return h !== undefined && verifyPassword(pass, h) } },
      relay: { localDomains: [...config.relay.local_domains], relayDomains: [...config.relay.relay_domains], trustedNetworks: [...config.relay.trusted_networks] },
      limits: {
        maxConnections: config.limits.max_connections, maxConnectionsPerIp: config.limits.max_connections_per_ip,
        maxRecipients: config.limits.max_recipients, maxMessageSize: config.limits.max_message_size, maxLineLength: config.limits.max_line_length,
        idleTimeoutMs: config.limits.idle_timeout, maxErrors: config.limits.max_errors, bareLf: config.limits.bare_lf
      },
      accept: (m) => intake.accept({ sender: m.sender, recipients: m.recipients, body: m.body, client: m.client }),
      log: (o) => {
        const event = String(o["event"] ?? o["msg"] ?? "smtp")
        // Per-session chatter is debug; refusals, auth and TLS problems stay visible at info.
        const quiet = event === "ingress.connect" || event === "ingress.close" || event === "ingress.accepted"
        log(quiet ? "debug" : "info", event, o)
      }
    })),
    (i) => Effect.promise(() => i.close())
  )
  let requestDrain = () => {}
  const drainRequested = new Promise<void>((r) => { requestDrain = r })
  if (cluster) yield* Effect.promise(() => cluster.announce({ ports: ingress.ports, active: () => host.active(), drain: () => {
    log("info", "drain requested: stopping intake, finishing or handing back messages", { node: config.node_id })
    requestDrain()
  } }))
  log("info", "node started", { node: config.node_id, hostname: config.hostname, dataDir, ports: ingress.ports, policy: policyHash })
  return { ports: ingress.ports, dataDir, host, store, cluster, drainRequested } as const
})

const hostPort = (hp: { host: string; port: number }): string => (hp.host.includes(":") ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`)

/** A node that could not start (port in use, data directory locked, bad certificate…); nothing was accepted. */
export class StartError extends Error {
  readonly _tag = "StartError" as const
}

/** Starts a node; the returned stop() closes every resource in reverse order. */
export const start = async (config: Config, opts: NodeOptions = {}): Promise<RunningNode> => {
  const scope = await Effect.runPromise(Scope.make())
  // This node's own: stop(graceMs) sets it before its scope releases the host (nodes may share a process).
  const stopGrace = { ms: 10_000 }
  const exit = await Effect.runPromiseExit(Scope.provide(program(config, opts, stopGrace), scope))
  if (Exit.isFailure(exit)) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    const e = Cause.squash(exit.cause)
    throw new StartError(e instanceof Error ? e.message : String(e))
  }
  const running = exit.value
  let stopped: Promise<void> | undefined
  return {
    ...running,
    stop: (graceMs = 10_000) => (stopped ??= (async () => {
      stopGrace.ms = graceMs
      await Effect.runPromise(Scope.close(scope, Exit.void))
    })())
  }
}
