// What a Missive cluster left in JetStream, read from the outside (the manager API and the servers' monitoring
// endpoints), independent of how the nodes lay out their work: every stream with its sequence and consumers, the
// meta and stream leaders, "work-ish" streams and buckets that must be empty once the cluster has drained, and the
// per-message facts of the events log. Used by the server-fault tests and the cluster benchmark (operation counts).
import { AckPolicy, jetstreamManager, RetentionPolicy, type JetStreamManager } from "@nats-io/jetstream"
import { Kvm } from "@nats-io/kv"
import type { NatsConnection } from "@nats-io/transport-node"
import { JetStreamEventStore } from "@missive/events"
import type { NatsServer } from "./Nats.js"

export interface ConsumerState {
  readonly name: string
  readonly durable: boolean
  readonly explicitAck: boolean
  /** Deliveries so far (redeliveries included): `delivered.consumer_seq`. */
  readonly delivered: number
  /** Acknowledged deliveries: `ack_floor.consumer_seq`. */
  readonly acked: number
  readonly pending: number
  readonly ackPending: number
  readonly redelivered: number
  /** Pull requests waiting at the consumer's leader: `num_waiting`. */
  readonly waiting: number
}

export interface StreamState {
  readonly name: string
  readonly lastSeq: number
  readonly messages: number
  readonly bytes: number
  readonly workQueue: boolean
  readonly replicas: number
  readonly leader: string | undefined
  readonly consumers: ReadonlyArray<ConsumerState>
}

/** Every stream of the account (the test's NATS holds only Missive's) with its consumers. */
export const streams = async (nc: NatsConnection): Promise<ReadonlyArray<StreamState>> => {
  const jsm = await jetstreamManager(nc, { checkAPI: false })
  const out: Array<StreamState> = []
  for await (const si of jsm.streams.list()) {
    if (si.config.name.startsWith("READY_")) continue
    const consumers: Array<ConsumerState> = []
    try {
      for await (const ci of jsm.consumers.list(si.config.name)) {
        consumers.push({
          name: ci.name,
          durable: ci.config.durable_name !== undefined,
          explicitAck: ci.config.ack_policy === AckPolicy.Explicit || ci.config.ack_policy === AckPolicy.All,
          delivered: ci.delivered.consumer_seq,
          acked: ci.ack_floor.consumer_seq,
          pending: ci.num_pending,
          ackPending: ci.num_ack_pending,
          redelivered: ci.num_redelivered,
          waiting: ci.num_waiting
        })
      }
    } catch {
      /* a consumer went away while listing */
    }
    out.push({
      name: si.config.name,
      lastSeq: si.state.last_seq,
      messages: si.state.messages,
      bytes: si.state.bytes,
      workQueue: si.config.retention === RetentionPolicy.Workqueue,
      replicas: si.config.num_replicas,
      leader: si.cluster?.leader,
      consumers
    })
  }
  return out.sort((a, b) => a.name.localeCompare(b.name))
}

/** Per stream: messages stored (last_seq delta) and acknowledgements by explicit-ack consumers between two snapshots. */
export interface Ops {
  readonly byStream: ReadonlyArray<{ readonly name: string; readonly writes: number; readonly acks: number; readonly deliveries: number }>
  readonly writes: number
  readonly acks: number
}

export const opsBetween = (before: ReadonlyArray<StreamState>, after: ReadonlyArray<StreamState>): Ops => {
  const rows = after
    .map((s) => {
      const b = before.find((x) => x.name === s.name)
      let acks = 0
      let deliveries = 0
      for (const c of s.consumers) {
        if (!c.explicitAck) continue
        const cb = b?.consumers.find((x) => x.name === c.name)
        acks += c.acked - (cb?.acked ?? 0)
        deliveries += c.delivered - (cb?.delivered ?? 0)
      }
      return { name: s.name, writes: s.lastSeq - (b?.lastSeq ?? 0), acks, deliveries }
    })
    .filter((r) => r.writes > 0 || r.acks > 0 || r.deliveries > 0)
  return { byStream: rows, writes: rows.reduce((n, r) => n + r.writes, 0), acks: rows.reduce((n, r) => n + r.acks, 0) }
}

/** The JetStream meta leader's server name, from the first live server's /jsz. */
export const metaLeader = async (servers: ReadonlyArray<NatsServer>): Promise<string | undefined> => {
  for (const s of servers) {
    const m = s.monitor()
    if (!m) continue
    try {
      const j = (await (await fetch(`${m}/jsz`, { signal: AbortSignal.timeout(2000) })).json()) as { meta_cluster?: { leader?: string } }
      if (j.meta_cluster?.leader) return j.meta_cluster.leader
    } catch {
      /* next server */
    }
  }
  return undefined
}

export const streamLeader = async (jsm: JetStreamManager, name: string): Promise<string | undefined> =>
  (await jsm.streams.info(name)).cluster?.leader

/**
 * Streams and buckets that hold work (not history, not membership): WorkQueue-retention streams (e.g. a sharded
 * INBOX), and streams/KV buckets whose name says work, inbox or queue. After the cluster has drained, each must hold
 * nothing: no message in a stream, no live key in a bucket, nothing pending or unacknowledged at a consumer.
 */
export const ORPHANED = "messages acked at the consumer yet still stored (orphaned by the server)"

export const workLeft = async (
  nc: NatsConnection
): Promise<ReadonlyArray<{ readonly name: string; readonly left: number; readonly what: string }>> => {
  const out: Array<{ name: string; left: number; what: string }> = []
  const kvm = new Kvm(nc)
  for (const s of await streams(nc)) {
    const workish = s.workQueue || /(^|_)(work|inbox|in|queue)(_|$)|INBOX/i.test(s.name)
    if (!workish) continue
    if (s.name.startsWith("KV_")) {
      const kv = await kvm.open(s.name.slice(3))
      let live = 0
      for await (const _ of await kv.keys()) live++
      out.push({ name: s.name, left: live, what: "live keys" })
    } else {
      // Messages a work queue still stores although its consumers have nothing pending or unacknowledged: acked at
      // the consumer and not removed by the server (nats-server 2.10 was seen to keep some after a replica's
      // SIGSTOP). No node will be handed them again; the caller decides what they may be.
      const owed = s.consumers.reduce((n, c) => n + c.pending + c.ackPending, 0)
      const orphaned = s.workQueue && s.consumers.length > 0 && owed === 0 ? s.messages : 0
      out.push({ name: s.name, left: s.messages - orphaned, what: "messages" })
      if (orphaned > 0) out.push({ name: s.name, left: orphaned, what: ORPHANED })
    }
    for (const c of s.consumers)
      if (c.explicitAck && (c.pending > 0 || c.ackPending > 0))
        out.push({ name: `${s.name}/${c.name}`, left: c.pending + c.ackPending, what: "pending or unacknowledged at the consumer" })
  }
  return out
}

export interface LogFacts {
  /** Message ids with a MessageReceived event. */
  readonly received: ReadonlySet<string>
  /** When each was received (the event's `at`). */
  readonly receivedAt: ReadonlyMap<string, number>
  /** Message ids with a MessageCompleted event. */
  readonly completed: ReadonlySet<string>
  /** Successful attempts per id (more than one: the message was delivered again). */
  readonly succeeded: ReadonlyMap<string, number>
  readonly events: number
}

/** Reads the whole events log through the EventStore port (the same on any work layout). */
export const logFacts = async (nc: NatsConnection, prefix = "missive"): Promise<LogFacts> => {
  const log = await JetStreamEventStore.open({ nc, prefix })
  const received = new Set<string>()
  const receivedAt = new Map<string, number>()
  const completed = new Set<string>()
  const succeeded = new Map<string, number>()
  let events = 0
  for (let after = 0; ;) {
    const page = await log.readAll(after, 2000)
    if (page.length === 0) break
    for (const e of page) {
      events++
      const id = e.stream.replace(/^message-/, "")
      if (e.event.type === "MessageReceived") {
        received.add(id)
        receivedAt.set(id, e.event.at)
      }
      if (e.event.type === "MessageCompleted") completed.add(id)
      if (e.event.type === "AttemptSucceeded") succeeded.set(id, (succeeded.get(id) ?? 0) + 1)
    }
    after = page[page.length - 1]!.position
  }
  await log.close()
  return { received, receivedAt, completed, succeeded, events }
}
