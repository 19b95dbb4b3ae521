// A node's cluster runtime: the NATS connection, the JetStream adapters of the three ports (event log, bodies,
// work index with partition and message leases), membership heartbeats, the fences, and the node-to-node status
// service. Node.ts acquires it instead of the SQLite store when `cluster.nats` is set. Must not decide anything
// about a message; it only says who may drive it.
import { JetStreamBodyStore, JetStreamEventStore, JetStreamWork, type BodyStore, type EventStore } from "@missive/events"
import { connect, type NatsConnection } from "@nats-io/transport-node"
import type { Config } from "../config/Config.js"
import type { Clock } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"
import * as Fence from "./Fence.js"
import * as Membership from "./Membership.js"
import * as Service from "./Service.js"
import * as Slots from "./Slots.js"
import type { Limiter } from "../scheduler/Limiter.js"

export interface ClusterRuntime {
  readonly nc: NatsConnection
  readonly events: EventStore.EventStore
  readonly bodies: BodyStore.BodyStore
  readonly work: JetStreamWork.JetStreamWork
  readonly fenced: Fence.FenceCounters
  readonly replicas: number
  /** Cluster-wide per-destination slots (`delivery.concurrency_per_destination` holds across all nodes). */
  readonly slots: Slots.Slots
  /** The node's local limiter wrapped so that a delivery also holds a cluster-wide slot of its destination. */
  limiter(local: Limiter): Limiter
  /** Starts heartbeats and the status service once the node knows its ports and load. */
  announce(info: { ports: Readonly<Record<string, number>>; active: () => number }): Promise<void>
  /** Live nodes as this node sees them. */
  alive(): ReadonlyArray<Membership.Heartbeat>
  close(): Promise<void>
}

export const replicasOf = (c: Config["cluster"]): number => c.replicas > 0 ? c.replicas : c.nats.length >= 3 ? 3 : 1

export const connectTo = (c: Config["cluster"], name: string): Promise<NatsConnection> =>
  connect({ servers: [...c.nats], name, maxReconnectAttempts: -1, reconnectTimeWait: 250, timeout: 5_000 })

/** JetStream needs a few seconds after a cluster starts (meta leader, stream leaders): retry for up to a minute. */
const retrying = async <T>(log: Logger, what: string, f: () => Promise<T>, ms = 60_000): Promise<T> => {
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
  let membership: Membership.Membership | undefined
  let service: Service.Service | undefined
  try {
    const share = () => {
      const n = membership?.alive().length ?? 1
      return Math.ceil(c.partitions / Math.max(1, n))
    }
    const [events, bodies, work, slots] = await Promise.all([
      retrying(log, "event stream", () => JetStreamEventStore.open({ nc, prefix: c.prefix, replicas })),
      retrying(log, "body store", () => JetStreamBodyStore.open({ nc, prefix: c.prefix, replicas })),
      retrying(log, "work index", () => JetStreamWork.open({
        nc, prefix: c.prefix, replicas, partitions: c.partitions, instance: config.node_id, now: () => clock.now(),
        renewMs: c.lease, partitionLeaseMs: c.lease, share, log
      })),
      retrying(log, "destination slots", () => Slots.open({
        nc, prefix: c.prefix, replicas, node: config.node_id, limit: config.delivery.concurrency_per_destination, leaseMs: c.lease,
        idleMs: config.delivery.reuse_connections ? 5_000 : 0, now: () => clock.now()
      }))
    ])
    const fenced: Fence.FenceCounters = { appends: 0, deliveries: 0 }
    return {
      nc, bodies, work, fenced, replicas, slots,
      limiter: (local) => Slots.limiter(local, slots),
      events: Fence.events(events, work, log, fenced),
      announce: async ({ ports, active }) => {
        membership = await retrying(log, "membership", () => Membership.open({
          nc, prefix: c.prefix, replicas, node: config.node_id, clock, ttlMs: c.lease,
          beat: () => ({ active: active(), held: work.held(), partitions: work.partitions(), ports })
        }))
        service = Service.serve({ nc, prefix: c.prefix, node: config.node_id, status: () => ({
          node: config.node_id, ports, active: active(), held: work.held(), partitions: work.partitions(), fenced: { ...fenced },
          alive: membership?.alive().map((h) => h.node) ?? []
        }) })
      },
      alive: () => membership?.alive() ?? [],
      close: async () => {
        service?.close()
        await membership?.close().catch(() => {})
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
