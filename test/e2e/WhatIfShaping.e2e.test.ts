// What-if re-decides the sites' automation (simulations/src/replay/WhatIf.ts): a real node records a "421 4.7.0 try
// again later" that suspends its site, and a second message that waits out the suspension; the recorded log is then
// simulated under other shaping rules. The recorded rule decides the recorded changes again; without it, or with a
// rule the reply does not match, no site change is decided; a throttle rule decides a throttle instead. The recorded
// SiteSuspended is never copied. (What the changes do to the simulated attempts: simulations/test/WhatIfShaping.)
import type { Node } from "@missive/node"
import { Replay } from "@missive/simulations"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { CaptureServer } from "../src/CaptureServer.js"
import { BUSY_RULE, BUSY_STREAM, startBusySite, type BusySite } from "../src/BusySite.js"
import { rawMessage, send, tempDir, waitFor } from "../src/Harness.js"

const SUSPEND_MS = 2_000
const RULE = BUSY_RULE
const retry = { initialMs: 200, maxMs: 400, multiplier: 2, jitter: 0, lifetimeMs: 3_600_000 }

describe("what-if re-decides site changes", () => {
  const dir = tempDir()
  let site: BusySite
  let mx: CaptureServer
  let node: Node.RunningNode

  beforeAll(async () => {
    site = await startBusySite(dir.path, SUSPEND_MS)
    ;({ mx, node } = site)
    const sendOne = async (subject: string) => {
      const r = await send(
        node.ports["smtp"]!,
        { from: "s@missive.test", to: ["a@busy.test"] },
        rawMessage({ from: "s@missive.test", to: "a@busy.test", subject })
      )
      expect(r.ok).toBe(true)
    }
    const siteTypes = async () => (await node.store.events.read(BUSY_STREAM)).map((e) => e.event.type)
    await sendOne("refused first")
    await waitFor("the site suspended", async () => (await siteTypes()).includes("SiteSuspended"))
    await sendOne("sent while suspended")
    // Delivered means recorded in the log (the sink has the message a moment before the node appends its report).
    const completed = async () => (await node.store.events.readAll(0, 100_000)).filter((e) => e.event.type === "MessageCompleted").length
    await waitFor(
      "both delivered and the site resumed",
      async () => mx.messages.length === 2 && (await completed()) === 2 && (await siteTypes()).includes("SiteResumed"),
      25_000
    ).catch(async (e: unknown) => {
      // What the log holds, for the failure message.
      const all = await node.store.events.readAll(0, 100_000)
      const lines = all.map((x) => `${x.event.at} ${x.stream} ${x.event.type}`).join("\n")
      throw new Error(`${String(e)}; sink has ${mx.messages.length}; the log:\n${lines}`)
    })
  }, 45_000)
  afterAll(async () => {
    await site?.close()
    dir.remove()
  })

  const run = async (rules: ReadonlyArray<{ match: string; action: "throttle" | "suspend"; durationMs: number; connections?: number }>) => {
    const all = await node.store.events.readAll(0, 100_000)
    // The window spans every event's time: log order is not time order (a site's resume is recorded at its due time,
    // which can precede deliveries appended before it).
    const ats = all.map((e) => e.event.at)
    const rec = await Replay.WhatIf.record(node.store.events, { from: Math.min(...ats), to: Math.max(...ats) })
    const alt = { retry, concurrencyPerDestination: 4, maxConnections: 100, hash: "alt", rules }
    const sim = Replay.WhatIf.simulate(rec, alt, { replies: "message" })
    return { rec, sim, alt }
  }

  it("records the site's changes apart from the messages' outcome", async () => {
    const { rec } = await run([])
    expect(rec.siteChanges).toEqual({ throttled: 0, suspended: 1, resumed: 1 })
    expect(rec.recorded).toMatchObject({ messages: 2, delivered: 2 })
  })

  it("the recorded rule decides a suspension again (a recorded 421 after it ended may decide another)", async () => {
    const { sim } = await run([{ match: RULE, action: "suspend", durationMs: SUSPEND_MS }])
    expect(sim.siteChanges).toMatchObject({ throttled: 0, suspended: expect.any(Number), resumed: sim.siteChanges.suspended })
    expect(sim.siteChanges.suspended).toBeGreaterThanOrEqual(1)
  })

  it("without the rule, or with one the reply does not match, no change is decided", async () => {
    for (const rules of [[], [{ match: "4\\.7\\.28", action: "suspend" as const, durationMs: SUSPEND_MS }]]) {
      const { rec, sim, alt } = await run(rules)
      expect(sim.siteChanges).toEqual({ throttled: 0, suspended: 0, resumed: 0 })
      const text = Replay.WhatIf.format(rec, alt, sim, 1)
      expect(text).toMatch(/site suspended\s+1\s+0/)
      expect(text).toMatch(/site resumed\s+1\s+0/)
    }
  })

  it("a throttle rule instead throttles the site", async () => {
    const { sim } = await run([{ match: RULE, action: "throttle", durationMs: SUSPEND_MS, connections: 1 }])
    expect(sim.siteChanges).toMatchObject({ suspended: 0, resumed: sim.siteChanges.throttled })
    expect(sim.siteChanges.throttled).toBeGreaterThanOrEqual(1)
  })
})
