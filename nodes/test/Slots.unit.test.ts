// The cluster limiter's wrapper (scheduler/Slots.ts `limiter`) with a slot holder in memory: a delivery takes as many
// slots as its site's connections in force, and a suspension that arrives while it waits for its slot holds it too.
// The KV semaphore itself runs on real nats-servers in test/e2e/ClusterLimits and ClusterShaping.
import { describe, expect, it } from "vitest"
import * as Limiter from "../src/scheduler/Limiter.js"
import * as Slots from "../src/scheduler/Slots.js"

const settle = (ms = 10) => new Promise((r) => setTimeout(r, ms))

/** Slots granted by the test: each acquire waits until `grant()`; records the limit it was asked for. */
const manualSlots = () => {
  const asked: Array<number | undefined> = []
  const pending: Array<() => void> = []
  let released = 0
  const slots: Slots.Slots = {
    acquire: (_key, limit) =>
      new Promise((resolve) => {
        asked.push(limit)
        pending.push(() => resolve(() => void (released += 1)))
      }),
    held: () => new Map(),
    close: async () => {}
  }
  return { slots, asked, grant: () => pending.shift()?.(), released: () => released }
}

describe("Slots.limiter", () => {
  it("asks for as many slots as the site's connections in force: configured, then a throttle's", async () => {
    const m = manualSlots()
    const local = Limiter.make({ perDestination: 20, total: 100, sites: () => ({ connections: 3 }), now: () => Date.now() })
    const limiter = Slots.limiter(local, m.slots)
    const one = limiter.run("site:mx.a", async () => "done")
    await settle()
    m.grant()
    expect(await one).toBe("done")
    limiter.shape("site:mx.a", { suspended: false, until: Date.now() + 60_000, limits: { connections: 1 } })
    const two = limiter.run("site:mx.a", async () => "done")
    await settle()
    m.grant()
    await two
    expect(m.asked).toEqual([3, 1])
    expect(m.released()).toBe(2)
  })

  it("holds a delivery that got its slot during a suspension until the suspension ends, and gives the slot back", async () => {
    const m = manualSlots()
    const local = Limiter.make({ perDestination: 2, total: 100, now: () => Date.now() })
    const limiter = Slots.limiter(local, m.slots)
    let startedAt: number | undefined
    const run = limiter.run("site:mx.a", async () => void (startedAt = Date.now()))
    await settle()
    // a peer's suspension arrives while the delivery waits for its cluster slot
    const until = Date.now() + 300
    limiter.shape("site:mx.a", { suspended: true, until })
    m.grant()
    await settle(50)
    expect(startedAt).toBeUndefined()
    expect(m.released()).toBe(1)
    await settle(300)
    m.grant()
    await run
    expect(startedAt).toBeGreaterThanOrEqual(until)
  })
})
