// The node's suppression list: the `suppression` stream folded into memory (core's Suppression aggregate), kept
// current by following the log (this node's appends and its peers'), written through read-decide-append at the
// stream's version. Answers `check` synchronously for RCPT and routing; must not decide why an address is added
// (the reactor and the operator do) and must not hold anything the stream does not.
import { Reply, Suppression, type Message, type Route } from "@missive/core"
import { EventStore, StoreError } from "@missive/events"
import * as E from "fp-ts/lib/Either.js"
import type { Clock } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"
import type { Router } from "../scheduler/Driver.js"

export interface List {
  check(address: string): Suppression.Entry | undefined
  entries(): ReadonlyArray<Suppression.Entry>
  add(entries: Extract<Suppression.Command, { type: "Add" }>["entries"], by: string): Promise<ReadonlyArray<Message.Event>>
  remove(addresses: ReadonlyArray<string>, by: string): Promise<ReadonlyArray<Message.Event>>
  close(): void
}

/** Refused by the decider (an address not on the list, a malformed address). */
export class Refused extends Error {
  readonly _tag = "SuppressionRefused" as const
  constructor(readonly error: Suppression.DecideError) {
    super(error._tag === "NotSuppressed" ? `${error.address} is not on the suppression list` : `not an address: ${error.address}`)
  }
}

const MAX_TRIES = 5

export const open = async (d: {
  readonly events: EventStore.EventStore
  readonly clock: Clock
  readonly node: string
  readonly policyHash: string
  readonly log: Logger
}): Promise<List> => {
  const read = async () => Suppression.fold((await d.events.read(Suppression.STREAM)).map((e) => e.event))
  let state = await read()
  // Appends of this node and of its peers arrive here in order; one already folded (same version) is skipped.
  // Only the list's own stream: on JetStream the server filters it, so a node does not decode the whole log for it.
  const unsubscribe = EventStore.subscribeStream(d.events, Suppression.STREAM, await d.events.head(), (e) => {
    if (e.version <= state.version) return
    state = e.version === state.version + 1 ? Suppression.fold([e.event], state) : state
    if (e.version > state.version) void read().then((s) => void (s.version > state.version && (state = s)))
  })

  /** Read, decide, append at the stream's version; on a conflict read again and decide again (the command handler). */
  const handle = async (command: (ctx: Message.Ctx) => Suppression.Command): Promise<ReadonlyArray<Message.Event>> => {
    let current = state
    for (let tries = 1; ; tries++) {
      const r = Suppression.decide(command({ at: d.clock.now(), node: d.node, policy: d.policyHash }), current)
      if (E.isLeft(r)) throw new Refused(r.left)
      if (r.right.length === 0) return []
      try {
        await d.events.append(Suppression.STREAM, current.version, r.right)
      } catch (e) {
        if (!StoreError.isWrongExpectedVersion(e) || tries >= MAX_TRIES) throw e
        current = await read()
        continue
      }
      const after = Suppression.fold(r.right, current)
      if (after.version > state.version) state = after
      for (const e of r.right) d.log("info", "suppression", { ...e })
      return r.right
    }
  }

  return {
    check: (address) => state.entries.get(Suppression.normalize(address)),
    entries: () => [...state.entries.values()],
    add: (entries, by) => handle((ctx) => ({ type: "Add", ctx, entries, by })),
    remove: (addresses, by) => handle((ctx) => ({ type: "Remove", ctx, addresses, by })),
    close: unsubscribe
  }
}

/** Relayed mail to a suppressed recipient is bounced at once: the router answers "unroutable" with the reason. */
export const guard = (router: Router, list: Pick<List, "check">): Router => ({
  route: async (rcpt) => {
    const entry = list.check(rcpt)
    if (entry === undefined) return router.route(rcpt)
    const destination: Route.Destination = { kind: "unroutable", key: "suppressed", reply: Reply.Replies.suppressed(entry.reason) }
    return { ok: { rcpt, destination } }
  }
})

/** Submission's RCPT check: the refusal of a listed recipient, with the reason it was listed. */
export const refusal = (list: Pick<List, "check">, rcpt: string): Reply.Reply | undefined => {
  const entry = list.check(rcpt)
  return entry === undefined ? undefined : Reply.Replies.suppressed(entry.reason)
}

/**
 * The operator channel's suppression requests ({"op":"suppression","action":"add|remove","addresses":[…],"reason","by"}):
 * undefined for any other request. Answers with the events appended, or the decider's refusal.
 */
export const operator =
  (list: List) =>
  async (req: Record<string, unknown>): Promise<object | undefined> => {
    if (req["op"] !== "suppression") return undefined
    const action = req["action"]
    const addresses = req["addresses"]
    const by = typeof req["by"] === "string" && req["by"].length <= 100 ? req["by"] : "operator"
    if ((action !== "add" && action !== "remove") || !Array.isArray(addresses) || !addresses.every((a) => typeof a === "string"))
      return { ok: false, error: "bad request: need action (add|remove) and addresses" }
    const reason = req["reason"] === "bounce" || req["reason"] === "complaint" ? req["reason"] : "manual"
    try {
      const events =
        action === "add"
          ? await list.add(
              addresses.map((address: string) => ({ address, reason })),
              by
            )
          : await list.remove(addresses as Array<string>, by)
      return { ok: true, events: events.map((e) => e.type), count: events.length }
    } catch (e) {
      if (e instanceof Refused) return { ok: false, error: e.message }
      throw e
    }
  }
