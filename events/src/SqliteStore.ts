// The embedded store: EventStore, BodyStore and Work in one SQLite database (better-sqlite3 12, WAL, synchronous=FULL).
// Writes are group-committed: every operation queued in the same turn of the event loop shares one transaction
// and one fsync, so a body, its MessageReceived event and its work entry commit together. Promises resolve
// only after the commit. Must not be opened by two processes at once (the node takes a lock file).
import Database from "better-sqlite3"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import type { BodyStore } from "./BodyStore.js"
import { digestOf } from "./BodyStore.js"
import { decodeTrusted, encode } from "./Codec.js"
import type { EventStore, StoredEvent } from "./EventStore.js"
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
}

export interface SqliteStore {
  readonly events: EventStore
  readonly bodies: BodyStore
  readonly work: Work
  /** Writes waiting for the next commit. */
  pending(): number
  close(): Promise<void>
}

interface Op {
  readonly run: () => unknown
  readonly resolve: (v: unknown) => void
  readonly reject: (e: unknown) => void
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  position INTEGER PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL,
  type TEXT NOT NULL, at INTEGER NOT NULL, data TEXT NOT NULL, UNIQUE (stream, version));
CREATE TABLE IF NOT EXISTS bodies (digest TEXT PRIMARY KEY, bytes BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS work (
  id TEXT PRIMARY KEY, due_at INTEGER NOT NULL, owner TEXT, lease_until INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS work_due ON work (due_at);
`

export const open = (options: SqliteOptions): SqliteStore => {
  if (options.path !== ":memory:" && !options.readonly) mkdirSync(dirname(options.path), { recursive: true })
  const db = new Database(options.path, { readonly: options.readonly ?? false, fileMustExist: options.readonly ?? false })
  db.pragma("busy_timeout = 5000")
  if (!options.readonly) {
    db.pragma("journal_mode = WAL")
    db.pragma(`synchronous = ${options.synchronous ?? "FULL"}`)
    db.exec(SCHEMA)
  }
  const maxPending = options.maxPending ?? 20_000
  const delay = options.groupCommitMs ?? 0

  const q = {
    streamVersion: db.prepare<[string], { v: number | null }>("SELECT max(version) AS v FROM events WHERE stream = ?"),
    insertEvent: db.prepare("INSERT INTO events (stream, version, type, at, data) VALUES (?, ?, ?, ?, ?)"),
    readStream: db.prepare<[string], { position: number; version: number; data: string }>("SELECT position, version, data FROM events WHERE stream = ? ORDER BY version"),
    readAll: db.prepare<[number, number], { position: number; stream: string; version: number; data: string }>("SELECT position, stream, version, data FROM events WHERE position > ? ORDER BY position LIMIT ?"),
    head: db.prepare<[], { p: number | null }>("SELECT max(position) AS p FROM events"),
    putBody: db.prepare("INSERT OR IGNORE INTO bodies (digest, bytes) VALUES (?, ?)"),
    getBody: db.prepare<[string], { bytes: Buffer }>("SELECT bytes FROM bodies WHERE digest = ?"),
    deleteBody: db.prepare("DELETE FROM bodies WHERE digest = ?"),
    schedule: db.prepare("INSERT INTO work (id, due_at, owner, lease_until) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET due_at = excluded.due_at, owner = excluded.owner, lease_until = excluded.lease_until"),
    complete: db.prepare("DELETE FROM work WHERE id = ?"),
    due: db.prepare<[number, number, number], { id: string; due_at: number }>("SELECT id, due_at FROM work WHERE due_at <= ? AND lease_until <= ? ORDER BY due_at LIMIT ?"),
    lease: db.prepare("UPDATE work SET owner = ?, lease_until = ? WHERE id = ?"),
    releaseAll: db.prepare("UPDATE work SET owner = NULL, lease_until = 0 WHERE owner = ?"),
    nextDue: db.prepare<[], { t: number | null }>("SELECT min(max(due_at, lease_until)) AS t FROM work"),
    count: db.prepare<[], { n: number }>("SELECT count(*) AS n FROM work"),
    list: db.prepare<[number], { id: string; due_at: number }>("SELECT id, due_at FROM work ORDER BY due_at LIMIT ?")
  }

  let queue: Array<Op> = []
  let scheduled = false
  let closed = false
  const subscribers = new Set<(e: StoredEvent) => void>()
  let committed: Array<StoredEvent> = []

  const flush = () => {
    scheduled = false
    const ops = queue
    queue = []
    if (ops.length === 0) return
    const results: Array<{ ok: boolean; value: unknown }> = []
    try {
      db.transaction(() => {
        for (const op of ops) {
          const mark = committed.length
          try {
            results.push({ ok: true, value: db.transaction(op.run)() })
          } catch (e) {
            committed.length = mark
            results.push({ ok: false, value: e })
          }
        }
      })()
    } catch (e) {
      committed = []
      const full = /SQLITE_FULL|disk is full/i.test(String(e))
      for (const op of ops) op.reject(new StoreUnavailable(`commit failed: ${String(e)}`, full))
      return
    }
    const published = committed
    committed = []
    ops.forEach((op, i) => {
      const r = results[i]!
      if (r.ok) op.resolve(r.value)
      else op.reject(r.value)
    })
    for (const e of published) for (const f of subscribers) f(e)
  }

  const enqueue = <T>(run: () => T): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      if (closed) return reject(new StoreUnavailable("store is closed"))
      if (queue.length >= maxPending) return reject(new StoreUnavailable(`store busy: ${queue.length} writes waiting`))
      queue.push({ run, resolve: resolve as (v: unknown) => void, reject })
      if (!scheduled) {
        scheduled = true
        if (delay > 0) setTimeout(flush, delay)
        else setImmediate(flush)
      }
    })

  const toStored = (stream: string, r: { position: number; version: number; data: string }): StoredEvent =>
    ({ stream, version: r.version, position: r.position, event: decodeTrusted(r.data) })

  const events: EventStore = {
    append: (stream, expectedVersion, evs) => enqueue(() => {
      const actual = q.streamVersion.get(stream)?.v ?? 0
      if (actual !== expectedVersion) throw new WrongExpectedVersion({ stream, expected: expectedVersion, actual })
      let version = actual
      let position = 0
      for (const event of evs) {
        version += 1
        const info = q.insertEvent.run(stream, version, event.type, event.at, encode(event))
        position = Number(info.lastInsertRowid)
        committed.push({ stream, version, position, event })
      }
      return { version, position }
    }),
    read: async (stream) => q.readStream.all(stream).map((r) => toStored(stream, r)),
    readAll: async (after, limit) => q.readAll.all(after, limit).map((r) => toStored(r.stream, r)),
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
    put: (bytes) => {
      const digest = digestOf(bytes)
      return enqueue(() => {
        q.putBody.run(digest, bytes)
        return digest
      })
    },
    get: async (digest) => {
      const row = q.getBody.get(digest)
      if (!row) throw new BodyNotFound(digest)
      return row.bytes
    },
    delete: (digest) => enqueue(() => void q.deleteBody.run(digest)),
    close: async () => {}
  }

  const work: Work = {
    schedule: (id, dueAt, lease) => enqueue(() => void q.schedule.run(id, dueAt, lease?.owner ?? null, lease?.until ?? 0)),
    complete: (id) => enqueue(() => void q.complete.run(id)),
    claim: (now, limit, owner, until) => enqueue(() => {
      const rows = q.due.all(now, now, limit)
      for (const r of rows) q.lease.run(owner, until, r.id)
      return rows.map((r): WorkItem => ({ id: r.id, dueAt: r.due_at }))
    }),
    releaseAll: (owner) => enqueue(() => void q.releaseAll.run(owner)),
    nextDue: async () => q.nextDue.get()?.t ?? undefined,
    count: async () => q.count.get()?.n ?? 0,
    list: async (limit) => q.list.all(limit).map((r) => ({ id: r.id, dueAt: r.due_at })),
    close: async () => {}
  }

  return {
    events, bodies, work,
    pending: () => queue.length,
    close: async () => {
      if (closed) return
      flush()
      closed = true
      db.close()
    }
  }
}
