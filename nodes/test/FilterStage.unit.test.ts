// The filter stage's runner (nodes/src/filter/Stage.ts): order, the most severe action, the first refusal ending a
// stage, a throwing filter answered 451, rewrites carried forward, and what the message's record keeps.
import { describe, expect, it } from "vitest"
import type { Filter, SessionInfo, Verdict } from "../src/filter/Filter.js"
import * as Stage from "../src/filter/Stage.js"

const info: SessionInfo = { id: "s1", listener: "smtp", ip: "127.0.0.1", helo: "client.test", tls: false, trusted: false }
const v = (name: string, stage: Verdict["stage"], action: Verdict["action"], extra: Partial<Verdict> = {}): Verdict => ({
  name,
  stage,
  result: action === "accept" ? "pass" : "fail",
  action,
  ...extra
})

describe("filter stage", () => {
  it("keeps every verdict of the session and transaction in the message's record, the most severe action winning", async () => {
    const seen: Array<string> = []
    const filters: Array<Filter> = [
      {
        name: "a",
        connect: () => ({ verdicts: [v("dnsbl", "connect", "accept")] }),
        helo: () => ({ verdicts: [v("helo", "helo", "accept")] })
      },
      {
        name: "b",
        mail: (c) => ({ verdicts: [v("spf", "mail", "accept")], sender: c.sender.replace("@internal.test", "@example.org") }),
        rcpt: (c) =>
          c.recipient.startsWith("list@") ? { verdicts: [], recipients: ["ann@example.org", "bob@example.org"] } : { verdicts: [] }
      },
      {
        name: "c",
        data: (c) => {
          seen.push(c.sender, c.recipients.join(","), c.verdicts.map((x) => x.name).join(","))
          return { verdicts: [v("dmarc", "data", "quarantine")], message: Buffer.concat([Buffer.from("X-Test: 1\r\n"), c.message]) }
        }
      },
      { name: "d", data: (c) => (seen.push(c.message.toString().split("\r\n")[0] ?? ""), { verdicts: [v("scan", "data", "add-headers")] }) }
    ]
    const stage = Stage.make(filters, "hash1")
    const s = stage.session(() => info)
    expect((await s.connect()).action).toBe("accept")
    const mail = await s.mail("ann@internal.test", {})
    expect(mail.sender).toBe("ann@example.org")
    expect((await s.rcpt("list@example.org")).recipients).toEqual(["ann@example.org", "bob@example.org"])
    const out = await s.data(Buffer.from("Subject: hi\r\n\r\nbody\r\n"))
    expect(seen).toEqual(["ann@example.org", "ann@example.org,bob@example.org", "dnsbl,helo,spf", "X-Test: 1"])
    expect(out.action).toBe("quarantine")
    expect(out.message.toString().startsWith("X-Test: 1\r\nSubject: hi")).toBe(true)
    expect(out.record.action).toBe("quarantine")
    expect(out.record.filterPolicy).toBe("hash1")
    expect(out.record.verdicts.map((x) => x.name)).toEqual(["dnsbl", "helo", "spf", "dmarc", "scan"])
  })

  it("a reject ends the stage with its reply; filters after it do not run; a refused RCPT's verdicts stay out of the record", async () => {
    let after = 0
    const reply = { code: 550, enhanced: "5.1.1", text: "No such user" }
    const filters: Array<Filter> = [
      { name: "users", rcpt: (c) => ({ verdicts: c.recipient.startsWith("nobody") ? [v("recipient", "rcpt", "reject", { reply })] : [] }) },
      { name: "later", rcpt: () => ((after += 1), { verdicts: [v("later", "rcpt", "accept")] }) }
    ]
    const s = Stage.make(filters, "h").session(() => info)
    await s.mail("a@b.test", {})
    const refused = await s.rcpt("nobody@example.org")
    expect(refused.action).toBe("reject")
    expect(refused.reply).toEqual(reply)
    expect(after).toBe(0)
    await s.rcpt("ann@example.org")
    const out = await s.data(Buffer.from("\r\n"))
    expect(out.record.verdicts.map((x) => x.name)).toEqual(["later"])
    expect(out.record.action).toBe("accept")
  })

  it("a filter that throws gives 451 4.3.0 for that command, recorded as an error verdict", async () => {
    const s = Stage.make([{ name: "broken", data: () => Promise.reject(new Error("scanner said garbage")) }], "h").session(() => info)
    await s.mail("a@b.test", {})
    await s.rcpt("ann@example.org")
    const out = await s.data(Buffer.from("\r\n"))
    expect(out.action).toBe("tempfail")
    expect(out.reply).toMatchObject({ code: 451, enhanced: "4.3.0" })
    expect(out.record.verdicts[0]).toMatchObject({ name: "broken", result: "error", detail: "scanner said garbage" })
  })

  it("a new MAIL starts a new transaction: the previous one's verdicts are gone", async () => {
    const s = Stage.make([{ name: "m", mail: (c) => ({ verdicts: [v(`spf:${c.sender}`, "mail", "accept")] }) }], "h").session(() => info)
    await s.mail("first@a.test", {})
    await s.mail("second@a.test", {})
    await s.rcpt("x@example.org")
    expect((await s.data(Buffer.from("\r\n"))).record.verdicts.map((x) => x.name)).toEqual(["spf:second@a.test"])
  })
})
