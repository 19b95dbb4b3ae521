// Cluster scheduling on JetStream's own primitives: every node pulls from the inbox shards' shared durable consumer
// (events/src/JetStreamInbox.ts); a delivered carrier is the node's lease on the message (AckWait, extended by
// in-progress acks while it is driven); a deferred message goes back with a NAK delayed to its next due time, so no
// node keeps it in memory and no index is rescanned; a completed message is acked, which removes its carrier and
// body. A node that dies stops acking: the server redelivers its messages to a peer after AckWait. Implements the
// Work port for the host; must not decide what happens to a message, only when and where it is driven.
import { jetstream, type JetStreamClient, type JsMsg } from "@nats-io/jetstream"
import type { NatsConnection } from "@nats-io/transport-node"
import { JetStreamInbox, type Work } from "@missive/events"

export interface ClusterWorkOptions {
  readonly nc: NatsConnection
  readonly inbox: JetStreamInbox.Inbox
  readonly now: () => number
  /** Messages buffered per shard ahead of the host's claims. */
  readonly prefetch?: number
  /** Reads a body kept outside its carrier (large bodies, in the object store), by the digest its events name. */
  readonly fetchBody: (digest: string) => Promise<Buffer>
  readonly log?: (level: "debug" | "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) => void
}

export interface ClusterWork extends Work.Work {
  /** True while this node holds a live token of the message: checked before every delivery. */
  holds(id: string): boolean
  /** True when this node held the message and lost it (its AckWait ran out): its appends are refused. */
  lost(id: string): boolean
  /** Tokens this node holds (claimed or waiting for a claim). */
  held(): number
  /** The inbox shards this node pulls from (all of them: the consumer shares them). */
  shards(): ReadonlyArray<number>
  /** Called whenever tokens arrive, so the host claims them at once instead of at its next poll. */
  onAvailable(f: () => void): void
  counters(): { delivered: number; redelivered: number; acked: number; naked: number; lostTokens: number }
}

/** One delivery of a stream message from the consumer: a carrier, a batch carrier or a wake token. */
interface Lease {
  readonly msg: JsMsg
  readonly shard: number
  /** Members not yet completed or split out (a batch is acked once none is left; singles have one). */
  readonly open: Set<string>
  lastWorking: number
  /** An in-progress ack is on its way. */
  pending?: boolean
}

interface Token {
  readonly lease: Lease
  /** A carrier's first delivery: nothing of the message is in the log yet (unless a duplicate carrier was driven). */
  readonly first: boolean
  readonly kind: "carrier" | "wake" | "member"
  readonly id: string
  readonly carried: Work.WorkItem["carried"]
}

/** A deferred message's NAK delay is capped; when it comes back early the host finds nothing due and defers again. */
const MAX_DELAY_MS = 6 * 60 * 60_000
/** How soon a batch member whose split failed is offered again. */
const SPLIT_RETRY_MS = 1_000

export const open = async (o: ClusterWorkOptions): Promise<ClusterWork> => {
  const log = o.log ?? (() => {})
  const js: JetStreamClient = jetstream(o.nc)
  const ackWait = o.inbox.ackWaitMs
  // A token whose last in-progress ack is older than this is treated as gone: the server may have redelivered it.
  const margin = Math.max(200, Math.floor(ackWait / 5))
  const tokens = new Map<string, Array<Token>>()
  /** Every delivery held, by shard and sequence (one in-progress ack per delivery, however many members). */
  const leases = new Map<string, Lease>()
  const leaseKey = (shard: number, seq: number) => `${shard}:${seq}`
  const ready: Array<string> = []
  const claimed = new Set<string>()
  const lostIds = new Set<string>()
  const c = { delivered: 0, redelivered: 0, acked: 0, naked: 0, lostTokens: 0 }
  let kick: () => void = () => {}
  let closed = false
  const stops: Array<() => void> = []

  const tokensOf = (id: string) => tokens.get(id) ?? []
  /** A held message given back to the host's claims (its tokens still live, nobody driving it). */
  const reoffer = (id: string) => {
    if (closed || claimed.has(id) || ready.includes(id) || !tokensOf(id).some((t) => live(t, o.now()))) return
    ready.push(id)
    kick()
  }
  const drop = (id: string) => {
    tokens.delete(id)
    claimed.delete(id)
  }

  const onToken = (shard: number, m: JsMsg) => {
    const now = o.now()
    const kindHeader = m.headers?.get(JetStreamInbox.KIND)
    c.delivered += 1
    if (m.redelivered) c.redelivered += 1
    // A wake token, or a carrier split out of a batch for a later time: back to the server until it is due.
    const due = Number(m.headers?.get(JetStreamInbox.DUE) ?? 0)
    if (due > now + 50) {
      c.naked += 1
      return void m.nak(Math.min(MAX_DELAY_MS, due - now))
    }
    if (kindHeader === "batch") {
      let members: Array<JetStreamInbox.Member>
      try {
        members = JetStreamInbox.decodeBatch(m.data)
      } catch (e) {
        log("error", "unreadable batch carrier; left for a peer", { shard, seq: m.seq, error: String(e) })
        return void m.nak(5_000)
      }
      if (members.length === 0) return void m.ack()
      const lease = leaseOf(
        shard,
        m,
        members.map((x) => x.id)
      )
      for (const x of members) hold(lease, "member", x.id, { events: x.events, body: x.body })
      return
    }
    const kind = kindHeader === "wake" ? "wake" : "carrier"
    const id = m.headers?.get(JetStreamInbox.ID) ?? ""
    if (!id) return void m.term("no message id")
    if (kind === "wake") return hold(leaseOf(shard, m, [id]), kind, id, undefined)
    let cr: JetStreamInbox.Carrier
    try {
      cr = JetStreamInbox.decodeCarrier(id, m.data, kindHeader === "carrier")
    } catch (e) {
      log("error", "unreadable carrier; left for a peer", { id, shard, error: String(e) })
      return void m.nak(5_000)
    }
    if (cr.body) return hold(leaseOf(shard, m, [id]), kind, id, { events: cr.events, body: cr.body })
    // A large body: read it from the object store before the message is offered to the host.
    const received = cr.events.find((e) => e.type === "MessageReceived") as { digest?: string } | undefined
    void o.fetchBody(received?.digest ?? "").then(
      (body) => hold(leaseOf(shard, m, [id]), kind, id, { events: cr.events, body }),
      (e) => {
        log("warn", "body of a carrier unreadable; retrying", { id, error: String(e) })
        m.nak(2_000)
      }
    )
  }

  const leaseOf = (shard: number, m: JsMsg, ids: ReadonlyArray<string>): Lease => {
    const lease: Lease = { msg: m, shard, open: new Set(ids), lastWorking: o.now() }
    // A redelivery of a stream message this node already holds replaces the old delivery.
    leases.set(leaseKey(shard, m.seq), lease)
    return lease
  }

  const hold = (lease: Lease, kind: Token["kind"], id: string, carried: Work.WorkItem["carried"]) => {
    if (closed) return
    const m = lease.msg
    const list = tokensOf(id).filter((t) => !(t.lease.shard === lease.shard && t.lease.msg.seq === m.seq))
    // A split-out carrier (it has a due time) belongs to a message its first drive has already logged.
    const split = m.headers?.has(JetStreamInbox.DUE) === true
    list.push({ lease, first: kind !== "wake" && !m.redelivered && !split, kind, id, carried })
    tokens.set(id, list)
    lostIds.delete(id)
    if (!claimed.has(id) && !ready.includes(id)) ready.push(id)
    kick()
  }

  /** A member's part of a delivery is done: the delivery is acked (or NAKed) once no member is left open. */
  const settle = (t: Token, how: "ack" | { nak: number }) => {
    const lease = t.lease
    lease.open.delete(t.id)
    if (lease.open.size > 0) return
    leases.delete(leaseKey(lease.shard, lease.msg.seq))
    if (how === "ack") {
      lease.msg.ack()
      c.acked += 1
    } else {
      lease.msg.nak(how.nak)
      c.naked += 1
    }
  }

  // One pull request at a time per shard, each for up to `prefetch` messages and at most 4 s: a request lost with a
  // server or a leader change ends by its own expiry and the next one goes to the new leader, so a node is never
  // left without a pull (the client's long-lived consume() was seen to stay silent after an election).
  const pull = async (shard: number) => {
    while (!closed) {
      try {
        const consumer = await js.consumers.get(o.inbox.streams[shard]!, o.inbox.consumer)
        while (!closed) {
          // Heartbeats make a pull lost on the server's side end with an error; the watchdog ends one the client
          // itself never closes. Either way the next fetch is issued.
          const it = await consumer.fetch({ max_messages: o.prefetch ?? 64, expires: 4_000, idle_heartbeat: 1_000 })
          const watchdog = setTimeout(() => void it.stop(), 7_000)
          try {
            for await (const m of it) {
              if (closed) break
              onToken(shard, m)
            }
          } finally {
            clearTimeout(watchdog)
          }
        }
      } catch (e) {
        if (!closed) log("warn", "inbox pull interrupted; pulling again", { shard, error: String((e as Error)?.message ?? e) })
      }
      if (!closed) await new Promise((r) => setTimeout(r, 250))
    }
  }

  // In-progress acks for deliveries held long enough to need them; one past its deadline is dropped, never refreshed,
  // and with it the tokens of all its members.
  const beat = setInterval(
    () => {
      const now = o.now()
      for (const [key, lease] of leases) {
        if (now > lease.lastWorking + ackWait - margin) {
          leases.delete(key)
          c.lostTokens += 1
          log("warn", "lease lost: token held past its AckWait", {
            shard: lease.shard,
            seq: lease.msg.seq,
            members: lease.open.size,
            ids: [...lease.open].slice(0, 8)
          })
          continue
        }
        if (now - lease.lastWorking >= ackWait / 3 && !lease.pending) {
          // Confirmed in-progress ack: the lease is extended only when the consumer's leader answers, so a node cut
          // off from the quorum (a partition) lets its tokens die by the clock instead of believing it holds them.
          lease.pending = true
          o.nc
            .request((lease.msg as unknown as { reply: string }).reply, "+WPI", { timeout: Math.max(200, Math.floor(ackWait / 3)) })
            .then(
              () => {
                lease.lastWorking = Math.max(lease.lastWorking, now)
              },
              () => {}
            )
            .finally(() => {
              lease.pending = false
            })
        }
      }
      for (const [id, list] of tokens) {
        const keep = list.filter((t) => live(t, now))
        if (keep.length === 0) {
          drop(id)
          lostIds.add(id)
          if (lostIds.size > 10_000) lostIds.delete(lostIds.values().next().value!)
          const i = ready.indexOf(id)
          if (i >= 0) ready.splice(i, 1)
        } else if (keep.length !== list.length) tokens.set(id, keep)
      }
    },
    Math.max(100, Math.floor(ackWait / 6))
  )
  beat.unref?.()

  // Pulling starts when the host is ready to claim (it registers its kick), not when the runtime opens.
  let pulling = false
  const startPulling = () => {
    if (pulling || closed) return
    pulling = true
    for (let k = 0; k < o.inbox.shards; k++) void pull(k)
  }

  const live = (t: Token, now: number) => now <= t.lease.lastWorking + ackWait - margin
  /** A token this node may still settle: its delivery is the one held and live (a stale ack could remove a batch a peer now drives). */
  const mine = (t: Token, now: number) => leases.get(leaseKey(t.lease.shard, t.lease.msg.seq)) === t.lease && live(t, now)

  const work: ClusterWork = {
    commitsWithLog: false,
    schedule: async (id, dueAt) => {
      const now = o.now()
      const list = tokensOf(id)
      // A member of a batch gets a carrier of its own first (the batch is then acked without it); should that
      // fail, the member stays held and the host retries. Also when this node's lease on the batch has lapsed (a
      // delivery fenced after a partition): its first events may be logged nowhere yet, and the batch can still be
      // acked by this node once its other members are done; the split carrier is deduplicated by the message's id,
      // so a peer that drives the batch meanwhile makes no second one.
      const member = list.find((t) => t.kind === "member" && t.carried !== undefined)
      if (member && member.carried) {
        try {
          await o.inbox.split({ id, events: member.carried.events, body: member.carried.body }, true, dueAt)
        } catch (e) {
          // No carrier of its own yet (no quorum: a partition, an election): the member stays held, its batch open,
          // and is offered to the host again later, when the split is tried again. Left claimed, it would be driven
          // by no one while this node's in-progress acks kept the batch from its peers.
          log("warn", "batch member not split out yet; trying again", { id, error: String((e as Error)?.message ?? e) })
          claimed.delete(id)
          const retry = setTimeout(() => reoffer(id), Math.max(SPLIT_RETRY_MS, dueAt - o.now()))
          retry.unref?.()
          return
        }
      }
      drop(id)
      let carrierHeld = member !== undefined
      for (const t of list) {
        if (!mine(t, now)) continue
        if (t.kind === "wake" || t.kind === "member") settle(t, "ack")
        else {
          carrierHeld = true
          settle(t, { nak: Math.max(0, Math.min(MAX_DELAY_MS, dueAt - now)) })
        }
      }
      // The carrier waits elsewhere (delivered to a peer, or pending with an older delay): a wake token brings the
      // message to some node at `dueAt`; a drive that finds nothing due defers again.
      if (!carrierHeld) await o.inbox.wake(id, dueAt)
    },
    complete: async (id) => {
      const now = o.now()
      const list = tokensOf(id)
      drop(id)
      let carrierHeld = false
      for (const t of list) {
        if (!mine(t, now)) continue
        settle(t, "ack")
        if (t.kind !== "wake") carrierHeld = true
      }
      if (!carrierHeld) {
        const found = await o.inbox.find(id)
        // A member of a batch held elsewhere is settled by its holder (who finds it completed); a carrier is removed.
        if (found && !found.inBatch) await o.inbox.remove(found.shard, found.seq)
      }
    },
    claim: async (now, limit) => {
      startPulling()
      const out: Array<Work.WorkItem> = []
      while (out.length < limit && ready.length > 0) {
        const id = ready.shift()!
        const list = tokensOf(id).filter((t) => live(t, now))
        if (list.length === 0) continue
        claimed.add(id)
        const carrier = list.find((t) => t.kind !== "wake")
        out.push({ id, dueAt: now, carried: carrier?.carried, unlogged: carrier?.first === true && list.length === 1 })
      }
      return out
    },
    releaseAll: async () => {
      for (const lease of leases.values()) {
        lease.msg.nak(0)
        c.naked += 1
      }
      leases.clear()
      tokens.clear()
      claimed.clear()
      ready.length = 0
    },
    nextDue: async () => undefined,
    count: () => o.inbox.count(),
    list: async (limit) => (await o.inbox.list(limit)).map((e) => ({ id: e.id, dueAt: e.at })),
    holds: (id) => {
      const now = o.now()
      return tokensOf(id).some((t) => live(t, now))
    },
    // By the clock, not by the beat: a node that wakes from a pause must not append before its beat notices.
    lost: (id) => {
      const list = tokensOf(id)
      if (list.length > 0) return !list.some((t) => live(t, o.now()))
      return lostIds.has(id)
    },
    held: () => tokens.size,
    shards: () => Array.from({ length: o.inbox.shards }, (_, k) => k),
    onAvailable: (f) => {
      kick = f
      startPulling()
    },
    counters: () => ({ ...c }),
    close: async () => {
      closed = true
      clearInterval(beat)
      for (const s of stops) s()
    }
  }
  return work
}
