// The write side of the SQLite store, in plain JavaScript so a worker thread can load it without a TS loader.
// Runs one batch of write operations in one transaction (one fsync); each operation in its own savepoint, so a
// failed one (a version conflict) leaves the others intact. Must not be used for reads by the node.

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS events (
  position INTEGER PRIMARY KEY, stream TEXT NOT NULL, version INTEGER NOT NULL,
  type TEXT NOT NULL, at INTEGER NOT NULL, data TEXT NOT NULL, UNIQUE (stream, version));
CREATE TABLE IF NOT EXISTS bodies (digest TEXT PRIMARY KEY, bytes BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS work (
  id TEXT PRIMARY KEY, due_at INTEGER NOT NULL, owner TEXT, lease_until INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS work_due ON work (due_at);
`

export const configure = (db, synchronous) => {
  db.pragma("busy_timeout = 5000")
  db.pragma("journal_mode = WAL")
  db.pragma(`synchronous = ${synchronous}`)
  db.exec(SCHEMA)
}

export const prepareWriter = (db) => {
  const q = {
    streamVersion: db.prepare("SELECT max(version) AS v FROM events WHERE stream = ?"),
    insertEvent: db.prepare("INSERT INTO events (stream, version, type, at, data) VALUES (?, ?, ?, ?, ?)"),
    putBody: db.prepare("INSERT OR IGNORE INTO bodies (digest, bytes) VALUES (?, ?)"),
    deleteBody: db.prepare("DELETE FROM bodies WHERE digest = ?"),
    schedule: db.prepare(
      "INSERT INTO work (id, due_at, owner, lease_until) VALUES (?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET due_at = excluded.due_at, owner = excluded.owner, lease_until = excluded.lease_until"
    ),
    complete: db.prepare("DELETE FROM work WHERE id = ?"),
    due: db.prepare("SELECT id, due_at FROM work WHERE due_at <= ? AND lease_until <= ? ORDER BY due_at LIMIT ?"),
    lease: db.prepare("UPDATE work SET owner = ?, lease_until = ? WHERE id = ?"),
    releaseAll: db.prepare("UPDATE work SET owner = NULL, lease_until = 0 WHERE owner = ?")
  }
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
      case "put":
        q.putBody.run(op.digest, op.bytes)
        return op.digest
      case "del":
        q.deleteBody.run(op.digest)
        return undefined
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
  const savepoint = (op) => db.transaction(() => one(op))()
  /** Runs a batch; returns one { ok, value } or { ok: false, error } per op, or throws when the commit fails. */
  return (ops) => {
    const results = []
    db.transaction(() => {
      for (const op of ops) {
        try {
          results.push({ ok: true, value: savepoint(op) })
        } catch (e) {
          results.push({ ok: false, error: { message: String(e?.message ?? e), conflict: e?.conflict } })
        }
      }
    })()
    return results
  }
}
