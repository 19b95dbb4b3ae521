// The scheduler's limiter: per-site connections, start rates per second and per hour (token buckets on the given
// clock), fairness across sites, and the configuration's site patterns. A manual clock and a manual timer: no sleeps.
import { Route } from "@missive/core"
import { describe, expect, it } from "vitest"
import * as Limiter from "../src/scheduler/Limiter.js"

const settle = () => new Promise((r) => setImmediate(r))

/** A limiter on a manual clock whose "later" calls run when the test advances time. */
const manual = (sites: (key: string) => Limiter.SiteLimits | undefined, perDestination = 10, total = 100) => {
  let t = 0
  const timers: Array<{ at: number; f: () => void }> = []
  const limiter = Limiter.make({ perDestination, total, sites, now: () => t, later: (ms, f) => void timers.push({ at: t + ms, f }) })
  const advance = async (ms: number) => {
    t += ms
    for (const due of timers.filter((x) => x.at <= t)) {
      timers.splice(timers.indexOf(due), 1)
      due.f()
    }
    await settle()
  }
  return { limiter, advance }
}

describe("Limiter", () => {
  it("starts at most rate_per_second deliveries of a site per second, and the rest as tokens come back", async () => {
    const { limiter, advance } = manual((k) => (k === "site:mx.a" ? { perSecond: 2 } : undefined))
    const started: number[] = []
    for (let i = 0; i < 5; i++) void limiter.run("site:mx.a", async () => void started.push(i))
    await settle()
    expect(started).toEqual([0, 1])
    await advance(500)
    expect(started).toEqual([0, 1, 2])
    await advance(1000)
    expect(started).toEqual([0, 1, 2, 3, 4])
  })

  it("caps a site by the hour too, whichever bucket is emptier", async () => {
    const { limiter, advance } = manual(() => ({ perSecond: 100, perHour: 3 }))
    let started = 0
    for (let i = 0; i < 5; i++) void limiter.run("site:mx.a", async () => void started++)
    await settle()
    expect(started).toBe(3)
    await advance(1000)
    expect(started).toBe(3)
    await advance(1_200_000) // a third of an hour: one token
    expect(started).toBe(4)
  })

  it("a site out of tokens or connections never holds up another site", async () => {
    const { limiter } = manual((k) => (k === "site:slow" ? { perSecond: 1, connections: 1 } : undefined))
    const order: string[] = []
    let release!: () => void
    const held = new Promise<void>((r) => (release = r))
    void limiter.run("site:slow", () => (order.push("slow-1"), held))
    void limiter.run("site:slow", async () => void order.push("slow-2"))
    for (let i = 0; i < 3; i++) void limiter.run("route:fast", async () => void order.push(`fast-${i}`))
    await settle()
    expect(order).toEqual(["slow-1", "fast-0", "fast-1", "fast-2"])
    expect(limiter.waiting()).toBe(1)
    release()
  })

  it("gives a site its own connection cap", async () => {
    const { limiter } = manual((k) => (k === "site:mx.a" ? { connections: 1 } : undefined), 5)
    const release: Array<() => void> = []
    for (let i = 0; i < 3; i++) void limiter.run("site:mx.a", () => new Promise<void>((r) => release.push(r)))
    for (let i = 0; i < 3; i++) void limiter.run("site:mx.b", () => new Promise<void>((r) => release.push(r)))
    await settle()
    expect(Object.fromEntries(limiter.running())).toEqual({ "site:mx.a": 1, "site:mx.b": 3 })
    for (const r of release) r()
  })

  it("gives a site's limits in force: a throttle's connections while it lasts, else the configured ones", async () => {
    const { limiter, advance } = manual((k) => (k === "site:mx.a" ? { connections: 4, messagesPerConnection: 5 } : undefined), 7)
    expect(limiter.limitsOf("site:mx.a")).toEqual({ connections: 4, messagesPerConnection: 5 })
    expect(limiter.limitsOf("site:mx.b")).toEqual({ connections: 7 })
    limiter.shape("site:mx.a", { suspended: false, until: 1000, limits: { connections: 1, perSecond: 2 } })
    expect(limiter.limitsOf("site:mx.a")).toEqual({ connections: 1, perSecond: 2, messagesPerConnection: 5 })
    await advance(1000)
    expect(limiter.limitsOf("site:mx.a")).toEqual({ connections: 4, messagesPerConnection: 5 })
  })

  it("leaves start rates to the cluster's shared buckets when told (sharedRates), connections still its own", async () => {
    const limiter = Limiter.make({ perDestination: 2, total: 100, sites: () => ({ perSecond: 1 }), now: () => 0, sharedRates: true })
    const started: number[] = []
    const release: Array<() => void> = []
    for (let i = 0; i < 3; i++) void limiter.run("site:mx.a", () => new Promise<void>((r) => (started.push(i), release.push(r))))
    await settle()
    // no local bucket at 1/s: both connections start at once, the third waits for one of them
    expect(started).toEqual([0, 1])
    release[0]!()
    await settle()
    await settle()
    expect(started).toEqual([0, 1, 2])
    for (const r of release) r()
  })

  it("matches site patterns against the site's MX hosts, with defaults for other sites and none for routes", () => {
    const f = Limiter.fromPatterns({ "*.google.com": { connections: 2 }, "mx.b.test": { perSecond: 1 } }, { connections: 9 })
    expect(f("site:alt1.aspmx.l.google.com,aspmx.l.google.com")).toEqual({ connections: 2 })
    expect(f("site:mx.b.test")).toEqual({ perSecond: 1 })
    expect(f("site:mx.other.test")).toEqual({ connections: 9 })
    expect(f("route:10.0.0.1:25")).toBeUndefined()
  })
})

describe("Route.siteOf", () => {
  const mx = (domain: string, names: string[]): Route.Destination => ({
    kind: "smtp",
    key: `mx:${domain}`,
    via: "mx",
    hops: names.map((name, i) => ({ host: `192.0.2.${i + 1}`, port: 25, preference: 10, name }))
  })
  it("rolls two domains with the same MX hosts into one site, in any order", () => {
    expect(Route.siteOf(mx("a.test", ["mx2.host.test", "mx1.host.test"]))).toBe("site:mx1.host.test,mx2.host.test")
    expect(Route.siteOf(mx("b.test", ["mx1.host.test", "MX2.host.test"]))).toBe("site:mx1.host.test,mx2.host.test")
    expect(Route.siteOf(mx("c.test", ["mx1.other.test"]))).toBe("site:mx1.other.test")
  })
  it("keeps a relay route its own site", () => {
    expect(
      Route.siteOf({ kind: "smtp", key: "route:10.0.0.1:25", via: "route", hops: [{ host: "10.0.0.1", port: 25, preference: 0 }] })
    ).toBe("route:10.0.0.1:25")
  })
})
