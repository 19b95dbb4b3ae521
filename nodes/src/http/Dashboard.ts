// The live dashboard: a static page and its script (nodes/assets/, served by the node itself: no external network),
// the data it draws (GET /api/v1/dashboard: the View's series, the queue per destination, the cluster's nodes) and the
// live feed of newest events as server-sent events (GET /api/v1/events/stream). The page holds no data of its own and
// is public; everything it shows is fetched with the token the operator types in (kept in the tab's sessionStorage).
import { readFileSync } from "node:fs"
import type { Deps } from "./Deps.js"
import { HttpError, ok, type Ctx, type Reply } from "./Request.js"
import * as Status from "./Status.js"

const ASSETS = new URL("../../assets/", import.meta.url)
const MAX_STREAMS = 32

const PAGE_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
}

export const assets = () => {
  const html = readFileSync(new URL("dashboard.html", ASSETS))
  const js = readFileSync(new URL("dashboard.js", ASSETS))
  return {
    page: async (): Promise<Reply> => ({ status: 200, text: html, type: "text/html; charset=utf-8", headers: PAGE_HEADERS }),
    script: async (): Promise<Reply> => ({ status: 200, text: js, type: "text/javascript; charset=utf-8" }),
    home: async (): Promise<Reply> => ({ status: 302, text: "", type: "text/plain", headers: { location: "/dashboard" } })
  }
}

export const data =
  (d: Deps) =>
  async (ctx: Ctx): Promise<Reply> => {
    const cluster = (await Status.cluster(d)()) as { json: unknown }
    const now = d.clock.now()
    return ok({
      node: d.config.node_id,
      now,
      seeded: d.view.seeded(),
      series: d.view.series(),
      queue: d.view.depth().map((q) => ({ ...q, oldestAgeMs: now - q.oldestAt })),
      held: d.view.held(),
      cluster: cluster.json,
      scope: ctx.token?.scope
    })
  }

export const stream = (d: Deps) => {
  let open = 0
  return async (ctx: Ctx): Promise<Reply> => {
    if (open >= MAX_STREAMS)
      throw new HttpError(503, "too_many_streams", `at most ${MAX_STREAMS} event streams at once`, { "retry-after": "10" })
    const backlog = Math.min(200, Math.max(0, Number(ctx.query.get("backlog") ?? 50) || 0))
    open += 1
    const { req, res } = ctx
    req.socket.setTimeout(0)
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      connection: "keep-alive",
      "x-content-type-options": "nosniff"
    })
    const write = (item: unknown, id?: number) =>
      res.write(`${id !== undefined ? `id: ${id}\n` : ""}event: event\ndata: ${JSON.stringify(item)}\n\n`)
    res.write("retry: 3000\n\n")
    for (const item of d.view.recent(backlog)) write(item, item.position)
    const stop = d.view.follow((item) => write(item, item.position))
    const ping = setInterval(() => res.write(": ping\n\n"), 15_000)
    const end = () => {
      clearInterval(ping)
      stop()
      open -= 1
    }
    res.once("close", end)
    return { streamed: true }
  }
}
