// Seeded traffic and decisions: the plan is a function of scenario and seed, keyed draws ignore call order, arrivals
// follow the ramp, and the DSN parser finds each failed recipient.
import { describe, expect, it } from "vitest"
import { Random, Receiver, Scenario, Traffic } from "../src/index.js"

const scenario = (seed: number): Scenario.Scenario => {
  const r = Scenario.load(Scenario.locate("steady"))
  if (!r.ok) throw new Error(r.errors.join("\n"))
  return Scenario.adjust(r.scenario, { seed, scale: 0.1 })
}

describe("Traffic and Random", () => {
  it("plans the same traffic for the same seed and other traffic for another", () => {
    const a = Traffic.plan(scenario(1))
    expect(Traffic.plan(scenario(1))).toEqual(a)
    expect(Traffic.plan(scenario(2)).map((m) => m.to)).not.toEqual(a.map((m) => m.to))
    expect(new Set(a.map((m) => m.tag)).size).toBe(a.length)
    expect(a.every((m) => m.to.every((r) => r.includes(`.${m.tag}@`)) && m.from.startsWith(`b.${m.tag}@`))).toBe(true)
  })

  it("keyed draws depend on the key only", () => {
    const x = Random.keyed(1, "a.sim", "temp", "m00001", 2)
    Random.keyed(1, "other")
    expect(Random.keyed(1, "a.sim", "temp", "m00001", 2)).toBe(x)
    expect(Random.keyed(1, "a.sim", "temp", "m00001", 3)).not.toBe(x)
    const draws = Array.from({ length: 10_000 }, (_, i) => Random.keyed(5, "k", i))
    const share = draws.filter((d) => d < 0.3).length / draws.length
    expect(share).toBeGreaterThan(0.27)
    expect(share).toBeLessThan(0.33)
  })

  it("spreads arrivals along a linear ramp, then at the rate", () => {
    expect(Traffic.arrivalTime(0, 10, 2000)).toBe(0)
    expect(Traffic.arrivalTime(10, 10, 2000)).toBeCloseTo(2000)
    expect(Traffic.arrivalTime(20, 10, 2000)).toBeCloseTo(3000)
    expect(Traffic.arrivalTime(5, 10, 0)).toBeCloseTo(500)
  })

  it("builds bodies of about the planned size with the tag header", () => {
    const m = { index: 0, tag: "m00000", at: 0, from: "b.m00000@s.sim", to: ["r0.m00000@a.sim"], size: 100_000 }
    const b = Traffic.body(m)
    expect(Math.abs(b.length - 100_000)).toBeLessThan(200)
    expect(b.toString("latin1")).toContain("X-Sim-Tag: m00000\r\n")
  })

  it("reads failed recipients and their status out of a DSN", () => {
    const dsn =
      "Reporting-MTA: dns; x\r\n\r\nFinal-Recipient: rfc822; r0.m1@a.sim\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n" +
      "Final-Recipient: rfc822; r1.m1@b.sim\r\nAction: delayed\r\nStatus: 4.4.7\r\n"
    expect(Receiver.parseDsn(dsn)).toEqual([
      { rcpt: "r0.m1@a.sim", action: "failed", status: "5.1.1" },
      { rcpt: "r1.m1@b.sim", action: "delayed", status: "4.4.7" }
    ])
  })
})
