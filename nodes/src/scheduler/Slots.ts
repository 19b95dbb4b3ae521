// Cluster-wide per-destination concurrency: a counting semaphore per destination in a replicated KV bucket. A
// destination with limit N (its site's `shaping` connections, a throttle's while it lasts, else
// `delivery.concurrency_per_destination`) has N slot keys `s.<destination>.<k>`; a node takes a slot by creating the key (or by a
// compare-and-set over an expired holder), renews what it holds every lease/3, and a kill -9'd node's slots expire
// with its lease. A delivery runs only while its node holds a slot for the destination, so deliveries — and the
// connections they open — to one destination never exceed N across the cluster.
//
// Connection reuse: the SMTP pool keeps a connection open for `idleMs` after its last message, so a node keeps its
// slots for a destination until it has had no delivery there for idleMs + a margin (by then the pool has closed
// every connection to it), and reuses them meanwhile. A node therefore never has more connections open to a
// destination than slots held. When a site's limit falls (a throttle), the slots numbered N and above are no longer
// used and are given back as they come free. Must not decide anything about a message.
import { Kvm, type KV } from "@nats-io/kv"
import type { NatsConnection } from "@nats-io/transport-node"
import type { Limiter } from "./Limiter.js"
import type { Rates } from "./Rates.js"

export interface Slots {
  /** Waits for a slot of `key` (limit: its number of slots now, else the bucket's default); resolves to its release. */
  acquire(key: string, limit?: number): Promise<() => void>
  /** Slots this node holds now, per destination. */
  held(): ReadonlyMap<string, number>
  close(): Promise<void>
}

interface Slot {
  readonly k: number
  rev: number
  busy: boolean
  /** When this node last wrote the slot (its holder's expiry is that + the lease). */
  renewed: number
}
interface Lane {
  readonly slots: Array<Slot>
  lastUsed: number
  running: number
  /** The destination's number of slots as last asked (slots numbered at or above it are given back when free). */
  limit: number
}

export const bucketName = (prefix: string) => `${prefix}_slots`

export const open = async (o: {
  nc: NatsConnection
  prefix: string
  replicas: number
  node: string
  limit: number
  leaseMs: number
  idleMs: number
  now?: () => number
}): Promise<Slots> => {
  const now = o.now ?? (() => Date.now())
  const kv: KV = await new Kvm(o.nc).create(bucketName(o.prefix), { history: 1, replicas: o.replicas })
  const enc = new TextEncoder()
  const lanes = new Map<string, Lane>()
  /** Slot keys seen held by a live peer, until when: not read again before then (a full destination is not polled key by key). */
  const heldElsewhere = new Map<string, number>()
  const keyOf = (dest: string, k: number) => `s.${Buffer.from(dest).toString("base64url") || "_"}.${k}`
  const value = () => enc.encode(JSON.stringify({ o: o.node, u: now() + o.leaseMs }))
  let closed = false

  /** Tries to take one more slot of `dest` in the KV; undefined when all N are held by live holders. */
  const take = async (dest: string, lane: Lane, limit: number): Promise<Slot | undefined> => {
    const mine = new Set(lane.slots.map((s) => s.k))
    const start = Math.floor(Math.random() * limit)
    for (let i = 0; i < limit; i++) {
      const k = (start + i) % limit
      if (mine.has(k)) continue
      const key = keyOf(dest, k)
      if ((heldElsewhere.get(key) ?? 0) > now()) continue
      try {
        const e = await kv.get(key)
        let rev: number
        if (!e || e.operation !== "PUT") rev = await kv.create(key, value())
        else {
          const v = e.json<{ o: string; u: number }>()
          if (v.u > now()) {
            // Renewed by its holder every lease/3: look again when this renewal would have run out, or sooner.
            heldElsewhere.set(key, Math.min(v.u, now() + Math.max(200, o.leaseMs / 3)))
            if (heldElsewhere.size > 10_000) heldElsewhere.delete(heldElsewhere.keys().next().value!)
            continue
          }
          rev = await kv.update(key, value(), e.revision)
        }
        heldElsewhere.delete(key)
        const s: Slot = { k, rev, busy: true, renewed: now() }
        lane.slots.push(s)
        return s
      } catch {
        /* someone else took it first: try the next */
      }
    }
    return undefined
  }

  const acquire = async (dest: string, limit = o.limit): Promise<() => void> => {
    for (let wait = 20; ; wait = Math.min(500, wait * 2)) {
      if (closed) throw new Error("cluster slots closed")
      let lane = lanes.get(dest)
      if (!lane) lanes.set(dest, (lane = { slots: [], lastUsed: now(), running: 0, limit }))
      const l = lane
      l.limit = limit
      const usable = l.slots.filter((x) => x.k < limit)
      const s = usable.find((x) => !x.busy) ?? (usable.length < limit ? await take(dest, l, limit) : undefined)
      if (s) {
        s.busy = true
        l.running += 1
        let done = false
        return () => {
          if (done) return
          done = true
          s.busy = false
          l.running -= 1
          l.lastUsed = now()
        }
      }
      await new Promise((r) => setTimeout(r, wait + Math.random() * wait))
    }
  }

  const give = async (dest: string, lane: Lane) => {
    lanes.delete(dest)
    await Promise.all(lane.slots.map((s) => kv.delete(keyOf(dest, s.k), { previousSeq: s.rev }).catch(() => {})))
  }

  let ticking = false
  const tick = async () => {
    if (ticking || closed) return
    ticking = true
    try {
      const t = now()
      for (const [dest, lane] of [...lanes]) {
        if (lane.running === 0 && t - lane.lastUsed > o.idleMs + 1000) {
          await give(dest, lane)
          continue
        }
        for (const s of lane.slots.filter((x) => x.k >= lane.limit && !x.busy)) {
          lane.slots.splice(lane.slots.indexOf(s), 1)
          await kv.delete(keyOf(dest, s.k), { previousSeq: s.rev }).catch(() => {})
        }
        // Renewed once a third of the lease has passed since the last write (the tick runs more often, for give-backs).
        await Promise.all(
          lane.slots.map(async (s) => {
            if (t - s.renewed < o.leaseMs / 3) return
            try {
              const at = now()
              s.rev = await kv.update(keyOf(dest, s.k), value(), s.rev)
              s.renewed = at
            } catch {
              // Lost (this node was paused past its lease and a peer took it): stop using it once it is free.
              const i = lane.slots.indexOf(s)
              if (i >= 0) lane.slots.splice(i, 1)
            }
          })
        )
      }
    } finally {
      ticking = false
    }
  }
  const timer = setInterval(() => void tick().catch(() => {}), Math.max(100, Math.min(o.leaseMs / 3, 1000)))

  return {
    acquire,
    held: () => new Map([...lanes].map(([d, l]) => [d, l.slots.length])),
    close: async () => {
      closed = true
      clearInterval(timer)
      await Promise.all([...lanes].map(([d, l]) => give(d, l)))
    }
  }
}

/**
 * The node's limiter with the cluster-wide slot taken inside the local lane (local FIFO and totals unchanged): as
 * many slots as the site's connections in force (Limiter.limitsOf); with `rates`, then a start token of the site's
 * shared buckets (Rates.ts).
 */
export const limiter = (local: Limiter, slots: Slots, rates?: Rates): Limiter => ({
  run: (key, task) =>
    local.run(key, async () => {
      for (;;) {
        const release = await slots.acquire(key, local.limitsOf(key).connections)
        try {
          // the token after the slot: the start follows its token at once, so starts never outrun the shared rate
          if (rates) await rates.take(key, () => local.limitsOf(key))
          // a suspension that came (from a peer) while this delivery waited for its slot or token holds it too
          if (local.suspendedFor(key) === 0) return await task()
        } finally {
          release()
        }
        // a second at a time: a closed node's acquire then rejects instead of a timer outliving it
        await new Promise((r) => setTimeout(r, Math.min(1000, local.suspendedFor(key))))
      }
    }),
  running: () => local.running(),
  waiting: () => local.waiting(),
  shape: (key, change) => local.shape(key, change),
  limitsOf: (key) => local.limitsOf(key),
  suspendedFor: (key) => local.suspendedFor(key)
})
