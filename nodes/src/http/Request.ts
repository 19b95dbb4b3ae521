// What a route handler sees and gives back: the parsed request (path parameters, query, the caller's token, the body
// read within its limit) and a reply (JSON, text, or a response the handler streams itself). Errors are HttpError
// with a status, a stable code and a precise message; the server turns them into JSON. No I/O here.
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Need, Token } from "./Tokens.js"

export interface Ctx {
  readonly method: string
  readonly path: string
  readonly params: Readonly<Record<string, string>>
  readonly query: URLSearchParams
  /** The caller's token; undefined on public routes called without one. */
  readonly token: Token | undefined
  /** The client's address, for the record of injected mail. */
  readonly remote: string
  readonly tls: boolean
  readonly body: Buffer
  readonly req: IncomingMessage
  readonly res: ServerResponse
}

export type Reply =
  | { readonly status: number; readonly json: unknown; readonly headers?: Readonly<Record<string, string>> }
  | { readonly status: number; readonly text: string | Buffer; readonly type: string; readonly headers?: Readonly<Record<string, string>> }
  /** The handler wrote the response itself (server-sent events). */
  | { readonly streamed: true }

export interface Route {
  readonly method: "GET" | "POST" | "PUT" | "DELETE"
  /** "/api/v1/messages/:id/hold": a ":name" segment is a parameter. */
  readonly path: string
  readonly need: Need
  /** Largest body accepted, bytes; 0 (the default) refuses any body. */
  readonly maxBody?: number
  /** The body must be JSON (Content-Type application/json). */
  readonly json?: boolean
  readonly handle: (ctx: Ctx) => Promise<Reply>
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {}
  ) {
    super(message)
  }
}

export const ok = (json: unknown, status = 200): Reply => ({ status, json })

/** The body as JSON, or 400 with where the parse stopped. */
export const jsonBody = (ctx: Ctx): unknown => {
  const text = ctx.body.toString("utf8")
  if (text.trim() === "") throw new HttpError(400, "empty_body", "the request body is empty; expected a JSON object")
  try {
    return JSON.parse(text)
  } catch (e) {
    throw new HttpError(400, "malformed_json", `the request body is not valid JSON: ${(e as Error).message}`)
  }
}

/** An object's field, checked: `what` says what was expected, in the error. */
export const field = <T>(o: Record<string, unknown>, key: string, ok: (v: unknown) => v is T, what: string, path = key): T => {
  const v = o[key]
  if (!ok(v)) throw new HttpError(400, "invalid_field", `${path}: expected ${what}, got ${describe(v)}`)
  return v
}

export const describe = (v: unknown): string =>
  v === undefined
    ? "nothing"
    : v === null
      ? "null"
      : Array.isArray(v)
        ? "an array"
        : typeof v === "object"
          ? "an object"
          : JSON.stringify(v).slice(0, 60)

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v)
export const isString = (v: unknown): v is string => typeof v === "string"
