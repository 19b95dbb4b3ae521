// The pure parts of the content filters: header edits on message bytes, DNSBL query names and weights, the scanners'
// reply classification, a hook's decision checked before use, a milter's reply code. No I/O.
import { describe, expect, it } from "vitest"
import * as Clamd from "../src/filter/Clamd.js"
import * as Dnsbl from "../src/filter/Dnsbl.js"
import * as Header from "../src/filter/Header.js"
import * as Hooks from "../src/filter/Hooks.js"
import * as Milter from "../src/filter/Milter.js"
import * as Rspamd from "../src/filter/Rspamd.js"

const msg = Buffer.from(
  "From: a@x.test\r\nSubject: hello\r\n  folded\r\nX-Spam: forged\r\nTo: b@y.test\r\n\r\nbody\r\nSubject: not a header\r\n"
)

describe("Header", () => {
  it("prepends, appends, removes folded fields, and never touches the body", () => {
    const added = Header.prepend(msg, [["X-A", "1\r\nInjected: yes"]])
    expect(added.toString()).toMatch(/^X-A: 1 Injected: yes\r\nFrom: /)
    const removed = Header.remove(msg, ["subject", "X-SPAM"]).toString()
    expect(removed).toBe("From: a@x.test\r\nTo: b@y.test\r\n\r\nbody\r\nSubject: not a header\r\n")
    expect(Header.append(msg, [["X-Z", "z"]]).toString()).toContain("To: b@y.test\r\nX-Z: z\r\n\r\nbody")
    expect(Header.body(msg).toString()).toBe("body\r\nSubject: not a header\r\n")
  })

  it("reads, replaces and changes fields in place", () => {
    expect(Header.get(msg, "subject")).toBe("hello folded")
    expect(Header.setSubject(msg, "***SPAM*** hello").toString()).toBe(
      "From: a@x.test\r\nSubject: ***SPAM*** hello\r\nX-Spam: forged\r\nTo: b@y.test\r\n\r\nbody\r\nSubject: not a header\r\n"
    )
    expect(Header.change(msg, "x-spam", 1, "").toString()).not.toContain("X-Spam")
    expect(Header.insert(msg, 1, "X-I", "i").toString()).toMatch(/^From: a@x\.test\r\nX-I: i\r\nSubject/)
    expect(Header.list(msg).map(([n]) => n)).toEqual(["From", "Subject", "X-Spam", "To"])
  })
})

describe("DNSBL", () => {
  it("builds query names for IPv4, IPv6 and IPv4-mapped addresses", () => {
    expect(Dnsbl.queryName("192.0.2.1", "bl.test")).toBe("1.2.0.192.bl.test")
    expect(Dnsbl.queryName("::ffff:192.0.2.1", "bl.test")).toBe("1.2.0.192.bl.test")
    expect(Dnsbl.queryName("2001:db8::1", "bl.test")).toBe(`1.${"0.".repeat(23)}8.b.d.0.1.0.0.2.bl.test`)
    expect(Dnsbl.queryName("not-an-ip", "bl.test")).toBeUndefined()
  })

  it("sums the weights of listing zones against the threshold", () => {
    const opts = { zones: [], threshold: 2, action: "reject" as const, servers: [], timeoutMs: 1000 }
    const look = (zone: string, weight: number, listed: boolean): Dnsbl.Lookup => ({
      zone: { zone, weight, answers: [] },
      listed,
      evidence: { name: `x.${zone}`, type: "A", rcode: listed ? "NOERROR" : "NXDOMAIN", answers: listed ? ["127.0.0.2"] : [] }
    })
    const blocked = Dnsbl.verdictOf(opts, "192.0.2.1", [look("a.test", 1, true), look("b.test", 1, true), look("c.test", 5, false)])
    expect(blocked).toMatchObject({ action: "reject", result: "listed", score: 2, reply: { code: 554, enhanced: "5.7.1" } })
    expect(blocked.reply?.text).toContain("blocked using a.test, b.test")
    const allowed = Dnsbl.verdictOf(opts, "192.0.2.1", [look("a.test", 3, true), look("wl.test", -2, true)])
    expect(allowed).toMatchObject({ action: "accept", result: "below-threshold", score: 1 })
    expect(Dnsbl.verdictOf({ ...opts, action: "record" }, "192.0.2.1", [look("a.test", 3, true)]).action).toBe("accept")
  })
})

describe("scanner replies", () => {
  it("classifies clamd's INSTREAM replies", () => {
    expect(Clamd.classify("stream: OK")).toEqual({ _tag: "Clean", reply: "stream: OK" })
    expect(Clamd.classify("stream: Eicar-Test-Signature FOUND")).toMatchObject({ _tag: "Infected", signature: "Eicar-Test-Signature" })
    expect(Clamd.classify("INSTREAM size limit exceeded. ERROR")).toMatchObject({ _tag: "Failed", reason: "error" })
    expect(Clamd.classify("\x1b[31mhello")).toMatchObject({ _tag: "Failed", reason: "garbage" })
  })

  it("reads rspamd's /checkv2 JSON, and refuses what is not", () => {
    const v = Rspamd.parseReply({
      action: "rewrite subject",
      score: 7.5,
      required_score: 15,
      subject: "***SPAM*** hi",
      symbols: { A: { score: 1 }, B: { score: 5 } },
      messages: { smtp_message: "Go\r\naway" },
      milter: { add_headers: { "X-Ok": { value: "1", order: 0 }, "Bad Name": "x" }, remove_headers: { "X-Old": 1 } }
    })
    expect(v).toMatchObject({
      action: "rewrite subject",
      score: 7.5,
      subject: "***SPAM*** hi",
      message: "Go away",
      removeHeaders: ["X-Old"]
    })
    expect(v?.symbols).toEqual([
      ["B", 5],
      ["A", 1]
    ])
    expect(v?.addHeaders).toEqual([["X-Ok", "1"]])
    expect(Rspamd.parseReply({ action: "delete everything", score: 1 })).toBeUndefined()
    expect(Rspamd.parseReply("no action")).toBeUndefined()
  })

  it("takes a milter's reply code only when it is 4xx or 5xx", () => {
    expect(Milter.replyCodeOf(Buffer.from("554 5.7.1 Gtube pattern\0"))).toMatchObject({
      code: 554,
      enhanced: "5.7.1",
      text: "Gtube pattern"
    })
    expect(Milter.replyCodeOf(Buffer.from("250 fine\0"))).toBeUndefined()
  })
})

describe("hook decisions", () => {
  it("turns a decision into a verdict, fixing a reply of the wrong class", () => {
    expect(Hooks.resultOf("p", "mail", undefined)).toEqual({ verdicts: [] })
    const r = Hooks.resultOf("p", "rcpt", { action: "reject", reply: { code: 450, text: "wrong class" } })
    expect(r.verdicts[0]).toMatchObject({ name: "p", action: "reject", reply: { code: 550, enhanced: "5.7.1" } })
    const d = Hooks.resultOf("p", "data", { headers: { "X-P": "1" } }, Buffer.from("A: b\r\n\r\nx"))
    expect(d.verdicts[0]?.action).toBe("add-headers")
    expect(d.message?.toString()).toBe("X-P: 1\r\nA: b\r\n\r\nx")
  })

  it("refuses a malformed decision (the stage then answers 451)", () => {
    expect(() => Hooks.resultOf("p", "mail", { action: "explode" as never })).toThrow(/unknown action/)
    expect(() => Hooks.resultOf("p", "data", { headers: [["Bad Name", "x"]] }, Buffer.from("A: b\r\n\r\n"))).toThrow(/bad header/)
    expect(() => Hooks.resultOf("p", "mail", "yes" as never)).toThrow(/not a decision/)
  })
})
