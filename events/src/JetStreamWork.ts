// The Work port on JetStream KV (replicated): one key per message `pNN.<id>` → {due, owner, until}, every change a
// compare-and-set on the key's revision, so one owner at a time holds a message (a fenced lease). The due-time
// index is split into partitions; each partition has one scheduler at a time, leased through KV compare-and-set
// in the `_leases` bucket, and only that node keeps the partition's index in memory and claims from it.
// Leases this instance holds are renewed while held (the in-progress ack); a lost renewal drops the lease and
// `holds(id)` turns false, which the node checks before it delivers or appends. Must not decide anything.
import type { NatsConnection } from "@nats-io/transport-node"
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream"
import { Kvm, type KV } from "@nats-io/kv"
import { Hash } from "@missive/core"
import { isWrongLastSequence, unavailable } from "./internal/NatsFault.js"
import type { Work, WorkItem } from "./Work.js"

export interface JetStreamWorkOptions {
  readonly nc: NatsConnection
  readonly prefix?: string
  readonly replicas?: number
  /** Number of partitions of the due-time index (fixed for the life of a cluster). */
  readonly partitions?: number
  /** Who this instance is, in partition leases. */
  readonly instance?: string
  /** Time source (the node's Clock); defaults to the system clock. */
  readonly now?: () => number
  /** When set, leases this instance holds are extended by this much every third of it while held. */
  readonly renewMs?: number
  /** When set, partitions are leased for this long and shared with other instances; otherwise this instance schedules all. */
  readonly partitionLeaseMs?: number
  /** How many partitions this instance should schedule (the cluster's fair share); default all. */
  readonly share?: () => number
  /**
   * Only entries claimable within this horizon (max(due, lease end) ≤ now + horizon) are kept in memory; later ones
   * stay in JetStream KV and are picked up by a rescan of the partition every horizon/2. Default 10 minutes.
   */
  readonly horizonMs?: number
  /** Read-only view (the CLI): schedules no partition, renews nothing; use listAll. */
  readonly observe?: boolean
  readonly log?: (level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) => void
}

export interface JetStreamWork extends Work {
  /** True while this instance holds an unexpired lease on the message: the fence checked before every delivery and append. */
  holds(id: string): boolean
  /** Messages this instance holds leases on. */
  held(): number
  /** Partitions this instance schedules. */
  partitions(): ReadonlyArray<number>
  /** Entries of the due-time index held in memory (the near-due ones of the owned partitions). */
  inMemory(): number
  /** Entries seen beyond the horizon since the last rescan (left in KV; an update of one counts again). */
  beyondHorizon(): number
  /** Every item of the index, whoever schedules it (reads the whole bucket: for the CLI, not the hot path). */
  listAll(limit: number): Promise<ReadonlyArray<WorkItem & { owner: string | null; until: number }>>
}

interface Entry { dueAt: number; owner: string | null; until: number; rev: number }
interface Value { d: number; o: string | null; u: number }

const encodeId = (id: string): string => (/^[A-Za-z0-9_-]+$/.test(id) ? id : `=${Buffer.from(id).toString("base64url")}`)
const decodeId = (k: string): string => (k.startsWith("=") ? Buffer.from(k.slice(1), "base64url").toString() : k)

export const bucketNames = (prefix: string) => {
  const p = prefix.replace(/[^A-Za-z0-9_-]/g, "_")
  return { work: `${p}_work`, leases: `${p}_leases` }
}

export const open = async (o: JetStreamWorkOptions): Promise<JetStreamWork> => {
  const now = o.now ?? (() => Date.now())
  const log = o.log ?? (() => {})
  const P = o.partitions ?? 16
  const instance = o.instance ?? `w-${process.pid}`
  const names = bucketNames(o.prefix ?? "missive")
  const kvm = new Kvm(o.nc)
  const kv: KV = await kvm.create(names.work, { history: 1, replicas: o.replicas ?? 1 })
  const leases: KV = await kvm.create(names.leases, { history: 1, replicas: o.replicas ?? 1 })
  const jsm: JetStreamManager = await jetstreamManager(o.nc)
  const kvStream = `KV_${names.work}`
  const enc = new TextEncoder()

  const partOf = (id: string) => Hash.fnv1a32(id) % P
  const prefixOf = (p: number) => `p${String(p).padStart(3, "0")}`
  const keyOf = (id: string) => `${prefixOf(partOf(id))}.${encodeId(id)}`
  const idOfKey = (key: string) => decodeId(key.slice(key.indexOf(".") + 1))

  const horizonMs = o.horizonMs ?? 10 * 60_000
  /** Entries further out than this stay in KV only (rescanned every horizon/2). */
  let horizonEnd = now() + horizonMs
  const near = (e: Entry) => Math.max(e.dueAt, e.until) <= horizonEnd
  /** Partitions this instance schedules: their near-due index in memory, and the lease revision (0 = static ownership). */
  const owned = new Map<number, { rev: number; index: Map<string, Entry>; stop: () => void; far: number }>()
  /** Leases this instance holds on messages. */
  const held = new Map<string, Entry & { owner: string }>()
  /** Messages whose lease this instance lost to a takeover; its writes to them are refused until it claims them again. */
  const lost = new Set<string>()
  const lose = (id: string) => {
    held.delete(id)
    lost.add(id)
    if (lost.size > 100_000) lost.delete(lost.values().next().value!)
  }
  let closed = false

  const indexOf = (id: string) => owned.get(partOf(id))?.index
  const note = (id: string, e: Entry | undefined) => {
    const idx = indexOf(id)
    if (!idx) return
    if (e && near(e)) idx.set(id, e)
    else idx.delete(id)
  }
  const put = async (id: string, v: Value, rev: number): Promise<number> =>
    rev === 0 ? kv.create(keyOf(id), enc.encode(JSON.stringify(v))) : kv.update(keyOf(id), enc.encode(JSON.stringify(v)), rev)
  const read = async (id: string): Promise<Entry | undefined> => {
    const e = await kv.get(keyOf(id))
    if (!e || e.operation !== "PUT") return undefined
    const v = e.json<Value>()
    return { dueAt: v.d, owner: v.o, until: v.u, rev: e.revision }
  }

  /**
   * Follows a partition's keys: the watch replays every current key (the scan) then follows changes; only near-due
   * entries are kept, far ones are counted and left in KV.
   */
  const watchPartition = async (p: number): Promise<() => void> => {
    const w = await kv.watch({ key: `${prefixOf(p)}.>` })
    void (async () => {
      for await (const e of w) {
        const part = owned.get(p)
        if (!part) continue
        const id = idOfKey(e.key)
        const cur = part.index.get(id)
        if (cur && cur.rev >= e.revision) continue
        if (e.operation !== "PUT") part.index.delete(id)
        else {
          const v = e.json<Value>()
          const entry = { dueAt: v.d, owner: v.o, until: v.u, rev: e.revision }
          if (near(entry)) part.index.set(id, entry)
          else { part.index.delete(id); part.far += 1 }
        }
      }
    })().catch((e) => log("warn", "work watch ended", { partition: p, error: String(e) }))
    return () => w.stop()
  }

  const own = async (p: number, rev: number) => {
    const entry = { rev, index: new Map<string, Entry>(), stop: () => {}, far: 0 }
    owned.set(p, entry)
    entry.stop = await watchPartition(p)
  }
  /** Moves the horizon on and rescans every owned partition (a fresh watch replays its keys; far ones are skipped). */
  const rescan = async () => {
    if (closed || o.observe) return
    horizonEnd = now() + horizonMs
    for (const [p, part] of [...owned]) {
      if (owned.get(p) !== part) continue
      const old = part.stop
      part.far = 0
      part.stop = await watchPartition(p)
      old()
    }
  }
  const drop = (p: number) => {
    const part = owned.get(p)
    if (!part) return
    part.stop()
    owned.delete(p)
  }

  // ---- partition leases -------------------------------------------------------------------------
  const leaseMs = o.partitionLeaseMs
  const leaseKey = (p: number) => `part.${p}`
  const leaseValue = () => enc.encode(JSON.stringify({ o: instance, u: now() + (leaseMs ?? 0) }))
  let ticking: Promise<void> | undefined
  const tick = async () => {
    if (leaseMs === undefined || closed) return
    for (const [p, part] of [...owned]) {
      try {
        part.rev = await leases.update(leaseKey(p), leaseValue(), part.rev)
      } catch (e) {
        log("warn", "partition lease lost", { partition: p, error: String(e) })
        drop(p)
      }
    }
    const target = Math.max(1, Math.min(P, o.share?.() ?? P))
    for (const p of [...owned.keys()].slice(target)) {
      const part = owned.get(p)!
      drop(p)
      await leases.delete(leaseKey(p), { previousSeq: part.rev }).catch(() => {})
    }
    const start = Hash.fnv1a32(instance) % P
    for (let i = 0; i < P && owned.size < target && !closed; i++) {
      const p = (start + i) % P
      if (owned.has(p)) continue
      try {
        const cur = await leases.get(leaseKey(p))
        let rev: number
        if (!cur || cur.operation !== "PUT") rev = await leases.create(leaseKey(p), leaseValue())
        else {
          const v = cur.json<{ o: string; u: number }>()
          if (v.o !== instance && v.u > now()) continue
          rev = await leases.update(leaseKey(p), leaseValue(), cur.revision)
        }
        await own(p, rev)
        log("info", "partition acquired", { partition: p, instance })
      } catch (e) {
        if (!isWrongLastSequence(e)) log("warn", "partition lease failed", { partition: p, error: String(e) })
      }
    }
  }
  const runTick = () => (ticking ??= tick().finally(() => { ticking = undefined }))

  // ---- message lease renewal --------------------------------------------------------------------
  const renew = async () => {
    if (o.renewMs === undefined || closed) return
    const t = now()
    await Promise.all([...held].map(async ([id, h]) => {
      if (h.until - t > (o.renewMs! * 2) / 3) return
      const until = t + o.renewMs!
      try {
        const rev = await put(id, { d: h.dueAt, o: h.owner, u: until }, h.rev)
        if (held.get(id) !== h) return
        const next = { ...h, until, rev }
        held.set(id, next)
        note(id, next)
      } catch (e) {
        if (held.get(id) !== h) return
        if (isWrongLastSequence(e)) {
          lose(id)
          log("warn", "lease lost", { id })
        }
      }
    }))
  }

  if (o.observe) { /* a view: owns nothing */ }
  else if (leaseMs === undefined) for (let p = 0; p < P; p++) await own(p, 0)
  else await runTick()
  const timers: Array<NodeJS.Timeout> = []
  if (leaseMs !== undefined && !o.observe) timers.push(setInterval(() => void runTick().catch(() => {}), Math.max(200, leaseMs / 3)))
  timers.push(setInterval(() => void rescan().catch((e) => log("warn", "work rescan failed", { error: String(e) })), Math.min(2 ** 31 - 1, Math.max(1000, horizonMs / 2))))
  if (o.renewMs !== undefined) timers.push(setInterval(() => void renew().catch(() => {}), Math.max(100, o.renewMs / 6)))

  /**
   * Writes a message this instance holds no lease on (intake's new entry, an unleased one). Refused while someone
   * else's lease runs, and always for a message whose lease this instance lost: that is a stale owner's write after
   * a takeover (its retry time would clobber the new owner's).
   */
  const writeUnheld = async (id: string, v: Value | null): Promise<Entry | undefined | "refused"> => {
    for (let tries = 0; tries < 5; tries++) {
      const cur = await read(id)
      if (lost.has(id)) return "refused"
      if (cur && cur.owner !== null && cur.owner !== v?.o && cur.until > now()) return "refused"
      try {
        if (v === null) {
          if (!cur) return undefined
          await kv.delete(keyOf(id), { previousSeq: cur.rev })
          return undefined
        }
        const rev = await put(id, v, cur?.rev ?? 0)
        return { dueAt: v.d, owner: v.o, until: v.u, rev }
      } catch (e) {
        if (!isWrongLastSequence(e)) throw e
      }
    }
    return "refused"
  }

  const purge = (id: string) => jsm.streams.purge(kvStream, { filter: `$KV.${names.work}.${keyOf(id)}` }).catch(() => {})

  const work: JetStreamWork = {
    schedule: async (id, dueAt, lease) => {
      const v: Value = { d: dueAt, o: lease?.owner ?? null, u: lease?.until ?? 0 }
      try {
        const h = held.get(id)
        let written: Entry | undefined
        if (h) {
          try {
            written = { dueAt, owner: v.o, until: v.u, rev: await put(id, v, h.rev) }
          } catch (e) {
            if (!isWrongLastSequence(e)) throw e
            lose(id)
            log("warn", "lease lost; schedule ignored", { id })
            return
          }
        } else {
          const r = await writeUnheld(id, v)
          if (r === "refused") return void log("warn", "message leased elsewhere; schedule ignored", { id })
          written = r
        }
        if (!written) return
        note(id, written)
        if (lease) held.set(id, { ...written, owner: lease.owner })
        else held.delete(id)
      } catch (e) {
        throw unavailable("work schedule failed", e)
      }
    },
    complete: async (id) => {
      try {
        const h = held.get(id)
        held.delete(id)
        if (h) {
          try {
            await kv.delete(keyOf(id), { previousSeq: h.rev })
          } catch (e) {
            if (!isWrongLastSequence(e)) throw e
            lose(id)
            return void log("warn", "lease lost; complete ignored", { id })
          }
        } else if ((await writeUnheld(id, null)) === "refused") return
        note(id, undefined)
        await purge(id)
      } catch (e) {
        throw unavailable("work complete failed", e)
      }
    },
    claim: async (t, limit, owner, until) => {
      const due: Array<[string, Entry]> = []
      for (const part of owned.values())
        for (const [id, e] of part.index) if (e.dueAt <= t && e.until <= t) due.push([id, e])
      due.sort((a, b) => a[1].dueAt - b[1].dueAt)
      const out: Array<WorkItem> = []
      for (let i = 0; i < due.length && out.length < limit; ) {
        const batch = due.slice(i, i + (limit - out.length))
        i += batch.length
        const results = await Promise.all(batch.map(async ([id, e]) => {
          try {
            const rev = await put(id, { d: e.dueAt, o: owner, u: until }, e.rev)
            const next = { dueAt: e.dueAt, owner, until, rev }
            note(id, next)
            held.set(id, next)
            lost.delete(id)
            return { id, dueAt: e.dueAt }
          } catch (err) {
            if (!isWrongLastSequence(err)) return undefined
            note(id, await read(id).catch(() => undefined))
            return undefined
          }
        }))
        for (const r of results) if (r) out.push(r)
      }
      out.sort((a, b) => a.dueAt - b.dueAt)
      return out
    },
    releaseAll: async (owner) => {
      await Promise.all([...held].filter(([, h]) => h.owner === owner).map(async ([id, h]) => {
        held.delete(id)
        try {
          const rev = await put(id, { d: h.dueAt, o: null, u: 0 }, h.rev)
          note(id, { dueAt: h.dueAt, owner: null, until: 0, rev })
        } catch { /* lost already: nothing to give back */ }
      }))
    },
    nextDue: async () => {
      let min: number | undefined
      let far = false
      for (const part of owned.values()) {
        if (part.far > 0) far = true
        for (const e of part.index.values()) {
          const t = Math.max(e.dueAt, e.until)
          if (min === undefined || t < min) min = t
        }
      }
      // Entries beyond the horizon come into memory at the next rescan, at the latest at the horizon's end.
      return min ?? (far ? horizonEnd : undefined)
    },
    count: async () => {
      try {
        return (await jsm.streams.info(kvStream)).state.messages
      } catch (e) {
        throw unavailable("work count failed", e)
      }
    },
    /** The near-due part of the partitions this instance schedules (listAll reads everything). */
    list: async (limit) => {
      const all: Array<WorkItem> = []
      for (const part of owned.values()) for (const [id, e] of part.index) all.push({ id, dueAt: e.dueAt })
      return all.sort((a, b) => a.dueAt - b.dueAt).slice(0, limit)
    },
    listAll: async (limit) => {
      const out: Array<WorkItem & { owner: string | null; until: number }> = []
      const keys: Array<string> = []
      for await (const k of await kv.keys()) keys.push(k)
      for (let i = 0; i < keys.length; i += 64)
        await Promise.all(keys.slice(i, i + 64).map(async (k) => {
          const id = idOfKey(k)
          const e = await read(id).catch(() => undefined)
          if (e) out.push({ id, dueAt: e.dueAt, owner: e.owner, until: e.until })
        }))
      return out.sort((a, b) => a.dueAt - b.dueAt).slice(0, limit)
    },
    holds: (id) => {
      const h = held.get(id)
      return h !== undefined && h.until > now()
    },
    held: () => held.size,
    partitions: () => [...owned.keys()].sort((a, b) => a - b),
    inMemory: () => [...owned.values()].reduce((n, p) => n + p.index.size, 0),
    beyondHorizon: () => [...owned.values()].reduce((n, p) => n + p.far, 0),
    close: async () => {
      if (closed) return
      closed = true
      for (const t of timers) clearInterval(t)
      await ticking?.catch(() => {})
      for (const [p, part] of [...owned]) {
        drop(p)
        if (leaseMs !== undefined) await leases.delete(leaseKey(p), { previousSeq: part.rev }).catch(() => {})
      }
    }
  }
  return work
}
