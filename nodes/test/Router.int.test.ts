// The router against a real authoritative DNS server on loopback: MX order, A fallback, null MX, NXDOMAIN,
// temporary failures, caching, and the local/route decisions that need no DNS.
import { Reply } from "@missive/core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeResolver } from "../src/router/Resolver.js"
import { makeDnsCache, makeRouter, type RouteOutcome } from "../src/router/Router.js"
import { nullMx, startDnsServer, type DnsServer } from "../../test/src/DnsServer.js"

let dns: DnsServer

beforeAll(async () => {
  dns = await startDnsServer({
    "multi.test": {
      mx: [
        { preference: 20, exchange: "mx2.multi.test" },
        { preference: 10, exchange: "mx1.multi.test" },
        { preference: 30, exchange: "mx3.multi.test" }
      ]
    },
    "mx1.multi.test": { a: ["127.0.0.11"] },
    "mx2.multi.test": { a: ["127.0.0.12", "127.0.0.13"], aaaa: ["::1"] },
    "mx3.multi.test": { servfail: true },
    "bare.test": { a: ["127.0.0.20"] },
    "nomail.test": nullMx,
    "broken.test": { servfail: true },
    "silent.test": { drop: true },
    "lame.test": { mx: [{ preference: 10, exchange: "gone.lame.test" }] },
    "empty.test": {}
  })
})
afterAll(() => dns.close())

const resolver = () => makeResolver({ servers: [dns.server], timeoutMs: 300, tries: 1 })
const router = (extra: Partial<Parameters<typeof makeRouter>[0]> = {}) =>
  makeRouter({
    localDomains: ["local.test"],
    relayRoutes: {},
    lmtp: null,
    maildirRoot: "/var/mail",
    mxPort: 2525,
    resolver: resolver(),
    cache: false,
    ...extra
  })

const ok = (o: RouteOutcome) => {
  if (!("ok" in o)) throw new Error(`expected a decision, got ${JSON.stringify(o)}`)
  return o.ok
}

describe("Resolver", () => {
  it("reports answers and rcodes as evidence", async () => {
    const r = resolver()
    const mx = await r.mx("MULTI.test.")
    expect(mx.evidence).toEqual({
      name: "multi.test",
      type: "MX",
      rcode: "NOERROR",
      answers: ["20 mx2.multi.test", "10 mx1.multi.test", "30 mx3.multi.test"]
    })
    expect((await r.a("mx2.multi.test")).records).toEqual(["127.0.0.12", "127.0.0.13"])
    expect((await r.aaaa("mx2.multi.test")).evidence.answers).toEqual(["::1"])
    expect((await r.mx("bare.test")).evidence.rcode).toBe("NODATA")
    expect((await r.mx("nowhere.test")).evidence.rcode).toBe("NXDOMAIN")
    expect((await r.mx("broken.test")).evidence.rcode).toBe("SERVFAIL")
    expect((await r.mx("silent.test")).evidence.rcode).toBe("TIMEOUT")
    expect((await r.mx("nomail.test")).evidence.answers).toEqual(["0 ."])
  })
})

describe("Router", () => {
  it("orders MX hosts by preference and resolves each into hops on the MX port", async () => {
    const d = ok(await router().route("Alice@Multi.Test"))
    expect(d.rcpt).toBe("Alice@Multi.Test")
    expect(d.destination).toEqual({
      kind: "smtp",
      key: "mx:multi.test",
      via: "mx",
      hops: [
        { host: "127.0.0.11", port: 2525, preference: 10, name: "mx1.multi.test" },
        { host: "127.0.0.12", port: 2525, preference: 20, name: "mx2.multi.test" },
        { host: "127.0.0.13", port: 2525, preference: 20, name: "mx2.multi.test" },
        { host: "::1", port: 2525, preference: 20, name: "mx2.multi.test" }
      ]
    })
    // the MX lookup, then A and AAAA of each MX host, including the one that failed
    expect(d.dns?.map((e) => `${e.type} ${e.name} ${e.rcode}`)).toEqual([
      "MX multi.test NOERROR",
      "A mx1.multi.test NOERROR",
      "AAAA mx1.multi.test NODATA",
      "A mx2.multi.test NOERROR",
      "AAAA mx2.multi.test NOERROR",
      "A mx3.multi.test SERVFAIL",
      "AAAA mx3.multi.test SERVFAIL"
    ])
  })

  it("falls back to the domain's own address when it has no MX (RFC 5321 §5.1)", async () => {
    const d = ok(await router({ ipv6: false }).route("bob@bare.test"))
    expect(d.destination).toEqual({
      kind: "smtp",
      key: "mx:bare.test",
      via: "a",
      hops: [{ host: "127.0.0.20", port: 2525, preference: 0, name: "bare.test" }]
    })
    expect(d.dns?.map((e) => `${e.type} ${e.rcode}`)).toEqual(["MX NODATA", "A NOERROR"])
  })

  it("refuses a domain with a null MX (RFC 7505)", async () => {
    const d = ok(await router().route("x@nomail.test"))
    expect(d.destination).toEqual({ kind: "unroutable", key: "mx:nomail.test", reply: Reply.Replies.nullMx })
    expect(d.dns).toEqual([{ name: "nomail.test", type: "MX", rcode: "NOERROR", answers: ["0 ."] }])
  })

  it("refuses a domain that does not exist", async () => {
    const d = ok(await router().route("x@nowhere.test"))
    expect(d.destination).toEqual({ kind: "unroutable", key: "mx:nowhere.test", reply: Reply.Replies.noSuchDomain })
    expect(d.dns?.[0]?.rcode).toBe("NXDOMAIN")
  })

  it("refuses a domain with neither MX nor address", async () => {
    const d = ok(await router().route("x@empty.test"))
    expect(d.destination).toMatchObject({ kind: "unroutable", reply: Reply.Replies.noSuchDomain })
  })

  it("defers on SERVFAIL, on timeout, and when no MX host has an address", async () => {
    for (const [domain, rcode] of [
      ["broken.test", "SERVFAIL"],
      ["silent.test", "TIMEOUT"],
      ["lame.test", "NOERROR"]
    ] as const) {
      const o = await router().route(`x@${domain}`)
      expect(o).toMatchObject({ temporary: Reply.Replies.dnsTempFail })
      if (!("temporary" in o)) throw new Error("unreachable")
      expect(o.dns[0]).toMatchObject({ name: domain, type: "MX", rcode })
    }
  })

  it("caches MX answers between messages, and asks every time without a cache", async () => {
    const count = () => dns.queries.filter((q) => q.name === "multi.test" && q.type === "MX").length
    const cached = router({ cache: makeDnsCache() })
    const before = count()
    ok(await cached.route("a@multi.test"))
    ok(await cached.route("b@multi.test"))
    expect(count() - before).toBe(1)
    const uncached = router()
    ok(await uncached.route("a@multi.test"))
    ok(await uncached.route("b@multi.test"))
    expect(count() - before).toBe(3)
  })

  it("expires cached answers after their time", async () => {
    let t = 0
    const cache = makeDnsCache({ maxTtlMs: 1000, clock: { now: () => t } })
    const r = router({ cache })
    const count = () => dns.queries.filter((q) => q.name === "bare.test" && q.type === "MX").length
    const before = count()
    ok(await r.route("a@bare.test"))
    t = 999
    ok(await r.route("a@bare.test"))
    t = 1000
    ok(await r.route("a@bare.test"))
    expect(count() - before).toBe(2)
  })

  it("never caches a temporary failure", async () => {
    const r = router({ cache: makeDnsCache() })
    const count = () => dns.queries.filter((q) => q.name === "broken.test").length
    const before = count()
    await r.route("a@broken.test")
    await r.route("a@broken.test")
    expect(count() - before).toBe(2)
  })

  it("keeps local domains local: maildir, or LMTP when configured", async () => {
    expect(ok(await router().route("Carol@LOCAL.test")).destination).toEqual({
      kind: "maildir",
      key: "local",
      mailbox: "/var/mail/local.test/carol"
    })
    expect(ok(await router().route("../etc@local.test")).destination).toEqual({
      kind: "unroutable",
      key: "local",
      reply: Reply.Replies.mailboxUnavailable
    })
    expect(ok(await router({ lmtp: "127.0.0.1:24" }).route("carol@local.test")).destination).toEqual({
      kind: "lmtp",
      key: "lmtp:127.0.0.1:24",
      host: "127.0.0.1",
      port: 24
    })
  })

  it("sends a routed domain, then anything else, to its relay without asking DNS", async () => {
    const r = router({ relayRoutes: { "multi.test": "10.0.0.1:2526", "*": "[::1]:587" } })
    const before = dns.queries.length
    expect(ok(await r.route("a@multi.test"))).toEqual({
      rcpt: "a@multi.test",
      destination: { kind: "smtp", via: "route", key: "route:10.0.0.1:2526", hops: [{ host: "10.0.0.1", port: 2526, preference: 0 }] }
    })
    expect(ok(await r.route("a@elsewhere.test")).destination).toEqual({
      kind: "smtp",
      via: "route",
      key: "route:[::1]:587",
      hops: [{ host: "::1", port: 587, preference: 0 }]
    })
    expect(ok(await r.route("a@local.test")).destination.kind).toBe("maildir")
    expect(dns.queries.length).toBe(before)
  })

  it("follows zone changes once the cache is bypassed", async () => {
    dns.setZone("moving.test", { mx: [{ preference: 5, exchange: "mx1.multi.test" }] })
    expect(ok(await router().route("a@moving.test")).destination).toMatchObject({ hops: [{ host: "127.0.0.11" }] })
    dns.setZone("moving.test", undefined)
    expect(ok(await router().route("a@moving.test")).destination).toMatchObject({ kind: "unroutable", reply: Reply.Replies.noSuchDomain })
  })
})
