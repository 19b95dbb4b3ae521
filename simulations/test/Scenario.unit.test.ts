// Scenario files: the bundled ones validate, bad ones get one precise error per problem with its key path and place,
// overrides scale counts and squeeze scenario time, and behaviour schedules apply in their window only.
import { describe, expect, it } from "vitest"
import { Scenario } from "../src/index.js"

const minimal = "name: t\ndestinations:\n  - domain: a.sim\n"

describe("Scenario", () => {
  it("every bundled scenario validates", () => {
    const names = Scenario.bundled().map((b) => b.name)
    expect(names).toEqual(["burst", "greylisting", "mixed-sizes", "node-killed", "outage", "slow-receiver", "steady"])
    for (const b of Scenario.bundled()) expect(Scenario.load(b.path), b.name).toMatchObject({ ok: true })
  })

  it("fills defaults", () => {
    const r = Scenario.parse(minimal)
    if (!r.ok) throw new Error(r.errors.join("\n"))
    expect(r.scenario.senders.connections).toBe(4)
    expect(r.scenario.destinations[0]!.behaviour).toEqual({
      latency: 0,
      temp_fail: 0,
      perm_fail: 0,
      greylist: false,
      throttle: null,
      disconnect_in_data: 0,
      slow_data: 0
    })
  })

  it("reports every problem with its key path and line:col", () => {
    const r = Scenario.parse(
      [
        "name: t",
        "senders: { loop: closed, connection: 3 }",
        "destinations:",
        "  - domain: a",
        "    behaviour: { temp_fail: 2 }",
        "    schedule: [{ from: 5s, to: 1s, behaviour: { greylist: yes } }]"
      ].join("\n"),
      "bad.yaml"
    )
    expect(r.ok).toBe(false)
    expect(!r.ok && r.errors).toEqual([
      "bad.yaml:2:26: senders.connection: unknown key (did you mean connections?)",
      `bad.yaml:4:5: destinations[0].domain: expected a domain name with at least two labels, got "a"`,
      "bad.yaml:5:18: destinations[0].behaviour.temp_fail: expected a fraction from 0 to 1, got 2",
      `bad.yaml:6:49: destinations[0].schedule[0].behaviour.greylist: expected true or false, got "yes"`
    ])
  })

  it("checks rules across keys", () => {
    const r = Scenario.parse(
      "name: t\nsenders: { loop: closed, domains: [a.sim] }\ndestinations:\n  - domain: a.sim\nfaults: [{ at: 1s, kill_node: 1 }]\n"
    )
    expect(!r.ok && r.errors).toEqual([
      `senders.messages: required when senders.loop is "closed"`,
      "senders.domains[0]: a.sim is also a destination; sender domains must be their own",
      "faults: node faults need requires: cluster"
    ])
  })

  it("scales counts and squeezes scenario time with the overrides", () => {
    const r = Scenario.load(Scenario.locate("outage"))
    if (!r.ok) throw new Error(r.errors.join("\n"))
    const s = Scenario.adjust(r.scenario, { scale: 0.5, duration: 6000, seed: 99 })
    expect(Scenario.messageCount(s)).toBe(Math.round(Scenario.messageCount(r.scenario) * 0.5))
    expect(s.seed).toBe(99)
    expect(s.destinations[0]!.schedule[0]).toMatchObject({ from: 2000, to: 4500 })
    const down = s.destinations[0]!
    expect(Scenario.behaviourAt(down, 1999).temp_fail).toBe(0.02)
    expect(Scenario.behaviourAt(down, 2000).temp_fail).toBe(1)
    expect(Scenario.behaviourAt(down, 4500).temp_fail).toBe(0.02)
  })
})
