import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { open, type SqliteOptions, type SqliteStore } from "../src/SqliteStore.js"
import { bodyStoreContract, eventStoreContract, workContract } from "./contracts.js"

const fixture =
  <T>(pick: (s: SqliteStore) => T, writer: SqliteOptions["writer"]) =>
  async () => {
    const dir = mkdtempSync(join(tmpdir(), "missive-sqlite-"))
    const path = join(dir, "store.db")
    let s = open({ path, writer })
    return {
      store: pick(s),
      reopen: async () => {
        await s.close()
        s = open({ path, writer })
        return pick(s)
      },
      dispose: async () => {
        await s.close()
        rmSync(dir, { recursive: true, force: true })
      }
    }
  }
for (const writer of ["worker", "inline"] as const) {
  eventStoreContract(
    `sqlite (${writer} writer)`,
    fixture((s) => s.events, writer)
  )
  bodyStoreContract(
    `sqlite (${writer} writer)`,
    fixture((s) => s.bodies, writer)
  )
  workContract(
    `sqlite (${writer} writer)`,
    fixture((s) => s.work, writer)
  )
}
