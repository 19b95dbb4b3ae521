// A site's shaping automation (the MX host set several domains share): rules that read a remote reply ("421 4.7.0 try
// again later", "4.7.28", "too many connections") and throttle or suspend the site for a while, and the events that
// record each change (SiteThrottled, SiteSuspended, SiteResumed on the stream `site-<name>`). Pure: the reply, the
// time and the rules arrive as data; the scheduler applies what the events say.
import type { Meta } from "./Message.js"
import type { Reply } from "./Reply.js"

export interface Rule {
  /** A regular expression (case-insensitive) tested against "<code> <enhanced> <text>" of the reply. */
  readonly match: string
  readonly action: "throttle" | "suspend"
  readonly durationMs: number
  /** Throttle: the site's limits while it lasts. */
  readonly connections?: number | undefined
  readonly perSecond?: number | undefined
  readonly perHour?: number | undefined
  /** MX host patterns ("mx.example.com", "*.example.com") of the sites the rule reads (undefined: every site). */
  readonly sites?: ReadonlyArray<string> | undefined
}

/**
 * Whether an MX host name ("mx.example.com") or suffix pattern ("*.example.com") names one of a site's hosts (a
 * site key is "site:" and its MX host names, Route.siteOf; any other key, a route, is its own name).
 */
export const matches = (pattern: string, key: string): boolean => {
  const hosts = key.startsWith("site:") ? key.slice(5).split(",") : [key]
  const p = pattern.toLowerCase()
  return hosts.some((h) => (p.startsWith("*.") ? h.endsWith(p.slice(1)) : h === p))
}

/** What the site's stream says now: the change in force and until when, if any. */
export interface State {
  readonly version: number
  readonly action?: "throttle" | "suspend" | undefined
  readonly until?: number | undefined
}

export type SiteEvent =
  | (Meta & {
      readonly type: "SiteThrottled"
      readonly site: string
      readonly rule: string
      readonly reply: Reply
      readonly until: number
      readonly connections?: number | undefined
      readonly perSecond?: number | undefined
      readonly perHour?: number | undefined
    })
  | (Meta & { readonly type: "SiteSuspended"; readonly site: string; readonly rule: string; readonly reply: Reply; readonly until: number })
  | (Meta & { readonly type: "SiteResumed"; readonly site: string })

export const initial: State = { version: 0 }

export const evolve = (s: State, e: SiteEvent): State => {
  const version = s.version + 1
  switch (e.type) {
    case "SiteThrottled":
      return { version, action: "throttle", until: e.until }
    case "SiteSuspended":
      return { version, action: "suspend", until: e.until }
    case "SiteResumed":
      return { version }
  }
}

const line = (r: Reply): string => `${r.code} ${r.enhanced ?? ""} ${r.text}`

/**
 * The first rule for `site` whose pattern the reply matches. A pattern that is not a valid expression matches
 * nothing; a rule scoped to other sites is skipped.
 */
export const ruleFor = (rules: ReadonlyArray<Rule>, reply: Reply, site: string): Rule | undefined =>
  rules.find((r) => {
    if (r.sites !== undefined && !r.sites.some((p) => matches(p, site))) return false
    try {
      return new RegExp(r.match, "i").test(line(reply))
    } catch {
      return undefined
    }
  })

export interface Ctx {
  readonly at: number
  readonly node: string
  readonly policy: string
}

/**
 * What a reply from `site` changes: a rule it matches throttles or suspends the site for the rule's duration, unless
 * the same change is already in force (a suspended site is not suspended again by the replies of attempts that were
 * already under way). Nothing for a reply no rule names.
 */
export const observe = (s: State, site: string, reply: Reply, rules: ReadonlyArray<Rule>, ctx: Ctx): ReadonlyArray<SiteEvent> => {
  const rule = ruleFor(rules, reply, site)
  if (!rule) return []
  if (s.action !== undefined && (s.until ?? 0) > ctx.at && (s.action === "suspend" || s.action === rule.action)) return []
  const meta = { v: 1, at: ctx.at, node: ctx.node, policy: ctx.policy }
  const until = ctx.at + rule.durationMs
  if (rule.action === "suspend") return [{ ...meta, type: "SiteSuspended", site, rule: rule.match, reply, until }]
  return [
    {
      ...meta,
      type: "SiteThrottled",
      site,
      rule: rule.match,
      reply,
      until,
      ...(rule.connections !== undefined ? { connections: rule.connections } : {}),
      ...(rule.perSecond !== undefined ? { perSecond: rule.perSecond } : {}),
      ...(rule.perHour !== undefined ? { perHour: rule.perHour } : {})
    }
  ]
}

/** The change in force has run out: the site is resumed (its configured limits apply again). */
export const expire = (s: State, site: string, ctx: Ctx): ReadonlyArray<SiteEvent> =>
  s.action !== undefined && (s.until ?? 0) <= ctx.at
    ? [{ v: 1, at: ctx.at, node: ctx.node, policy: ctx.policy, type: "SiteResumed", site }]
    : []
