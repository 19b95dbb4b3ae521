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

interface Token {
  readonly msg: JsMsg
  /** A carrier's first delivery: nothing of the message is in the log yet (unless a duplicate carrier was driven). */
  readonly first: boolean
  readonly shard: number
  readonly kind: "carrier" | "wake"
  readonly id: string
  readonly carried: Work.WorkItem["carried"]
  lastWorking: number
  /** An in-progress ack is on its way. */
  pending?: boolean
}

/** A deferred message's NAK delay is capped; when it comes back early the host finds nothing due and defers again. */
const MAX_DELAY_MS = 6 * 60 * 60_000

export const open = async (o: ClusterWorkOptions): Promise<ClusterWork> => {
  const log = o.log ?? (() => {})
  const js: JetStreamClient = jetstream(o.nc)
  const ackWait = o.inbox.ackWaitMs
  // A token whose last in-progress ack is older than this is treated as gone: the server may have redelivered it.
  const margin = Math.max(200, Math.floor(ackWait / 5))
  const tokens = new Map<string, Array<Token>>()
  const ready: Array<string> = []
  const claimed = new Set<string>()
  const lostIds = new Set<string>()
  const c = { delivered: 0, redelivered: 0, acked: 0, naked: 0, lostTokens: 0 }
  let kick: () => void = () => {}
  let closed = false
  const stops: Array<() => void> = []

  const tokensOf = (id: string) => tokens.get(id) ?? []
  const drop = (id: string) => {
    tokens.delete(id)
    claimed.delete(id)
  }

  const onToken = (shard: number, m: JsMsg) => {
    const now = o.now()
    const kind = m.headers?.get(JetStreamInbox.KIND) === "wake" ? "wake" : "carrier"
    const id = m.headers?.get(JetStreamInbox.ID) ?? ""
    if (!id) return void m.term("no message id")
    c.delivered += 1
    if (m.redelivered) c.redelivered += 1
    if (kind === "wake") {
      const due = Number(m.headers?.get(JetStreamInbox.DUE) ?? 0)
      if (due > now + 50) {
        c.naked += 1
        return void m.nak(Math.min(MAX_DELAY_MS, due - now))
      }
    }
    if (kind === "wake") return hold(shard, m, kind, id, undefined)
    let cr: JetStreamInbox.Carrier
    try {
      cr = JetStreamInbox.decodeCarrier(id, m.data, m.headers?.get(JetStreamInbox.KIND) === "carrier")
    } catch (e) {
      log("error", "unreadable carrier; left for a peer", { id, shard, error: String(e) })
      return void m.nak(5_000)
    }
    if (cr.body) return hold(shard, m, kind, id, { events: cr.events, body: cr.body })
    // A large body: read it from the object store before the message is offered to the host.
    const received = cr.events.find((e) => e.type === "MessageReceived") as { digest?: string } | undefined
    void o.fetchBody(received?.digest ?? "").then(
      (body) => hold(shard, m, kind, id, { events: cr.events, body }),
      (e) => {
        log("warn", "body of a carrier unreadable; retrying", { id, error: String(e) })
        m.nak(2_000)
      }
    )
  }

  const hold = (shard: number, m: JsMsg, kind: Token["kind"], id: string, carried: Work.WorkItem["carried"]) => {
    if (closed) return
    const now = o.now()
    const list = tokensOf(id).filter((t) => !(t.shard === shard && t.msg.seq === m.seq))
    list.push({ msg: m, first: kind === "carrier" && !m.redelivered, shard, kind, id, carried, lastWorking: now })
    tokens.set(id, list)
    lostIds.delete(id)
    if (!claimed.has(id) && !ready.includes(id)) ready.push(id)
    kick()
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

  // In-progress acks for tokens held long enough to need them; a token past its deadline is dropped, never refreshed.
  const beat = setInterval(
    () => {
      const now = o.now()
      for (const [id, list] of tokens) {
        const keep: Array<Token> = []
        for (const t of list) {
          if (now > t.lastWorking + ackWait - margin) {
            c.lostTokens += 1
            log("warn", "lease lost: token held past its AckWait", { id, shard: t.shard, kind: t.kind })
            continue
          }
          if (now - t.lastWorking >= ackWait / 3 && !t.pending) {
            // Confirmed in-progress ack: the lease is extended only when the consumer's leader answers, so a node cut
            // off from the quorum (a partition) lets its tokens die by the clock instead of believing it holds them.
            t.pending = true
            o.nc
              .request((t.msg as unknown as { reply: string }).reply, "+WPI", { timeout: Math.max(200, Math.floor(ackWait / 3)) })
              .then(
                () => {
                  t.lastWorking = Math.max(t.lastWorking, now)
                },
                () => {}
              )
              .finally(() => {
                t.pending = false
              })
          }
          keep.push(t)
        }
        if (keep.length === 0) {
          drop(id)
          lostIds.add(id)
          if (lostIds.size > 10_000) lostIds.delete(lostIds.values().next().value!)
          const i = ready.indexOf(id)
          if (i >= 0) ready.splice(i, 1)
        } else tokens.set(id, keep)
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

  const live = (t: Token, now: number) => now <= t.lastWorking + ackWait - margin

  const work: ClusterWork = {
    commitsWithLog: false,
    schedule: async (id, dueAt) => {
      const now = o.now()
      const list = tokensOf(id)
      drop(id)
      let carrierHeld = false
      for (const t of list) {
        if (t.kind === "wake") {
          t.msg.ack()
          c.acked += 1
          continue
        }
        carrierHeld = true
        t.msg.nak(Math.max(0, Math.min(MAX_DELAY_MS, dueAt - now)))
        c.naked += 1
      }
      // The carrier waits elsewhere (delivered to a peer, or pending with an older delay): a wake token brings the
      // message to some node at `dueAt`; a drive that finds nothing due defers again.
      if (!carrierHeld) await o.inbox.wake(id, dueAt)
    },
    complete: async (id) => {
      const list = tokensOf(id)
      drop(id)
      let carrierHeld = false
      for (const t of list) {
        t.msg.ack()
        c.acked += 1
        if (t.kind === "carrier") carrierHeld = true
      }
      if (!carrierHeld) {
        const found = await o.inbox.find(id)
        if (found) await o.inbox.remove(found.shard, found.seq)
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
        const carrier = list.find((t) => t.kind === "carrier")
        out.push({ id, dueAt: now, carried: carrier?.carried, unlogged: carrier?.first === true && list.length === 1 })
      }
      return out
    },
    releaseAll: async () => {
      for (const list of tokens.values())
        for (const t of list) {
          t.msg.nak(0)
          c.naked += 1
        }
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
