// Feedback reports (ARF, RFC 5965): reads a multipart/report; report-type=feedback-report message into its fields
// (Feedback-Type, User-Agent, Original-Rcpt-To, Arrival-Date) and the original message's headers, and finds which
// message of ours it is about: the queue id in our own Received: line ("by <hostname> (Missive) with … id <ID>") or
// a Message-ID we generated (<ID@hostname>). Pure text work: no I/O; must not trust anything in the report beyond
// using it to look up a message we sent (a forged report can only name a message id).
export interface Report {
  readonly feedbackType: string
  readonly userAgent?: string | undefined
  readonly arrivalDate?: string | undefined
  readonly originalRcptTo: ReadonlyArray<string>
  /** The report's own Message-ID (a report handled twice is recorded once). */
  readonly reportId: string
  /** Header section of the reported message (third part). */
  readonly originalHeaders: string
}

const CRLF = /\r?\n/

/** Header fields of a header section, unfolded, names lower-cased, in order. */
export const headers = (section: string): ReadonlyArray<readonly [string, string]> => {
  const out: Array<[string, string]> = []
  for (const line of section.split(CRLF)) {
    if (/^[ \t]/.test(line) && out.length > 0) out[out.length - 1]![1] += ` ${line.trim()}`
    else {
      const i = line.indexOf(":")
      if (i > 0) out.push([line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim()])
    }
  }
  return out
}

const split = (text: string): { head: string; body: string } => {
  const m = /\r?\n\r?\n/.exec(text)
  return m ? { head: text.slice(0, m.index), body: text.slice(m.index + m[0].length) } : { head: text, body: "" }
}

const field = (h: ReadonlyArray<readonly [string, string]>, name: string): string | undefined => h.find(([n]) => n === name)?.[1]

const parameter = (value: string, name: string): string | undefined =>
  new RegExp(`;\\s*${name}\\s*=\\s*(?:"([^"]*)"|([^;\\s]+))`, "i")
    .exec(value)
    ?.slice(1)
    .find((x) => x !== undefined)

/** The parts of a multipart body, each as its raw text (headers and body). */
const parts = (body: string, boundary: string): ReadonlyArray<string> => {
  const delimiter = `--${boundary}`
  const out: Array<string> = []
  let current: Array<string> | undefined
  for (const line of body.split(CRLF)) {
    if (line === delimiter || line === `${delimiter}--`) {
      if (current) out.push(current.join("\r\n"))
      current = line === delimiter ? [] : undefined
      if (line !== delimiter) break
    } else current?.push(line)
  }
  return out
}

/** The report in a message, or undefined when the message is not an ARF report. */
export const parse = (message: string): Report | undefined => {
  const top = split(message)
  const h = headers(top.head)
  const type = field(h, "content-type") ?? ""
  if (!/^multipart\/report/i.test(type) || !/report-type\s*=\s*"?feedback-report/i.test(type)) return undefined
  const boundary = parameter(type, "boundary")
  if (!boundary) return undefined
  let report: ReadonlyArray<readonly [string, string]> | undefined
  let original = ""
  for (const raw of parts(top.body, boundary)) {
    const part = split(raw)
    const ph = headers(part.head)
    const ptype = (field(ph, "content-type") ?? "text/plain").toLowerCase()
    if (ptype.startsWith("message/feedback-report")) report = headers(part.body)
    else if (ptype.startsWith("message/rfc822") || ptype.startsWith("text/rfc822-headers")) original = split(part.body).head
  }
  if (!report) return undefined
  const all = (name: string) => report!.filter(([n]) => n === name).map(([, v]) => v.replace(/^<|>$/g, "").trim())
  return {
    feedbackType: (field(report, "feedback-type") ?? "other").toLowerCase(),
    userAgent: field(report, "user-agent"),
    arrivalDate: field(report, "arrival-date") ?? field(report, "received-date"),
    originalRcptTo: all("original-rcpt-to"),
    reportId: field(h, "message-id") ?? `<no-id-${message.length}>`,
    originalHeaders: original
  }
}

/**
 * Queue ids the reported message may be ours under, best first: from our Received: line(s), then a Message-ID we
 * generated. The caller checks each against the log.
 */
export const candidates = (originalHeaders: string, hostname: string): ReadonlyArray<string> => {
  const out: Array<string> = []
  const host = hostname.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
  for (const [name, value] of headers(originalHeaders)) {
    if (name === "received") {
      const m = new RegExp(`\\bby ${host} \\(Missive\\) with \\S+ id ([0-9A-Z]+)`, "i").exec(value)
      if (m) out.push(m[1]!)
    }
    if (name === "message-id") {
      const m = new RegExp(`^<([0-9A-Z]+)@${host}>$`, "i").exec(value.trim())
      if (m) out.push(m[1]!)
    }
  }
  return [...new Set(out)]
}

/** The recipient our Received: line names ("for <rcpt>", written when the message had one recipient). */
export const receivedFor = (originalHeaders: string, hostname: string): string | undefined => {
  for (const [name, value] of headers(originalHeaders))
    if (name === "received" && value.includes(`by ${hostname} (Missive)`)) {
      const m = /\bfor <([^>]+)>/.exec(value)
      if (m) return m[1]
    }
  return undefined
}
