// The rspamd client: one message checked by rspamd's normal worker over HTTP (POST /checkv2, the envelope in its
// request headers: IP, Helo, From, Rcpt, User, Queue-Id), and the answer turned into an outcome with rspamd's action,
// score, symbols, and the header edits it asks for. It only asks and classifies; the caller decides the SMTP reply.
// Security: the request has a deadline (connect, send and the whole reply); a reply that is not rspamd's JSON, is too
// large, or stops half-way is a Failed outcome, never a hung session; rspamd's words are sanitised before reuse.
import { request } from "node:http"
import { printable } from "./Clamd.js"
import type { Filter, Verdict as FilterVerdict } from "./Filter.js"
import * as Header from "./Header.js"
import * as Scan from "./Scan.js"

export interface RspamdOptions {
  /** The normal worker, "http://host:port". */
  readonly url: string
  readonly timeoutMs: number
  /** Sent as rspamd's Password header (the controller's password, when the worker asks for one). */
  readonly password?: string | undefined
}

export interface Envelope {
  readonly ip: string
  readonly helo: string
  /** "" for the null sender. */
  readonly sender: string
  readonly recipients: ReadonlyArray<string>
  readonly user?: string | undefined
  readonly hostname?: string | undefined
  readonly queueId?: string | undefined
}

/** rspamd's actions (its `actions` section), closed. */
export type Action = "no action" | "greylist" | "add header" | "rewrite subject" | "soft reject" | "reject"
const ACTIONS: ReadonlyArray<Action> = ["no action", "greylist", "add header", "rewrite subject", "soft reject", "reject"]

export interface Verdict {
  readonly _tag: "Checked"
  readonly action: Action
  readonly score: number
  readonly required: number
  /** Symbol names with their scores, highest first, at most 50. */
  readonly symbols: ReadonlyArray<readonly [string, number]>
  /** rspamd's `messages.smtp_message`, sanitised, when it gave one. */
  readonly message: string | undefined
  /** The new Subject for "rewrite subject". */
  readonly subject: string | undefined
  /** Header edits asked for in rspamd's `milter` block (milter_headers module). */
  readonly addHeaders: ReadonlyArray<readonly [string, string]>
  readonly removeHeaders: ReadonlyArray<string>
}

export type RspamdOutcome = Verdict | { readonly _tag: "Failed"; readonly reason: RspamdFailure; readonly detail: string }
export type RspamdFailure = "connect" | "timeout" | "closed" | "garbage" | "status"

const MAX_RESPONSE = 4 * 1024 * 1024
const HEADER_NAME = /^[A-Za-z0-9-]{1,64}$/

const num = (v: unknown): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined)

/** rspamd's /checkv2 JSON to a verdict; undefined when it is not that. */
export const parseReply = (json: unknown): Verdict | undefined => {
  if (json === null || typeof json !== "object") return undefined
  const r = json as Record<string, unknown>
  const action = ACTIONS.find((a) => a === r["action"])
  const score = num(r["score"])
  if (action === undefined || score === undefined) return undefined
  const symbols: Array<readonly [string, number]> = []
  if (r["symbols"] && typeof r["symbols"] === "object")
    for (const [name, s] of Object.entries(r["symbols"] as Record<string, unknown>))
      symbols.push([printable(name, 64), num((s as Record<string, unknown> | null)?.["score"]) ?? 0])
  symbols.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
  const messages = r["messages"] && typeof r["messages"] === "object" ? (r["messages"] as Record<string, unknown>) : {}
  const smtp = typeof messages["smtp_message"] === "string" ? printable(messages["smtp_message"], 200) : undefined
  const milter = r["milter"] && typeof r["milter"] === "object" ? (r["milter"] as Record<string, unknown>) : {}
  const addHeaders: Array<readonly [string, string]> = []
  if (milter["add_headers"] && typeof milter["add_headers"] === "object")
    for (const [name, v] of Object.entries(milter["add_headers"] as Record<string, unknown>)) {
      if (!HEADER_NAME.test(name)) continue
      const values = Array.isArray(v) ? v : [v]
      for (const one of values) {
        const value = typeof one === "string" ? one : (one as { value?: unknown } | null)?.value
        if (typeof value === "string") addHeaders.push([name, printable(value, 998)])
      }
    }
  const removeHeaders =
    milter["remove_headers"] && typeof milter["remove_headers"] === "object"
      ? Object.keys(milter["remove_headers"] as Record<string, unknown>).filter((n) => HEADER_NAME.test(n))
      : []
  return {
    _tag: "Checked",
    action,
    score,
    required: num(r["required_score"]) ?? 0,
    symbols: symbols.slice(0, 50),
    message: smtp !== undefined && smtp !== "" ? smtp : undefined,
    subject: typeof r["subject"] === "string" ? printable(r["subject"], 998) : undefined,
    addHeaders,
    removeHeaders
  }
}

/** Asks rspamd about one message. Never rejects: every failure is an outcome. */
export const check = (opts: RspamdOptions, envelope: Envelope, body: Buffer): Promise<RspamdOutcome> =>
  new Promise<RspamdOutcome>((resolve) => {
    let settled = false
    const url = new URL("/checkv2", opts.url)
    // A flat list, so that each recipient is its own Rcpt header (rspamd reads one address per header).
    const headers: Array<string> = ["Content-Length", String(body.length), "IP", envelope.ip, "Helo", envelope.helo || "unknown"]
    headers.push("From", `<${envelope.sender}>`)
    for (const r of envelope.recipients) headers.push("Rcpt", `<${r}>`)
    if (envelope.user) headers.push("User", envelope.user)
    if (envelope.hostname) headers.push("Hostname", envelope.hostname)
    if (envelope.queueId) headers.push("Queue-Id", envelope.queueId)
    if (opts.password) headers.push("Password", opts.password)
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers, agent: false })
    const done = (o: RspamdOutcome): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      req.destroy()
      resolve(o)
    }
    const timer = setTimeout(
      () => done({ _tag: "Failed", reason: "timeout", detail: `no complete reply within ${opts.timeoutMs} ms` }),
      opts.timeoutMs
    )
    req.once("error", (e: NodeJS.ErrnoException) =>
      done({
        _tag: "Failed",
        reason:
          e.code === "ECONNREFUSED" || e.code === "EHOSTUNREACH" ? "connect" : e.code === "HPE_INVALID_CONSTANT" ? "garbage" : "closed",
        detail: printable(e.code ?? e.message, 120)
      })
    )
    req.once("response", (res) => {
      const chunks: Buffer[] = []
      let size = 0
      res.on("data", (b: Buffer) => {
        size += b.length
        if (size > MAX_RESPONSE) return done({ _tag: "Failed", reason: "garbage", detail: `a reply of more than ${MAX_RESPONSE} bytes` })
        chunks.push(b)
      })
      res.once("aborted", () => done({ _tag: "Failed", reason: "closed", detail: "closed mid-reply" }))
      res.once("error", () => done({ _tag: "Failed", reason: "closed", detail: "closed mid-reply" }))
      res.once("end", () => {
        const text = Buffer.concat(chunks).toString("utf8")
        if (res.statusCode !== 200)
          return done({ _tag: "Failed", reason: "status", detail: `HTTP ${res.statusCode}: ${printable(text, 120)}` })
        let json: unknown
        try {
          json = JSON.parse(text)
        } catch {
          return done({ _tag: "Failed", reason: "garbage", detail: `not JSON: ${JSON.stringify(printable(text, 80))}` })
        }
        const verdict = parseReply(json)
        done(verdict ?? { _tag: "Failed", reason: "garbage", detail: `JSON without an action and a score: ${printable(text, 80)}` })
      })
    })
    req.end(body)
  })

export interface RspamdFilterOptions extends RspamdOptions {
  readonly onFailure: Scan.OnFailure
  readonly hostname: string
}

/** Fields a sender could forge to look scanned: removed before rspamd's own are added. */
const OWN_HEADERS = ["x-spam", "x-rspamd-action", "x-rspamd-score", "x-rspamd-symbols"]

const ACTION_OF: Readonly<Record<Action, FilterVerdict["action"]>> = {
  "no action": "accept",
  "add header": "add-headers",
  "rewrite subject": "add-headers",
  greylist: "tempfail",
  "soft reject": "tempfail",
  reject: "reject"
}

/** The header fields rspamd's verdict adds, and the message with its header edits. */
const tagged = (v: Verdict, message: Buffer): Buffer => {
  let m = Header.remove(message, [...OWN_HEADERS, ...v.removeHeaders])
  if (v.action === "rewrite subject" && v.subject !== undefined) m = Header.setSubject(m, v.subject)
  return Header.prepend(m, [
    ...(v.action === "add header" || v.action === "rewrite subject" ? [["X-Spam", "Yes"] as const] : []),
    ["X-Rspamd-Action", v.action],
    ["X-Rspamd-Score", `${v.score.toFixed(2)} / ${v.required.toFixed(2)}`],
    ...(v.symbols.length > 0 ? [["X-Rspamd-Symbols", v.symbols.map(([s, n]) => `${s}(${Number(n.toFixed(2))})`).join(", ")] as const] : []),
    ...v.addHeaders.filter(([n]) => !OWN_HEADERS.includes(n.toLowerCase()))
  ])
}

/** rspamd at the end of DATA: its action decides (reject 550 5.7.1, soft reject and greylist 451 4.7.1, else tagged). */
export const filter = (opts: RspamdFilterOptions): Filter => ({
  name: "rspamd",
  data: async (c) => {
    const envelope: Envelope = {
      ip: c.session.ip,
      helo: c.session.helo,
      sender: c.sender,
      recipients: c.recipients,
      user: c.session.user,
      hostname: opts.hostname
    }
    const o = await check(opts, envelope, c.message)
    if (o._tag === "Failed") return Scan.failed("rspamd", `${o.reason}: ${o.detail}`, opts.onFailure, c.message)
    const action = ACTION_OF[o.action]
    const reply =
      o.action === "reject"
        ? Scan.ScanReplies.spam(o.message)
        : o.action === "soft reject"
          ? Scan.ScanReplies.softReject(o.message)
          : o.action === "greylist"
            ? Scan.ScanReplies.greylisted
            : undefined
    const verdict: FilterVerdict = {
      name: "rspamd",
      stage: "data",
      result: o.action,
      score: o.score,
      action,
      ...(reply ? { reply } : {}),
      detail: `${o.action} ${o.score}/${o.required}: ${o.symbols
        .filter(([, n]) => n !== 0)
        .map(([s, n]) => `${s}(${n})`)
        .join(" ")}`.slice(0, 500)
    }
    return reply ? { verdicts: [verdict] } : { verdicts: [verdict], message: tagged(o, c.message) }
  }
})
