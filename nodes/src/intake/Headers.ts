// Header work at intake: the trace header (Received:) and a Message-ID: when missing.
// Operates on raw bytes; must not re-encode or reflow anything else in the message.
import { Dsn } from "@missive/core"

export const headerEnd = (body: Buffer): number => {
  const i = body.indexOf("\r\n\r\n")
  return i < 0 ? body.length : i + 2
}

/** The header section (without the blank line). */
export const headerSection = (body: Buffer): string => body.subarray(0, headerEnd(body)).toString("utf8")

const rfc5322Date = Dsn.rfc5322Date

export interface TraceInfo {
  readonly id: string
  readonly hostname: string
  readonly helo: string
  readonly ip: string
  readonly tls: boolean
  readonly user?: string | undefined
  readonly recipients: ReadonlyArray<string>
  readonly at: number
}

/** Prepends Received: and appends Message-ID: to the header section when it has none. */
export const stamp = (body: Buffer, t: TraceInfo): Buffer => {
  const protocol = `ESMTP${t.tls ? "S" : ""}${t.user ? "A" : ""}`
  const forClause = t.recipients.length === 1 ? `\r\n\tfor <${t.recipients[0]}>` : ""
  const received = `Received: from ${sanitize(t.helo)} ([${t.ip}])\r\n\tby ${t.hostname} (Missive) with ${protocol} id ${t.id}${forClause};\r\n\t${rfc5322Date(t.at)}\r\n`
  const end = headerEnd(body)
  const head = body.subarray(0, end)
  const hasId = /^message-id[ \t]*:/im.test(head.toString("latin1"))
  const parts: Array<Buffer> = [Buffer.from(received, "latin1")]
  if (hasId || end === 0) {
    parts.push(body)
  } else {
    parts.push(head, Buffer.from(`Message-ID: <${t.id}@${t.hostname}>\r\n`, "latin1"), body.subarray(end))
  }
  return Buffer.concat(parts)
}

const sanitize = (s: string): string => s.replace(/[^\x21-\x7e]/g, "?").slice(0, 255) || "unknown"
