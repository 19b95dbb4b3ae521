// The EventStoreDB / KurrentDB adapter against the same EventStore contract as memory, SQLite and JetStream, when a
// server is given: MISSIVE_ESDB_URL="esdb://127.0.0.1:2113?tls=false". Each fixture gets its own stream prefix, so
// the tests share one server. Without the variable the suite is skipped visibly (no EventStoreDB can be installed
// here: it is not in Debian and the machine has no network beyond npm and Debian).
import { describe, it } from "vitest"
import * as EventStoreDb from "../src/EventStoreDb.js"
import { eventStoreContract } from "./contracts.js"

const url = process.env["MISSIVE_ESDB_URL"]

if (url) {
  const run = `t${Date.now().toString(36)}`
  let n = 0
  eventStoreContract("eventstoredb", async () => {
    const prefix = `${run}_${++n}`
    let s = await EventStoreDb.open({ url, prefix })
    return {
      store: s,
      reopen: async () => {
        await s.close()
        s = await EventStoreDb.open({ url, prefix })
        return s
      },
      dispose: () => s.close()
    }
  })
} else {
  describe("EventStore contract: eventstoredb", () => {
    it.skip("skipped: MISSIVE_ESDB_URL is not set (no EventStoreDB/KurrentDB server on this machine; set it to e.g. esdb://127.0.0.1:2113?tls=false to run the contract)", () => {})
  })
}
