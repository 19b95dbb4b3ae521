// The stores of a node without a cluster: SQLite for bodies and work, and for events too unless an EventStoreDB /
// KurrentDB URL is given, in which case the EventStore port is `EventStoreDb` (loaded on demand, so gRPC is imported
// only when selected). Must not decide anything; the same options open the store read-only for the CLI's readers.
import type { EventStore } from "./EventStore.js"
import * as SqliteStore from "./SqliteStore.js"

export interface EmbeddedOptions extends SqliteStore.SqliteOptions {
  /** `store.eventstoredb`: a connection string ("esdb://host:2113?tls=false"); null or absent: events in SQLite. */
  readonly eventstoredb?: string | null | undefined
}

/**
 * Opens SQLite, then EventStoreDB when asked. With EventStoreDB, intake's `MessageReceived` append is its own write
 * (not in SQLite's group commit with the body and the work entry): 250 still waits for all three, so nothing
 * acknowledged is lost, but a failure between them can leave a received message in the log that the client sends again.
 */
export const open = async (o: EmbeddedOptions): Promise<SqliteStore.SqliteStore> => {
  const sqlite = SqliteStore.open(o)
  if (!o.eventstoredb) return sqlite
  let events: EventStore
  try {
    events = await (await import("./EventStoreDb.js")).open({ url: o.eventstoredb })
  } catch (e) {
    await sqlite.close()
    throw e
  }
  return {
    ...sqlite,
    events,
    close: async () => {
      await sqlite.close()
      await events.close()
    }
  }
}
