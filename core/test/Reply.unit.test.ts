// SMTP replies: classification by code, the parser for remote replies (multi-line, enhanced codes, garbage), formatting.
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { classify, format, parse, Replies, type Reply } from "../src/Reply.js"

describe("classify", () => {
  it("2xx and 3xx succeed, 4xx is transient, 5xx permanent", () => {
    expect([250, 251, 354, 421, 451, 452, 550, 554, 599].map((code) => classify({ code, text: "" }))).toEqual([
      "success",
      "success",
      "success",
      "transient",
      "transient",
      "transient",
      "permanent",
      "permanent",
      "permanent"
    ])
  })

  it("a code outside 2xx-5xx is transient: nothing is lost on a nonsense reply", () => {
    expect(classify({ code: 0, text: "" })).toBe("transient")
    expect(classify({ code: 199, text: "" })).toBe("transient")
  })
})

describe("parse", () => {
  it("reads a code, an enhanced code and the text", () => {
    expect(parse("550 5.1.1 User unknown")).toEqual({ code: 550, enhanced: "5.1.1", text: "User unknown" })
    expect(parse("556 5.1.10 Recipient domain does not accept mail\r\n")).toEqual({
      code: 556,
      enhanced: "5.1.10",
      text: "Recipient domain does not accept mail"
    })
  })

  it("reads a reply with no enhanced code", () => {
    const r = parse("250 OK")
    expect(r).toEqual({ code: 250, text: "OK" })
    expect("enhanced" in r).toBe(false)
  })

  it("reads an enhanced code with no text after it", () => {
    expect(parse("250 2.0.0")).toEqual({ code: 250, enhanced: "2.0.0", text: "" })
  })

  it("reads a bare code", () => {
    expect(parse("421")).toEqual({ code: 421, text: "" })
  })

  it("joins the lines of a multi-line reply", () => {
    expect(parse("250-mx.example.org Hello\r\n250-SIZE 10240000\r\n250 HELP\r\n")).toEqual({
      code: 250,
      text: "mx.example.org Hello SIZE 10240000 HELP",
      lines: ["250-mx.example.org Hello", "250-SIZE 10240000", "250 HELP"]
    })
  })

  it("keeps the enhanced code once when every line repeats it (RFC 2034)", () => {
    const raw = [
      "550-5.1.1 The email account that you tried to reach does not exist. Please try",
      "550-5.1.1 double-checking the recipient's email address for typos or",
      "550 5.1.1 unnecessary spaces. https://support.example/answer/6596 x1si"
    ].join("\r\n")
    expect(parse(raw)).toEqual({
      code: 550,
      enhanced: "5.1.1",
      text: "The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. https://support.example/answer/6596 x1si",
      lines: raw.split("\r\n")
    })
  })

  it("accepts LF-only line ends and skips blank lines", () => {
    expect(parse("451-4.7.1 Greylisted\n\n451 4.7.1 come back later\n")).toEqual({
      code: 451,
      enhanced: "4.7.1",
      text: "Greylisted come back later",
      lines: ["451-4.7.1 Greylisted", "451 4.7.1 come back later"]
    })
  })

  it("takes the enhanced code only from the start of the text, and only a well-formed one", () => {
    expect(parse("550 User 5.1.1 unknown")).toEqual({ code: 550, text: "User 5.1.1 unknown" })
    expect(parse("550 6.1.1 odd class")).toEqual({ code: 550, text: "6.1.1 odd class" })
    expect(parse("550 5.1 short")).toEqual({ code: 550, text: "5.1 short" })
    expect(parse("550 5.1.1x glued")).toEqual({ code: 550, text: "5.1.1x glued" })
  })

  it("turns garbage into a transient 451 4.4.0 that quotes it on one line", () => {
    expect(parse("hello world")).toEqual({ code: 451, enhanced: "4.4.0", text: "hello world" })
    expect(parse("5501 too many digits")).toEqual({ code: 451, enhanced: "4.4.0", text: "5501 too many digits" })
    expect(parse("ab\r\ncd\n")).toEqual({ code: 451, enhanced: "4.4.0", text: "ab cd" })
    expect(parse("")).toEqual({ code: 451, enhanced: "4.4.0", text: "no reply" })
    expect(parse(" \r\n \r\n")).toEqual({ code: 451, enhanced: "4.4.0", text: "no reply" })
    expect(classify(parse("\u0000\u0001binary"))).toBe("transient")
  })

  it("never returns text with CR or LF, and always a three-digit code, whatever it is given", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 200 }), (raw) => {
        const r = parse(raw)
        expect(r.text).not.toMatch(/[\r\n]/)
        expect(r.code).toBeGreaterThanOrEqual(0)
        expect(r.code).toBeLessThanOrEqual(999)
        if (r.enhanced !== undefined) expect(r.enhanced).toMatch(/^[245]\.\d{1,3}\.\d{1,3}$/)
      }),
      { numRuns: 500 }
    )
  })

  it("reads back what format wrote", () => {
    const word = fc.stringMatching(/^[A-Za-z][A-Za-z0-9.,:'-]{0,11}$/)
    const replyArb: fc.Arbitrary<Reply> = fc.record({
      code: fc.integer({ min: 200, max: 599 }),
      enhanced: fc.option(
        fc.tuple(fc.constantFrom(2, 4, 5), fc.integer({ min: 0, max: 999 }), fc.integer({ min: 0, max: 999 })).map((t) => t.join(".")),
        { nil: undefined }
      ),
      text: fc.array(word, { minLength: 1, maxLength: 8 }).map((ws) => ws.join(" "))
    })
    fc.assert(
      fc.property(replyArb, (r) => {
        const back = parse(format(r))
        expect(back.code).toBe(r.code)
        expect(back.enhanced).toBe(r.enhanced)
        expect(back.text).toBe(r.text)
      }),
      { numRuns: 300 }
    )
  })
})

describe("format", () => {
  it("writes code, enhanced code and text on one line", () => {
    expect(format({ code: 550, enhanced: "5.1.1", text: "User unknown" })).toBe("550 5.1.1 User unknown")
    expect(format({ code: 250, text: "OK" })).toBe("250 OK")
    expect(format(Replies.queued("01JX"))).toBe("250 2.0.0 OK queued as 01JX")
  })
})

describe("Replies", () => {
  const table: ReadonlyArray<readonly [string, Reply]> = Object.entries(Replies).map(
    ([k, v]) => [k, typeof v === "function" ? v("x") : v] as const
  )

  it("every reply has a well-formed enhanced code and a one-line text", () => {
    for (const [name, r] of table) {
      expect(r.enhanced, name).toMatch(/^[245]\.\d{1,3}\.\d{1,3}$/)
      expect(r.text, name).not.toMatch(/[\r\n]/)
      expect(r.code, name).toBeGreaterThanOrEqual(200)
      expect(r.code, name).toBeLessThan(600)
    }
  })

  it("the enhanced class matches the code class, except the recorded expiry reply", () => {
    // `expired` is recorded, never sent: 550 (the message failed) with 4.4.7 (what the DSN's Status says), as Exchange and Postfix report it.
    for (const [name, r] of table.filter(([n]) => n !== "expired")) expect(r.enhanced?.[0], name).toBe(String(r.code)[0])
    expect(classify(Replies.expired)).toBe("permanent")
  })

  it("the replies that must not lose mail are transient, the refusals permanent", () => {
    for (const r of [
      Replies.storeBusy,
      Replies.storeFull,
      Replies.tooManyRecipients,
      Replies.dnsTempFail,
      Replies.connectFailed("x"),
      Replies.localError("x")
    ])
      expect(classify(r)).toBe("transient")
    for (const r of [
      Replies.tooBig,
      Replies.relayDenied,
      Replies.badSyntax,
      Replies.bareLf,
      Replies.nullMx,
      Replies.noSuchDomain,
      Replies.operatorBounce("x")
    ])
      expect(classify(r)).toBe("permanent")
  })
})
