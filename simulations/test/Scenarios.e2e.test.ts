// The bundled scenarios as tests: each runs a short version (scale and duration overrides) against an embedded node and
// ends on a summary snapshot of lifecycle counts at source and sink. The counts are deterministic for the seed: every
// receiver decision is keyed by message tag, recipient and attempt, and every temporary failure is retried to the end.
import { describe, expect, it } from "vitest"
import { Run, Scenario } from "../src/index.js"

const short = (name: string, o: Scenario.Overrides): Scenario.Scenario => {
  const r = Scenario.load(Scenario.locate(name))
  if (!r.ok) throw new Error(r.errors.join("\n"))
  return Scenario.adjust(r.scenario, o)
}

const runShort = (name: string, o: Scenario.Overrides) => Run.run({ scenario: short(name, o), target: { kind: "embedded" } })

describe("bundled scenarios, short versions, embedded node", () => {
  it("steady: 5% of mail-b.sim's recipients bounce with a DSN, the rest is delivered", async () => {
    const r = await runShort("steady", { scale: 0.2, duration: 6000 })
    expect(r.counts).toEqual({ sent: 230, accepted: 230, refused: 0, recipients: 344, delivered: 336, bounced: 8, expired: 0, lost: 0 })
    expect(r.destinations.find((d) => d.domain === "mail-b.sim")?.bounced).toBe(8)
    expect(r.duplicates).toBe(0)
  })

  it("burst: 32 closed-loop connections; cut DATA transfers are retried, nothing lost", async () => {
    const r = await runShort("burst", { scale: 0.1 })
    expect(r.counts).toEqual({ sent: 200, accepted: 200, refused: 0, recipients: 392, delivered: 392, bounced: 0, expired: 0, lost: 0 })
    expect(r.sinkReplies["cut"]).toBeGreaterThan(0)
  })

  it("greylisting: every recipient at bigmail.sim is greylisted once, then delivered", async () => {
    const r = await runShort("greylisting", { scale: 0.25, duration: 6000 })
    expect(r.counts).toEqual({ sent: 244, accepted: 244, refused: 0, recipients: 364, delivered: 364, bounced: 0, expired: 0, lost: 0 })
    const big = r.destinations.find((d) => d.domain === "bigmail.sim")!
    expect(big.deferred).toBe(big.delivered)
    expect(big.replies["451"]).toBe(big.delivered)
  })

  it("outage: down.sim's 4xx storm is retried after recovery, nothing lost", async () => {
    const r = await runShort("outage", { scale: 0.2, duration: 8000 })
    expect(r.counts).toEqual({ sent: 236, accepted: 236, refused: 0, recipients: 236, delivered: 236, bounced: 0, expired: 0, lost: 0 })
    expect(r.destinations.find((d) => d.domain === "down.sim")!.deferred).toBeGreaterThan(10)
    expect(r.destinations.find((d) => d.domain === "fine.sim")!.deferred).toBe(0)
  })

  it("slow-receiver: a slow, throttling receiver still gets all its mail", async () => {
    const r = await runShort("slow-receiver", { scale: 0.3, duration: 6000 })
    expect(r.counts).toEqual({ sent: 87, accepted: 87, refused: 0, recipients: 87, delivered: 87, bounced: 0, expired: 0, lost: 0 })
  })

  it("mixed-sizes: messages up to 10 MB are delivered", async () => {
    const r = await runShort("mixed-sizes", { scale: 0.1, duration: 6000 })
    expect(r.counts).toEqual({ sent: 30, accepted: 30, refused: 0, recipients: 78, delivered: 78, bounced: 0, expired: 0, lost: 0 })
  })

  it("node-killed needs the cluster target and says so", async () => {
    await expect(runShort("node-killed", { scale: 0.01, duration: 1000 })).rejects.toThrow(/needs a cluster target/)
  })

  it("the same scenario and seed give the same counts; another seed other traffic", async () => {
    const a = await runShort("burst", { scale: 0.05 })
    const b = await runShort("burst", { scale: 0.05 })
    const c = await runShort("burst", { scale: 0.05, seed: 8 })
    expect(b.counts).toEqual(a.counts)
    expect(b.sinkReplies["cut"]).toBe(a.sinkReplies["cut"])
    expect(c.counts.recipients).not.toBe(a.counts.recipients)
  })
})
