// The EventStore port on EventStoreDB / KurrentDB (@eventstore/db-client). Each Missive stream is the ESDB stream
// `<prefix>-<stream>`; each Missive event is one ESDB JSON event (type = the event's type, data = its encoding), so a
// stream's version is its ESDB revision + 1 and an append of several events is one atomic ESDB append with
// `expectedRevision` (NO_STREAM for version 0): ESDB's own optimistic concurrency, no extra fence needed here.
//
// The port's global position is dense and 1-based (1, 2, 3 … over this prefix's events); ESDB's $all positions are
// sparse 64-bit log offsets shared with every other stream on the server. The adapter numbers the events of its
// prefix as it reads $all forwards and remembers, for every 256th event, its $all position, so that readAll,
// subscribe and head resume from the nearest checkpoint instead of the start. The cost: a process's first
// readAll/head scans $all from the start once (events of other prefixes and system events are skipped client
// side, as readAll has no server-side filter in the v6 client); later calls read only what is new. Numbering is
// stable because Missive never deletes or scavenges streams of its prefix. Must not decide anything.
import {
  END,
  EventStoreDBClient,
  FORWARDS,
  jsonEvent,
  NO_STREAM,
  START,
  StreamNotFoundError,
  WrongExpectedVersionError,
  type AllStreamResolvedEvent,
  type Position
} from "@eventstore/db-client"
import { decodeTrustedValue, encode } from "./Codec.js"
import type { EventStore, StoredEvent } from "./EventStore.js"
import { StoreUnavailable, WrongExpectedVersion } from "./StoreError.js"

export interface EventStoreDbOptions {
  /** A connection string, e.g. "esdb://127.0.0.1:2113?tls=false" (kurrentdb:// works for KurrentDB). */
  readonly url: string
  /** Stream-name prefix (letters, digits, _), so that several stores share one server (tests). */
  readonly prefix?: string
}

const CHECKPOINT_EVERY = 256
const unavailable = (what: string, e: unknown) => new StoreUnavailable(`${what}: ${String((e as Error)?.message ?? e)}`)

export const open = async (o: EventStoreDbOptions): Promise<EventStore> => {
  const prefix = (o.prefix ?? "missive").replace(/[^A-Za-z0-9_]/g, "_")
  const client = EventStoreDBClient.connectionString(o.url)
  const esdbName = (stream: string) => `${prefix}-${stream}`
  const streamOfName = (name: string) => (name.startsWith(`${prefix}-`) ? name.slice(prefix.length + 1) : undefined)

  /** checkpoints[k] = $all position of event number (k+1)·CHECKPOINT_EVERY of this prefix. */
  const checkpoints: Array<Position> = []
  /** Highest event number known and its $all position. */
  let known = { count: 0, at: undefined as Position | undefined }

  const toStored = (r: AllStreamResolvedEvent, position: number): StoredEvent | undefined => {
    const e = r.event
    if (!e || !e.isJson) return undefined
    const stream = streamOfName(e.streamId)
    if (stream === undefined) return undefined
    return { stream, version: Number(e.revision) + 1, position, event: decodeTrustedValue(e.data) }
  }
  const mine = (r: AllStreamResolvedEvent) => r.event !== undefined && streamOfName(r.event.streamId) !== undefined
  const same = (a: Position | undefined, b: Position | undefined) =>
    a !== undefined && b !== undefined && a.commit === b.commit && a.prepare === b.prepare
  const note = (n: number, p: Position | undefined) => {
    if (!p) return
    if (n % CHECKPOINT_EVERY === 0 && checkpoints.length === n / CHECKPOINT_EVERY - 1) checkpoints.push(p)
    if (n > known.count) known = { count: n, at: p }
  }
  /** The nearest known point at or before event number `after`: [its number, its $all position]. */
  const startFor = (after: number): [number, Position | undefined] => {
    if (known.at && known.count <= after) return [known.count, known.at]
    const k = Math.min(checkpoints.length, Math.floor(after / CHECKPOINT_EVERY))
    return k === 0 ? [0, undefined] : [k * CHECKPOINT_EVERY, checkpoints[k - 1]]
  }

  /**
   * Reads this prefix's events forwards from the nearest checkpoint, numbering them; calls `f` for each one past
   * `after` until it returns false or $all ends.
   */
  const scan = async (after: number, f: (e: StoredEvent) => boolean): Promise<void> => {
    let [n, from] = startFor(after)
    try {
      for await (const r of client.readAll({ fromPosition: from ?? START, direction: FORWARDS, resolveLinkTos: false })) {
        const p = r.event?.position
        if (from && same(p, from)) continue // fromPosition is inclusive: that event is already counted
        if (!mine(r)) continue
        n += 1
        note(n, p)
        if (n <= after) continue
        const s = toStored(r, n)
        if (s && !f(s)) break
      }
    } catch (e) {
      throw unavailable("event store read failed", e)
    }
  }

  const append: EventStore["append"] = async (stream, expectedVersion, evs) => {
    try {
      const r = await client.appendToStream(
        esdbName(stream),
        evs.map((e) => jsonEvent({ type: e.type, data: JSON.parse(encode(e)) })),
        {
          expectedRevision: expectedVersion === 0 ? NO_STREAM : BigInt(expectedVersion - 1)
        }
      )
      const version = Number(r.nextExpectedRevision) + 1
      // The global position of this append is only known by counting: read up to it (cheap when caught up).
      return { version, position: await head() }
    } catch (e) {
      if (e instanceof WrongExpectedVersionError) {
        const actual = typeof e.actualVersion === "bigint" ? Number(e.actualVersion) + 1 : 0
        throw new WrongExpectedVersion({ stream, expected: expectedVersion, actual })
      }
      throw unavailable("event store append failed", e)
    }
  }

  const read: EventStore["read"] = async (stream) => {
    const out: Array<StoredEvent> = []
    try {
      for await (const r of client.readStream(esdbName(stream), { fromRevision: START, direction: FORWARDS })) {
        const e = r.event
        if (!e || !e.isJson) continue
        // The stream read does not know the dense global position; 0 marks "not numbered" (views use version).
        out.push({ stream, version: Number(e.revision) + 1, position: 0, event: decodeTrustedValue(e.data) })
      }
    } catch (e) {
      if (e instanceof StreamNotFoundError) return []
      throw unavailable("event store read failed", e)
    }
    return out
  }

  const readAll: EventStore["readAll"] = async (after, limit) => {
    const out: Array<StoredEvent> = []
    if (limit <= 0) return out
    await scan(after, (e) => {
      out.push(e)
      return out.length < limit
    })
    return out
  }

  const head = async (): Promise<number> => {
    await scan(Number.MAX_SAFE_INTEGER, () => true)
    return known.count
  }

  const subscribe: EventStore["subscribe"] = (after, onEvent) => {
    let stopped = false
    let sub: { unsubscribe(): Promise<void> } | undefined
    void (async () => {
      // Catch up by reading (numbering as we go), then follow $all live from the last position seen.
      let n = after
      await scan(after, (e) => {
        if (!stopped) onEvent(e)
        n = e.position
        return !stopped
      })
      if (stopped) return
      n = Math.max(n, known.count)
      const s = client.subscribeToAll({ fromPosition: known.at ?? START, resolveLinkTos: false })
      sub = s
      if (stopped) return void (await s.unsubscribe())
      for await (const r of s) {
        if (stopped) break
        if (!mine(r)) continue
        if (known.at && same(r.event?.position, known.at)) continue
        n += 1
        note(n, r.event?.position)
        const e = toStored(r, n)
        if (e && n > after) onEvent(e)
      }
    })().catch(() => {})
    return () => {
      stopped = true
      void sub?.unsubscribe().catch(() => {})
    }
  }

  // Fail fast on a wrong URL or a server that is down: ask for the end of $all once.
  try {
    for await (const _ of client.readAll({ fromPosition: END, maxCount: 1 })) break
  } catch (e) {
    await client.dispose().catch(() => {})
    throw unavailable(`EventStoreDB at ${o.url} unavailable`, e)
  }

  return { append, read, readAll, subscribe, head, close: () => client.dispose() }
}
