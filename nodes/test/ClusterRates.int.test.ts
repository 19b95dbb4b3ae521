// The cluster's shared site rates (scheduler/Rates.ts) on a real nats-server: two nodes' Rates on one KV bucket share
// one bucket per site (a compare-and-set that loses reads the bucket again), the time is a manual clock, so what is
// checked is the count of tokens, not a duration; and the site notices (cluster/SiteNotices.ts) reach a follower.
import { connect, type NatsConnection } from "@nats-io/transport-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startNatsServer, type NatsServer } from "../../test/src/Nats.js"
import * as SiteNotices from "../src/cluster/SiteNotices.js"
import * as Rates from "../src/scheduler/Rates.js"
import type { Notice } from "../src/scheduler/Shaping.js"

let server: NatsServer
let nc: NatsConnection

beforeAll(async () => {
  server = await startNatsServer()
  nc = await connect({ servers: server.url })
})
afterAll(async () => {
  await nc?.close()
  await server?.dispose()
})

const settle = (ms = 50) => new Promise((r) => setTimeout(r, ms))

describe("cluster rates and site notices", () => {
  it("two nodes share one bucket per site: together they start its capacity, then one per refill", async () => {
    let t = 1_000_000
    const a = await Rates.open({ nc, prefix: "rt", replicas: 1, now: () => t })
    const b = await Rates.open({ nc, prefix: "rt", replicas: 1, now: () => t })
    const limits = () => ({ perSecond: 5 })
    let started = 0
    const takes = Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? a : b).take("site:mx.shared", limits).then(() => void (started += 1)))
    await settle(300)
    expect(started).toBe(5)
    // 200 ms of the manual clock: one more token for the two of them
    t += 200
    await settle(1200)
    expect(started).toBe(6)
    t += 400
    await Promise.all(takes)
    expect(started).toBe(8)
    // another site has its own bucket; a site without a rate takes nothing
    await a.take("site:mx.other", limits)
    await b.take("site:mx.free", () => ({}))
    expect(a.counters().taken + b.counters().taken).toBe(9)
    a.close()
    b.close()
  })

  it("a waiting take ends when its node closes", async () => {
    const r = await Rates.open({ nc, prefix: "rt2", replicas: 1, now: () => 0 })
    await r.take("site:mx.one", () => ({ perHour: 1 }))
    const waiting = r.take("site:mx.one", () => ({ perHour: 1 }))
    r.close()
    await expect(waiting).rejects.toThrow(/closed/)
  })

  it("a site notice reaches every follower", async () => {
    const a = await SiteNotices.open({ nc, prefix: "sn", replicas: 1, log: () => {} })
    const b = await SiteNotices.open({ nc, prefix: "sn", replicas: 1, log: () => {} })
    const heard: Array<Notice> = []
    const stop = b.follow((n) => heard.push(n))
    await settle(300)
    await a.announce({ site: "site:mx.busy", node: "a", version: 1 })
    for (let i = 0; i < 40 && heard.length === 0; i++) await settle()
    stop()
    expect(heard).toEqual([{ site: "site:mx.busy", node: "a", version: 1 }])
  })
})
