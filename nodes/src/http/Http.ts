// The operator surface over HTTP, as the node starts it: `observe` builds the event-derived view and the metrics
// (before the SMTP listeners, so their connections are counted), `listen` starts the admin listener on
// `listeners.http` with the routing table. A listener that cannot bind is logged and left out: the node still relays.
// Must not touch messages except through Deps (the actor host, intake).
import * as Tls from "../ingress/Tls.js"
import type { Deps } from "./Deps.js"
import * as Metrics from "./Metrics.js"
import { routes } from "./Routes.js"
import * as Server from "./Server.js"
import * as Tokens from "./Tokens.js"
import * as View from "./View.js"

export type { Deps } from "./Deps.js"
export { hash as hashToken, generate as generateToken } from "./Tokens.js"
export { timed, timedEvents } from "./Metrics.js"

export interface Observer {
  readonly view: View.View
  readonly metrics: Metrics.Metrics
  close(): void
}

export const observe = async (o: Parameters<typeof View.make>[0]): Promise<Observer> => {
  const view = View.make(o)
  await view.start()
  return { view, metrics: Metrics.make(view, o.clock), close: () => view.close() }
}

const isLoopback = (host: string): boolean => host === "localhost" || host === "::1" || /^127\./.test(host)

/** Starts the admin listener; undefined when it could not bind (logged). */
export const listen = async (d: Deps, dataDir: string): Promise<Server.Listening | undefined> => {
  const l = d.config.listeners.http
  if (!isLoopback(l.host) && !l.tls)
    d.log("warn", "http: the admin listener is on a non-loopback address without TLS: tokens cross the network in clear", { host: l.host })
  try {
    const pair = l.tls ? await Tls.load({ cert: d.config.tls.cert, key: d.config.tls.key, dir: dataDir }, d.config.hostname) : undefined
    const server = await Server.start({
      host: l.host,
      port: l.port,
      tls: pair ? { cert: pair.cert, key: pair.key } : undefined,
      tokens: Tokens.make(d.config.http.tokens),
      routes: routes(d),
      requestTimeoutMs: d.config.http.request_timeout,
      clock: d.clock,
      log: d.log
    })
    d.log("info", `http: admin listener on ${l.tls ? "https" : "http"}://${l.host.includes(":") ? `[${l.host}]` : l.host}:${server.port}`, {
      tokens: d.config.http.tokens.length
    })
    return server
  } catch (e) {
    d.log("error", "http: the admin listener did not start; the node runs without it", { host: l.host, port: l.port, error: String(e) })
    return undefined
  }
}
