// The pure parts of the outbound TLS policies: MTA-STS policy and TXT parsing and MX pattern matching (RFC 8461
// §3.1, §3.2, §4.1), which DANE TLSA records are usable for SMTP (RFC 7672 §3.1.3), and egress pool choice.
import { describe, expect, it } from "vitest"
import * as Dane from "../src/delivery/Dane.js"
import * as Egress from "../src/delivery/Egress.js"
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

describe("egress", () => {
  const pool = [
    { address: "192.0.2.1", ehlo: "a.example", weight: 1 },
    { address: "192.0.2.2", ehlo: "b.example", weight: 3 }
  ]
  it("picks a member by weight from the message id, the same one every time", () => {
    const counts = new Map<string, number>()
    for (let i = 0; i < 4000; i++) {
      const m = Egress.pick(pool, `01M8H5JH59JQ1XSJHWCHP${i}`)!
      counts.set(m.address, (counts.get(m.address) ?? 0) + 1)
      expect(Egress.pick(pool, `01M8H5JH59JQ1XSJHWCHP${i}`)).toEqual(m)
    }
    // weights 1:3 over 4000 ids: about 1000 and 3000
    expect(counts.get("192.0.2.1")).toBeGreaterThan(800)
    expect(counts.get("192.0.2.1")).toBeLessThan(1200)
    expect(counts.get("192.0.2.2")).toBeGreaterThan(2800)
  })
  it("uses the domain's pool, else the default, else none", () => {
    const o = { pools: { p: pool, q: [{ address: "192.0.2.9", ehlo: "q.example", weight: 1 }] }, default: "q", domains: { "x.test": "p" } }
    expect(["192.0.2.1", "192.0.2.2"]).toContain(Egress.choose(o, "X.test", "id1")?.address)
    expect(Egress.choose(o, "y.test", "id1")).toEqual({ address: "192.0.2.9", ehlo: "q.example" })
    expect(Egress.choose({ ...o, default: null }, "y.test", "id1")).toBeUndefined()
  })
})
