// A node's cluster runtime: the NATS connection, the JetStream adapters of the ports (event log; the inbox shards,
// which are the accept commit, the work entries and the bodies at once; the object store for large bodies), the
// scheduler's consumer of the inbox, membership heartbeats, the fences, and the node-to-node status service.
// Node.ts acquires it instead of the SQLite store when `cluster.nats` is set. Must not decide anything about a
// message; it only says who may drive it.
import type { Message } from "@missive/core"
import { JetStreamBodyStore, JetStreamEventStore, JetStreamInbox, type BodyStore, type EventStore } from "@missive/events"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import * as ClusterWork from "../scheduler/ClusterWork.js"
import type { Config } from "../config/Config.js"
import type { Clock } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"
import * as Fence from "./Fence.js"
import * as Launcher from "./Launcher.js"
import * as Membership from "./Membership.js"
import * as Service from "./Service.js"
import * as Slots from "../scheduler/Slots.js"
import * as Rates from "../scheduler/Rates.js"
import type { Limiter } from "../scheduler/Limiter.js"
import type { Peers } from "../scheduler/Shaping.js"
import * as SiteNotices from "./SiteNotices.js"

export interface ClusterRuntime {
  readonly nc: NatsConnection
  readonly events: EventStore.EventStore
  readonly bodies: BodyStore.BodyStore
  readonly work: ClusterWork.ClusterWork
  readonly inbox: JetStreamInbox.Inbox
  /**
   * Intake's accept commit: one replicated publish of the first events and the body (large bodies: object store
   * first), shared with the accepts waiting beside it (a batch carrier) unless `keyed` (an id a retry commits again).
   */
  commit(id: string, events: ReadonlyArray<Message.Event>, body: Buffer, digest: string, keyed?: boolean): Promise<void>
  readonly fenced: Fence.FenceCounters
  readonly replicas: number
  /** Cluster-wide per-site slots (a site's connections, else `delivery.concurrency_per_destination`, across all nodes). */
  readonly slots: Slots.Slots
  /** Cluster-wide start rates per site (one shared pair of token buckets per site with a rate). */
  readonly rates: Rates.Rates
  /** Site change notices: a throttle or suspension recorded by one node is applied by all (scheduler/Shaping.ts). */
  readonly sites: Peers
  /**
   * The node's local limiter wrapped so that a delivery also holds a cluster-wide slot of its site and a token of its
   * site's shared rate (the local limiter must be made with `sharedRates`).
   */
  limiter(local: Limiter): Limiter
  /** Starts heartbeats and the status service once the node knows its ports and load. */
  announce(info: { ports: Readonly<Record<string, number>>; active: () => number; drain?: () => void }): Promise<void>
  /** Live nodes as this node sees them. */
  alive(): ReadonlyArray<Membership.Heartbeat>
  close(): Promise<void>
}

export const replicasOf = (c: Config["cluster"]): number => (c.replicas > 0 ? c.replicas : c.nats.length >= 3 ? 3 : 1)

/**
 * Pings every 2 s and gives a silent server up after 2 missed pongs, so a node whose server was killed or stopped
 * moves to a live one within seconds instead of waiting out TCP; reconnects try the other servers at once.
 */
export const connectTo = (c: Config["cluster"], name: string): Promise<NatsConnection> =>
  connect({
    servers: [...c.nats],
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    timeout: 5_000,
    pingInterval: 2_000,
    maxPingOut: 2,
    // No stack captured at every request (a RequestError made per publish and get): a profile showed 2 % of a node.
    noAsyncTraces: true
  })

/** Inbox shards: one per server by default, so the leaders can spread and a lost server stalls at most one. */
export const shardsOf = (c: Config["cluster"]): number => (c.shards > 0 ? c.shards : Math.max(1, c.nats.length))

/** The streams whose leaders are spread over the servers: the event log, then each inbox shard with its consumer. */
export const placementOf = (prefix: string, inbox: { streams: ReadonlyArray<string>; consumer: string }) => [
  { name: JetStreamEventStore.streamName(prefix) },
  ...inbox.streams.map((name) => ({ name, consumer: inbox.consumer }))
]

/** Bodies up to this size travel inside the carrier; larger ones go to the object store first. */
const INLINE_MAX = 512 * 1024

/** JetStream needs a few seconds after a cluster starts (meta leader, stream leaders): retry for up to a minute. */
export const retrying = async <T>(log: Logger, what: string, f: () => Promise<T>, ms = 60_000): Promise<T> => {
  const deadline = Date.now() + ms
  for (let i = 0; ; i++) {
    try {
      return await f()
    } catch (e) {
      if (Date.now() > deadline) throw e
      if (i % 5 === 0) log("warn", "JetStream not ready; retrying", { what, error: String((e as Error)?.message ?? e) })
      await new Promise((r) => setTimeout(r, 500))
    }
  }
}

export const open = async (config: Config, clock: Clock, log: Logger): Promise<ClusterRuntime> => {
  const c = config.cluster
  const replicas = replicasOf(c)
  const nc = await connectTo(c, `missive-${config.node_id}`)
  // Servers started by someone else (`cluster up` refuses an old one itself): said once, loudly, at start.
  const serverVersion = nc.info?.version
  if (Launcher.tooOld(serverVersion))
    log("error", "nats-server older than Missive's minimum: an acknowledged message can be lost after a consumer leader change", {
      server: nc.info?.server_name,
      version: serverVersion,
      minimum: Launcher.NATS_MIN
    })
  let membership: Membership.Membership | undefined
  let service: Service.Service | undefined
  try {
    const [events, objects, inbox, slots, rates, sites] = await Promise.all([
      retrying(log, "event stream", () => JetStreamEventStore.open({ nc, prefix: c.prefix, replicas, timeoutMs: 5_000 })),
      retrying(log, "body store", () => JetStreamBodyStore.open({ nc, prefix: c.prefix, replicas })),
      retrying(log, "inbox", () =>
        JetStreamInbox.open({ nc, prefix: c.prefix, replicas, shards: shardsOf(c), ackWaitMs: c.lease, inlineMax: INLINE_MAX })
      ),
      retrying(log, "destination slots", () =>
        Slots.open({
          nc,
          prefix: c.prefix,
          replicas,
          node: config.node_id,
          limit: config.delivery.concurrency_per_destination,
          leaseMs: c.lease,
          idleMs: config.delivery.reuse_connections ? 5_000 : 0,
          now: () => clock.now()
        })
      ),
      retrying(log, "site rates", () => Rates.open({ nc, prefix: c.prefix, replicas, now: () => clock.now() })),
      retrying(log, "site notices", () => SiteNotices.open({ nc, prefix: c.prefix, replicas, log }))
    ])
    // Which bodies live in the object store (large ones): only those are deleted there when their message completes;
    // an inline body goes with its carrier's ack.
    const large = new Set<string>()
    const bodies: BodyStore.BodyStore = {
      put: async (bytes, digest) => {
        const d = await objects.put(bytes, digest)
        large.add(d)
        return d
      },
      get: async (digest, id) => {
        if (id !== undefined) {
          const carrier = await inbox.find(id)
          if (carrier?.body) return carrier.body
        }
        const b = await objects.get(digest)
        large.add(digest)
        return b
      },
      delete: async (digest) => {
        if (!large.delete(digest)) return
        await objects.delete(digest)
      },
      close: () => objects.close()
    }
    const work = await ClusterWork.open({ nc, inbox, now: () => clock.now(), log, fetchBody: (digest) => bodies.get(digest) })
    const fenced: Fence.FenceCounters = { appends: 0, deliveries: 0 }
    return {
      nc,
      bodies,
      work,
      inbox,
      fenced,
      replicas,
      slots,
      rates,
      sites,
      commit: async (id, evs, body, digest, keyed) => {
        if (body.length > INLINE_MAX) {
          await bodies.put(body, digest)
          await inbox.commit(id, evs, undefined)
        } else await inbox.commit(id, evs, body, { keyed: keyed === true })
      },
      limiter: (local) => Slots.limiter(local, slots, rates),
      // A node that held a message and lost it (its AckWait ran out) may not append to it until it holds it again.
      events: Fence.events(events, { holds: (id) => !work.lost(id) }, log, fenced),
      announce: async ({ ports, active, drain }) => {
        membership = await retrying(log, "membership", () =>
          Membership.open({
            nc,
            prefix: c.prefix,
            replicas,
            node: config.node_id,
            clock,
            ttlMs: c.lease,
            beat: () => ({ active: active(), held: work.held(), partitions: work.shards(), ports })
          })
        )
        service = Service.serve({
          nc,
          prefix: c.prefix,
          node: config.node_id,
          drain,
          status: () => ({
            node: config.node_id,
            ports,
            active: active(),
            held: work.held(),
            partitions: work.shards(),
            fenced: { ...fenced },
            alive: membership?.alive().map((h) => h.node) ?? []
          })
        })
      },
      alive: () => membership?.alive() ?? [],
      close: async () => {
        service?.close()
        await membership?.close().catch(() => {})
        rates.close()
        await slots.close().catch(() => {})
        await work.close().catch(() => {})
        await Promise.all([events.close(), bodies.close()]).catch(() => {})
        await nc.drain().catch(() => nc.close())
      }
    }
  } catch (e) {
    await nc.close().catch(() => {})
    throw e
  }
}
