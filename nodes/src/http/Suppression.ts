// The suppression list over HTTP: list (as `missive suppression list --json`), add / import (many addresses with a
// reason each) and remove, through the node's suppression list (nodes/src/suppression/List.ts): the same decider
// and stream as the CLI's requests, recorded with the token's name as `by`. Must not write to a store itself.
import { Suppression } from "@missive/core"
import * as List from "../suppression/List.js"
import type { Deps } from "./Deps.js"
import { HttpError, describe, isObject, jsonBody, ok, type Ctx, type Reply } from "./Request.js"

/** Most addresses in one request (an import of a larger list is several requests). */
export const MAX_ADDRESSES = 10_000

const REASONS: ReadonlyArray<string> = ["manual", "bounce", "complaint"]

const listOf = (d: Deps): List.List => {
  if (!d.suppression) throw new HttpError(503, "unavailable", "the suppression list is not open on this node")
  return d.suppression
}

export const list = (d: Deps) => async (): Promise<Reply> => {
  const entries = [...listOf(d).entries()].sort((x, y) => x.address.localeCompare(y.address))
  return ok({ entries, total: entries.length })
}

/** `{"addresses": ["a@b.c", …], "reason": "manual"}` or `{"entries": [{"address", "reason"}, …]}` (an import). */
const entriesOf = (ctx: Ctx): ReadonlyArray<{ address: string; reason: Suppression.Entry["reason"] }> => {
  const body = jsonBody(ctx)
  if (!isObject(body)) throw new HttpError(400, "invalid_body", `expected a JSON object, got ${describe(body)}`)
  const fallback = body["reason"] ?? "manual"
  if (typeof fallback !== "string" || !REASONS.includes(fallback))
    throw new HttpError(400, "invalid_field", `reason: expected "manual", "bounce" or "complaint", got ${describe(fallback)}`)
  const raw: ReadonlyArray<unknown> = Array.isArray(body["entries"])
    ? body["entries"]
    : Array.isArray(body["addresses"])
      ? body["addresses"].map((address: unknown) => ({ address }))
      : []
  if (raw.length === 0) throw new HttpError(400, "invalid_field", "addresses: expected a non-empty array of addresses (or entries)")
  if (raw.length > MAX_ADDRESSES) throw new HttpError(413, "too_many", `at most ${MAX_ADDRESSES} addresses per request, got ${raw.length}`)
  return raw.map((e, i) => {
    const address = isObject(e) ? e["address"] : undefined
    const reason = isObject(e) ? (e["reason"] ?? fallback) : fallback
    if (typeof address !== "string" || !Suppression.isAddress(address))
      throw new HttpError(400, "invalid_field", `entries[${i}].address: expected an address, got ${describe(address)}`)
    if (typeof reason !== "string" || !REASONS.includes(reason.toLowerCase()))
      throw new HttpError(400, "invalid_field", `entries[${i}].reason: expected "manual", "bounce" or "complaint", got ${describe(reason)}`)
    return { address, reason: reason.toLowerCase() as Suppression.Entry["reason"] }
  })
}

export const add =
  (d: Deps) =>
  async (ctx: Ctx): Promise<Reply> => {
    const entries = entriesOf(ctx)
    const events = await listOf(d).add(entries, ctx.token!.name)
    return ok({ added: events.length, alreadyListed: entries.length - events.length, by: ctx.token!.name })
  }

export const remove =
  (d: Deps) =>
  async (ctx: Ctx): Promise<Reply> => {
    const addresses = entriesOf(ctx).map((e) => e.address)
    try {
      const events = await listOf(d).remove(addresses, ctx.token!.name)
      return ok({ removed: events.length, by: ctx.token!.name })
    } catch (e) {
      if (e instanceof List.Refused) throw new HttpError(404, "not_listed", e.message)
      throw e
    }
  }
