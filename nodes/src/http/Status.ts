// Health, readiness, the cluster's nodes and the effective configuration. /healthz says the process answers;
// /readyz says the store answers (a read of the log's head within 2 s, and in a cluster a live NATS connection).
// The configuration is shown with every secret replaced (config/Redact.ts: password and token hashes, URL credentials).
import { EventStore } from "@missive/events"
import * as Service from "../cluster/Service.js"
import { redact } from "../config/Redact.js"
import type { Deps } from "./Deps.js"
import { HttpError, ok, type Ctx, type Reply } from "./Request.js"

export const healthz = (d: Deps) => async (): Promise<Reply> => ok({ status: "ok", node: d.config.node_id })

const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
  new Promise<T>((done, fail) => {
    const t = setTimeout(() => fail(new Error(`${what} did not answer within ${ms} ms`)), ms)
    p.then(
      (v) => {
        clearTimeout(t)
        done(v)
      },
      (e: unknown) => {
        clearTimeout(t)
        fail(e instanceof Error ? e : new Error(String(e)))
      }
    )
  })

export const readyz = (d: Deps) => async (): Promise<Reply> => {
  const checks: Record<string, string> = {}
  try {
    await within(d.store.events.head(), 2_000, "the event store")
    checks["store"] = "ok"
  } catch (e) {
    checks["store"] = (e as Error).message
  }
  if (d.cluster) checks["nats"] = d.cluster.nc.isClosed() ? "connection closed" : "ok"
  const ready = Object.values(checks).every((c) => c === "ok")
  return { status: ready ? 200 : 503, json: { status: ready ? "ready" : "unavailable", node: d.config.node_id, checks } }
}

export const config = (d: Deps) => async (): Promise<Reply> => ok(redact(d.config))

/** This node, and in a cluster every live node with its load (heartbeats) and its own answer (status service). */
export const cluster = (d: Deps) => async (): Promise<Reply> => {
  const self = { node: d.config.node_id, active: d.host.active(), ports: d.ports(), queued: await d.store.work.count() }
  if (!d.cluster) return ok({ clustered: false, nodes: [{ ...self, alive: true }] })
  const now = d.clock.now()
  const answers = await Service.gather(d.cluster.nc, d.config.cluster.prefix, 500)
  const nodes = d.cluster.alive().map((b) => {
    const a = answers.find((x) => x.node === b.node)
    return {
      node: b.node,
      alive: now - b.at < d.config.cluster.lease,
      since: b.since,
      heartbeatAgeMs: now - b.at,
      active: b.active,
      held: b.held,
      ports: b.ports,
      answered: a !== undefined,
      fenced: a?.fenced
    }
  })
  return ok({ clustered: true, node: d.config.node_id, replicas: d.cluster.replicas, nodes })
}

/** Only for the dashboard's search: a message id, or a piece of an address among recent messages. */
export const search =
  (d: Deps) =>
  async (ctx: Ctx): Promise<Reply> => {
    const q = (ctx.query.get("q") ?? "").trim()
    if (q === "" || q.length > 320)
      throw new HttpError(400, "invalid_parameter", "q: expected a message id or part of an address (1 to 320 characters)")
    const byId = /^[0-9A-Za-z]{10,40}$/.test(q) && (await d.store.events.read(EventStore.streamOf(q))).length > 0 ? [q] : []
    return ok({ query: q, ids: [...byId, ...d.view.search(q, 50).filter((id) => id !== q)] })
  }
