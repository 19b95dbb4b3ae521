// The EventStore port on a NATS JetStream stream (replicated, R3 on a 3-server cluster). One JetStream message per
// append: a JSON array of the appended events, so an append is atomic (nats-server 2.9 has no batch publish), and
// its subject is `<prefix>.ev.<stream>`. Optimistic concurrency: `Nats-Expected-Last-Subject-Sequence`; the stream
// version travels in a header. Must not be the only fence of a message's writer: nats-server 2.9's per-subject
// check has known gaps right after a leader change, so the cluster runtime also fences through Work leases.
// Global position = the JetStream sequence of the append: the events of one multi-event append share it.
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node"
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type StoredMsg } from "@nats-io/jetstream"
import { decodeTrustedValue, encode } from "./Codec.js"
import type { EventStore, StoredEvent } from "./EventStore.js"
import { WrongExpectedVersion } from "./StoreError.js"
import { isAlreadyExists, isNoMessage, isWrongLastSequence, unavailable } from "./internal/NatsFault.js"
import { scanRange } from "./internal/JetStreamScan.js"

export interface JetStreamEventStoreOptions {
  readonly nc: NatsConnection
  /** Subject and stream-name prefix, so that several stores can share one NATS (tests). */
  readonly prefix?: string
  readonly replicas?: number
  /** Publish ack timeout, ms. */
  readonly timeoutMs?: number
  /**
   * Read streams by direct gets (answered by any replica, so possibly a moment behind the leader): for readers that
   * never append, such as replay; a writer reads through the leader, whose answer its append is checked against.
   */
  readonly direct?: boolean
}

const VERSION = "Missive-Version"

/** A stream name as one subject token: kept when safe, otherwise base64url with a `~` mark. */
const tokenOf = (stream: string): string => (/^[A-Za-z0-9_-]+$/.test(stream) ? stream : `~${Buffer.from(stream).toString("base64url")}`)
const streamOfToken = (token: string): string => (token.startsWith("~") ? Buffer.from(token.slice(1), "base64url").toString() : token)

export const streamName = (prefix: string): string => `${prefix.toUpperCase().replace(/[^A-Z0-9_-]/g, "_")}_EVENTS`

/** Ensures the stream exists (idempotent; an existing stream keeps its configuration). */
export const ensureStream = async (jsm: JetStreamManager, prefix: string, replicas: number): Promise<string> => {
  const name = streamName(prefix)
  try {
    await jsm.streams.info(name)
  } catch {
    await jsm.streams
      .add({ name, subjects: [`${prefix}.ev.>`], num_replicas: replicas, allow_direct: true, duplicate_window: 120_000_000_000 })
      .catch(async (e) => {
        if (!isAlreadyExists(e)) throw e
      })
  }
  return name
}

export const open = async (o: JetStreamEventStoreOptions): Promise<EventStore> => {
  const prefix = o.prefix ?? "missive"
  const replicas = o.replicas ?? 1
  const jsm = await jetstreamManager(o.nc)
  const js: JetStreamClient = jetstream(o.nc, { timeout: o.timeoutMs ?? 10_000 })
  const name = await ensureStream(jsm, prefix, replicas)
  const subjectOf = (stream: string) => `${prefix}.ev.${tokenOf(stream)}`
  const base = `${prefix}.ev.`

  /** What this process last saw of a stream: its events, version and the subject's last sequence. */
  const cache = new Map<string, { seq: number; events: Array<StoredEvent> }>()
  const remember = (stream: string, v: { seq: number; events: Array<StoredEvent> }) => {
    cache.delete(stream)
    cache.set(stream, v)
    if (cache.size > 5000) cache.delete(cache.keys().next().value!)
  }

  const decoder = new TextDecoder()
  const toStored = (m: StoredMsg): Array<StoredEvent> => {
    const stream = streamOfToken(m.subject.slice(base.length))
    const last = Number(m.header?.get(VERSION) ?? 0)
    const raw = JSON.parse(decoder.decode(m.data)) as Array<unknown>
    const first = last - raw.length + 1
    return raw.map((r, i) => ({ stream, version: first + i, position: m.seq, event: decodeTrustedValue(r) }))
  }

  const get = (q: { last_by_subj: string } | { seq: number; next_by_subj: string }): Promise<StoredMsg | null> =>
    o.direct ? jsm.direct.getMessage(name, q) : jsm.streams.getMessage(name, q as unknown as { seq: number })

  const lastOf = async (stream: string): Promise<StoredMsg | null> => {
    try {
      return await get({ last_by_subj: subjectOf(stream) })
    } catch (e) {
      if (isNoMessage(e)) return null
      throw unavailable("event store read failed", e)
    }
  }

  /** The stream's first append at or after sequence `from` (null when there is none). */
  const nextOf = async (stream: string, from: number): Promise<StoredMsg | null> => {
    try {
      return await get({ seq: from, next_by_subj: subjectOf(stream) })
    } catch (e) {
      if (isNoMessage(e)) return null
      throw unavailable("event store read failed", e)
    }
  }

  /** The stream as the server has it now, reusing what is cached up to the last sequence we saw. */
  const current = async (stream: string): Promise<{ seq: number; events: Array<StoredEvent> }> => {
    const last = await lastOf(stream)
    if (!last) return { seq: 0, events: [] }
    const cached = cache.get(stream)
    if (cached && cached.seq === last.seq) return cached
    const events: Array<StoredEvent> = cached ? [...cached.events] : []
    let from = cached ? cached.seq + 1 : 1
    for (;;) {
      if (from === last.seq) {
        events.push(...toStored(last))
        break
      }
      const m = await nextOf(stream, from)
      if (!m) break
      events.push(...toStored(m))
      if (m.seq >= last.seq) break
      from = m.seq + 1
    }
    const v = { seq: last.seq, events }
    remember(stream, v)
    return v
  }

  const append: EventStore["append"] = async (stream, expectedVersion, evs) => {
    let known = cache.get(stream) ?? (expectedVersion === 0 ? { seq: 0, events: [] } : await current(stream))
    for (let tries = 0; ; tries++) {
      if (known.events.length !== expectedVersion) {
        known = await current(stream)
        if (known.events.length !== expectedVersion)
          throw new WrongExpectedVersion({ stream, expected: expectedVersion, actual: known.events.length })
      }
      const version = expectedVersion + evs.length
      const h = natsHeaders()
      h.set(VERSION, String(version))
      try {
        const ack = await js.publish(subjectOf(stream), `[${evs.map(encode).join(",")}]`, {
          headers: h,
          msgID: `${tokenOf(stream)}:${version}`,
          expect: { lastSubjectSequence: known.seq }
        })
        if (ack.duplicate) {
          // A retry of an append whose ack was lost, or someone else's append of the same version: read to tell.
          cache.delete(stream)
          const now = await current(stream)
          const mine =
            now.events
              .slice(expectedVersion)
              .map((e) => encode(e.event))
              .join(",") === evs.map(encode).join(",")
          if (!mine) throw new WrongExpectedVersion({ stream, expected: expectedVersion, actual: now.events.length })
          return { version, position: ack.seq }
        }
        const added = evs.map((event, i): StoredEvent => ({ stream, version: expectedVersion + i + 1, position: ack.seq, event }))
        remember(stream, { seq: ack.seq, events: [...known.events, ...added] })
        return { version, position: ack.seq }
      } catch (e) {
        if (e instanceof WrongExpectedVersion) throw e
        if (isWrongLastSequence(e) && tries < 3) {
          cache.delete(stream)
          known = await current(stream)
          continue
        }
        if (isWrongLastSequence(e)) throw new WrongExpectedVersion({ stream, expected: expectedVersion, actual: -1 })
        throw unavailable("event store append failed", e)
      }
    }
  }

  const head = async (): Promise<number> => {
    try {
      return (await jsm.streams.info(name)).state.last_seq
    } catch (e) {
      throw unavailable("event store unavailable", e)
    }
  }

  /** Reads the global log from `after` through an ordered consumer, `limit` appends at most. */
  const readAll: EventStore["readAll"] = async (after, limit) => {
    // One append (a binary search's probe, a window's first or last event): a direct get, no consumer.
    if (limit === 1) {
      try {
        const m = await jsm.direct.getMessage(name, { seq: after + 1 })
        return m ? toStored(m) : []
      } catch (e) {
        if (isNoMessage(e)) return []
        throw unavailable("event store read failed", e)
      }
    }
    const last = await head()
    const want = Math.min(limit, last - after)
    if (want <= 0) return []
    const c = await js.consumers.get(name, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: after + 1 })
    const out: Array<StoredEvent> = []
    try {
      const it = await c.fetch({ max_messages: want, expires: 2000 })
      for await (const m of it) {
        out.push(...toStored({ subject: m.subject, seq: m.seq, header: m.headers, data: m.data } as unknown as StoredMsg))
        if (m.seq >= last || out.length >= limit) break
      }
    } finally {
      await c.delete().catch(() => {})
    }
    return out
  }

  /** An ordered consumer from `after + 1`, on the whole log or (`stream`) on one stream's subject only. */
  const follow = (after: number, onEvent: (e: StoredEvent) => void, stream?: string): (() => void) => {
    let stopped = false
    let stopConsumer: (() => void) | undefined
    void (async () => {
      // Made again until it is made (JetStream can be briefly without a leader); once consuming, the client's
      // ordered consumer recreates itself after a reconnect.
      for (let wait = 250; !stopped; wait = Math.min(5_000, wait * 2)) {
        try {
          const c = await js.consumers.get(name, {
            deliver_policy: DeliverPolicy.StartSequence,
            opt_start_seq: after + 1,
            ...(stream === undefined ? {} : { filter_subjects: subjectOf(stream) })
          })
          if (stopped) return void (await c.delete().catch(() => {}))
          const it = await c.consume()
          stopConsumer = () => {
            it.stop()
            void c.delete().catch(() => {})
          }
          for await (const m of it) {
            if (stopped) break
            for (const e of toStored({ subject: m.subject, seq: m.seq, header: m.headers, data: m.data } as unknown as StoredMsg))
              onEvent(e)
          }
          return
        } catch {
          await new Promise((r) => setTimeout(r, wait))
        }
      }
    })()
    return () => {
      stopped = true
      stopConsumer?.()
    }
  }

  // The whole log's live tail, one ordered consumer shared by every subscriber of this process (the operator view,
  // the followers): each would otherwise have the server deliver, and this node decode, every event of the cluster
  // again. A subscriber that starts behind the tail reads up to it first and holds the tail's events meanwhile.
  interface Subscriber {
    readonly after: number
    readonly onEvent: (e: StoredEvent) => void
    backlog: Array<StoredEvent> | undefined
  }
  interface Tail {
    last: number
    readonly subs: Set<Subscriber>
    stop: () => void
  }
  let tail = undefined as Tail | undefined
  const subscribeAll = (after: number, onEvent: (e: StoredEvent) => void): (() => void) => {
    const sub: Subscriber = { after, onEvent, backlog: undefined }
    let stopped = false
    if (!tail) {
      const t: Tail = { last: after, subs: new Set([sub]), stop: () => {} }
      tail = t
      t.stop = follow(after, (e) => {
        t.last = e.position
        for (const x of t.subs) {
          if (x.backlog) x.backlog.push(e)
          else if (e.position > x.after) x.onEvent(e)
        }
      })
    } else {
      const t = tail
      t.subs.add(sub)
      if (after < t.last) {
        sub.backlog = []
        const end = t.last
        void (async () => {
          let pos = after
          for (let failures = 0; pos < end && !stopped;) {
            let batch: ReadonlyArray<StoredEvent>
            try {
              batch = await readAll(pos, Math.min(1000, end - pos))
            } catch {
              await new Promise((r) => setTimeout(r, Math.min(5_000, 250 * 2 ** failures++)))
              continue
            }
            if (batch.length === 0) break
            for (const e of batch) if (e.position <= end && !stopped) onEvent(e)
            pos = batch.at(-1)!.position
          }
          const held = sub.backlog ?? []
          sub.backlog = undefined
          for (const e of held) if (e.position > end && !stopped) onEvent(e)
        })()
      }
    }
    return () => {
      stopped = true
      const t = tail
      if (!t || !t.subs.delete(sub)) return
      if (t.subs.size === 0) {
        t.stop()
        tail = undefined
      }
    }
  }

  /** A stream's appends after `after`, by direct or leader gets from there on (no cache: a reader's look at old streams). */
  const readFrom: NonNullable<EventStore["readFrom"]> = async (stream, after) => {
    const out: Array<StoredEvent> = []
    for (let from = after + 1; ;) {
      const m = await nextOf(stream, from)
      if (!m) break
      out.push(...toStored(m))
      from = m.seq + 1
    }
    return out
  }

  return {
    append,
    read: async (stream) => [...(await current(stream)).events],
    readFrom,
    readAll,
    readRange: (after, until) =>
      scanRange(o.nc, jsm, name, after, until, (subject, seq, m) =>
        toStored({ subject, seq, header: m.headers, data: m.data } as unknown as StoredMsg)
      ),
    subscribe: subscribeAll,
    subscribeStream: (stream, after, onEvent) => follow(after, onEvent, stream),
    head,
    close: async () => {
      tail?.stop()
      tail = undefined
      cache.clear()
    }
  }
}
