// Filter what-if (simulations/src/replay/FilterWhatIf.ts): recorded MessageFiltered verdicts re-decided under another
// DMARC / temperror policy, the most severe action winning, and the differences listed.
import type { Message } from "@missive/core"
import { describe, expect, it } from "vitest"
import * as FilterWhatIf from "../src/replay/FilterWhatIf.js"

const meta = { v: 1, node: "n1", policy: "p" }
const filtered = (id: string, at: number, action: Message.FilterAction, verdicts: Array<Message.Verdict>): Message.Event => ({
  ...meta,
  at,
  type: "MessageFiltered",
  id,
  action,
  verdicts,
  rewrites: [],
  filterPolicy: "f1"
})
const dmarc = (result: string, policy: string, action: Message.FilterAction): Message.Verdict => ({
  name: "dmarc",
  stage: "data",
  result,
  action,
  detail: `dmarc=${result} header.from=x.test policy=${policy}`
})

describe("filter what-if", () => {
  const log: Array<Message.Event> = [
    filtered("A", 10, "accept", [dmarc("fail", "reject", "accept")]),
    filtered("B", 20, "accept", [dmarc("fail", "quarantine", "accept")]),
    filtered("C", 30, "accept", [dmarc("pass", "reject", "accept")]),
    filtered("D", 40, "accept", [{ name: "spf", stage: "mail", result: "temperror", action: "accept" }]),
    filtered("E", 50, "reject", [dmarc("fail", "reject", "reject")]),
    filtered("F", 60, "quarantine", [
      dmarc("fail", "none", "accept"),
      { name: "milter", stage: "data", result: "quarantine", action: "quarantine" }
    ])
  ]

  it("enforcing DMARC rejects and quarantines what was only recorded", () => {
    const r = FilterWhatIf.compare(log, { dmarc: "enforce" }, { from: 0, to: 100 })
    expect(r.messages).toBe(6)
    expect(r.changes.map((c) => [c.id, c.recorded, c.alternative])).toEqual([
      ["A", "accept", "reject"],
      ["B", "accept", "quarantine"]
    ])
    expect(r.alternative).toEqual({ accept: 2, "add-headers": 0, quarantine: 2, tempfail: 0, reject: 2 })
  })

  it("recording DMARC only accepts what was rejected, but not what another filter quarantined", () => {
    const r = FilterWhatIf.compare(log, { dmarc: "record" }, { from: 0, to: 100 })
    expect(r.changes).toEqual([{ id: "E", at: 50, recorded: "reject", alternative: "accept", because: ["dmarc=fail"] }])
  })

  it("temperror answered 451 defers what was recorded; the window bounds the messages", () => {
    expect(FilterWhatIf.compare(log, { temperror: "tempfail" }, { from: 0, to: 100 }).changes.map((c) => c.id)).toEqual(["D"])
    expect(FilterWhatIf.compare(log, { dmarc: "enforce" }, { from: 15, to: 35 }).changes.map((c) => c.id)).toEqual(["B"])
  })
})
