// The embedded store: EventStore, BodyStore and Work in one SQLite database (better-sqlite3 12, WAL, synchronous=FULL),
// the bodies themselves in segment files beside it (`bodies/`, written once and synced before the commit that refers
// to them). Writes are group-committed: every write queued while the previous commit runs shares the next transaction
// and its one fsync, so a body, its MessageReceived event and its work entry (queued in one turn) commit together. By default
// the commits run on a writer thread, so an fsync never blocks SMTP; reads use the calling thread's own connection.
// Promises resolve only after the commit. Must not be opened for writing by two processes at once (the node locks).
import Database from "better-sqlite3"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { Worker } from "node:worker_threads"
import type { BodyStore } from "./BodyStore.js"
import { digestOf } from "./BodyStore.js"
import { decodeTrusted, encode } from "./Codec.js"
import type { EventStore, IndexEntry, StoredEvent } from "./EventStore.js"
import { readAt, segmentsDirOf } from "./internal/BodySegments.mjs"
import { configure, prepareWriter, type WriteOp, type WriteResult } from "./internal/SqliteWriter.mjs"
import { BodyNotFound, StoreUnavailable, WrongExpectedVersion } from "./StoreError.js"
import type { Work, WorkItem } from "./Work.js"

export interface SqliteOptions {
  readonly path: string
  /** Extra wait before a commit, ms, to gather more writes into one fsync (0 = next turn of the event loop). */
  readonly groupCommitMs?: number
  /** Above this many queued writes, new writes fail with StoreUnavailable (ingress answers 451). */
  readonly maxPending?: number
  /** "FULL" is the durability contract; "NORMAL" only for benchmarks that say so. */
  readonly synchronous?: "FULL" | "NORMAL" | "OFF"
  /** Open for reading only (the CLI, next to a running node); writes fail. */
  readonly readonly?: boolean
  /** "worker" (default): commits on a writer thread; "inline": on the calling thread. */
  readonly writer?: "worker" | "inline"
  /** Size at which a body segment is sealed and the next begun (default 16 MiB; tests make it small). */
  readonly segmentBytes?: number
}

export interface SqliteStore {
  readonly events: EventStore
  readonly bodies: BodyStore
  readonly work: Work
  /** Writes waiting for the next commit. */
  pending(): number
  /** Observes each commit: its duration (ms, fsync included) and how many writes it carried; returns the stop. */
  onCommit?(f: (ms: number, writes: number) => void): () => void
  close(): Promise<void>
}

interface Pending {
  readonly op: WriteOp
  readonly resolve: (v: unknown) => void
  readonly reject: (e: unknown) => void
  /** For appends: the events, published to subscribers once committed. */
  readonly events?: ReadonlyArray<StoredEvent["event"]>
}

type Committer = (ops: ReadonlyArray<WriteOp>) => Promise<Array<WriteResult>>

/** The disk (or the database's size limit) is full: better-sqlite3's SQLite result code, or a body segment's write. */
const isDiskFull = (e: unknown): boolean => ["SQLITE_FULL", "ENOSPC"].includes(String((e as { code?: unknown })?.code))

interface WriterOptions {
  readonly path: string
  readonly synchronous: string
  readonly segmentsDir: string | undefined
  readonly segmentBytes: number | undefined
}

const inlineCommitter = (o: WriterOptions): { commit: Committer; close: () => Promise<void> } => {
  const db = new Database(o.path)
  configure(db, o.synchronous)
  const run = prepareWriter(db, o.segmentsDir, o.segmentBytes)
  return {
    commit: async (ops) => {
      try {
        return run(ops)
      } catch (e) {
        throw new StoreUnavailable(`commit failed: ${String(e)}`, isDiskFull(e))
      }
    },
    close: async () => {
      run.close()
      db.close()
    }
  }
}

const workerCommitter = (o: WriterOptions): { commit: Committer; close: () => Promise<void> } => {
  const worker = new Worker(new URL("./internal/SqliteWorker.mjs", import.meta.url), { workerData: o })
  const waiting = new Map<number, { resolve: (r: Array<WriteResult>) => void; reject: (e: unknown) => void }>()
  let nextId = 1
  let dead: Error | undefined
  let closed: (() => void) | undefined
  worker.on("message", (m: { id?: number; results?: Array<WriteResult>; failed?: string; full?: boolean; closed?: boolean }) => {
    if (m.closed) return closed?.()
    if (m.id === undefined) return
    const w = waiting.get(m.id)
    waiting.delete(m.id)
    if (!w) return
    if (m.results) w.resolve(m.results)
    else w.reject(new StoreUnavailable(`commit failed: ${m.failed}`, m.full ?? false))
  })
  const fail = (e: Error) => {
    dead = e
    for (const w of waiting.values()) w.reject(new StoreUnavailable(`store writer failed: ${e.message}`))
    waiting.clear()
    closed?.()
  }
  worker.on("error", fail)
  worker.on("exit", (code) => {
    if (code !== 0) fail(new Error(`writer thread exited with code ${code}`))
    else closed?.()
  })
  return {
    commit: (ops) =>
      new Promise((resolve, reject) => {
        if (dead) return reject(new StoreUnavailable(`store writer failed: ${dead.message}`))
        const id = nextId++
        waiting.set(id, { resolve, reject })
        worker.postMessage({ id, ops })
      }),
    close: () =>
      new Promise<void>((resolve) => {
        if (dead) return resolve()
        closed = resolve
        worker.postMessage({ close: true })
      })
        .then(() => worker.terminate())
        .then(() => undefined)
  }
}

export const open = (options: SqliteOptions): SqliteStore => {
  const readonly = options.readonly ?? false
  if (options.path !== ":memory:" && !readonly) mkdirSync(dirname(options.path), { recursive: true })
  const synchronous = options.synchronous ?? "FULL"
  // The schema exists before any reader or the writer thread starts.
  if (!readonly) {
    const setup = new Database(options.path)
    configure(setup, synchronous)
    setup.close()
  }
  const db = new Database(options.path, { readonly, fileMustExist: readonly })
  db.pragma("busy_timeout = 5000")
  // Bodies live in segment files beside the database (written once, see internal/BodySegments.mjs); an in-memory
  // database keeps them in its table.
  const segmentsDir =
    options.path === ":memory:" || !db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'body_refs'").get()
      ? undefined
      : segmentsDirOf(options.path)
  const writerOptions = { path: options.path, synchronous, segmentsDir, segmentBytes: options.segmentBytes }
  const writer = readonly
    ? undefined
    : (options.writer ?? "worker") === "worker" && segmentsDir !== undefined
      ? workerCommitter(writerOptions)
      : inlineCommitter(writerOptions)
  const maxPending = options.maxPending ?? 20_000
  const delay = options.groupCommitMs ?? 0

  const q = {
    readStream: db.prepare<[string], { position: number; version: number; data: string }>(
      "SELECT position, version, data FROM events WHERE stream = ? ORDER BY version"
    ),
    readAll: db.prepare<[number, number], { position: number; stream: string; version: number; data: string }>(
      "SELECT position, stream, version, data FROM events WHERE position > ? ORDER BY position LIMIT ?"
    ),
    // The replay read path: rows as arrays (no per-row object), [position, stream, version, data].
    readAllRaw: db
      .prepare<[number, number], [number, string, number, string]>(
        "SELECT position, stream, version, data FROM events WHERE position > ? ORDER BY position LIMIT ?"
      )
      .raw(true),
    // Followers' read: every row looked at, the body only of the wanted types (one statement: one snapshot, so
    // `through` never passes a row it did not see).
    readAllOf: db
      .prepare<[string, number, number], [number, string, number, string | null]>(
        "SELECT position, stream, version, CASE WHEN type IN (SELECT value FROM json_each(?)) THEN data END " +
          "FROM events WHERE position > ? ORDER BY position LIMIT ?"
      )
      .raw(true),
    // The log's index without the event bodies (no JSON to parse): [position, stream, type, at].
    readIndex: db
      .prepare<[number, number], [number, string, IndexEntry["type"], number]>(
        "SELECT position, stream, type, at FROM events WHERE position > ? ORDER BY position LIMIT ?"
      )
      .raw(true),
    readIndexOf: db
      .prepare<[number, number, string], [number, string, IndexEntry["type"], number]>(
        "SELECT position, stream, type, at FROM events WHERE position > ? AND position <= ? " +
          "AND type IN (SELECT value FROM json_each(?)) ORDER BY position"
      )
      .raw(true),
    head: db.prepare<[], { p: number | null }>("SELECT max(position) AS p FROM events"),
    getRef: db.prepare<[string], { segment: number; offset: number; length: number }>(
      "SELECT segment, offset, length FROM body_refs WHERE digest = ?"
    ),
    // bodies stored before segments (and an in-memory database's)
    getBody: db.prepare<[string], { bytes: Buffer }>("SELECT bytes FROM bodies WHERE digest = ?"),
    // Walks the due-time index from the front and stops at the first unleased row: leased rows (messages being
    // driven) are few, so this stays cheap with a million deferred messages. Lapsed leases are found by claim().
    nextDue: db.prepare<[], { t: number | null }>("SELECT due_at AS t FROM work WHERE lease_until = 0 ORDER BY due_at LIMIT 1"),
    count: db.prepare<[], { n: number }>("SELECT count(*) AS n FROM work"),
    list: db.prepare<[number], { id: string; due_at: number }>("SELECT id, due_at FROM work ORDER BY due_at LIMIT ?")
  }

  let queue: Array<Pending> = []
  let scheduled = false
  let inFlight: Promise<void> | undefined
  let closed = false
  const subscribers = new Set<(e: StoredEvent) => void>()
  const commitObservers = new Set<(ms: number, writes: number) => void>()

  const settle = (batch: ReadonlyArray<Pending>, results: ReadonlyArray<WriteResult>) => {
    const published: Array<StoredEvent> = []
    batch.forEach((p, i) => {
      const r = results[i]!
      if (!r.ok) {
        const c = r.error.conflict
        return p.reject(c ? new WrongExpectedVersion(c) : new StoreUnavailable(r.error.message))
      }
      if (p.op.k === "append" && p.events) {
        const { version, position } = r.value as { version: number; position: number }
        const n = p.events.length
        p.events.forEach((event, j) =>
          published.push({
            stream: p.op.k === "append" ? p.op.stream : "",
            version: version - n + 1 + j,
            position: position - n + 1 + j,
            event
          })
        )
      }
      p.resolve(r.value)
    })
    for (const e of published) for (const f of subscribers) f(e)
  }

  const flush = () => {
    scheduled = false
    if (inFlight || queue.length === 0 || !writer) return
    const batch = queue
    queue = []
    // A measurement for the metrics only (performance.now(), monotonic); nothing is decided on it.
    const began = performance.now()
    inFlight = writer
      .commit(batch.map((p) => p.op))
      .then(
        (results) => {
          const ms = performance.now() - began
          for (const f of commitObservers) f(ms, batch.length)
          settle(batch, results)
        },
        (e) => {
          for (const p of batch) p.reject(e instanceof StoreUnavailable ? e : new StoreUnavailable(String(e)))
        }
      )
      .finally(() => {
        inFlight = undefined
        if (queue.length > 0) schedule()
      })
  }

  const schedule = () => {
    if (scheduled) return
    scheduled = true
    if (delay > 0) setTimeout(flush, delay)
    else setImmediate(flush)
  }

  const enqueue = <T>(op: WriteOp, events?: ReadonlyArray<StoredEvent["event"]>): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (closed || !writer) return reject(new StoreUnavailable(readonly ? "store is open read-only" : "store is closed"))
      if (queue.length >= maxPending) return reject(new StoreUnavailable(`store busy: ${queue.length} writes waiting`))
      queue.push({ op, resolve: resolve as (v: unknown) => void, reject, events })
      if (!inFlight) schedule()
    })

  const toStored = (stream: string, r: { position: number; version: number; data: string }): StoredEvent => ({
    stream,
    version: r.version,
    position: r.position,
    event: decodeTrusted(r.data)
  })

  const events: EventStore = {
    append: (stream, expected, evs) =>
      enqueue(
        {
          k: "append",
          stream,
          expected,
          data: evs.map(encode),
          types: evs.map((e) => e.type),
          ats: evs.map((e) => e.at)
        },
        evs
      ),
    read: async (stream) => q.readStream.all(stream).map((r) => toStored(stream, r)),
    readAll: async (after, limit) => {
      const rows = q.readAllRaw.all(after, limit)
      const out = new Array<StoredEvent>(rows.length)
      for (let i = 0; i < rows.length; i++) {
        const r = rows[i]!
        out[i] = { stream: r[1], version: r[2], position: r[0], event: decodeTrusted(r[3]) }
      }
      return out
    },
    readAllOf: async (after, limit, types) => {
      const rows = q.readAllOf.all(JSON.stringify(types), after, limit)
      const events: Array<StoredEvent> = []
      for (const r of rows) if (r[3] !== null) events.push({ stream: r[1], version: r[2], position: r[0], event: decodeTrusted(r[3]) })
      return { events, through: rows.at(-1)?.[0] ?? after }
    },
    readIndex: async (after, limit, types) => {
      const rows = types ? q.readIndexOf.all(after, after + limit, JSON.stringify(types)) : q.readIndex.all(after, limit)
      const out = new Array<IndexEntry>(rows.length)
      for (let i = 0; i < rows.length; i++) {
        const r = rows[i]!
        out[i] = { position: r[0], stream: r[1], type: r[2], at: r[3] }
      }
      return out
    },
    subscribe: (after, onEvent) => {
      let from = after
      for (;;) {
        const batch = q.readAll.all(from, 1000)
        for (const r of batch) onEvent(toStored(r.stream, r))
        if (batch.length < 1000) break
        from = batch[batch.length - 1]!.position
      }
      subscribers.add(onEvent)
      return () => void subscribers.delete(onEvent)
    },
    head: async () => q.head.get()?.p ?? 0,
    close: async () => {}
  }

  const bodies: BodyStore = {
    put: (bytes, digest) => enqueue({ k: "put", digest: digest ?? digestOf(bytes), bytes }),
    get: async (digest) => {
      const ref = segmentsDir === undefined ? undefined : q.getRef.get(digest)
      const bytes = ref ? readAt(segmentsDir!, ref.segment, ref.offset, ref.length) : q.getBody.get(digest)?.bytes
      if (!bytes) throw new BodyNotFound(digest)
      return bytes
    },
    delete: (digest) => enqueue({ k: "del", digest }),
    close: async () => {}
  }

  const work: Work = {
    schedule: (id, due, lease) => enqueue({ k: "sched", id, due, owner: lease?.owner ?? null, until: lease?.until ?? 0 }),
    complete: (id) => enqueue({ k: "done", id }),
    claim: (now, limit, owner, until) => enqueue<ReadonlyArray<WorkItem>>({ k: "claim", now, limit, owner, until }),
    releaseAll: (owner) => enqueue({ k: "release", owner }),
    nextDue: async () => q.nextDue.get()?.t ?? undefined,
    count: async () => q.count.get()?.n ?? 0,
    list: async (limit) => q.list.all(limit).map((r) => ({ id: r.id, dueAt: r.due_at })),
    close: async () => {}
  }

  return {
    events,
    bodies,
    work,
    pending: () => queue.length,
    onCommit: (f) => {
      commitObservers.add(f)
      return () => void commitObservers.delete(f)
    },
    close: async () => {
      if (closed) return
      // Commit what is queued, then stop.
      while (inFlight || queue.length > 0) {
        if (!inFlight) flush()
        await inFlight
      }
      closed = true
      await writer?.close()
      db.close()
    }
  }
}
