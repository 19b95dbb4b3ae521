// The command handler, one function for every writer of a message's stream (the driver's route, attempt and report,
// operator commands): read the stream, decide, append at the expected version; on WrongExpectedVersion reload and
// decide again, a bounded number of times. Decides nothing itself; never deletes anything on a read.
import { Message } from "@missive/core"
import { EventStore, StoreError } from "@missive/events"
import * as E from "fp-ts/lib/Either.js"

/** How many times a decision is made against a fresh read before a conflict is given up as an error. */
export const MAX_TRIES = 5

/** A decision against a state: the events to append and whatever else the caller needs from it. */
export type Decider<A> = (
  state: Message.State
) => E.Either<Message.DecideError, { readonly events: ReadonlyArray<Message.Event>; readonly value: A }>

export interface Handled<A> {
  /** The state the decision was made against (after any carried events). */
  readonly before: Message.State
  /** The state after the appended events. */
  readonly state: Message.State
  /** Events appended by this call (the carried ones first, when they were appended with it). */
  readonly events: ReadonlyArray<Message.Event>
  readonly value: A
}

export interface HandleOptions {
  /** A state already known to be current (intake's fresh state); the first try skips the read. */
  readonly known?: Message.State | undefined
  /** Events not yet in the log: when the stream reads back empty they are the state, and the first append carries them. */
  readonly carried?: ReadonlyArray<Message.Event> | undefined
  /**
   * Writes that share the append's commit (queued in the same turn); given the state after the events. When the append
   * fails after they were queued, `repair` runs before the error is handled (a conflict retries, anything else throws).
   */
  readonly alongside?: ((after: Message.State, events: ReadonlyArray<Message.Event>) => ReadonlyArray<Promise<unknown>>) | undefined
  readonly repair?: (() => Promise<void>) | undefined
  /** Told about each conflict that made the handler reload. */
  readonly onConflict?: (() => void) | undefined
}

/** The decider refused the command: the caller matches on `error._tag`. */
export class Refused extends Error {
  readonly _tag = "Refused" as const
  constructor(
    readonly id: string,
    readonly error: Message.DecideError
  ) {
    super(`decider refused a command on ${id}: ${JSON.stringify(error)}`)
  }
}

export interface Commands {
  /** Reads a message's state from its stream (empty when the stream is; the caller decides what that means). */
  load(id: string): Promise<Message.State>
  handle<A>(id: string, decide: Decider<A>, opts?: HandleOptions): Promise<Handled<A>>
}

export const make = (events: EventStore.EventStore): Commands => {
  const load = async (id: string): Promise<Message.State> => Message.fold((await events.read(EventStore.streamOf(id))).map((e) => e.event))

  const handle = async <A>(id: string, decide: Decider<A>, opts: HandleOptions = {}): Promise<Handled<A>> => {
    const stream = EventStore.streamOf(id)
    let read: Message.State = opts.known ?? (await load(id))
    for (let tries = 1; ; tries++) {
      const carried = read.status === "empty" && opts.carried && opts.carried.length > 0 ? opts.carried : []
      const before = carried.length > 0 ? Message.fold(carried, read) : read
      const r = decide(before)
      if (E.isLeft(r)) throw new Refused(id, r.left)
      const all = [...carried, ...r.right.events]
      const state = Message.fold(r.right.events, before)
      if (all.length === 0) return { before, state, events: [], value: r.right.value }
      const append = events.append(stream, read.version, all)
      const extra = opts.alongside?.(state, r.right.events) ?? []
      const settled = await Promise.allSettled([append, ...extra])
      const failed = settled.find((x) => x.status === "rejected")
      if (!failed) return { before, state, events: all, value: r.right.value }
      if (extra.length > 0) await opts.repair?.()
      const appendFailed = settled[0]!.status === "rejected" ? settled[0]!.reason : undefined
      if (appendFailed === undefined || !StoreError.isWrongExpectedVersion(appendFailed) || tries >= MAX_TRIES) throw failed.reason
      opts.onConflict?.()
      read = await load(id)
    }
  }

  return { load, handle }
}

/** A plain command as a Decider. */
export const command =
  (c: Message.Command): Decider<undefined> =>
  (state) => {
    const r = Message.decide(c, state)
    return E.isLeft(r) ? r : E.right({ events: r.right, value: undefined })
  }
