import { describe, expect, it } from "vitest"
import { DataCheck, normalizeLineEnds } from "../src/ingress/DataStream.js"

const limits = { maxMessageSize: 100, maxLineLength: 10, bareLf: "reject" as const }

const run = (chunks: string[], l: ConstructorParameters<typeof DataCheck>[0] = limits) => {
  const check = new DataCheck(l)
  for (const c of chunks) check.push(Buffer.from(c, "latin1"))
  return check.finish()
}

describe("DataCheck", () => {
  it("accepts CRLF text as given", () => {
    const v = run(["Subject: x\r\n", "\r\nbody\r\n"])
    expect(v).toMatchObject({ _tag: "Accept", normalized: false })
    if (v._tag === "Accept") expect(v.body.toString()).toBe("Subject: x\r\n\r\nbody\r\n")
  })

  it("finds a CRLF split across chunks", () => {
    expect(run(["abc\r", "\ndef\r\n"])._tag).toBe("Accept")
  })

  it("refuses bare LF and bare CR when rejecting", () => {
    expect(run(["abc\ndef\r\n"])).toMatchObject({ _tag: "Reject", reason: "bare", reply: { code: 550, enhanced: "5.6.11" } })
    expect(run(["abc\r", "def\r\n"])).toMatchObject({ _tag: "Reject", reason: "bare" })
    expect(run(["abc\r"])).toMatchObject({ _tag: "Reject", reason: "bare" })
  })

  it("rewrites bare CR and LF as CRLF when normalising", () => {
    const v = run(["a\nb\rc\r\r\nd\r\n"], { ...limits, bareLf: "normalize" })
    expect(v).toMatchObject({ _tag: "Accept", normalized: true })
    if (v._tag === "Accept") expect(v.body.toString()).toBe("a\r\nb\r\nc\r\n\r\nd\r\n")
  })

  it("refuses a line longer than the limit, and not one at the limit", () => {
    expect(run(["0123456789\r\n"])._tag).toBe("Accept")
    expect(run(["01234", "567890\r\n"])).toMatchObject({ _tag: "Reject", reason: "line", reply: { code: 500, enhanced: "5.5.6" } })
  })

  it("refuses a message over the size limit, size first", () => {
    const lines = Array.from({ length: 12 }, () => "012345678\r\n")
    expect(run(lines)).toMatchObject({ _tag: "Reject", reason: "size", reply: { code: 552, enhanced: "5.3.4" } })
    expect(run([...lines.slice(0, 9), "x".repeat(20)])).toMatchObject({ reason: "size" })
  })

  it("keeps every byte value intact when normalising", () => {
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i).filter((b) => b !== 10 && b !== 13))
    expect(normalizeLineEnds(all).equals(all)).toBe(true)
  })
})
