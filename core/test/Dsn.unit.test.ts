// RFC 3464 delivery status notifications: structure of the multipart/report, per-recipient fields, CRLF line ends.
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { build, rfc5322Date, type DsnInput } from "../src/Dsn.js"

const T0 = Date.UTC(2023, 10, 14, 22, 13, 20)

const input: DsnInput = {
  dsnId: "01JDSN",
  originalId: "01JORIG",
  reportingMta: "mx.missive.example",
  postmaster: "postmaster@missive.example",
  to: "alice@origin.example",
  arrivedAt: T0,
  now: T0 + 3600_000,
  failed: [
    {
      rcpt: "bob@two.example",
      reply: { code: 550, enhanced: "5.1.1", text: "User unknown" },
      action: "failed",
      remoteMta: "mx.two.example",
      lastAttemptAt: T0 + 60_000
    },
    { rcpt: "carol@three.example", reply: { code: 451, text: "Greylisted,\r\n  try again" }, action: "failed" }
  ],
  originalHeaders:
    "From: alice@origin.example\r\nTo: bob@two.example, carol@three.example\r\nSubject: Hello\r\nMessage-ID: <m1@origin.example>\r\n"
}

const boundary = (dsn: string): string => {
  const m = /boundary="([^"]+)"/.exec(dsn)
  if (!m?.[1]) throw new Error("no boundary")
  return m[1]
}

/** Splits the message into its top header block and its body parts, each part as [headers, body]. */
const parts = (dsn: string): { top: string; parts: ReadonlyArray<{ headers: string; body: string }>; epilogue: string } => {
  const b = boundary(dsn)
  const [top = "", ...rest] = dsn.split(`\r\n--${b}`)
  const last = rest.pop() ?? ""
  return {
    top,
    epilogue: last,
    parts: rest.map((p) => {
      const body = p.replace(/^\r\n/, "")
      const cut = body.indexOf("\r\n\r\n")
      return { headers: body.slice(0, cut), body: body.slice(cut + 4) }
    })
  }
}

const header = (block: string, name: string): string | undefined =>
  block
    .split("\r\n")
    .find((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`))
    ?.slice(name.length + 1)
    .trim()

/** Per-recipient field groups of a message/delivery-status body (the first group is per-message). */
const groups = (body: string): ReadonlyArray<string> =>
  body
    .replace(/\r\n$/, "")
    .split("\r\n\r\n")
    .filter((g) => g.length > 0)

describe("DSN", () => {
  const dsn = build(input)
  const { top, parts: ps, epilogue } = parts(dsn)

  it("is a multipart/report of type delivery-status, from the postmaster to the sender", () => {
    const headers = top.slice(0, top.indexOf("\r\n\r\n"))
    expect(header(headers, "Content-Type")).toBe(`multipart/report; report-type=delivery-status; boundary="=_missive_01JDSN"`)
    expect(header(headers, "MIME-Version")).toBe("1.0")
    expect(header(headers, "From")).toBe("Mail Delivery System <postmaster@missive.example>")
    expect(header(headers, "To")).toBe("<alice@origin.example>")
    expect(header(headers, "Auto-Submitted")).toBe("auto-replied")
    expect(header(headers, "Message-ID")).toBe("<01JDSN@mx.missive.example>")
    expect(header(headers, "Date")).toBe("Tue, 14 Nov 2023 23:13:20 +0000")
  })

  it("has three parts: the notification, the delivery status, the original headers; then the closing boundary", () => {
    expect(ps.map((p) => header(p.headers, "Content-Type"))).toEqual([
      "text/plain; charset=utf-8",
      "message/delivery-status",
      "text/rfc822-headers"
    ])
    expect(epilogue).toBe("--\r\n")
    expect(dsn.endsWith(`--${boundary(dsn)}--\r\n`)).toBe(true)
  })

  it("the notification names the original message and each failed recipient", () => {
    const text = ps[0]!.body
    expect(text).toContain("01JORIG")
    expect(text).toContain("<bob@two.example>: host mx.two.example said: 550 5.1.1 User unknown")
    expect(text).toContain("<carol@three.example>: 451 Greylisted, try again")
  })

  it("the delivery status has the per-message fields, then one group per recipient", () => {
    const [perMessage, ...perRcpt] = groups(ps[1]!.body)
    expect(header(perMessage!, "Reporting-MTA")).toBe("dns; mx.missive.example")
    expect(header(perMessage!, "Arrival-Date")).toBe("Tue, 14 Nov 2023 22:13:20 +0000")
    expect(perRcpt).toHaveLength(2)
    expect(perRcpt[0]!.split("\r\n")).toEqual([
      "Final-Recipient: rfc822; bob@two.example",
      "Action: failed",
      "Status: 5.1.1",
      "Remote-MTA: dns; mx.two.example",
      "Diagnostic-Code: smtp; 550 5.1.1 User unknown",
      "Last-Attempt-Date: Tue, 14 Nov 2023 22:14:20 +0000"
    ])
    expect(perRcpt[1]!.split("\r\n")).toEqual([
      "Final-Recipient: rfc822; carol@three.example",
      "Action: failed",
      "Status: 4.4.7",
      "Diagnostic-Code: smtp; 451 Greylisted, try again"
    ])
  })

  it("Status falls back by class when the reply has no valid enhanced code", () => {
    const status = (reply: { code: number; enhanced?: string; text: string }, action: "failed" | "delayed") => {
      const d = build({ ...input, failed: [{ rcpt: "x@y.example", reply, action }] })
      return header(groups(parts(d).parts[1]!.body)[1]!, "Status")
    }
    expect(status({ code: 554, text: "no" }, "failed")).toBe("5.0.0")
    expect(status({ code: 421, text: "later" }, "failed")).toBe("4.4.7")
    expect(status({ code: 421, text: "later" }, "delayed")).toBe("4.0.0")
    expect(status({ code: 550, enhanced: "9.9.9", text: "odd" }, "failed")).toBe("5.0.0")
    expect(status({ code: 550, enhanced: "5.7.26", text: "DMARC" }, "failed")).toBe("5.7.26")
  })

  it("carries the original header section", () => {
    expect(ps[2]!.body).toBe(
      "From: alice@origin.example\r\nTo: bob@two.example, carol@three.example\r\nSubject: Hello\r\nMessage-ID: <m1@origin.example>\r\n"
    )
  })

  it("ends every line in CRLF: no bare LF, no bare CR", () => {
    expect(dsn).not.toMatch(/[^\r]\n/)
    expect(dsn).not.toMatch(/\r(?!\n)/)
    expect(dsn.startsWith("\n")).toBe(false)
  })

  it("ends every line in CRLF even when the original headers came with bare LF or CR", () => {
    const d = build({ ...input, originalHeaders: "From: a@origin.example\nSubject: one\r\nX-Old: two\rX-Last: three\n" })
    expect(d).not.toMatch(/[^\r]\n/)
    expect(d).not.toMatch(/\r(?!\n)/)
    expect(parts(d).parts[2]!.body).toBe("From: a@origin.example\r\nSubject: one\r\nX-Old: two\r\nX-Last: three\r\n")
  })

  it("ends every line in CRLF whatever the reply texts hold", () => {
    const reply = fc.record({ code: fc.integer({ min: 400, max: 599 }), text: fc.string({ unit: "binary", maxLength: 80 }) })
    fc.assert(
      fc.property(fc.array(reply, { minLength: 1, maxLength: 4 }), fc.string({ maxLength: 200 }), (replies, headers) => {
        const d = build({
          ...input,
          failed: replies.map((r, i) => ({ rcpt: `r${i}@x.example`, reply: r, action: "failed" as const })),
          originalHeaders: headers
        })
        expect(d).not.toMatch(/[^\r]\n/)
        expect(d).not.toMatch(/\r(?!\n)/)
        expect(groups(parts(d).parts[1]!.body)).toHaveLength(1 + replies.length)
      }),
      { numRuns: 300 }
    )
  })

  it("is a pure function of its input", () => {
    expect(build(input)).toBe(dsn)
  })
})

describe("rfc5322Date", () => {
  it("formats any instant exactly as Date's UTC string does, without reading the clock", () => {
    fc.assert(
      fc.property(fc.integer({ min: -2_000_000_000_000, max: 8_000_000_000_000 }), (ms) => {
        expect(rfc5322Date(ms)).toBe(new Date(ms).toUTCString().replace("GMT", "+0000"))
      }),
      { numRuns: 5000 }
    )
    expect(rfc5322Date(Date.UTC(2026, 10, 28, 13, 30, 5))).toBe("Sat, 28 Nov 2026 13:30:05 +0000")
    expect(rfc5322Date(Date.UTC(2024, 1, 29, 0, 0, 0))).toBe("Thu, 29 Feb 2024 00:00:00 +0000")
  })
})
