// The write side of the SQLite store, in plain JavaScript so a worker thread can load it without a TS loader.
// Runs one batch of write operations in one transaction (one fsync); each operation in its own savepoint, so a
// failed one (a version conflict) leaves the others intact. Bodies go to segment files (BodySegments.mjs), appended
// and synced before the transaction that records where they lie commits; a database without a directory (":memory:")
// keeps them in the table `bodies`, which older databases may still hold rows of. Must not be used for reads by the node.
import { openWriter } from "./BodySegments.mjs"

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  position INTEGER PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL,
  type TEXT NOT NULL, at INTEGER NOT NULL, data TEXT NOT NULL, UNIQUE (stream, version));
CREATE TABLE IF NOT EXISTS bodies (digest TEXT PRIMARY KEY, bytes BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS body_refs (
  digest TEXT PRIMARY KEY, segment INTEGER NOT NULL, offset INTEGER NOT NULL, length INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS work (
  id TEXT PRIMARY KEY, due_at INTEGER NOT NULL, owner TEXT, lease_until INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS work_due ON work (due_at);
`

/**
 * Pages of 1 KiB (a new database's; an existing one keeps its own): a commit rewrites in the WAL every page it touched,
 * mostly the tails of the log, its index and the work table, so smaller pages write fewer bytes per commit (the relay
 * benchmark: about 16 → 13 KB written per 4 KB message). The WAL is checkpointed at about 4 MiB whatever the page size.
 */
export const PAGE_BYTES = 1024
const CHECKPOINT_BYTES = 4 * 1024 * 1024

export const configure = (db, synchronous) => {
  db.pragma("busy_timeout = 5000")
  db.pragma(`page_size = ${PAGE_BYTES}`)
  db.pragma("journal_mode = WAL")
  db.pragma(`synchronous = ${synchronous}`)
  db.pragma(`wal_autocheckpoint = ${Math.round(CHECKPOINT_BYTES / db.pragma("page_size", { simple: true }))}`)
  db.exec(SCHEMA)
}

/** `segmentsDir`: where body segments go; undefined keeps bodies in the table `bodies`. */
export const prepareWriter = (db, segmentsDir, segmentBytes) => {
  const q = {
    streamVersion: db.prepare("SELECT max(version) AS v FROM events WHERE stream = ?"),
    insertEvent: db.prepare("INSERT INTO events (stream, version, type, at, data) VALUES (?, ?, ?, ?, ?)"),
    putBody: db.prepare("INSERT OR IGNORE INTO bodies (digest, bytes) VALUES (?, ?)"),
    deleteBody: db.prepare("DELETE FROM bodies WHERE digest = ?"),
    hasRef: db.prepare("SELECT 1 FROM body_refs WHERE digest = ?").pluck(),
    getRef: db.prepare("SELECT segment, length FROM body_refs WHERE digest = ?"),
    putRef: db.prepare("INSERT OR IGNORE INTO body_refs (digest, segment, offset, length) VALUES (?, ?, ?, ?)"),
    deleteRef: db.prepare("DELETE FROM body_refs WHERE digest = ?"),
    refsOf: db.prepare("SELECT digest, offset, length FROM body_refs WHERE segment = ?"),
    moveRef: db.prepare("UPDATE body_refs SET segment = ?, offset = ? WHERE digest = ?"),
    schedule: db.prepare(
      "INSERT INTO work (id, due_at, owner, lease_until) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET due_at = excluded.due_at, owner = excluded.owner, lease_until = excluded.lease_until"
    ),
    complete: db.prepare("DELETE FROM work WHERE id = ?"),
    due: db.prepare("SELECT id, due_at FROM work WHERE due_at <= ? AND lease_until <= ? ORDER BY due_at LIMIT ?"),
    lease: db.prepare("UPDATE work SET owner = ?, lease_until = ? WHERE id = ?"),
    releaseAll: db.prepare("UPDATE work SET owner = NULL, lease_until = 0 WHERE owner = ?")
  }
  const segments =
    segmentsDir === undefined
      ? undefined
      : openWriter(
          segmentsDir,
          db.prepare("SELECT segment, count(*), sum(length) FROM body_refs GROUP BY segment").raw(true).all(),
          segmentBytes
        )
  /** The batch's bodies, appended before its transaction: digest → where it lies. */
  let placed = new Map()
  /** The batch's changes to the segments' live bodies, [segment, ±1, length], applied once it has committed. */
  let deltas = []
  const one = (op) => {
    switch (op.k) {
      case "append": {
        const actual = q.streamVersion.get(op.stream)?.v ?? 0
        if (actual !== op.expected) {
          const e = new Error(`stream ${op.stream}: expected version ${op.expected}, found ${actual}`)
          e.conflict = { stream: op.stream, expected: op.expected, actual }
          throw e
        }
        let version = actual
        let position = 0
        for (let i = 0; i < op.data.length; i++) {
          version += 1
          position = Number(q.insertEvent.run(op.stream, version, op.types[i], op.ats[i], op.data[i]).lastInsertRowid)
        }
        return { version, position }
      }
      case "put": {
        const at = placed.get(op.digest)
        if (at === undefined) {
          if (!segments) q.putBody.run(op.digest, op.bytes)
        } else if (q.putRef.run(op.digest, at.segment, at.offset, at.length).changes > 0) deltas.push([at.segment, 1, at.length])
        return op.digest
      }
      case "del": {
        const ref = q.getRef.get(op.digest)
        if (ref) {
          q.deleteRef.run(op.digest)
          deltas.push([ref.segment, -1, ref.length])
        }
        q.deleteBody.run(op.digest)
        return undefined
      }
      case "sched":
        q.schedule.run(op.id, op.due, op.owner, op.until)
        return undefined
      case "done":
        q.complete.run(op.id)
        return undefined
      case "claim": {
        const rows = q.due.all(op.now, op.now, op.limit)
        for (const r of rows) q.lease.run(op.owner, op.until, r.id)
        return rows.map((r) => ({ id: r.id, dueAt: r.due_at }))
      }
      case "release":
        q.releaseAll.run(op.owner)
        return undefined
      default:
        throw new Error(`unknown store operation ${op.k}`)
    }
  }
  const savepoint = (op) => {
    const mark = deltas.length
    try {
      return db.transaction(() => one(op))()
    } catch (e) {
      deltas.length = mark // rolled back with its savepoint
      throw e
    }
  }
  /** Copies the live bodies of a mostly freed segment forward, in a commit of its own; the segment is then removed. */
  const compact = (segment) => {
    const moved = []
    for (const r of q.refsOf.all(segment)) {
      const bytes = segments.read(segment, r.offset, r.length)
      if (bytes) moved.push({ digest: r.digest, length: r.length, to: segments.append(bytes) })
    }
    segments.sync()
    db.transaction(() => {
      for (const m of moved) q.moveRef.run(m.to.segment, m.to.offset, m.digest)
    })()
    segments.settle(
      moved.flatMap((m) => [
        [segment, -1, m.length],
        [m.to.segment, 1, m.length]
      ])
    )
  }
  /** Runs a batch; returns one { ok, value } or { ok: false, error } per op, or throws when the commit fails. */
  const run = (ops) => {
    const results = []
    placed = new Map()
    deltas = []
    if (segments) {
      const deleted = new Set()
      for (const op of ops)
        if (op.k === "del") deleted.add(op.digest)
        else if (op.k === "put" && !placed.has(op.digest) && (deleted.has(op.digest) || !q.hasRef.get(op.digest)))
          placed.set(op.digest, segments.append(op.bytes))
      // the bodies are on the disk before the rows that refer to them (and the events that name them) commit
      segments.sync()
    }
    db.transaction(() => {
      for (const op of ops) {
        try {
          results.push({ ok: true, value: savepoint(op) })
        } catch (e) {
          results.push({ ok: false, error: { message: String(e?.message ?? e), conflict: e?.conflict } })
        }
      }
    })()
    if (segments) {
      segments.settle(deltas)
      const sparse = segments.sparse()
      try {
        if (sparse !== undefined) compact(sparse)
      } catch {
        // the batch stands; the segment is tried again after the next one
      }
    }
    return results
  }
  run.close = () => segments?.close()
  return run
}
