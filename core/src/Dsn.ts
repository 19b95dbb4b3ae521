// RFC 3464 delivery status notifications: builds the multipart/report text of a bounce.
// Pure text assembly; must not decide whether a DSN is due (the decider does: never for a null sender).
import type { Reply } from "./Reply.js"

export interface FailedRecipient {
  readonly rcpt: string
  readonly reply: Reply
  /** "failed" for bounces and expiries (RFC 3464 §2.3.3). */
  readonly action: "failed" | "delayed"
  readonly remoteMta?: string | undefined
  readonly lastAttemptAt?: number | undefined
}

export interface DsnInput {
  readonly dsnId: string
  readonly originalId: string
  readonly reportingMta: string
  readonly postmaster: string
  readonly to: string
  readonly arrivedAt: number
  readonly now: number
  readonly failed: ReadonlyArray<FailedRecipient>
  /** The original header section, CRLF line ends, without the blank line. */
  readonly originalHeaders: string
  /** A delay notice (every recipient "delayed", a warning only) instead of a failure report; with the retry limit. */
  readonly delay?: { readonly willRetryUntil: number } | undefined
}

const CRLF = "\r\n"

const DAYS = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"] // 1970-01-01 was a Thursday
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
const two = (n: number): string => (n < 10 ? `0${n}` : String(n))

/** RFC 5322 date in UTC from epoch milliseconds, by calendar arithmetic (Hinnant's civil_from_days): no Date object. */
export const rfc5322Date = (ms: number): string => {
  const days = Math.floor(ms / 86_400_000)
  const secs = Math.floor((ms - days * 86_400_000) / 1000)
  const z = days + 719_468
  const era = Math.floor(z / 146_097)
  const doe = z - era * 146_097
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365)
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100))
  const mp = Math.floor((5 * doy + 2) / 153)
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1
  const month = mp < 10 ? mp + 3 : mp - 9
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0)
  const weekday = DAYS[((days % 7) + 7) % 7]
  return `${weekday}, ${two(day)} ${MONTHS[month - 1]} ${year} ${two(Math.floor(secs / 3600))}:${two(Math.floor((secs % 3600) / 60))}:${two(secs % 60)} +0000`
}

const statusOf = (r: Reply, action: FailedRecipient["action"]): string =>
  r.enhanced && /^[245]\.\d{1,3}\.\d{1,3}$/.test(r.enhanced)
    ? r.enhanced
    : action === "delayed"
      ? "4.0.0"
      : r.code >= 500
        ? "5.0.0"
        : "4.4.7"

/** Builds the DSN as a complete RFC 5322 message with CRLF line ends. */
export const build = (d: DsnInput): string => {
  const boundary = `=_missive_${d.dsnId}`
  const human = d.failed
    .map((f) =>
      `<${f.rcpt}>: ${f.remoteMta ? `host ${f.remoteMta} said: ` : ""}${f.reply.code} ${f.reply.enhanced ?? ""} ${f.reply.text}`.replace(
        /\s+/g,
        " "
      )
    )
    .join(CRLF)
  const perRcpt = d.failed.map((f) =>
    [
      `Final-Recipient: rfc822; ${f.rcpt}`,
      `Action: ${f.action}`,
      `Status: ${statusOf(f.reply, f.action)}`,
      ...(f.remoteMta ? [`Remote-MTA: dns; ${f.remoteMta}`] : []),
      `Diagnostic-Code: smtp; ${`${f.reply.code} ${f.reply.enhanced ?? ""} ${f.reply.text}`.replace(/\s+/g, " ").trim()}`,
      ...(f.lastAttemptAt !== undefined ? [`Last-Attempt-Date: ${rfc5322Date(f.lastAttemptAt)}`] : []),
      ...(d.delay !== undefined ? [`Will-Retry-Until: ${rfc5322Date(d.delay.willRetryUntil)}`] : [])
    ].join(CRLF)
  )
  return [
    `From: Mail Delivery System <${d.postmaster}>`,
    `To: <${d.to}>`,
    d.delay ? `Subject: Delayed Mail (still being retried)` : `Subject: Undelivered Mail Returned to Sender`,
    `Date: ${rfc5322Date(d.now)}`,
    `Message-ID: <${d.dsnId}@${d.reportingMta}>`,
    `Auto-Submitted: auto-replied`,
    `MIME-Version: 1.0`,
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    ``,
    `This is a MIME-encapsulated message.`,
    ``,
    `--${boundary}`,
    `Content-Type: text/plain; charset=utf-8`,
    `Content-Description: Notification`,
    ``,
    `This is the mail system at host ${d.reportingMta}.`,
    ``,
    ...(d.delay
      ? [
          `#################################################################`,
          `# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #`,
          `#################################################################`,
          ``,
          `Your message ${d.originalId} could not be delivered yet to one or more recipients.`,
          `Delivery will be tried again until ${rfc5322Date(d.delay.willRetryUntil)}.`
        ]
      : [`Your message ${d.originalId} could not be delivered to one or more recipients.`]),
    ``,
    human,
    ``,
    `--${boundary}`,
    `Content-Type: message/delivery-status`,
    `Content-Description: Delivery report`,
    ``,
    `Reporting-MTA: dns; ${d.reportingMta}`,
    `X-Missive-Queue-ID: ${d.originalId}`,
    `Arrival-Date: ${rfc5322Date(d.arrivedAt)}`,
    ``,
    perRcpt.join(CRLF + CRLF),
    ``,
    `--${boundary}`,
    `Content-Type: text/rfc822-headers`,
    `Content-Description: ${d.delay ? "Delayed" : "Undelivered"} Message Headers`,
    ``,
    // Headers read from a store or a file may carry bare LF or CR: every line of the DSN ends in CRLF.
    d.originalHeaders.replace(/\r?\n$/, "").replace(/\r\n|\r|\n/g, CRLF),
    ``,
    `--${boundary}--`,
    ``
  ].join(CRLF)
}
