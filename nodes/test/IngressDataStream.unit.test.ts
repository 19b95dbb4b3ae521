import { describe, expect, it } from "vitest"
import fc from "fast-check"
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

describe("DataCheck scanning agrees with a byte-by-byte reference", () => {
  // The reference: every byte visited; CRLF ends a line, a bare CR or LF ends a line and marks the message bare.
  const reference = (chunks: ReadonlyArray<Buffer>, max: number) => {
    let len = 0,
      pendingCr = false,
      bare = false,
      long = false
    for (const c of chunks)
      for (const b of c) {
        if (long) break
        if (pendingCr) {
          pendingCr = false
          if (b === 0x0a) {
            len = 0
            continue
          }
          bare = true
          len = 0
        }
        if (b === 0x0d) pendingCr = true
        else if (b === 0x0a) {
          bare = true
          len = 0
        } else if (++len > max) long = true
      }
    if (pendingCr) bare = true
    return long ? "line" : bare ? "bare" : "ok"
  }
  it("on random messages split into random chunks", () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom("a", "b", "\r", "\n", "\r\n", "xyz", "\r\r", "\n\n"), { maxLength: 200 }),
        fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 10 }),
        fc.integer({ min: 1, max: 12 }),
        (parts, cuts, max) => {
          const all = Buffer.from(parts.join(""), "latin1")
          const chunks: Array<Buffer> = []
          let at = 0
          for (let k = 0; at < all.length; k++) {
            const size = cuts[k % cuts.length]!
            chunks.push(all.subarray(at, at + size))
            at += size
          }
          // "normalize" keeps scanning after a bare line end, so the whole message is compared.
          const check = new DataCheck({ maxMessageSize: 1 << 20, maxLineLength: max, bareLf: "normalize" })
          for (const c of chunks) check.push(c)
          const v = check.finish()
          const got = v._tag === "Accept" ? (v.normalized ? "bare" : "ok") : v.reason
          expect(got).toBe(reference(chunks, max))
        }
      ),
      { numRuns: 2000 }
    )
  })
})
