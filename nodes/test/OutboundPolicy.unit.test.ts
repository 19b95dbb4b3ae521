// The pure parts of the outbound TLS policies: MTA-STS policy and TXT parsing and MX pattern matching (RFC 8461
// §3.1, §3.2, §4.1), and which DANE TLSA records are usable for SMTP (RFC 7672 §3.1.3).
import { describe, expect, it } from "vitest"
import * as Dane from "../src/delivery/Dane.js"
import * as MtaSts from "../src/delivery/MtaSts.js"

describe("MTA-STS", () => {
  it("parses a policy, capping max_age at a year", () => {
    expect(
      MtaSts.parsePolicy("version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 99999999\r\n")
    ).toEqual({
      mode: "enforce",
      mx: ["mx1.example.com", "*.example.net"],
      maxAge: 31_557_600
    })
  })

  it("refuses a policy without version, with an unknown mode, without mx under enforce, or with a bad max_age", () => {
    expect(MtaSts.parsePolicy("mode: enforce\nmx: a.b\nmax_age: 1\n")).toBeUndefined()
    expect(MtaSts.parsePolicy("version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n")).toBeUndefined()
    expect(MtaSts.parsePolicy("version: STSv1\nmode: enforce\nmax_age: 1\n")).toBeUndefined()
    expect(MtaSts.parsePolicy("version: STSv1\nmode: testing\nmx: a.b\nmax_age: -1\n")).toBeUndefined()
    expect(MtaSts.parsePolicy("version: STSv1\nmode: none\nmax_age: 86400\n")).toEqual({ mode: "none", mx: [], maxAge: 86400 })
  })

  it("matches MX names exactly, or one leftmost label under a wildcard", () => {
    expect(MtaSts.mxMatches(["mx.example.com"], "MX.example.com.")).toBe(true)
    expect(MtaSts.mxMatches(["*.example.com"], "mx1.example.com")).toBe(true)
    expect(MtaSts.mxMatches(["*.example.com"], "a.mx1.example.com")).toBe(false)
    expect(MtaSts.mxMatches(["*.example.com"], "example.com")).toBe(false)
    expect(MtaSts.mxMatches(["mx.example.com"], "mx.example.org")).toBe(false)
  })

  it("reads the id of a TXT record and nothing else", () => {
    expect(MtaSts.parseTxt("v=STSv1; id=20261130T01;")).toBe("20261130T01")
    expect(MtaSts.parseTxt("v=STSv2; id=1")).toBeUndefined()
    expect(MtaSts.parseTxt("v=STSv1; id=has-dash")).toBeUndefined()
    expect(MtaSts.parseTxt("v=spf1 -all")).toBeUndefined()
  })
})

describe("DANE", () => {
  it("keeps DANE-TA and DANE-EE records with known selectors and matching types only", () => {
    const r = (usage: number, selector: number, mtype: number) => ({ usage, selector, mtype, data: "00" })
    expect(Dane.usable([r(0, 0, 1), r(1, 1, 1), r(2, 0, 1), r(3, 1, 1), r(3, 2, 1), r(3, 1, 3)])).toEqual([r(2, 0, 1), r(3, 1, 1)])
  })

  it("refuses an empty chain and a chain with no usable record", () => {
    expect(Dane.verify([{ usage: 3, selector: 1, mtype: 1, data: "00" }], [], "mx.example", 0)).toBe("no certificate")
  })
})
