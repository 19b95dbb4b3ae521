// Checkpointed projections over the global log: a projection folds StoredEvents into a read model; the runner
// catches it up from its checkpoint (or from position 0 on rebuild) through the EventStore port only, and saves
// state and position together, so a crash between checkpoints replays events after the last one exactly once.
// Must not write to the event store; works on any adapter (SQLite, JetStream, memory). The replay benchmark's
// (bench/replay.bench.ts: rebuild cost of the queue and per-destination projections); no command uses it.
import Database from "better-sqlite3"
import { Message, Route } from "@missive/core"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { EventStore } from "@missive/events"

type StoredEvent = EventStore.StoredEvent
const idOf = EventStore.idOf

/** A read model: a pure fold over the global log. The state must survive a JSON round trip (checkpoints). */
export interface Projection<S> {
  readonly name: string
  /** Bump when `apply` changes meaning: a checkpoint of another version is discarded and the projection rebuilt. */
  readonly version: number
  readonly init: () => S
  /** May mutate and return `s` (the runner owns the state between checkpoints). */
  readonly apply: (s: S, e: StoredEvent) => S
  readonly toJson?: (s: S) => unknown
  readonly fromJson?: (j: unknown) => S
}

export interface Checkpoint {
  readonly position: number
  readonly version: number
  readonly state: unknown
}

/** Durable checkpoints, one per projection name. */
export interface CheckpointStore {
  load(name: string): Promise<Checkpoint | undefined>
  save(name: string, checkpoint: Checkpoint): Promise<void>
  reset(name: string): Promise<void>
  close(): Promise<void>
}

export const memoryCheckpoints = (): CheckpointStore & { readonly saves: () => number } => {
  const m = new Map<string, string>()
  let saves = 0
  return {
    load: async (name) => {
      const j = m.get(name)
      return j === undefined ? undefined : (JSON.parse(j) as Checkpoint)
    },
    save: async (name, c) => {
      saves += 1
      m.set(name, JSON.stringify(c))
    },
    reset: async (name) => void m.delete(name),
    close: async () => {},
    saves: () => saves
  }
}

/** Checkpoints in their own SQLite file (next to the data, e.g. `<data_dir>/projections.db`): the log stays read-only. */
export const sqliteCheckpoints = (path: string): CheckpointStore => {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true })
  const db = new Database(path)
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = FULL")
  db.exec(
    "CREATE TABLE IF NOT EXISTS checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL, version INTEGER NOT NULL, state TEXT NOT NULL) WITHOUT ROWID"
  )
  const get = db.prepare<[string], { position: number; version: number; state: string }>(
    "SELECT position, version, state FROM checkpoints WHERE name = ?"
  )
  const put = db.prepare(
    "INSERT INTO checkpoints (name, position, version, state) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET position = excluded.position, version = excluded.version, state = excluded.state"
  )
  const del = db.prepare("DELETE FROM checkpoints WHERE name = ?")
  return {
    load: async (name) => {
      const r = get.get(name)
      return r ? { position: r.position, version: r.version, state: JSON.parse(r.state) as unknown } : undefined
    },
    save: async (name, c) => void put.run(name, c.position, c.version, JSON.stringify(c.state)),
    reset: async (name) => void del.run(name),
    close: async () => void db.close()
  }
}

export interface RunOptions {
  /** Events read per `readAll` call. */
  readonly batch?: number
  /** Save a checkpoint after at least this many events (and always at the end). */
  readonly checkpointEvery?: number
  /** Stop at this global position (default: the head when the run starts). */
  readonly until?: number
  /** Called after every batch: (position reached, target position). */
  readonly onProgress?: (position: number, target: number) => void
  /** Test hook: called after each batch is applied, before any checkpoint; a throw here simulates a crash. */
  readonly afterBatch?: (position: number) => void
}

export interface RunResult<S> {
  readonly state: S
  readonly position: number
  /** Events applied by this run (not counting those already in the checkpoint). */
  readonly applied: number
}

/** Catches a projection up from its checkpoint to the head (or `until`), checkpointing as it goes. */
export const run = async <S>(
  store: EventStore.EventStore,
  p: Projection<S>,
  checkpoints: CheckpointStore,
  opts: RunOptions = {}
): Promise<RunResult<S>> => {
  const batch = opts.batch ?? 5000
  const every = opts.checkpointEvery ?? 50_000
  const saved = await checkpoints.load(p.name)
  const usable = saved !== undefined && saved.version === p.version
  let state: S = usable ? (p.fromJson ? p.fromJson(saved.state) : (saved.state as S)) : p.init()
  let position = usable ? saved.position : 0
  const target = opts.until ?? (await store.head())
  let applied = 0
  let sinceSave = 0
  const save = () => checkpoints.save(p.name, { position, version: p.version, state: p.toJson ? p.toJson(state) : state })
  while (position < target) {
    const events = await store.readAll(position, Math.min(batch, target - position))
    if (events.length === 0) break
    for (const e of events) state = p.apply(state, e)
    position = events[events.length - 1]!.position
    applied += events.length
    sinceSave += events.length
    opts.afterBatch?.(position)
    opts.onProgress?.(position, target)
    if (sinceSave >= every) {
      await save()
      sinceSave = 0
    }
  }
  if (sinceSave > 0 || !usable) await save()
  return { state, position, applied }
}

/** Forgets the checkpoint and folds the whole log from position 0 again. */
export const rebuild = async <S>(
  store: EventStore.EventStore,
  p: Projection<S>,
  checkpoints: CheckpointStore,
  opts: RunOptions = {}
): Promise<RunResult<S>> => {
  await checkpoints.reset(p.name)
  return run(store, p, checkpoints, opts)
}

// ---- projections ---------------------------------------------------------------------------------

/**
 * The queue: every message not yet completed, with its events so far. Folding is deferred (`queueStates`) until a
 * caller wants states: most messages complete, and a completed one is simply dropped, so a rebuild pays for decoding
 * the log and almost nothing for `evolve`.
 */
export const queue: Projection<Map<string, Array<Message.Event>>> = {
  name: "queue",
  version: 3,
  init: () => new Map(),
  // Keyed by stream name (what the log hands over; no string is cut per event); `queueStates` gives message ids.
  apply: (m, { stream, event }) => {
    if (event.type === "MessageCompleted") m.delete(stream)
    else {
      const list = m.get(stream)
      if (list) list.push(event)
      else if (event.type === "MessageReceived") m.set(stream, [event])
    }
    return m
  },
  toJson: (m) => [...m.entries()],
  fromJson: (j) => new Map(j as Array<[string, Array<Message.Event>]>)
}

/** The folded state of every open message in a `queue` projection. */
export const queueStates = (m: ReadonlyMap<string, ReadonlyArray<Message.Event>>): Map<string, Message.State> => {
  const out = new Map<string, Message.State>()
  for (const [stream, events] of m) {
    const s = Message.fold(events)
    if (s.status === "active") out.set(idOf(stream), s)
  }
  return out
}

export interface DestinationStats {
  messages: number
  attempts: number
  delivered: number
  deferred: number
  bounced: number
  expired: number
  /** Reply code → count, over every attempt outcome. */
  replies: Record<string, number>
}

export const emptyStats = (): DestinationStats => ({
  messages: 0,
  attempts: 0,
  delivered: 0,
  deferred: 0,
  bounced: 0,
  expired: 0,
  replies: {}
})

function statsOf(m: Record<string, DestinationStats>, d: string): DestinationStats {
  return (m[d] ??= emptyStats())
}

/** Counters per recipient domain over the whole log. */
export const destinations: Projection<Record<string, DestinationStats>> = {
  name: "destinations",
  version: 1,
  init: () => ({}),
  apply: (m, { event: e }) => {
    switch (e.type) {
      case "MessageReceived":
        for (const d of new Set(e.recipients.map(Route.domainOf))) statsOf(m, d).messages += 1
        break
      case "AttemptStarted": {
        const d = Route.domainOf(e.rcpts[0] ?? "")
        statsOf(m, d).attempts += 1
        break
      }
      case "AttemptSucceeded":
      case "AttemptDeferred":
      case "AttemptFailed": {
        const s = statsOf(m, Route.domainOf(e.rcpts[0] ?? ""))
        const k = String(e.reply.code)
        s.replies[k] = (s.replies[k] ?? 0) + e.rcpts.length
        if (e.type === "AttemptDeferred" && e.nextAttemptAt !== null) s.deferred += e.rcpts.length
        break
      }
      case "RecipientDelivered":
        statsOf(m, Route.domainOf(e.rcpt)).delivered += 1
        break
      case "RecipientBounced":
        statsOf(m, Route.domainOf(e.rcpt)).bounced += 1
        break
      case "RecipientExpired":
        statsOf(m, Route.domainOf(e.rcpt)).expired += 1
        break
      default:
        break
    }
    return m
  }
}
