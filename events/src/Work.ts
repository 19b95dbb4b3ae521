// The Work port: the due-time index of messages that have work, with leases so that one driver holds a message.
// A deferred message costs one row here, not a live actor. Must not decide what happens to a message.
import type { Message } from "@missive/core"

export interface WorkItem {
  readonly id: string
  readonly dueAt: number
  /**
   * A message's first events that are not in the log yet, with its body (cluster intake publishes them with the
   * work entry): the first driver appends them together with its first decision.
   */
  readonly carried?: { readonly events: ReadonlyArray<Message.Event>; readonly body: Buffer } | undefined
  /**
   * True when, as far as the store knows, the log has nothing of this message yet (a carrier's first delivery): the
   * driver may skip reading the stream; a wrong guess only costs a version conflict and a reload.
   */
  readonly unlogged?: boolean | undefined
}

export interface Work {
  /** Puts (or moves) a message in the index at `dueAt`; `leaseTo` claims it at once for that owner until `leaseUntil`. */
  schedule(id: string, dueAt: number, lease?: { owner: string; until: number }): Promise<void>
  /** Removes a message from the index (it has no more work). */
  complete(id: string): Promise<void>
  /** Leases up to `limit` items due at `now` whose lease has lapsed, to `owner` until `until`. */
  claim(now: number, limit: number, owner: string, until: number): Promise<ReadonlyArray<WorkItem>>
  /** Gives back every lease an owner holds (clean stop, or a restarted single node). */
  releaseAll(owner: string): Promise<void>
  /** Earliest due time among items nobody leases (a hint for the poller; lapsed leases are found by claim). */
  nextDue(): Promise<number | undefined>
  count(): Promise<number>
  /** Items in due order, for views (`queue list`). */
  list(limit: number): Promise<ReadonlyArray<WorkItem>>
  close(): Promise<void>
  /**
   * False when complete() does not share the commit of an append queued beside it (cluster: an ack that removes the
   * carrier); callers then complete only after the append succeeded. Undefined/true: SQLite's group commit.
   */
  readonly commitsWithLog?: boolean
  /** Push-based stores call `f` when work becomes claimable, so the poller claims at once. */
  onAvailable?(f: () => void): void
}

export const makeMemory = (): Work => {
  const items = new Map<string, { dueAt: number; owner: string | null; until: number }>()
  return {
    schedule: async (id, dueAt, lease) => void items.set(id, { dueAt, owner: lease?.owner ?? null, until: lease?.until ?? 0 }),
    complete: async (id) => void items.delete(id),
    claim: async (now, limit, owner, until) => {
      const due = [...items.entries()]
        .filter(([, v]) => v.dueAt <= now && v.until <= now)
        .sort((a, b) => a[1].dueAt - b[1].dueAt)
        .slice(0, limit)
      for (const [, v] of due) {
        v.owner = owner
        v.until = until
      }
      return due.map(([id, v]) => ({ id, dueAt: v.dueAt }))
    },
    releaseAll: async (owner) => {
      for (const v of items.values())
        if (v.owner === owner) {
          v.owner = null
          v.until = 0
        }
    },
    nextDue: async () => {
      let min: number | undefined
      for (const v of items.values()) {
        if (v.until !== 0) continue
        min = min === undefined ? v.dueAt : Math.min(min, v.dueAt)
      }
      return min
    },
    count: async () => items.size,
    list: async (limit) =>
      [...items.entries()]
        .sort((a, b) => a[1].dueAt - b[1].dueAt)
        .slice(0, limit)
        .map(([id, v]) => ({ id, dueAt: v.dueAt })),
    close: async () => {}
  }
}
