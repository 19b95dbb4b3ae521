// HTTP injection (KumoMTA's idea): POST /api/v1/messages with an envelope and either a raw RFC 5322 message or
// structured content (headers, text, html, attachments given inline) that nodemailer's MailComposer builds into MIME.
// The message goes through the same intake as SMTP: the same trace headers, the same one durable commit before the
// answer, the same events; each recipient gets its own answer. Must not deliver or write to a store itself.
// Security: needs an inject (or admin) token; MailComposer runs with file and URL access disabled, so content cannot
// name a local file or a URL to attach; header names and values are checked for CR/LF; sizes follow `limits`.
import MailComposer from "nodemailer/lib/mail-composer/index.js"
import type { Deps } from "./Deps.js"
import { describe, HttpError, isObject, isString, jsonBody, type Ctx, type Reply } from "./Request.js"

export interface RecipientAnswer {
  readonly recipient: string
  readonly status: "queued" | "rejected" | "deferred"
  readonly code: number
  readonly enhanced: string
  readonly message: string
}

const domainLabel = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
const DOMAIN = new RegExp(`^${domainLabel}(?:\\.${domainLabel})+$|^localhost$`)
const LOCAL = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/

/** Why `a` is not a mailbox we accept in an envelope (dot-atom local part, a domain name or a literal), or undefined. */
export const addressProblem = (a: string): string | undefined => {
  if (a.length > 320) return "longer than 320 characters"
  const at = a.lastIndexOf("@")
  if (at <= 0) return "no local part and domain (local@domain)"
  const local = a.slice(0, at)
  const domain = a.slice(at + 1)
  if (local.length > 64) return "local part longer than 64 characters"
  if (!LOCAL.test(local) && !/^"[\x20-\x21\x23-\x5b\x5d-\x7e]*"$/.test(local)) return `local part ${JSON.stringify(local)} is not valid`
  if (!DOMAIN.test(domain) && !/^\[(?:IPv6:)?[0-9A-Fa-f:.]+\]$/.test(domain)) return `domain ${JSON.stringify(domain)} is not valid`
  return undefined
}

const stringList = (v: unknown, path: string): ReadonlyArray<string> => {
  if (v === undefined) return []
  const list = isString(v) ? [v] : v
  if (!Array.isArray(list) || !list.every(isString))
    throw new HttpError(400, "invalid_field", `${path}: expected an address or a list of addresses, got ${describe(v)}`)
  return list
}

/** Bare LF or CR become CRLF (JSON writers send "\n"); the header section is checked line by line. */
const normalizeRaw = (raw: Buffer): Buffer => {
  const text = raw.toString("latin1").replace(/\r\n|\r|\n/g, "\r\n")
  const lines = text.split("\r\n")
  let sawHeader = false
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    if (line === "") break
    if (/^[ \t]/.test(line) && sawHeader) continue
    if (!/^[!-9;-~]+:/.test(line))
      throw new HttpError(
        400,
        "invalid_message",
        `raw: line ${i + 1} is neither a header field ("Name: value") nor a folded continuation; an empty line must separate the header section from the body`
      )
    sawHeader = true
  }
  if (!sawHeader) throw new HttpError(400, "invalid_message", "raw: the message has no header section")
  return Buffer.from(text.endsWith("\r\n") ? text : `${text}\r\n`, "latin1")
}

const HEADER_NAME = /^[!-9;-~]{1,76}$/

const compose = async (c: Record<string, unknown>): Promise<Buffer> => {
  const text = c["text"]
  const html = c["html"]
  const subject = c["subject"]
  const from = c["from"]
  if (!isString(from)) throw new HttpError(400, "invalid_field", `content.from: expected an address, got ${describe(from)}`)
  if (subject !== undefined && !isString(subject))
    throw new HttpError(400, "invalid_field", `content.subject: expected a string, got ${describe(subject)}`)
  if (text !== undefined && !isString(text))
    throw new HttpError(400, "invalid_field", `content.text: expected a string, got ${describe(text)}`)
  if (html !== undefined && !isString(html))
    throw new HttpError(400, "invalid_field", `content.html: expected a string, got ${describe(html)}`)
  if (text === undefined && html === undefined) throw new HttpError(400, "invalid_field", "content: give text, html or both")
  const headers: Record<string, string> = {}
  const given = c["headers"]
  if (given !== undefined) {
    if (!isObject(given))
      throw new HttpError(400, "invalid_field", `content.headers: expected an object of name: value, got ${describe(given)}`)
    for (const [name, value] of Object.entries(given)) {
      if (!HEADER_NAME.test(name))
        throw new HttpError(400, "invalid_field", `content.headers: ${JSON.stringify(name.slice(0, 80))} is not a header name`)
      if (!isString(value) || /[\r\n]/.test(value))
        throw new HttpError(400, "invalid_field", `content.headers.${name}: expected a one-line string, got ${describe(value)}`)
      headers[name] = value
    }
  }
  const attachments = c["attachments"]
  const files: Array<{ filename: string; content: Buffer; contentType?: string }> = []
  if (attachments !== undefined) {
    if (!Array.isArray(attachments))
      throw new HttpError(400, "invalid_field", `content.attachments: expected a list, got ${describe(attachments)}`)
    attachments.forEach((a: unknown, i) => {
      const path = `content.attachments[${i}]`
      if (!isObject(a) || !isString(a["filename"]) || !isString(a["content_base64"]))
        throw new HttpError(400, "invalid_field", `${path}: expected {filename, content_base64[, content_type]}, got ${describe(a)}`)
      if (a["content_type"] !== undefined && !isString(a["content_type"]))
        throw new HttpError(400, "invalid_field", `${path}.content_type: expected a string, got ${describe(a["content_type"])}`)
      files.push({
        filename: a["filename"],
        content: Buffer.from(a["content_base64"], "base64"),
        ...(isString(a["content_type"]) ? { contentType: a["content_type"] } : {})
      })
    })
  }
  const mail = new MailComposer({
    from,
    to: [...stringList(c["to"], "content.to")],
    cc: [...stringList(c["cc"], "content.cc")],
    replyTo: [...stringList(c["reply_to"], "content.reply_to")],
    ...(subject !== undefined ? { subject } : {}),
    ...(text !== undefined ? { text } : {}),
    ...(html !== undefined ? { html } : {}),
    headers,
    attachments: files,
    disableFileAccess: true,
    disableUrlAccess: true
  })
  return mail.compile().build()
}

const mailboxOf = (s: string): string => /<([^<>]*)>\s*$/.exec(s)?.[1] ?? s.trim()

export const inject =
  (d: Deps) =>
  async (ctx: Ctx): Promise<Reply> => {
    const req = jsonBody(ctx)
    if (!isObject(req)) throw new HttpError(400, "invalid_request", `expected a JSON object, got ${describe(req)}`)
    const unknown = Object.keys(req).filter((k) => !["envelope", "raw", "raw_base64", "content"].includes(k))
    if (unknown.length > 0)
      throw new HttpError(
        400,
        "unknown_field",
        `unknown field ${JSON.stringify(unknown[0])} (expected envelope, raw, raw_base64 or content)`
      )
    const forms = ["raw", "raw_base64", "content"].filter((k) => req[k] !== undefined)
    if (forms.length !== 1)
      throw new HttpError(400, "invalid_request", `give exactly one of raw, raw_base64 or content (got ${forms.join(", ") || "none"})`)
    const content = req["content"]
    if (content !== undefined && !isObject(content))
      throw new HttpError(400, "invalid_field", `content: expected an object, got ${describe(content)}`)
    const envelope = req["envelope"]
    if (envelope !== undefined && !isObject(envelope))
      throw new HttpError(400, "invalid_field", `envelope: expected an object, got ${describe(envelope)}`)
    if (envelope === undefined && content === undefined) throw new HttpError(400, "invalid_field", "envelope: required with a raw message")

    const from = envelope !== undefined ? envelope["from"] : mailboxOf(String(content!["from"] ?? ""))
    if (!isString(from))
      throw new HttpError(400, "invalid_field", `envelope.from: expected an address ("" for the null sender), got ${describe(from)}`)
    const fromProblem = from === "" ? undefined : addressProblem(from)
    if (fromProblem) throw new HttpError(400, "invalid_field", `envelope.from: ${fromProblem}`)
    const to =
      envelope !== undefined
        ? stringList(envelope["to"], "envelope.to")
        : ["to", "cc", "bcc"].flatMap((k) => stringList(content![k], `content.${k}`)).map(mailboxOf)
    if (to.length === 0) throw new HttpError(400, "invalid_field", "envelope.to: at least one recipient is needed")
    const max = d.config.http.max_recipients
    if (to.length > max)
      throw new HttpError(
        400,
        "too_many_recipients",
        `envelope.to: ${to.length} recipients; at most ${max} per message (http.max_recipients)`
      )

    const answers: Array<RecipientAnswer> = []
    const accepted: Array<string> = []
    const seen = new Set<string>()
    for (const r of to) {
      const problem = addressProblem(r)
      const key = r.toLowerCase()
      if (problem)
        answers.push({ recipient: r, status: "rejected", code: 501, enhanced: "5.1.3", message: `bad recipient address: ${problem}` })
      else if (seen.has(key))
        answers.push({ recipient: r, status: "rejected", code: 503, enhanced: "5.5.1", message: "duplicate recipient" })
      else {
        seen.add(key)
        accepted.push(r)
        answers.push({ recipient: r, status: "queued", code: 250, enhanced: "2.1.5", message: "recipient ok" })
      }
    }
    if (accepted.length === 0)
      return { status: 422, json: { id: null, queued: false, reply: "554 5.5.1 No valid recipients", recipients: answers } }

    let body: Buffer
    if (content !== undefined) {
      // The bcc list is the envelope's only: it is left out of the composed headers.
      body = await compose({ ...content, bcc: undefined })
    } else {
      const raw = req["raw"] ?? req["raw_base64"]
      if (!isString(raw)) throw new HttpError(400, "invalid_field", `${forms[0]}: expected a string, got ${describe(raw)}`)
      body = normalizeRaw(forms[0] === "raw" ? Buffer.from(raw, "utf8") : Buffer.from(raw, "base64"))
    }
    const limit = d.config.limits.max_message_size
    if (body.length > limit)
      throw new HttpError(413, "message_too_large", `the message is ${body.length} bytes; at most ${limit} (limits.max_message_size)`)

    const reply = await d.intake.accept({
      sender: from,
      recipients: accepted,
      body,
      client: { ip: ctx.remote, helo: "http-api", tls: ctx.tls, user: ctx.token!.name }
    })
    const text = `${reply.code} ${reply.enhanced ? `${reply.enhanced} ` : ""}${reply.text}`
    if (reply.code >= 300) {
      // Nothing was kept: every recipient that passed gets intake's answer (4xx: try again later).
      const status = reply.code >= 500 ? "rejected" : "deferred"
      for (let i = 0; i < answers.length; i++)
        if (answers[i]!.status === "queued")
          answers[i] = { ...answers[i]!, status, code: reply.code, enhanced: reply.enhanced ?? "", message: reply.text }
      return {
        status: reply.code >= 500 ? 422 : 503,
        json: { id: null, queued: false, reply: text, recipients: answers },
        ...(reply.code < 500 ? { headers: { "retry-after": "30" } } : {})
      }
    }
    return { status: 200, json: { id: reply.id, queued: true, reply: text, recipients: answers } }
  }
