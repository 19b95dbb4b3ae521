// The suppression list as an aggregate (one stream, `suppression`): which addresses Missive no longer sends to, why,
// since when and on whose word. Pure: evolve and decide like the message actor; time and who asked come in commands.
// Must not know where a check happens (ingress, router) nor how a bounce is classified (nodes/src/publish/Ses.ts).
import * as E from "fp-ts/lib/Either.js"
import type { Ctx, EventOf, Meta, SuppressionReason } from "./Message.js"
import { SCHEMA_VERSION } from "./Message.js"

export const STREAM = "suppression"

export type Event = EventOf<"SuppressionAdded"> | EventOf<"SuppressionRemoved">

export interface Entry {
  readonly address: string
  readonly reason: SuppressionReason
  readonly at: number
  readonly by: string
  readonly source?: string | undefined
  readonly detail?: string | undefined
}

export interface State {
  readonly version: number
  readonly entries: ReadonlyMap<string, Entry>
}

export const initialState: State = { version: 0, entries: new Map() }

/** Addresses compare case-insensitively (the local part is case-sensitive in theory, never in practice). */
export const normalize = (address: string): string => address.trim().toLowerCase()

/** Folds events in place of a fresh map (a list can hold many entries: no copy per event). */
export const fold = (events: ReadonlyArray<{ readonly type: string }>, from: State = initialState): State => {
  const entries = new Map(from.entries)
  let version = from.version
  for (const e of events) {
    version += 1
    if (e.type === "SuppressionAdded") {
      const a = e as Event & { type: "SuppressionAdded" }
      entries.set(a.address, { address: a.address, reason: a.reason, at: a.at, by: a.by, source: a.source, detail: a.detail })
    } else if (e.type === "SuppressionRemoved") entries.delete((e as Event).address)
  }
  return { version, entries }
}

export type Command =
  | {
      readonly type: "Add"
      readonly ctx: Ctx
      readonly entries: ReadonlyArray<{
        readonly address: string
        readonly reason: SuppressionReason
        readonly source?: string | undefined
        readonly detail?: string | undefined
      }>
      readonly by: string
    }
  | { readonly type: "Remove"; readonly ctx: Ctx; readonly addresses: ReadonlyArray<string>; readonly by: string }

export type DecideError =
  { readonly _tag: "NotSuppressed"; readonly address: string } | { readonly _tag: "BadAddress"; readonly address: string }

const meta = (ctx: Ctx): Meta => ({ v: SCHEMA_VERSION, at: ctx.at, node: ctx.node, policy: ctx.policy })

const ADDRESS = /^[^\s@<>]+@[^\s@<>]+$/

/** Whether the list can hold this address (local@domain, no spaces or angle brackets). */
export const isAddress = (address: string): boolean => ADDRESS.test(normalize(address))

/**
 * Add: an address already listed is left alone (the first reason stands; a bounce seen twice is one entry), so
 * replaying the same bounce or report adds nothing. Remove: every address must be listed.
 */
export const decide = (command: Command, state: State): E.Either<DecideError, ReadonlyArray<Event>> => {
  const m = meta(command.ctx)
  if (command.type === "Add") {
    const out: Array<Event> = []
    const seen = new Set<string>()
    for (const e of command.entries) {
      const address = normalize(e.address)
      if (!ADDRESS.test(address)) return E.left({ _tag: "BadAddress", address: e.address })
      if (state.entries.has(address) || seen.has(address)) continue
      seen.add(address)
      out.push({
        ...m,
        type: "SuppressionAdded",
        address,
        reason: e.reason,
        by: command.by,
        ...(e.source !== undefined ? { source: e.source } : {}),
        ...(e.detail !== undefined ? { detail: e.detail } : {})
      })
    }
    return E.right(out)
  }
  const out: Array<Event> = []
  for (const a of new Set(command.addresses.map(normalize))) {
    if (!state.entries.has(a)) return E.left({ _tag: "NotSuppressed", address: a })
    out.push({ ...m, type: "SuppressionRemoved", address: a, by: command.by })
  }
  return E.right(out)
}
