// A site's automation (core/src/Site.ts), given / when / then: given the site's events, when a reply arrives (or the
// time passes), then these events.
import { describe, expect, it } from "vitest"
import * as Site from "../src/Site.js"

const ctx = (at: number) => ({ at, node: "n1", policy: "p" })
const meta = (at: number) => ({ v: 1, at, node: "n1", policy: "p" })
const SITE = "site:mx.example.net"
const rules: ReadonlyArray<Site.Rule> = [
  { match: "4\\.7\\.28", action: "throttle", durationMs: 600_000, connections: 1, perSecond: 0.5 },
  { match: "^421 .*try again later|too many connections", action: "suspend", durationMs: 300_000 }
]
const tryLater = { code: 421, enhanced: "4.7.0", text: "Try again later, closing connection." }
const given = (events: ReadonlyArray<Site.SiteEvent>): Site.State => events.reduce(Site.evolve, Site.initial)

describe("Site", () => {
  it("a reply a rule names suspends the site for the rule's duration", () => {
    expect(Site.observe(given([]), SITE, tryLater, rules, ctx(1000))).toEqual([
      { ...meta(1000), type: "SiteSuspended", site: SITE, rule: rules[1]!.match, reply: tryLater, until: 301_000 }
    ])
  })

  it("a throttle carries the rule's limits", () => {
    const reply = { code: 421, enhanced: "4.7.28", text: "unusual rate of unsolicited mail" }
    expect(Site.observe(given([]), SITE, reply, rules, ctx(0))).toEqual([
      { ...meta(0), type: "SiteThrottled", site: SITE, rule: rules[0]!.match, reply, until: 600_000, connections: 1, perSecond: 0.5 }
    ])
  })

  it("a reply no rule names, or a suspension already in force, changes nothing", () => {
    expect(Site.observe(given([]), SITE, { code: 250, text: "OK" }, rules, ctx(0))).toEqual([])
    const suspended = given(Site.observe(given([]), SITE, tryLater, rules, ctx(0)))
    expect(Site.observe(suspended, SITE, tryLater, rules, ctx(1000))).toEqual([])
  })

  it("resumes once the change has run out, not before", () => {
    const suspended = given(Site.observe(given([]), SITE, tryLater, rules, ctx(0)))
    expect(Site.expire(suspended, SITE, ctx(299_999))).toEqual([])
    expect(Site.expire(suspended, SITE, ctx(300_000))).toEqual([{ ...meta(300_000), type: "SiteResumed", site: SITE }])
    expect(Site.expire(given([]), SITE, ctx(300_000))).toEqual([])
  })

  it("a rule scoped to MX host patterns reads only those sites' replies", () => {
    const scoped: ReadonlyArray<Site.Rule> = [{ match: "^421 ", action: "suspend", durationMs: 60_000, sites: ["*.google.com"] }]
    expect(Site.observe(given([]), "site:alt1.aspmx.l.google.com,aspmx.l.google.com", tryLater, scoped, ctx(0))).toMatchObject([
      { type: "SiteSuspended", until: 60_000 }
    ])
    expect(Site.observe(given([]), SITE, tryLater, scoped, ctx(0))).toEqual([])
    expect(Site.matches("*.google.com", "site:google.com.evil.test")).toBe(false)
    expect(Site.matches("mx.example.net", SITE)).toBe(true)
  })
})
