// The queue endpoints: list (the rows of `missive queue list`), show (the message's timeline, as `missive queue show`),
// and the operator commands hold / release / retry / delete / bounce, which go through the actor host's one command
// handler exactly as the CLI's do, recorded with the token's name as `by`. Must not write to a store itself.
import { Message } from "@missive/core"
import { EventStore, QueueView, Timeline } from "@missive/events"
import type { Operation } from "../scheduler/Host.js"
import type { Deps } from "./Deps.js"
import { HttpError, ok, type Ctx, type Reply } from "./Request.js"

export const OPERATIONS: ReadonlyArray<Operation> = ["hold", "release", "retry", "delete", "bounce"]

const ID = /^[0-9A-Za-z]{10,40}$/

export const idParam = (ctx: Ctx): string => {
  const id = ctx.params["id"]!
  if (!ID.test(id))
    throw new HttpError(400, "invalid_id", `message id ${JSON.stringify(id.slice(0, 60))} is not 10 to 40 letters and digits`)
  return id
}

const intParam = (ctx: Ctx, name: string, dflt: number, min: number, max: number): number => {
  const v = ctx.query.get(name)
  if (v === null) return dflt
  const n = Number(v)
  if (!Number.isInteger(n) || n < min || n > max)
    throw new HttpError(
      400,
      "invalid_parameter",
      `${name}: expected an integer from ${min} to ${max}, got ${JSON.stringify(v.slice(0, 40))}`
    )
  return n
}

export const list =
  (d: Deps) =>
  async (ctx: Ctx): Promise<Reply> => {
    const limit = intParam(ctx, "limit", 100, 1, 10_000)
    const now = d.clock.now()
    const rows: Array<QueueView.QueueRow> = []
    const items = await d.store.work.list(limit)
    for (const item of items) {
      const stored = await d.store.events.read(EventStore.streamOf(item.id))
      // Cluster intake: a message no driver has taken yet has its first events only on its carrier.
      const evs = stored.length > 0 ? stored.map((s) => s.event) : [...(item.carried?.events ?? [])]
      const row = QueueView.rowOf(Message.fold(evs), now)
      if (row && row.status === "active") rows.push(row)
    }
    rows.sort((x, y) => x.receivedAt - y.receivedAt)
    return ok({ messages: rows, total: await d.store.work.count(), limit })
  }

export const show =
  (d: Deps) =>
  async (ctx: Ctx): Promise<Reply> => {
    const id = idParam(ctx)
    const stored = await d.store.events.read(EventStore.streamOf(id))
    if (stored.length === 0) throw new HttpError(404, "no_message", `no message ${id}`)
    return ok(Timeline.toJson(Timeline.build(id, stored)))
  }

export const operate =
  (d: Deps, op: Operation) =>
  async (ctx: Ctx): Promise<Reply> => {
    const id = idParam(ctx)
    const by = ctx.token!.name
    const r = await d.host.operate(id, op, by)
    if (r.ok) return ok({ id, op, by, events: r.events })
    if (r.error.startsWith("no message")) throw new HttpError(404, "no_message", r.error)
    if (r.error.endsWith("is busy")) throw new HttpError(409, "busy", `${r.error}; try again`)
    throw new HttpError(409, "refused", `${op} ${id} refused: ${r.error}`)
  }
