// The bounce role: turns a completed message's failed recipients into the DSN message to queue (RFC 3464 text from
// core's Dsn, the original header section, the null sender, addressed to the original sender).
// Must not decide whether a DSN is due (the decider does, and never for a null sender) and must not send it itself.
import { Dsn, Reply, type Message } from "@missive/core"

export interface DsnMessage {
  readonly id: string
  readonly sender: ""
  readonly recipients: ReadonlyArray<string>
  readonly body: Buffer
  readonly dsnOf: string
  readonly failed: number
}

/** The header section of a stored body, or a note when the body is gone. */
export const originalHeaders = (body: Buffer | undefined): string => {
  if (!body) return "X-Missive-Note: original body no longer stored\r\n"
  const end = body.indexOf("\r\n\r\n")
  return body.subarray(0, end < 0 ? body.length : end + 2).toString("utf8")
}

/** The delay notice (RFC 3464, Action: delayed) for the deferred recipients of a message, queued once (DelayNotified). */
export const delayNoticeFor = (
  s: Message.Live & { delayNoticeId: string },
  body: Buffer | undefined,
  hostname: string,
  now: number,
  willRetryUntil: number
): DsnMessage => {
  const delayed = s.recipients.filter((r) => r.status === "deferred")
  const text = Dsn.build({
    dsnId: s.delayNoticeId,
    originalId: s.id,
    reportingMta: hostname,
    postmaster: `MAILER-DAEMON@${hostname}`,
    to: s.sender,
    arrivedAt: s.receivedAt,
    now,
    originalHeaders: originalHeaders(body),
    delay: { willRetryUntil },
    failed: delayed.map((r) => ({
      rcpt: r.address,
      reply: r.lastReply ?? { code: 451, enhanced: "4.0.0", text: "delivery delayed" },
      action: "delayed" as const,
      remoteMta: r.lastHost?.replace(/:\d+$/, "")
    }))
  })
  return { id: s.delayNoticeId, sender: "", recipients: [s.sender], body: Buffer.from(text, "utf8"), dsnOf: s.id, failed: delayed.length }
}

export const dsnFor = (s: Message.Live & { bounceId: string }, body: Buffer | undefined, hostname: string, now: number): DsnMessage => {
  const failed = s.recipients.filter((r) => r.status === "bounced" || r.status === "expired")
  const text = Dsn.build({
    dsnId: s.bounceId,
    originalId: s.id,
    reportingMta: hostname,
    postmaster: `MAILER-DAEMON@${hostname}`,
    to: s.sender,
    arrivedAt: s.receivedAt,
    now,
    originalHeaders: originalHeaders(body),
    failed: failed.map((r) => ({
      rcpt: r.address,
      reply: r.lastReply ?? Reply.Replies.expired,
      action: "failed" as const,
      remoteMta: r.lastHost?.replace(/:\d+$/, "")
    }))
  })
  return { id: s.bounceId, sender: "", recipients: [s.sender], body: Buffer.from(text, "utf8"), dsnOf: s.id, failed: failed.length }
}
