// Fencing of a stale owner: before it delivers or appends to an existing message, a node must hold an unexpired
// lease on it (Work `holds`). A node paused past its lease (SIGSTOP, a partition) finds its lease gone on waking
// and stops there, before the remote server or the log sees anything from it. Appends at version 0 (a carrier's
// first events) and reports of attempts already made (facts; the decider refuses stale ones) are not fenced.
// Must not change what is appended.
import { EventStore, StoreError } from "@missive/events"
import type { Deliverer } from "../scheduler/Driver.js"
import type { Logger } from "../runtime/Log.js"

export interface Fence {
  holds(id: string): boolean
}

export interface FenceCounters {
  /** Appends refused because the lease was gone. */
  appends: number
  /** Deliveries refused because the lease was gone. */
  deliveries: number
}

export const events = (inner: EventStore.EventStore, fence: Fence, log: Logger, counters: FenceCounters): EventStore.EventStore => ({
  ...inner,
  append: async (stream, expectedVersion, evs) => {
    const id = EventStore.idOf(stream)
    // A report of an attempt is a fact about a delivery already made: it is recorded even after the lease ran out
    // (a store outage outlasted it); the decider refuses it if a peer has since taken the recipient over.
    const report = evs.some((e) => e.type === "AttemptSucceeded" || e.type === "AttemptDeferred" || e.type === "AttemptFailed")
    if (expectedVersion > 0 && !report && !fence.holds(id)) {
      counters.appends += 1
      log("warn", "append fenced: lease lost", { id, version: expectedVersion })
      throw new StoreError.StoreUnavailable(`lease on ${id} lost: append refused`)
    }
    return inner.append(stream, expectedVersion, evs)
  }
})

/** A delivery refused because this node's lease on the message is gone: nothing was sent, nothing is reported. */
export class LeaseLost extends Error {
  readonly _tag = "LeaseLost" as const
  constructor(readonly id: string) {
    super(`lease on ${id} lost: delivery refused`)
  }
}

export const deliverer = (inner: Deliverer, fence: Fence, log: Logger, counters: FenceCounters): Deliverer => ({
  deliver: async (destination, envelope, body, id) => {
    const refuse = () => {
      counters.deliveries += 1
      log("warn", "delivery fenced: lease lost", { id })
      return new LeaseLost(id)
    }
    if (!fence.holds(id)) throw refuse()
    // Asked again just before the final dot: a node paused in the middle of a session must not complete it.
    let cut = false
    const outcome = await inner.deliver(
      destination,
      { ...envelope, fence: () => (fence.holds(id) ? true : ((cut = true), false)) },
      body,
      id
    )
    if (cut) throw refuse()
    return outcome
  }
})
