// The EventStore port: per-message streams with optimistic concurrency, and the global log in order.
// Adapters (memory, SQLite, JetStream) implement it and pass test/EventStoreContract.ts; none may reorder a stream.
import type { Message } from "@missive/core"
import { WrongExpectedVersion } from "./StoreError.js"

export interface StoredEvent {
  readonly stream: string
  /** 1-based position of the event in its stream. */
  readonly version: number
  /** 1-based position in the global log. */
  readonly position: number
  readonly event: Message.Event
}

export interface AppendResult {
  /** The stream's version after the append. */
  readonly version: number
  /** Global position of the last appended event. */
  readonly position: number
}

/** One event of the global log without its body: what a scan needs to find the streams that matter. */
export interface IndexEntry {
  readonly position: number
  readonly stream: string
  readonly type: Message.EventType
  readonly at: number
}

export interface EventStore {
  /** Appends when the stream is at `expectedVersion` (0 = new stream); rejects with WrongExpectedVersion otherwise. */
  append(stream: string, expectedVersion: number, events: ReadonlyArray<Message.Event>): Promise<AppendResult>
  read(stream: string): Promise<ReadonlyArray<StoredEvent>>
  /** Events with position > `after`, in global order, at most `limit`. */
  readAll(after: number, limit: number): Promise<ReadonlyArray<StoredEvent>>
  /** Calls `onEvent` for every event after `after`, then live; resolves the returned stop function. */
  subscribe(after: number, onEvent: (e: StoredEvent) => void): () => void
  /**
   * Optional: `subscribe` to one stream's events only. JetStream has it (a consumer filtered on the stream's
   * subject: the server sends nothing else); elsewhere `subscribeStream` below filters a whole-log subscription.
   */
  subscribeStream?(stream: string, after: number, onEvent: (e: StoredEvent) => void): () => void
  /**
   * Optional: the log's index (position, stream, type, time) after `after`, at most `limit`, without decoding any
   * event. Adapters that keep the type and time beside the event (SQLite, memory) have it; replay scans it to find
   * the streams open at a moment and falls back to `readAll` without it (JetStream, EventStoreDB). With `types`, only
   * entries of those types (positions still in log order; `limit` counts the positions looked at, not the entries).
   */
  readIndex?(after: number, limit: number, types?: ReadonlyArray<Message.EventType>): Promise<ReadonlyArray<IndexEntry>>
  /**
   * Optional: like `readAll`, but decodes only the events of `types` (the others are looked at, not decoded, nor
   * returned); `through` is the last position looked at (`after` when there was none), where the next read starts.
   * Adapters that keep the type beside the event (SQLite, memory) have it; followers fall back to `readAll`.
   */
  readAllOf?(
    after: number,
    limit: number,
    types: ReadonlyArray<Message.EventType>
  ): Promise<{ readonly events: ReadonlyArray<StoredEvent>; readonly through: number }>
  /**
   * Optional: the events with position in (`after`, `until`], in global order and in batches, for a scan of a large
   * part of the log. JetStream has it (one consumer for the whole range instead of one per `readAll`); replay's
   * `Log.scan` uses it when present and `readAll` otherwise.
   */
  readRange?(after: number, until: number): AsyncIterable<ReadonlyArray<StoredEvent>>
  /**
   * Optional: `read(stream)` from its events at positions > `after` (the caller knows where the stream starts, e.g.
   * its `MessageReceived`'s position): JetStream looks for the stream's messages from there instead of from the
   * log's start, and caches nothing. Elsewhere `read` serves.
   */
  readFrom?(stream: string, after: number): Promise<ReadonlyArray<StoredEvent>>
  /** The global position of the last event (0 when empty). */
  head(): Promise<number>
  close(): Promise<void>
}

/** One stream's events after global position `after`, then live: the adapter's filter when it has one. */
export const subscribeStream = (store: EventStore, stream: string, after: number, onEvent: (e: StoredEvent) => void): (() => void) =>
  store.subscribeStream
    ? store.subscribeStream(stream, after, onEvent)
    : store.subscribe(after, (e) => {
        if (e.stream === stream) onEvent(e)
      })

export const streamOf = (messageId: string): string => `message-${messageId}`
export const idOf = (stream: string): string => (stream.startsWith("message-") ? stream.slice(8) : stream)

/** In-memory adapter: for unit tests and what-if simulation; same contract as the durable ones. */
export const makeMemory = (): EventStore => {
  const log: Array<StoredEvent> = []
  const streams = new Map<string, Array<StoredEvent>>()
  const subscribers = new Set<(e: StoredEvent) => void>()
  return {
    append: async (stream, expectedVersion, events) => {
      const s = streams.get(stream) ?? []
      if (s.length !== expectedVersion) throw new WrongExpectedVersion({ stream, expected: expectedVersion, actual: s.length })
      const added: Array<StoredEvent> = []
      for (const event of events) {
        const e: StoredEvent = { stream, version: s.length + 1, position: log.length + 1, event }
        s.push(e)
        log.push(e)
        added.push(e)
      }
      streams.set(stream, s)
      for (const e of added) for (const f of subscribers) f(e)
      return { version: s.length, position: log.length }
    },
    read: async (stream) => [...(streams.get(stream) ?? [])],
    readAll: async (after, limit) => log.slice(after, after + limit),
    readAllOf: async (after, limit, types) => {
      const looked = log.slice(after, after + limit)
      return { events: looked.filter((e) => types.includes(e.event.type)), through: looked.at(-1)?.position ?? after }
    },
    readIndex: async (after, limit, types) =>
      log
        .slice(after, after + limit)
        .filter((e) => !types || types.includes(e.event.type))
        .map((e) => ({ position: e.position, stream: e.stream, type: e.event.type, at: e.event.at })),
    subscribe: (after, onEvent) => {
      for (const e of log.slice(after)) onEvent(e)
      subscribers.add(onEvent)
      return () => subscribers.delete(onEvent)
    },
    head: async () => log.length,
    close: async () => {}
  }
}

/**
 * The first position whose event time is at or after `at` (head + 1 when none): a binary search with single-event reads.
 * Event times follow log order closely (appends carry the decision's time) but not exactly, so callers that need
 * a window start a little earlier (`slackMs`) and filter on `event.at`.
 */
export const positionAt = async (store: EventStore, at: number, head?: number): Promise<number> => {
  let lo = 1
  let hi = (head ?? (await store.head())) + 1
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2)
    const e = (await store.readAll(mid - 1, 1))[0]
    if (!e) {
      hi = mid
      continue
    }
    if (e.event.at < at) lo = e.position + 1
    else hi = mid
  }
  return lo
}
