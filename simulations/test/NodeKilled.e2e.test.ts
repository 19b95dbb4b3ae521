// The bundled node-killed scenario, short version, against the harness's own 3-node cluster (3 nats-servers as one
// JetStream cluster + 3 Missive node processes): node 1 is killed with SIGKILL mid-run and restarted; nothing accepted
// may be lost. Deterministic for the seed: the traffic, every receiver decision (greylisting keyed by recipient and
// attempt), and, since a submission cut by the kill is tried once on the next node, what the senders get accepted.
import { describe, expect, it } from "vitest"
import { Run, Scenario } from "../src/index.js"

describe("bundled scenarios, short versions, cluster target", () => {
  it("node-killed: kill -9 of node 1 mid-run (restarted later) loses nothing", async () => {
    const r0 = Scenario.load(Scenario.locate("node-killed"))
    if (!r0.ok) throw new Error(r0.errors.join("\n"))
    const s = Scenario.adjust(r0.scenario, { scale: 0.08, duration: 6000 })
    expect(s.faults).toEqual([{ at: 3000, kill_node: 1, restart_after: 1500 }])
    const r = await Run.run({ scenario: s, target: { kind: "cluster", nodes: 3 } })
    expect(r.counts).toEqual({ sent: 138, accepted: 138, refused: 0, recipients: 209, delivered: 209, bounced: 0, expired: 0, lost: 0 })
    expect(r.faults.map((f) => [f.node, f.action, f.error])).toEqual([
      [1, "killed", undefined],
      [1, "restarted", undefined]
    ])
    expect(r.faults[0]!.at).toBeGreaterThanOrEqual(3000)
    const two = r.destinations.find((d) => d.domain === "two.sim")!
    expect(two.replies["451"]).toBeGreaterThanOrEqual(two.delivered)
  }, 120_000)
})
