// SMTP replies: the one table of codes Missive speaks and the parser for remote replies.
// Pure data; must not format anything for a particular transport.

export interface Reply {
  readonly code: number
  readonly enhanced?: string | undefined
  readonly text: string
  /** The reply as received, line by line (without CR LF), when it spanned more than one line; `text` joins them. */
  readonly lines?: ReadonlyArray<string> | undefined
}

/** Outcome class of a reply, RFC 5321 §4.2.1: 2xx done, 4xx transient, 5xx permanent. */
export type ReplyClass = "success" | "transient" | "permanent"

export const classify = (reply: Reply): ReplyClass =>
  reply.code >= 200 && reply.code < 400 ? "success" : reply.code >= 500 ? "permanent" : "transient"

const ENHANCED = /^([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)/

/** Parses "550 5.1.1 User unknown" (possibly multi-line) into a Reply; unknown shapes become 451 4.4.0. */
export const parse = (raw: string): Reply => {
  const lines = raw
    .replace(/\r/g, "")
    .split("\n")
    .filter((l) => l.trim().length > 0)
  const first = lines[0] ?? ""
  const m = /^(\d{3})(?!\d)[ -]?(.*)$/.exec(first)
  // The text of a Reply is one line: a CR or LF in it would split the line when the reply is formatted again.
  if (!m) return { code: 451, enhanced: "4.4.0", text: raw.replace(/\s+/g, " ").trim() || "no reply" }
  const code = Number(m[1])
  const bodies = lines.map((l) => l.replace(/^\d{3}[ -]?/, ""))
  const enhanced = ENHANCED.exec(bodies[0] ?? "")?.[1]
  // RFC 2034 §4: each line of a multi-line reply repeats the enhanced code; keep it once, out of the text.
  const text = bodies
    .map((b) => (enhanced === undefined ? b : b.replace(ENHANCED, "")).trim())
    .filter((b) => b.length > 0)
    .join(" ")
  const whole = lines.length > 1 ? { lines } : {}
  return enhanced === undefined ? { code, text, ...whole } : { code, enhanced, text, ...whole }
}

export const format = (r: Reply): string => `${r.code}${r.enhanced ? ` ${r.enhanced}` : ""} ${r.text}`

/** Replies Missive itself gives or records (closed vocabulary). */
export const Replies = {
  ok: { code: 250, enhanced: "2.0.0", text: "OK" },
  queued: (id: string): Reply => ({ code: 250, enhanced: "2.0.0", text: `OK queued as ${id}` }),
  storeBusy: { code: 451, enhanced: "4.3.0", text: "Temporary storage failure, try again later" },
  storeFull: { code: 452, enhanced: "4.3.1", text: "Insufficient system storage" },
  tooBig: { code: 552, enhanced: "5.3.4", text: "Message size exceeds fixed maximum message size" },
  relayDenied: { code: 550, enhanced: "5.7.1", text: "Relaying denied" },
  tooManyRecipients: { code: 452, enhanced: "4.5.3", text: "Too many recipients" },
  badSyntax: { code: 501, enhanced: "5.1.3", text: "Bad recipient address syntax" },
  bareLf: { code: 550, enhanced: "5.6.11", text: "Bare CR or LF in message content is not allowed" },
  lineTooLong: { code: 500, enhanced: "5.5.6", text: "Line too long" },
  nullMx: { code: 556, enhanced: "5.1.10", text: "Recipient domain does not accept mail (null MX)" },
  noSuchDomain: { code: 550, enhanced: "5.1.2", text: "Recipient domain not found" },
  dnsTempFail: { code: 451, enhanced: "4.4.3", text: "DNS lookup failed temporarily" },
  connectFailed: (detail: string): Reply => ({ code: 451, enhanced: "4.4.1", text: `Connection failed: ${detail}` }),
  /** No hop satisfied the destination's TLS policy (MTA-STS enforce, DANE): deferred, bounced at the lifetime. */
  tlsPolicyFailed: (detail: string): Reply => ({ code: 451, enhanced: "4.7.5", text: `TLS policy not satisfied: ${detail}` }),
  expired: { code: 550, enhanced: "4.4.7", text: "Message expired: delivery time limit exceeded" },
  operatorBounce: (by: string): Reply => ({ code: 550, enhanced: "5.0.0", text: `Bounced by operator ${by}` }),
  mailboxUnavailable: { code: 550, enhanced: "5.1.1", text: "Mailbox unavailable" },
  /** A recipient on the suppression list: refused at RCPT on submission, bounced when relayed. */
  suppressed: (reason: string): Reply => ({ code: 550, enhanced: "5.1.1", text: `Recipient address suppressed (${reason})` }),
  /** An authenticated user over its sending quota (per second or per 24 hours). */
  overQuota: (what: string): Reply => ({ code: 451, enhanced: "4.7.1", text: `Sending quota exceeded: ${what}` }),
  localError: (detail: string): Reply => ({ code: 451, enhanced: "4.3.0", text: `Local delivery failed: ${detail}` })
} as const
