// Shaping across nodes (scheduler/Shaping.ts): two nodes on one log and one notice bus. A reply one node sees
// suspends the site on the other too (it reads the site's stream again on the notice), and the resume the recorder
// appends lifts it there; the follower appends nothing of its own. A memory log and an in-process bus: no I/O.
import { EventStore } from "@missive/events"
import { describe, expect, it } from "vitest"
import * as Limiter from "../src/scheduler/Limiter.js"
import * as Shaping from "../src/scheduler/Shaping.js"

const RULE = { match: "^421 4\\.7\\.0 ", action: "suspend" as const, durationMs: 300 }
const SITE = "site:mx.busy.test"
const settle = (ms = 20) => new Promise((r) => setTimeout(r, ms))

/** A notice bus: every node's follower hears every announcement (its own included, as the KV watch gives it). */
const bus = () => {
  const followers = new Set<(n: Shaping.Notice) => void>()
  const peers: Shaping.Peers = {
    announce: async (n) => {
      for (const f of followers) f(n)
    },
    follow: (f) => {
      followers.add(f)
      return () => followers.delete(f)
    }
  }
  return peers
}

describe("Shaping across nodes", () => {
  it("a suspension one node records holds on its peer until the recorder's resume lifts it", async () => {
    const events = EventStore.makeMemory()
    const peers = bus()
    const node = (name: string) => {
      const shaped: Array<Limiter.Shaped | undefined> = []
      const limiter = Limiter.make({ perDestination: 2, total: 10 })
      const spy: Limiter.Limiter = { ...limiter, shape: (k, c) => (shaped.push(c), limiter.shape(k, c)) }
      const shaping = Shaping.make({
        events,
        limiter: spy,
        rules: [RULE],
        clock: { now: () => Date.now() },
        log: () => {},
        node: name,
        policyHash: "p",
        peers
      })
      return { shaped, shaping }
    }
    const a = node("a")
    const b = node("b")
    try {
      await a.shaping.observe(SITE, [{ code: 421, enhanced: "4.7.0", text: "Try again later" }])
      await settle()
      expect(a.shaped.map((s) => s?.suspended)).toEqual([true])
      expect(b.shaped.map((s) => s?.suspended)).toEqual([true])
      expect(b.shaped[0]?.until).toBe(a.shaped[0]?.until)
      // the recorder resumes at `until`, the follower follows it and has nothing to append 2 s later
      await settle(500)
      expect(a.shaped.at(-1)).toBeUndefined()
      expect(b.shaped.at(-1)).toBeUndefined()
      const stream = (await events.read(Shaping.streamOf(SITE))).map((e) => [e.event.type, e.event.node])
      expect(stream).toEqual([
        ["SiteSuspended", "a"],
        ["SiteResumed", "a"]
      ])
    } finally {
      a.shaping.close()
      b.shaping.close()
    }
  })

  it("records the resume also when its timer fires before the wall clock reaches the end of the suspension", async () => {
    const events = EventStore.makeMemory()
    const limiter = Limiter.make({ perDestination: 2, total: 10 })
    // The node's clock runs 40 ms behind the timers (as a wall clock may by a millisecond or so).
    let lag = 0
    const shaping = Shaping.make({
      events,
      limiter,
      rules: [RULE],
      clock: { now: () => Date.now() - lag },
      log: () => {},
      node: "a",
      policyHash: "p"
    })
    try {
      await shaping.observe(SITE, [{ code: 421, enhanced: "4.7.0", text: "Try again later" }])
      lag = 40
      await settle(RULE.durationMs + 150)
      const types = (await events.read(Shaping.streamOf(SITE))).map((e) => e.event.type)
      expect(types).toEqual(["SiteSuspended", "SiteResumed"])
    } finally {
      shaping.close()
    }
  })
})
