// Cluster-wide start rates per site: a site's `rate_per_second` / `rate_per_hour` (or its throttle's) is one pair of
// token buckets shared by every node, kept in one key of a replicated KV bucket (`<prefix>_rates`) and taken from by
// compare-and-set: a start costs one KV write, and only for a site that has a rate (embedded nodes keep their local
// buckets, Limiter.ts, and write nothing). Must not decide anything about a message.
//
// Why a shared bucket rather than a share of the rate per live node: shares cost nothing per start but give a site
// only 1/n of its rate when one node has its mail, and overshoot while membership changes; the shared bucket holds
// the rate whichever node has the mail, for one write per start (rates are set for a few sites, at tens a second).
import { Kvm, type KV, type KvEntry } from "@nats-io/kv"
import type { NatsConnection } from "@nats-io/transport-node"
import type { SiteLimits } from "./Limiter.js"

export interface Rates {
  /**
   * Waits for a start token of the site's buckets; `limits` is read again on every try (a throttle may change the
   * rate meanwhile). Resolves at once for a site without a rate. Rejects only once closed.
   */
  take(key: string, limits: () => SiteLimits): Promise<void>
  /** Tokens taken (writes) and compare-and-set conflicts so far. */
  counters(): { readonly taken: number; readonly conflicts: number }
  close(): void
}

export const bucketName = (prefix: string) => `${prefix}_rates`

/** A site's buckets as stored: tokens per second bucket and per hour bucket, and when they were counted. */
interface Stored {
  readonly s?: number | undefined
  readonly h?: number | undefined
  readonly at: number
}

const SECOND = 1000
const HOUR = 3_600_000

/** The buckets at `t` (refilled at capacity per period, capped at capacity; a missing bucket is full). */
export const refill = (v: Stored | undefined, l: SiteLimits, t: number): Stored => {
  const elapsed = v ? Math.max(0, t - v.at) : 0
  const one = (tokens: number | undefined, capacity: number | undefined, period: number) =>
    capacity === undefined ? undefined : Math.min(capacity, tokens === undefined ? capacity : tokens + (elapsed * capacity) / period)
  return { s: one(v?.s, l.perSecond, SECOND), h: one(v?.h, l.perHour, HOUR), at: t }
}

/** Ms until one token is there in every bucket (0: now). */
export const waitOf = (v: Stored, l: SiteLimits): number => {
  let wait = 0
  if (l.perSecond !== undefined && v.s !== undefined && v.s < 1) wait = Math.max(wait, Math.ceil(((1 - v.s) * SECOND) / l.perSecond))
  if (l.perHour !== undefined && v.h !== undefined && v.h < 1) wait = Math.max(wait, Math.ceil(((1 - v.h) * HOUR) / l.perHour))
  return wait
}

export const open = async (o: { nc: NatsConnection; prefix: string; replicas: number; now?: () => number }): Promise<Rates> => {
  const now = o.now ?? (() => Date.now())
  // An entry untouched for an hour is a full bucket again: it may expire.
  const kv: KV = await new Kvm(o.nc).create(bucketName(o.prefix), { history: 1, replicas: o.replicas, ttl: HOUR + 60_000 })
  const enc = new TextEncoder()
  const keyOf = (site: string) => `r.${Buffer.from(site).toString("base64url") || "_"}`
  /** The last entry this node read or wrote per site: tried first, read again on a conflict. */
  const known = new Map<string, { rev: number; value: Stored } | null>()
  /** One try at a time per site on this node, so its own starts do not conflict with each other. */
  const queues = new Map<string, Promise<void>>()
  let taken = 0
  let conflicts = 0
  let closed = false
  /** Waits in progress, ended early by close (no timer outlives the node). */
  const sleepers = new Set<() => void>()
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t)
        sleepers.delete(done)
        resolve()
      }
      const t = setTimeout(done, ms)
      sleepers.add(done)
    })

  const read = async (k: string) => {
    const e: KvEntry | null = await kv.get(k)
    const got = e && e.operation === "PUT" ? { rev: e.revision, value: e.json<Stored>() } : null
    known.set(k, got)
    return got
  }

  const takeOne = async (site: string, limits: () => SiteLimits): Promise<void> => {
    const k = keyOf(site)
    for (;;) {
      if (closed) throw new Error("cluster rates closed")
      const l = limits()
      if (l.perSecond === undefined && l.perHour === undefined) return
      if (known.size > 10_000) known.clear()
      let cur: { rev: number; value: Stored } | null
      try {
        cur = known.has(k) ? known.get(k)! : await read(k)
      } catch {
        // the KV is unreachable for now (a server lost): try again shortly, the start waits meanwhile
        await sleep(200)
        continue
      }
      const t = now()
      const v = refill(cur?.value, l, t)
      const wait = waitOf(v, l)
      if (wait > 0) {
        // at most a second at a time: the limits may change meanwhile (a throttle, or its end)
        await sleep(Math.min(wait, 1000))
        continue
      }
      const next: Stored = { s: v.s === undefined ? undefined : v.s - 1, h: v.h === undefined ? undefined : v.h - 1, at: t }
      try {
        const bytes = enc.encode(JSON.stringify(next))
        const rev = cur ? await kv.update(k, bytes, cur.rev) : await kv.create(k, bytes)
        known.set(k, { rev, value: next })
        taken += 1
        return
      } catch {
        // another node took one first (or the entry expired): read it again
        conflicts += 1
        known.delete(k)
      }
    }
  }

  return {
    take: (site, limits) => {
      const l = limits()
      if (l.perSecond === undefined && l.perHour === undefined) return Promise.resolve()
      const p = (queues.get(site) ?? Promise.resolve()).then(() => takeOne(site, limits))
      const tail = p.catch(() => {})
      queues.set(site, tail)
      void tail.then(() => {
        if (queues.get(site) === tail) queues.delete(site)
      })
      return p
    },
    counters: () => ({ taken, conflicts }),
    close: () => {
      closed = true
      for (const wake of [...sleepers]) wake()
    }
  }
}
