// The admin HTTP listener (`listeners.http`): node:http, or node:https with the node's certificate. It matches the
// route table (Routes.ts), checks the bearer token before reading any body, reads the body within the route's limit,
// and answers every failure as JSON {"error":{"status","code","message"}}. It must not know what a route does.
// Security: loopback by default; a request must arrive whole within `http.request_timeout` (408, then the socket is
// closed); bodies over the limit are refused from Content-Length or cut off while streaming (413); a handler's
// unexpected error is logged and answered 500 without its text.
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import { createServer as createHttps } from "node:https"
import type { AddressInfo } from "node:net"
import type { TLSSocket } from "node:tls"
import type { Clock } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"
import { HttpError, type Ctx, type Reply, type Route } from "./Request.js"
import * as Tokens from "./Tokens.js"

export interface ServerOptions {
  readonly host: string
  readonly port: number
  readonly tls: { readonly cert: string; readonly key: string } | undefined
  readonly tokens: Tokens.Tokens
  readonly routes: ReadonlyArray<Route>
  readonly requestTimeoutMs: number
  readonly clock: Clock
  readonly log: Logger
}

export interface Listening {
  readonly port: number
  close(): Promise<void>
}

interface Compiled {
  readonly route: Route
  readonly parts: ReadonlyArray<string>
}

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer"
}

const send = (res: ServerResponse, status: number, type: string, body: string | Buffer, headers: Readonly<Record<string, string>> = {}) => {
  if (res.headersSent) return void res.destroy()
  res.writeHead(status, { ...SECURITY_HEADERS, "content-type": type, "content-length": String(Buffer.byteLength(body)), ...headers })
  res.end(body)
}

const sendError = (res: ServerResponse, e: HttpError) =>
  send(
    res,
    e.status,
    "application/json; charset=utf-8",
    JSON.stringify({ error: { status: e.status, code: e.code, message: e.message } }) + "\n",
    e.headers
  )

type Match = { readonly route: Route; readonly params: Record<string, string> } | { readonly allowed: ReadonlyArray<string> }

const match = (table: ReadonlyArray<Compiled>, method: string, path: string): Match => {
  const segments = path.split("/")
  const allowed: Array<string> = []
  for (const c of table) {
    if (c.parts.length !== segments.length) continue
    const params: Record<string, string> = {}
    let hit = true
    for (let i = 0; i < c.parts.length && hit; i++) {
      const p = c.parts[i]!
      if (p.startsWith(":")) {
        let v: string
        try {
          v = decodeURIComponent(segments[i]!)
        } catch {
          hit = false
          break
        }
        if (v === "") hit = false
        else params[p.slice(1)] = v
      } else hit = p === segments[i]
    }
    if (!hit) continue
    if (c.route.method === method || (method === "HEAD" && c.route.method === "GET")) return { route: c.route, params }
    allowed.push(c.route.method)
  }
  return { allowed }
}

/** How long a refused request's remaining body is read and discarded before its connection is closed. */
const LINGER_MS = 2000

/** Reads the body up to `max` bytes; more is 413 (the connection is closed, the rest is not read). */
const readBody = (req: IncomingMessage, max: number, timeoutMs: number): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new HttpError(408, "request_timeout", `the request body did not arrive within ${timeoutMs} ms`)),
      timeoutMs
    )
    const done = (b: Buffer) => {
      clearTimeout(timer)
      resolve(b)
    }
    const fail = (e: HttpError) => {
      clearTimeout(timer)
      reject(e)
    }
    const declared = req.headers["content-length"]
    const hasBody = declared !== undefined ? Number(declared) > 0 : req.headers["transfer-encoding"] !== undefined
    if (!hasBody) return done(Buffer.alloc(0))
    if (max === 0) return fail(new HttpError(413, "body_not_allowed", "this endpoint takes no request body"))
    if (declared !== undefined && Number(declared) > max)
      return fail(new HttpError(413, "body_too_large", `the request body is ${declared} bytes; this endpoint takes at most ${max}`))
    const chunks: Array<Buffer> = []
    let size = 0
    req.on("data", (c: Buffer) => {
      size += c.length
      if (size > max) {
        req.removeAllListeners("data")
        req.pause()
        return fail(new HttpError(413, "body_too_large", `the request body exceeds ${max} bytes, the most this endpoint takes`))
      }
      chunks.push(c)
    })
    req.on("end", () => done(Buffer.concat(chunks, size)))
    req.on("error", (e) => fail(new HttpError(400, "body_unreadable", `the request body could not be read: ${e.message}`)))
  })

export const start = async (o: ServerOptions): Promise<Listening> => {
  const table: ReadonlyArray<Compiled> = o.routes.map((route) => ({ route, parts: route.path.split("/") }))

  const handle = async (req: IncomingMessage, res: ServerResponse, started: number): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://missive.invalid")
    const m = match(table, req.method ?? "GET", url.pathname)
    if (!("route" in m)) {
      if (m.allowed.length > 0)
        throw new HttpError(405, "method_not_allowed", `${req.method} is not allowed on ${url.pathname}; use ${m.allowed.join(", ")}`, {
          allow: m.allowed.join(", ")
        })
      throw new HttpError(404, "not_found", `no endpoint ${url.pathname} (the API is described at /openapi.json)`)
    }
    const { route, params } = m
    let token: Tokens.Token | undefined
    const auth = req.headers.authorization
    if (auth !== undefined || route.need !== "public") {
      const bearer = auth === undefined ? undefined : /^Bearer +(\S{1,512})\s*$/i.exec(auth)?.[1]
      const challenge = { "www-authenticate": 'Bearer realm="missive"' }
      if (auth === undefined)
        throw new HttpError(401, "no_token", "this endpoint needs a bearer token (Authorization: Bearer …)", challenge)
      if (bearer === undefined)
        throw new HttpError(401, "bad_authorization", 'the Authorization header must be "Bearer <token>"', challenge)
      token = o.tokens.find(bearer)
      if (token === undefined) {
        o.log("warn", "http: unknown token", { remote: req.socket.remoteAddress, path: url.pathname })
        throw new HttpError(401, "invalid_token", "the bearer token is not one this node knows", challenge)
      }
      if (!Tokens.allows(token.scope, route.need))
        throw new HttpError(
          403,
          "forbidden",
          `token ${JSON.stringify(token.name)} has scope ${token.scope}; this endpoint needs ${route.need}`
        )
    }
    if (route.json && req.headers["content-length"] !== "0") {
      const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase()
      if (type !== "application/json")
        throw new HttpError(415, "unsupported_media_type", `the body must be application/json, got ${type || "no Content-Type"}`)
    }
    const body = await readBody(req, route.maxBody ?? 0, Math.max(1, o.requestTimeoutMs - (o.clock.now() - started)))
    const ctx: Ctx = {
      method: req.method ?? "GET",
      path: url.pathname,
      params,
      query: url.searchParams,
      token,
      remote: req.socket.remoteAddress ?? "",
      tls: (req.socket as TLSSocket).encrypted === true,
      body,
      req,
      res
    }
    const reply: Reply = await route.handle(ctx)
    if ("streamed" in reply) return
    if ("json" in reply) send(res, reply.status, "application/json; charset=utf-8", JSON.stringify(reply.json) + "\n", reply.headers)
    else send(res, reply.status, reply.type, reply.text, reply.headers)
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res, o.clock.now()).catch((e: unknown) => {
      if (e instanceof HttpError) {
        // A refused or late body is not used: the connection closes after the answer. Closing at once would reset it
        // under a client still writing that body, which then never reads the answer; so the rest is read and thrown
        // away for at most LINGER_MS first (a lingering close, as web servers do).
        const cut = e.status === 413 || e.status === 408
        if (cut) res.setHeader("connection", "close")
        sendError(res, e)
        if (cut)
          res.on("finish", () => {
            if (req.complete) return void req.destroy()
            const timer = setTimeout(() => req.destroy(), LINGER_MS)
            req.removeAllListeners("data")
            req.on("end", () => {
              clearTimeout(timer)
              req.destroy()
            })
            req.resume()
          })
        return
      }
      o.log("error", "http: handler failed", { path: req.url, error: String((e as Error)?.stack ?? e) })
      sendError(res, new HttpError(500, "internal", "the request failed inside the node; its log has the details"))
    })
  }

  // Node checks its own request and header timeouts every connectionsCheckingInterval (30 s by default): every second.
  const options = { connectionsCheckingInterval: 1_000 }
  const server: Server = o.tls ? createHttps({ ...options, cert: o.tls.cert, key: o.tls.key }, onRequest) : createHttp(options, onRequest)
  // Headers within the timeout (Node answers 408), the body within what is left of it (our JSON 408, readBody); Node's
  // own request timeout is the backstop. Idle keep-alive sockets go after 5 s.
  server.requestTimeout = o.requestTimeoutMs + 1_000
  server.headersTimeout = Math.min(o.requestTimeoutMs, 60_000)
  server.keepAliveTimeout = 5_000
  server.maxHeadersCount = 100
  server.maxConnections = 512
  // A request Node's parser refuses (or whose headers were too slow) never reaches a handler: answered here, as JSON.
  server.on("clientError", (e: NodeJS.ErrnoException, socket) => {
    const [status, code, reason, message] =
      e.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, "request_timeout", "Request Timeout", `the request did not arrive within ${o.requestTimeoutMs} ms`]
        : e.code === "HPE_HEADER_OVERFLOW"
          ? [431, "headers_too_large", "Request Header Fields Too Large", "the request headers are too large"]
          : [400, "bad_request", "Bad Request", `the request is not valid HTTP/1.1 (${e.code ?? "parse error"})`]
    const body = JSON.stringify({ error: { status, code, message } }) + "\n"
    if (!socket.writable) return void socket.destroy()
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
    )
  })
  await new Promise<void>((done, fail) => {
    server.once("error", fail)
    server.listen(o.port, o.host, () => {
      server.off("error", fail)
      done()
    })
  })
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((done) => {
        server.close(() => done())
        server.closeAllConnections()
      })
  }
}
