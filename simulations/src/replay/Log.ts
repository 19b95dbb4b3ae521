// Reading the global log for replay, through the EventStore port only (SQLite, JetStream or memory alike):
// batched scans with progress, and a binary search from a time to a log position. Never writes.
import type { Message } from "@missive/core"
import { EventStore, Snapshots } from "@missive/events"

export type Store = EventStore.EventStore
export type Stored = EventStore.StoredEvent

export interface ScanOptions {
  /** Start after this global position (default 0). */
  readonly after?: number
  /** Last position to read (default: the head when the scan starts). */
  readonly until?: number
  readonly batch?: number
  /**
   * Only these types are needed: a store with `readAllOf` (SQLite, memory) neither reads nor decodes the others; the
   * rest (JetStream, EventStoreDB) yield every event, so the caller still skips what it does not fold.
   */
  readonly types?: ReadonlyArray<Message.EventType>
  readonly onProgress?: (position: number, target: number) => void
}

/** Yields the log in batches, in global order. */
export async function* scan(store: Store, opts: ScanOptions = {}): AsyncGenerator<ReadonlyArray<Stored>> {
  const batch = opts.batch ?? 5000
  const target = opts.until ?? (await store.head())
  let position = opts.after ?? 0
  const { types } = opts
  if (types && store.readAllOf) {
    // Filtered batches may be short or empty: the positions looked at advance by the batch, not by what came back.
    while (position < target) {
      const span = Math.min(batch, target - position)
      const { events, through } = await store.readAllOf(position, span, types)
      if (through <= position) return
      position = through
      opts.onProgress?.(position, target)
      if (events.length > 0) yield events
    }
    return
  }
  if (store.readRange && target - position > batch) {
    for await (const events of store.readRange(position, target)) {
      position = events[events.length - 1]!.position
      opts.onProgress?.(position, target)
      yield events
    }
    return
  }
  while (position < target) {
    const events = await store.readAll(position, Math.min(batch, target - position))
    if (events.length === 0) return
    position = events[events.length - 1]!.position
    opts.onProgress?.(position, target)
    yield events
  }
}

/** The first position whose event time is at or after `at` (the log port's own search, events/src/EventStore.ts). */
export const positionAt = EventStore.positionAt

/** Margin for event times that are slightly out of log order (group commit, several nodes). */
export const SLACK_MS = 5 * 60_000

/**
 * The events of each stream (with the position of its first event, where a store with `readFrom` starts looking),
 * in the order given; up to 32 reads at once (a JetStream read is several round trips).
 */
export const readStreams = async (store: Store, streams: Iterable<readonly [string, number]>): Promise<Array<ReadonlyArray<Stored>>> => {
  const all = [...streams]
  const out: Array<ReadonlyArray<Stored>> = new Array(all.length)
  let next = 0
  const worker = async () => {
    while (next < all.length) {
      const i = next++
      const [stream, first] = all[i]!
      out[i] = store.readFrom ? await store.readFrom(stream, first - 1) : await store.read(stream)
    }
  }
  await Promise.all(Array.from({ length: Math.min(32, all.length) }, worker))
  return out
}

/** The open-set fold, one event: a message is open from its `MessageReceived` to its `MessageCompleted`. */
const track = (open: Map<string, number>, stream: string, type: Message.EventType, position: number): void => {
  if (type === "MessageReceived") open.set(stream, position)
  else if (type === "MessageCompleted") open.delete(stream)
}

/** Snapshots of the open set are taken at multiples of this many log positions (JetStream: appends). */
export const SNAPSHOT_EVERY = Snapshots.EVERY

/**
 * The streams of messages open (received, not completed) among the events up to position `until` with a time at or
 * before `t`, each with its `MessageReceived`'s position, without decoding the log before `until`: on the log's index (SQLite, memory), or from the nearest
 * snapshot (a store without an index, JetStream, given `snapshots`); undefined when there is neither.
 */
export const openStreams = async (
  store: Store,
  until: number,
  t = Number.POSITIVE_INFINITY,
  onProgress?: (position: number, target: number) => void,
  snapshots?: Snapshots.SnapshotStore
): Promise<Map<string, number> | undefined> => {
  if (!store.readIndex) return snapshots ? fromSnapshots(store, snapshots, until, t, onProgress) : undefined
  const open = new Map<string, number>()
  // Only arrivals and completions: the store filters (positions looked at go by 200,000 at a time).
  for (let position = 0; position < until;) {
    const span = Math.min(200_000, until - position)
    for (const e of await store.readIndex(position, span, ["MessageReceived", "MessageCompleted"])) {
      if (e.at > t || e.position > until) continue
      track(open, e.stream, e.type, e.position)
    }
    position += span
    onProgress?.(position, until)
  }
  return open
}

/**
 * Catches the snapshots up to the last multiple of `SNAPSHOT_EVERY` at or before `until` (folding the log from the
 * newest one, saving one at each multiple: the first run over a log pays for the runs after it), then folds from the
 * newest snapshot whose events all lie at or before `t` to `until`, skipping events after `t`.
 */
const fromSnapshots = async (
  store: Store,
  snapshots: Snapshots.SnapshotStore,
  until: number,
  t: number,
  onProgress?: (position: number, target: number) => void
): Promise<Map<string, number>> => {
  const every = snapshots.every ?? SNAPSHOT_EVERY
  const held = [...(await snapshots.list())].sort((a, b) => a.position - b.position)
  const target = Math.floor(until / every) * every
  const newest = held.filter((s) => s.position <= target).at(-1)
  if (!newest || newest.position < target) {
    const from = newest ? await snapshots.load(newest.position) : undefined
    const open = new Map(from?.open ?? [])
    const position = from?.position ?? 0
    let maxAt = from?.maxAt ?? 0
    // Through the segments' digests (arrivals and completions are among their types): a stretch already digested
    // is not decoded again, and one that is not gets its digests on the way.
    const saveAt = async (next: number) => {
      await snapshots.save({ position: next, maxAt, open: [...open] })
      held.push({ position: next, maxAt })
    }
    let next = (Math.floor(position / every) + 1) * every
    for await (const batch of digested(store, snapshots, { after: position, until: target, onProgress: (p) => onProgress?.(p, until) }))
      for (const { stream, event, position: p } of batch) {
        while (p > next) {
          await saveAt(next)
          next += every
        }
        track(open, stream, event.type, p)
        if (event.at > maxAt) maxAt = event.at
      }
    for (; next <= target; next += every) await saveAt(next)
  }
  held.sort((a, b) => a.position - b.position)
  const base = held.filter((s) => s.position <= until && s.maxAt <= t).at(-1)
  const start = base ? await snapshots.load(base.position) : undefined
  const open = new Map(start?.open ?? [])
  const from = start?.position ?? 0
  for await (const batch of digested(store, snapshots, { after: from, until, onProgress: (p) => onProgress?.(p, until) }))
    for (const { stream, event, position } of batch) if (event.at <= t) track(open, stream, event.type, position)
  return open
}

const DIGESTED: ReadonlySet<Message.EventType> = new Set(Snapshots.DIGESTED)
/** Segment digests loaded ahead of the one being folded. */
const PREFETCH = 16

/**
 * The events of the digested types (`Snapshots.DIGESTED`, what the report folds) with positions in (`after`,
 * `until`], in log order and in batches, without decoding the log where digests are held: each complete segment of
 * `every` positions comes from its digest; a segment without one (or with one that cannot be read) is read from the
 * log, and its digest saved for the next run; the positions after the last complete segment are read from the log.
 * The events are the same either way, so a fold over them gives what a fold over the log gives (the unit tests compare).
 */
export async function* digested(
  store: Store,
  snapshots: Snapshots.SnapshotStore,
  o: { readonly after: number; readonly until: number; readonly onProgress?: ((position: number, target: number) => void) | undefined }
): AsyncGenerator<ReadonlyArray<Snapshots.DigestedEvent>> {
  const { after, until } = o
  if (until <= after) return
  const every = snapshots.every ?? SNAPSHOT_EVERY
  const held = new Set(await snapshots.listDigests())
  const ends: Array<number> = []
  for (let p = (Math.floor(after / every) + 1) * every; p <= until; p += every) ends.push(p)
  const lastEnd = ends.at(-1) ?? after
  const fromLog = (events: ReadonlyArray<Stored>, from: number): Array<Snapshots.DigestedEvent> => {
    const out: Array<Snapshots.DigestedEvent> = []
    for (const e of events) if (e.position > from && DIGESTED.has(e.event.type)) out.push(e as Snapshots.DigestedEvent)
    return out
  }
  /** Reads segments `ends[i..j)` from the log in one scan, saving each one's digest; yields what is after `after`. */
  async function* readSegments(i: number, j: number): AsyncGenerator<ReadonlyArray<Snapshots.DigestedEvent>> {
    let k = i
    let segment: Array<Stored> = []
    const close = async () => {
      await snapshots.saveDigest(ends[k]!, Snapshots.encodeDigest(segment))
      const out = fromLog(segment, after)
      segment = []
      k++
      return out
    }
    for await (const batch of scan(store, { after: ends[i]! - every, until: ends[j - 1]!, types: Snapshots.DIGESTED })) {
      for (const e of batch) {
        while (e.position > ends[k]!) {
          const out = await close()
          if (out.length > 0) yield out
        }
        // Only what the digest keeps is held until the segment's end (a segment's other events are garbage at once).
        if (DIGESTED.has(e.event.type)) segment.push(e)
      }
      o.onProgress?.(Math.max(after, batch.at(-1)?.position ?? after), until)
    }
    while (k < j) {
      const out = await close()
      if (out.length > 0) yield out
    }
  }
  // Loaded ahead, decoded only when folded: a decoded segment is garbage soon after, and a young one is cheap.
  const loads = new Map<number, Promise<Uint8Array | undefined>>()
  const load = (i: number) =>
    loads.set(
      i,
      snapshots.loadDigest(ends[i]!).catch(() => undefined)
    )
  const decode = (d: Uint8Array | undefined) => {
    try {
      return d === undefined ? undefined : Snapshots.decodeDigest(d)
    } catch {
      return undefined
    }
  }
  for (let i = 0; i < ends.length;) {
    if (!held.has(ends[i]!)) {
      let j = i
      while (j < ends.length && !held.has(ends[j]!)) j++
      yield* readSegments(i, j)
      i = j
      continue
    }
    for (let k = i; k < Math.min(ends.length, i + PREFETCH); k++) if (held.has(ends[k]!) && !loads.has(k)) load(k)
    // A digest that cannot be loaded or read is read from the log instead: not a failure of the scan.
    const events = decode(await loads.get(i)!)
    loads.delete(i)
    if (events === undefined) yield* readSegments(i, i + 1)
    else {
      const out = events[0] && events[0].position > after ? events : events.filter((e) => e.position > after)
      o.onProgress?.(ends[i]!, until)
      if (out.length > 0) yield out
    }
    i++
  }
  for await (const batch of scan(store, { after: lastEnd, until, types: Snapshots.DIGESTED })) {
    const out = fromLog(batch, after)
    o.onProgress?.(batch.at(-1)?.position ?? lastEnd, until)
    if (out.length > 0) yield out
  }
}
