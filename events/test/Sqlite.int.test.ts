import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { open, type SqliteStore } from "../src/SqliteStore.js"
import { bodyStoreContract, eventStoreContract, workContract } from "./contracts.js"

const fixture = <T>(pick: (s: SqliteStore) => T) => async () => {
  const dir = mkdtempSync(join(tmpdir(), "missive-sqlite-"))
  const path = join(dir, "store.db")
  let s = open({ path })
  return {
    store: pick(s),
    reopen: async () => { await s.close(); s = open({ path }); return pick(s) },
    dispose: async () => { await s.close(); rmSync(dir, { recursive: true, force: true }) }
  }
}
eventStoreContract("sqlite", fixture((s) => s.events))
bodyStoreContract("sqlite", fixture((s) => s.bodies))
workContract("sqlite", fixture((s) => s.work))
