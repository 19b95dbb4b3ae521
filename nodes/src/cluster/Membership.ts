// Cluster membership: each node puts a heartbeat (who, since, load, what it owns, where it listens) into a KV bucket
// whose entries expire (bucket max_age), and reads the others'. A node that stops heart-beating drops out after the
// TTL. Must not own work: who drives a message is the inbox consumer's (nodes/src/scheduler/ClusterWork.ts).
import { Kvm, type KV } from "@nats-io/kv"
import type { NatsConnection } from "@nats-io/transport-node"
import type { Clock } from "../runtime/Clock.js"

export interface Heartbeat {
  readonly node: string
  readonly pid: number
  /** When the node started, epoch ms. */
  readonly since: number
  /** When this heartbeat was written, epoch ms. */
  readonly at: number
  /** Messages being driven now. */
  readonly active: number
  /** Messages this node holds leases on (in flight). */
  readonly held: number
  /** Partitions of the due-time index this node schedules. */
  readonly partitions: ReadonlyArray<number>
  readonly ports: Readonly<Record<string, number>>
}

export interface Membership {
  /** Live nodes (heartbeat younger than the TTL), this one included. */
  alive(): ReadonlyArray<Heartbeat>
  close(): Promise<void>
}

export const bucketName = (prefix: string) => `${prefix}_nodes`

export const open = async (o: {
  nc: NatsConnection
  prefix: string
  replicas: number
  node: string
  clock: Clock
  ttlMs: number
  beat: () => Omit<Heartbeat, "node" | "pid" | "since" | "at">
}): Promise<Membership> => {
  const kv: KV = await new Kvm(o.nc).create(bucketName(o.prefix), { history: 1, replicas: o.replicas, ttl: o.ttlMs })
  const since = o.clock.now()
  const peers = new Map<string, Heartbeat>()
  const key = o.node.replace(/[^A-Za-z0-9_=-]/g, "_")
  const put = async () => {
    const hb: Heartbeat = { node: o.node, pid: process.pid, since, at: o.clock.now(), ...o.beat() }
    peers.set(o.node, hb)
    await kv.put(key, JSON.stringify(hb))
  }
  await put()
  const w = await kv.watch()
  void (async () => {
    for await (const e of w) {
      if (e.operation !== "PUT") continue
      const hb = e.json<Heartbeat>()
      peers.set(hb.node, hb)
    }
  })().catch(() => {})
  const timer = setInterval(() => void put().catch(() => {}), Math.max(200, o.ttlMs / 4))
  return {
    alive: () => [...peers.values()].filter((h) => o.clock.now() - h.at < o.ttlMs),
    close: async () => {
      clearInterval(timer)
      w.stop()
      await kv.delete(key).catch(() => {})
    }
  }
}

/** Every heartbeat in the bucket (for `cluster status` from outside a node). */
export const read = async (nc: NatsConnection, prefix: string): Promise<ReadonlyArray<Heartbeat>> => {
  const kv = await new Kvm(nc).open(bucketName(prefix))
  const out: Array<Heartbeat> = []
  for await (const k of await kv.keys()) {
    const e = await kv.get(k)
    if (e && e.operation === "PUT") out.push(e.json<Heartbeat>())
  }
  return out
}
