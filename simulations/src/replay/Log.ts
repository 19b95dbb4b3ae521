// Reading the global log for replay, through the EventStore port only (SQLite, JetStream or memory alike):
// batched scans with progress, and a binary search from a time to a log position. Never writes.
import type { Message } from "@missive/core"
import { EventStore } from "@missive/events"

export type Store = EventStore.EventStore
export type Stored = EventStore.StoredEvent

export interface ScanOptions {
  /** Start after this global position (default 0). */
  readonly after?: number
  /** Last position to read (default: the head when the scan starts). */
  readonly until?: number
  readonly batch?: number
  /**
   * Only these types are needed: a store with `readAllOf` (SQLite, memory) neither reads nor decodes the others; the
   * rest (JetStream, EventStoreDB) yield every event, so the caller still skips what it does not fold.
   */
  readonly types?: ReadonlyArray<Message.EventType>
  readonly onProgress?: (position: number, target: number) => void
}

/** Yields the log in batches, in global order. */
export async function* scan(store: Store, opts: ScanOptions = {}): AsyncGenerator<ReadonlyArray<Stored>> {
  const batch = opts.batch ?? 5000
  const target = opts.until ?? (await store.head())
  let position = opts.after ?? 0
  const { types } = opts
  if (types && store.readAllOf) {
    // Filtered batches may be short or empty: the positions looked at advance by the batch, not by what came back.
    while (position < target) {
      const span = Math.min(batch, target - position)
      const { events, through } = await store.readAllOf(position, span, types)
      if (through <= position) return
      position = through
      opts.onProgress?.(position, target)
      if (events.length > 0) yield events
    }
    return
  }
  while (position < target) {
    const events = await store.readAll(position, Math.min(batch, target - position))
    if (events.length === 0) return
    position = events[events.length - 1]!.position
    opts.onProgress?.(position, target)
    yield events
  }
}

/** The first position whose event time is at or after `at` (the log port's own search, events/src/EventStore.ts). */
export const positionAt = EventStore.positionAt

/** Margin for event times that are slightly out of log order (group commit, several nodes). */
export const SLACK_MS = 5 * 60_000

/**
 * The streams of messages open (received, not completed) among the events up to position `until` with a time at or
 * before `t`, found on the log's index without decoding an event; undefined when the store has no index.
 */
export const openStreams = async (
  store: Store,
  until: number,
  t = Number.POSITIVE_INFINITY,
  onProgress?: (position: number, target: number) => void
): Promise<Set<string> | undefined> => {
  if (!store.readIndex) return undefined
  const open = new Set<string>()
  // Only arrivals and completions: the store filters (positions looked at go by 200,000 at a time).
  for (let position = 0; position < until;) {
    const span = Math.min(200_000, until - position)
    for (const e of await store.readIndex(position, span, ["MessageReceived", "MessageCompleted"])) {
      if (e.at > t || e.position > until) continue
      if (e.type === "MessageReceived") open.add(e.stream)
      else open.delete(e.stream)
    }
    position += span
    onProgress?.(position, until)
  }
  return open
}
