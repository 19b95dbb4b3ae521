// `missive replay queue --at T`: the queue as it stood at a past moment, rebuilt by folding the log up to T.
// Rows and table are QueueView's (the same columns as `missive queue list`). Reads the log only.
import { Message } from "@missive/core"
import { EventStore, QueueView, type Snapshots } from "@missive/events"
import { openStreams, positionAt, readStreams, scan, SLACK_MS, type Store } from "./Log.js"

export interface QueueAtResult {
  readonly at: number
  /** Last log position read. */
  readonly position: number
  readonly rows: ReadonlyArray<QueueView.QueueRow>
}

export interface QueueAtOptions {
  readonly onProgress?: ((p: number, target: number) => void) | undefined
  /** For a log without an index (JetStream): the open-set snapshots to start from (and to save while folding). */
  readonly snapshots?: Snapshots.SnapshotStore | undefined
}

/**
 * Folds every event with `at <= t` (reading a little past t for out-of-order times) and keeps the open messages.
 * With the log's index (SQLite, memory) or open-set snapshots (JetStream) only the open messages' streams are read and
 * decoded; with neither the whole log up to t is.
 */
export const queueAt = async (store: Store, t: number, o: QueueAtOptions = {}): Promise<QueueAtResult> => {
  const { onProgress } = o
  const head = await store.head()
  const until = Math.min(head, (await positionAt(store, t + SLACK_MS + 1, head)) - 1)
  const streams = await openStreams(store, until, t, onProgress, o.snapshots)
  if (streams) {
    const states = (await readStreams(store, streams)).map((events) =>
      Message.fold(events.filter((e) => e.position <= until && e.event.at <= t).map((e) => e.event))
    )
    return { at: t, position: until, rows: rowsOf(states, t) }
  }
  // Events are kept per message and folded only for messages still open at t: a completed one is just dropped.
  const open = new Map<string, Array<Message.Event>>()
  let position = 0
  for await (const batch of scan(store, { until, onProgress })) {
    for (const { stream, event } of batch) {
      if (event.at > t) continue
      const id = EventStore.idOf(stream)
      if (event.type === "MessageCompleted") open.delete(id)
      else {
        const list = open.get(id)
        if (list) list.push(event)
        else if (event.type === "MessageReceived") open.set(id, [event])
      }
    }
    position = batch[batch.length - 1]!.position
  }
  const states: Array<Message.State> = []
  for (const events of open.values()) states.push(Message.fold(events))
  return { at: t, position, rows: rowsOf(states, t) }
}

const rowsOf = (states: ReadonlyArray<Message.State>, t: number): Array<QueueView.QueueRow> => {
  const rows: Array<QueueView.QueueRow> = []
  for (const s of states) {
    const row = QueueView.rowOf(s, t)
    if (row) rows.push(row)
  }
  rows.sort((a, b) => a.receivedAt - b.receivedAt || (a.id < b.id ? -1 : 1))
  return rows
}
