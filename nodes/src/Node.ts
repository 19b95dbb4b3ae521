// The composition root of a single node: builds the node from its services (Clock, Random, Log, Dns, DataDir, Store,
// Cluster), wiring intake, router, scheduler, delivery and bounce around the actor host, and starts the SMTP
// listeners. The services come from a layer set: `layers/Embedded.ts` (SQLite) or `layers/Cluster.ts` (JetStream),
// chosen by `cluster.nats`, or a caller's own (`startWith`, tests). Every resource is acquired in one Effect scope and
// released by it in reverse order. The per-message path it wires (ingress → intake → host → delivery) is plain
// functions and Promises: the services are read once here. Must not hold protocol or domain logic of its own.
import { Policy } from "@missive/core"
import { JetStreamSnapshots, type SqliteStore } from "@missive/events"
import { Cause, Effect, Exit, Layer, Scope } from "effect"
import * as Host from "./scheduler/Host.js"
import { startAdmin } from "./admin/Admin.js"
import * as Fence from "./cluster/Fence.js"
import type * as Cluster from "./cluster/Runtime.js"
import { retrying } from "./cluster/Runtime.js"
import * as Activation from "./config/Activation.js"
import type { Config } from "./config/Config.js"
import { policyOf, verifyPassword } from "./config/Config.js"
import * as Presets from "./config/Presets.js"
import { makeDeliverer, type Deliverer } from "./delivery/Deliverer.js"
import * as Thread from "./delivery/Thread.js"
import * as Publisher from "./publish/Publisher.js"
import * as SuppressionList from "./suppression/List.js"
import * as Quota from "./quota/Quota.js"
import * as SuppressionReactor from "./suppression/Reactor.js"
import * as Complaints from "./suppression/Complaints.js"
import * as Commands from "./scheduler/Commands.js"
import * as Http from "./http/Http.js"
import * as Filters from "./filter/Filters.js"
import * as Hooks from "./filter/Hooks.js"
import { startIngress } from "./ingress/Ingress.js"
import * as Intake from "./intake/Intake.js"
import * as ClusterLayers from "./layers/Cluster.js"
import * as Embedded from "./layers/Embedded.js"
import type * as System from "./layers/System.js"
import { StartError } from "./NodeError.js"
import { DnsService } from "./router/Resolver.js"
import { makeRouter } from "./router/Router.js"
import { ClockService, RandomService, systemClock, type Clock, type Random } from "./runtime/Clock.js"
import { DataDirService } from "./runtime/DataDir.js"
import { makeIds } from "./runtime/Ids.js"
import { LogService, type Logger } from "./runtime/Log.js"
import { StoreService } from "./runtime/Store.js"
import * as Limiter from "./scheduler/Limiter.js"
import * as Shaping from "./scheduler/Shaping.js"

export { StartError } from "./NodeError.js"

export interface RunningNode {
  readonly ports: Readonly<Record<string, number>>
  readonly dataDir: string
  readonly host: Host.Host
  readonly store: SqliteStore.SqliteStore
  /** Set in cluster mode (`cluster.nats`). */
  readonly cluster: Cluster.ClusterRuntime | undefined
  /** Resolves when an operator asked this node to drain (`missive cluster drain`): its runner then stops it. */
  readonly drainRequested: Promise<void>
  /**
   * Re-reads the filter stage's address maps from this configuration (SIGHUP, `missive config reload`), the only part
   * a reload applies; a file with another policy hash is recorded (`PolicyActivated`, reason "reload") with the key
   * paths awaiting a restart, not as in effect; throws on a bad map file.
   */
  readonly reloadFilters: (config: Config, by: string) => Promise<void>
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

/**
 * The hash of everything in the configuration that decides what happens to a message. Not where the delivery role
 * runs (`delivery.thread`): the same deliverer decides the same on either thread.
 */
export const policyHashOf = (config: Config): string => {
  const { thread: _where, ...delivery } = config.delivery
  return Policy.hash({ retry: config.retry, routes: config.routes, local: config.relay.local_domains, delivery })
}

/** The node, from its services; its resources are acquired in the caller's scope. */
const program = (config: Config, opts: NodeOptions, stopGrace: { ms: number }) =>
  Effect.gen(function* () {
    const clock = yield* ClockService
    const random = yield* RandomService
    const log = yield* LogService
    const resolver = yield* DnsService
    const dataDir = (yield* DataDirService).path
    const ports = yield* StoreService
    const cluster = (yield* ClusterLayers.ClusterService).runtime
    // The operator's view of the log and the metrics (listeners.http): built first, so that SMTP sessions, store
    // commits and JetStream calls are all observed.
    const observer = config.listeners.http.enabled
      ? yield* Effect.acquireRelease(
          // (what reads the log at start retries while a cluster's JetStream is still electing leaders)
          Effect.promise(() =>
            retrying(log, "http view", () => Http.observe({ events: ports.events, work: ports.work, clock, log, node: config.node_id }))
          ),
          (o) => Effect.sync(() => o.close())
        )
      : undefined
    if (observer && ports.onCommit) {
      const stop = ports.onCommit((ms, writes) => observer.metrics.commit(ms, writes))
      yield* Effect.addFinalizer(() => Effect.sync(stop))
    }
    // In a cluster, the incident replay's segment digests and open-set snapshots (`<PREFIX>_REPLAY`) are kept current
    // as the log grows, so that a report over any window finds them made (events/src/Snapshots.ts `follow`; every
    // node follows through its one whole-log subscription, a segment's digest is stored once). Derived data: it is
    // started beside the node, never in its way (a JetStream still electing leaders delays it, not the node's start).
    if (cluster) {
      const rt = cluster
      let follower: { close(): Promise<void> } | undefined
      let stopped = false
      const follow = async (): Promise<void> => {
        while (!stopped) {
          try {
            const f = await JetStreamSnapshots.follow({
              nc: rt.nc,
              prefix: config.cluster.prefix,
              replicas: rt.replicas,
              events: ports.events,
              onError: (e) => log("warn", "replay digests: a save failed", { error: String(e) })
            })
            if (stopped) await f.close().catch(() => undefined)
            else follower = f
            return
          } catch (e) {
            log("warn", "replay digests: not following the log yet; trying again", { error: String(e) })
            await new Promise((r) => setTimeout(r, 5_000))
          }
        }
      }
      void follow()
      yield* Effect.addFinalizer(() =>
        Effect.promise(async () => {
          // (a start still under way closes what it opens once it ends)
          stopped = true
          await follower?.close().catch(() => undefined)
        })
      )
    }
    const events = cluster && observer ? Http.timedEvents(ports.events, observer.metrics) : ports.events
    const store: SqliteStore.SqliteStore = { ...ports, events, close: async () => {} }
    const leaseMs = cluster ? config.cluster.lease : 10 * 60_000
    const ids = makeIds(clock, random)
    const policyHash = policyHashOf(config)
    // Reports delivered to the feedback address are recorded as complaints first (nodes/src/suppression/Complaints.ts).
    const feedbackAddress = config.suppression.feedback_address
    const feedback = (dl: Host.Deliverer): Host.Deliverer =>
      feedbackAddress === null
        ? dl
        : Complaints.deliverer(dl, {
            address: feedbackAddress,
            hostname: config.hostname,
            commands: Commands.make(store.events),
            clock,
            node: config.node_id,
            policyHash,
            log
          })
    // The suppression list (stream `suppression`): refused at RCPT on submission, bounced at routing when relayed.
    const suppression = yield* Effect.acquireRelease(
      Effect.promise(() =>
        retrying(log, "suppression list", () =>
          SuppressionList.open({ events: store.events, clock, node: config.node_id, policyHash, log })
        )
      ),
      (l) => Effect.sync(() => l.close())
    )
    // The configuration behind this policy hash, recorded once per hash (a restart with the same one adds nothing).
    yield* Effect.promise(() =>
      retrying(log, "policy activation", () =>
        Activation.record(store.events, { config, hash: policyHash, node: config.node_id, at: clock.now(), reason: "start" })
      )
    )
    const router = makeRouter({
      localDomains: config.relay.local_domains,
      relayRoutes: Object.fromEntries(Object.entries(config.routes).map(([d, hp]) => [d, hostPort(hp)])),
      lmtp: config.local.lmtp === null ? null : hostPort(config.local.lmtp),
      maildirRoot: config.local.maildir,
      mxPort: config.delivery.port,
      resolver
    })
    // The configuration's own site limits and rules, then the shipped presets' (config/Presets.ts).
    const shapingConfig = Presets.shapingOf(config)
    const sites = Limiter.sitesOf(config)
    const deliverer = yield* Effect.acquireRelease(
      // The delivery role in its own thread (delivery/Thread.ts) when configured so, and the node's clock is the
      // system's (the worker keeps the system clock); the node goes on once the thread is ready.
      Effect.tryPromise({
        try: async (): Promise<Deliverer> => {
          if (!(config.delivery.thread === "worker" && clock === systemClock))
            return makeDeliverer(config, { resolver, dataDir, clock, log, sites })
          const inWorker = Thread.inWorker(config, { resolver, dataDir, log })
          await inWorker.ready.catch(async (e: unknown) => {
            await inWorker.close()
            throw e
          })
          return inWorker
        },
        catch: (e) => new StartError(`delivery thread: ${e instanceof Error ? e.message : String(e)}`)
      }),
      (dl) => Effect.promise(() => dl.close())
    )
    const localLimiter = Limiter.make({
      perDestination: config.delivery.concurrency_per_destination,
      total: config.delivery.max_connections,
      sites,
      now: clock.now,
      // in a cluster a site's rate is one shared bucket (scheduler/Rates.ts), taken by the cluster's limiter
      sharedRates: cluster !== undefined
    })
    // Cluster mode: a delivery also holds one of its site's cluster-wide slots (scheduler/Slots.ts) and a token of its
    // shared rate (scheduler/Rates.ts).
    const limiter = cluster ? cluster.limiter(localLimiter) : localLimiter
    // Automation per site: a reply a rule names throttles or suspends its site (events on the site's stream).
    const shaping =
      shapingConfig.rules.length === 0
        ? undefined
        : yield* Effect.acquireRelease(
            Effect.sync(() =>
              Shaping.make({
                events: store.events,
                limiter,
                rules: shapingConfig.rules,
                clock,
                log,
                node: config.node_id,
                policyHash,
                peers: cluster?.sites
              })
            ),
            (s) => Effect.sync(() => s.close())
          )
    // A throttle or suspension still in force when the node stopped (or was killed) holds again before any delivery.
    if (shaping) yield* Effect.promise(() => retrying(log, "site shaping", () => shaping.restore()))
    const host = Host.make({
      events: store.events,
      bodies: store.bodies,
      work: store.work,
      clock,
      random,
      ids,
      log,
      node: config.node_id,
      hostname: config.hostname,
      policyHash,
      retry: policyOf(config),
      router: SuppressionList.guard(router, suppression),
      deliverer: feedback(cluster ? Fence.deliverer(deliverer, cluster.work, log, cluster.fenced) : deliverer),
      limiter,
      shaping,
      leaseMs,
      delayWarningMs: config.bounce.delay_warning,
      pollMs: opts.pollMs ?? 1000,
      maxActive: opts.maxActive ?? 2000,
      onState: opts.onState
    })
    const intake = Intake.make({
      events: store.events,
      bodies: store.bodies,
      work: store.work,
      clock,
      ids,
      log,
      node: config.node_id,
      hostname: config.hostname,
      policyHash,
      dataDir,
      minFreeBytes: config.store.min_free_space,
      leaseMs,
      commit: cluster && observer ? Http.timed("commit", cluster.commit, observer.metrics) : cluster?.commit,
      onReceived: (id, state, body) => host.onReceived(id, state, body)
    })
    host.setInjector({ accept: (m) => intake.accept(m) })
    yield* Effect.acquireRelease(Effect.promise(() => host.start()).pipe(Effect.as(host)), (h) =>
      Effect.promise(() => h.stop(stopGrace.ms))
    )
    // Delivery events pushed out: followers of the log, stopped before the host (their checkpoints are saved then).
    if (config.events.destinations.length > 0)
      yield* Effect.acquireRelease(
        Effect.promise(() =>
          Publisher.start({
            events: store.events,
            dataDir,
            destinations: config.events.destinations,
            hostname: config.hostname,
            lifetimeMs: config.retry.lifetime,
            clock,
            log,
            nats: cluster?.nc
          })
        ),
        (p) => Effect.promise(() => p.stop())
      )
    if (config.suppression.on_bounce || config.suppression.on_complaint)
      yield* Effect.acquireRelease(
        Effect.promise(() =>
          SuppressionReactor.start({
            events: store.events,
            list: suppression,
            dataDir,
            onBounce: config.suppression.on_bounce,
            onComplaint: config.suppression.on_complaint,
            log
          })
        ),
        (f) => Effect.promise(() => f.stop())
      )
    yield* Effect.acquireRelease(
      Effect.promise(() => startAdmin(dataDir, host, SuppressionList.operator(suppression))),
      (a) => Effect.promise(() => a.close())
    )
    const users = new Map(config.auth.users.map((u) => [u.name, u.password]))
    // Sending quotas per authenticated user (none configured: nothing counted).
    const quota = Quota.enabled(config)
      ? yield* Effect.promise(() => retrying(log, "quotas", () => Quota.open(config, store.events, clock)))
      : undefined
    const countAccepted = async <R extends { code: number }>(reply: Promise<R>, user: string | undefined): Promise<R> => {
      const r = await reply
      if (quota && user !== undefined && r.code >= 200 && r.code < 300) quota.record(user)
      return r
    }
    // filter.hooks' `queued` hooks: told of each message once it is durable, detached from the session (filter/Hooks.ts)
    const queuedHook = Hooks.queued(config.filter.hooks, config.filter.hook_timeout, (o) => log("warn", "filter.hook-failed", o))
    const listeners = (["smtp", "submission"] as const)
      .filter((name) => config.listeners[name].enabled)
      .map((name) => ({ name, host: config.listeners[name].host, port: config.listeners[name].port }))
    // The filter stage (nodes/src/filter), closed after ingress: none when no filter is configured.
    const filters = yield* Effect.acquireRelease(
      Effect.sync(() => Filters.make(config, { hostname: config.hostname, dns: config.dns, log, now: () => clock.now() })),
      (f) => Effect.promise(() => f.close())
    )
    const ingress = yield* Effect.acquireRelease(
      Effect.promise(() =>
        startIngress({
          hostname: config.hostname,
          listeners,
          tls: { cert: config.tls.cert, key: config.tls.key, dir: dataDir },
          auth: {
            requireTls: config.auth.require_tls,
            verify: async (user, pass) => {
              const h = users.get(user)
              return h !== undefined && verifyPassword(pass, h)
            }
          },
          relay: {
            localDomains: [...config.relay.local_domains],
            relayDomains: [...config.relay.relay_domains],
            trustedNetworks: [...config.relay.trusted_networks]
          },
          limits: {
            maxConnections: config.limits.max_connections,
            maxConnectionsPerIp: config.limits.max_connections_per_ip,
            maxRecipients: config.limits.max_recipients,
            maxMessageSize: config.limits.max_message_size,
            maxLineLength: config.limits.max_line_length,
            idleTimeoutMs: config.limits.idle_timeout,
            maxErrors: config.limits.max_errors,
            bareLf: config.limits.bare_lf
          },
          submissionChecks: {
            mail: (user) => quota?.check(user),
            rcpt: (rcpt) => SuppressionList.refusal(suppression, rcpt)
          },
          accept: (m) =>
            countAccepted(
              intake
                .accept({ sender: m.sender, recipients: m.recipients, body: m.body, client: m.client, filtered: m.filtered })
                .then((r) => {
                  if (queuedHook && r.id !== undefined && r.code >= 200 && r.code < 300)
                    queuedHook({ id: r.id, sender: m.sender, recipients: m.recipients, client: m.client, size: m.body.length })
                  return r
                }),
              m.client.user
            ),
          filters: filters.stage,
          rejected: (m) => intake.recordRejection(m.filtered, m),
          log: (o) => {
            const event = String(o["event"] ?? o["msg"] ?? "smtp")
            // Per-session chatter is debug; refusals, auth and TLS problems stay visible at info.
            const quiet = event === "ingress.connect" || event === "ingress.close" || event === "ingress.accepted"
            if (event === "ingress.connect" || event === "ingress.close")
              observer?.metrics.connection("in", event === "ingress.connect" ? "open" : "close")
            log(quiet ? "debug" : "info", event, o)
          }
        })
      ),
      (i) => Effect.promise(() => i.close())
    )
    const http = observer
      ? yield* Effect.acquireRelease(
          Effect.promise(() =>
            Http.listen(
              {
                config,
                host,
                intake,
                store: ports,
                cluster,
                view: observer.view,
                metrics: observer.metrics,
                clock,
                log,
                suppression,
                ports: () => allPorts
              },
              dataDir
            )
          ),
          (l) => Effect.promise(async () => l?.close())
        )
      : undefined
    const allPorts: Readonly<Record<string, number>> = http ? { ...ingress.ports, http: http.port } : ingress.ports
    let requestDrain = () => {}
    const drainRequested = new Promise<void>((r) => {
      requestDrain = r
    })
    if (cluster)
      yield* Effect.promise(() =>
        cluster.announce({
          ports: allPorts,
          active: () => host.active(),
          drain: () => {
            log("info", "drain requested: stopping intake, finishing or handing back messages", { node: config.node_id })
            requestDrain()
          }
        })
      )
    log("info", "node started", { node: config.node_id, hostname: config.hostname, dataDir, ports: allPorts, policy: policyHash })
    /** Swaps the maps (throws, keeping the old ones, on a bad file), then records it on the stream `filter`. */
    const reloadFilters = async (next: Config, by: string): Promise<void> => {
      const r = filters.reload(next)
      const filterPolicy = Filters.policyHashOf(next)
      log("info", "filter maps reloaded", { users: r.users, aliases: r.aliases, files: r.files, filterPolicy, by })
      const event = {
        v: 1,
        at: clock.now(),
        node: config.node_id,
        policy: policyHash,
        type: "FilterReloaded" as const,
        by,
        filterPolicy,
        ...r
      }
      // one writer per node at a time; a concurrent reload elsewhere (cluster) takes the next version on a retry
      for (let attempt = 0; attempt < 5; attempt++) {
        const version = (await store.events.read("filter")).length
        try {
          await store.events.append("filter", version, [{ ...event, files: [...r.files] }])
          break
        } catch (e) {
          if ((e as { _tag?: string })._tag !== "WrongExpectedVersion") throw e
        }
      }
      // A reload applies the filter maps only: what else the file changes (retry, routes, delivery, listeners …) takes
      // effect at the next start, and the events keep the running hash until then. A file with another policy hash is
      // recorded as read, with the key paths awaiting a restart; the start that applies it records it in effect.
      const hash = policyHashOf(next)
      const awaitingRestart = Activation.awaiting(config, next)
      if (awaitingRestart.length > 0)
        log("warn", "configuration keys await a restart", { keys: awaitingRestart, policy: policyHash, file: hash, by })
      if (hash !== policyHash) {
        const a = { config: next, hash, node: config.node_id, at: clock.now(), reason: "reload" as const, awaitingRestart }
        if (await Activation.record(store.events, a)) log("info", "policy read, awaiting a restart", { policy: hash, by })
      }
    }
    return { ports: allPorts, dataDir, host, store, cluster, drainRequested, reloadFilters } as const
  })

const hostPort = (hp: { host: string; port: number }): string =>
  hp.host.includes(":") ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`

/** Everything a node's program reads from its layer set. */
export type Services = System.Services | StoreService | ClusterLayers.ClusterService

/** The layer set `start` provides: `Cluster.layer` when `cluster.nats` is set, else `Embedded.layer`. */
export const layerOf = (config: Config, opts: NodeOptions = {}): Layer.Layer<Services, StartError | System.LayerError> =>
  config.cluster.nats.length === 0 ? Embedded.layer(config, opts) : ClusterLayers.layer(config, opts)

/** Starts a node on the layer set its configuration names; the returned stop() closes every resource in reverse order. */
export const start = (config: Config, opts: NodeOptions = {}): Promise<RunningNode> => startWith(config, layerOf(config, opts), opts)

/**
 * Starts a node on the given layer set (tests swap layers: memory stores, a fixed clock, canned DNS). The layer's
 * resources are acquired first in the node's scope, so they are released last; any failure is a StartError.
 */
export const startWith = async <E>(config: Config, layer: Layer.Layer<Services, E>, opts: NodeOptions = {}): Promise<RunningNode> => {
  const scope = await Effect.runPromise(Scope.make())
  // This node's own: stop(graceMs) sets it before its scope releases the host (nodes may share a process).
  const stopGrace = { ms: 10_000 }
  const node = Effect.flatMap(Layer.buildWithScope(layer, scope), (services) =>
    Scope.provide(program(config, opts, stopGrace).pipe(Effect.provideContext(services)), scope)
  )
  const exit = await Effect.runPromiseExit(node)
  if (Exit.isFailure(exit)) {
    await Effect.runPromise(Scope.close(scope, Exit.void))
    const e = Cause.squash(exit.cause)
    throw e instanceof StartError ? e : new StartError(e instanceof Error ? e.message : String(e))
  }
  const running = exit.value
  let stopped: Promise<void> | undefined
  return {
    ...running,
    stop: (graceMs = 10_000) =>
      (stopped ??= (async () => {
        stopGrace.ms = graceMs
        await Effect.runPromise(Scope.close(scope, Exit.void))
      })())
  }
}
