// The SQLite writer thread: owns the only write connection, commits each batch the main thread posts (one
// transaction, one fsync) and answers with per-operation results. The main thread keeps at most one batch in
// flight, so writes that arrive during a commit form the next group.
import Database from "better-sqlite3"
import { parentPort, workerData } from "node:worker_threads"
import { configure, prepareWriter } from "./SqliteWriter.mjs"

const db = new Database(workerData.path)
configure(db, workerData.synchronous)
const run = prepareWriter(db, workerData.segmentsDir, workerData.segmentBytes)

parentPort.on("message", (msg) => {
  if (msg.close) {
    run.close()
    db.close()
    parentPort.postMessage({ closed: true })
    return
  }
  try {
    parentPort.postMessage({ id: msg.id, results: run(msg.ops) })
  } catch (e) {
    parentPort.postMessage({ id: msg.id, failed: String(e?.message ?? e), full: e?.code === "SQLITE_FULL" || e?.code === "ENOSPC" })
  }
})
parentPort.postMessage({ ready: true })
