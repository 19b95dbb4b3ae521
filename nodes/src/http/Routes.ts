// The HTTP API's one routing table: every endpoint with its method, path, the token scope it needs and its body limit.
// A new endpoint is one line here (and its entry in nodes/openapi.json, which a test checks against this table).
// Must not hold handler logic: handlers live in the module of what they serve.
import { readFileSync } from "node:fs"
import * as Dashboard from "./Dashboard.js"
import type { Deps } from "./Deps.js"
import * as Inject from "./Inject.js"
import * as Queue from "./Queue.js"
import type { Reply, Route } from "./Request.js"
import * as Status from "./Status.js"
import * as Suppression from "./Suppression.js"

/** Requests of the JSON API other than injection: small. */
const SMALL_JSON = 64 * 1024

export const OPENAPI = new URL("../../openapi.json", import.meta.url)

export const routes = (d: Deps): ReadonlyArray<Route> => {
  const openapi = readFileSync(OPENAPI)
  const assets = Dashboard.assets()
  return [
    { method: "GET", path: "/healthz", need: "public", handle: Status.healthz(d) },
    { method: "GET", path: "/readyz", need: "public", handle: Status.readyz(d) },
    {
      method: "GET",
      path: "/openapi.json",
      need: "public",
      handle: async (): Promise<Reply> => ({ status: 200, text: openapi, type: "application/json" })
    },
    {
      method: "GET",
      path: "/metrics",
      need: "read",
      handle: async () => {
        const m = await d.metrics.render()
        return { status: 200, text: m.text, type: m.contentType }
      }
    },
    { method: "GET", path: "/", need: "public", handle: assets.home },
    { method: "GET", path: "/dashboard", need: "public", handle: assets.page },
    { method: "GET", path: "/dashboard.js", need: "public", handle: assets.script },
    { method: "GET", path: "/api/v1/dashboard", need: "read", handle: Dashboard.data(d) },
    { method: "GET", path: "/api/v1/events/stream", need: "read", handle: Dashboard.stream(d) },
    { method: "GET", path: "/api/v1/search", need: "read", handle: Status.search(d) },
    { method: "GET", path: "/api/v1/queue", need: "read", handle: Queue.list(d) },
    { method: "POST", path: "/api/v1/messages", need: "inject", json: true, maxBody: d.config.http.max_body, handle: Inject.inject(d) },
    { method: "GET", path: "/api/v1/messages/:id", need: "read", handle: Queue.show(d) },
    ...Queue.OPERATIONS.map((op): Route => ({
      method: "POST",
      path: `/api/v1/messages/:id/${op}`,
      need: "admin",
      maxBody: SMALL_JSON,
      handle: Queue.operate(d, op)
    })),
    { method: "GET", path: "/api/v1/cluster", need: "read", handle: Status.cluster(d) },
    { method: "GET", path: "/api/v1/config", need: "read", handle: Status.config(d) },
    { method: "GET", path: "/api/v1/suppression", need: "read", handle: Suppression.list(d) },
    { method: "POST", path: "/api/v1/suppression", need: "admin", json: true, maxBody: 4 << 20, handle: Suppression.add(d) },
    { method: "POST", path: "/api/v1/suppression/remove", need: "admin", json: true, maxBody: 4 << 20, handle: Suppression.remove(d) }
  ]
}
