// Who may send what to whom: recipients at local domains checked at RCPT against users, aliases and virtual maps
// (one address → several, "@domain" catch-alls, plus-addressing), relay domains' recipient lists, canonical rewriting
// of envelope addresses, and the sender addresses each submission login may use. Maps come from the configuration
// and from the YAML files it names; `reload` swaps them whole. Must not look anything up on the network.
// Security: an unknown local user is refused at RCPT (550 5.1.1), never accepted and bounced later (backscatter).
import { readFileSync } from "node:fs"
import { parse as parseYaml } from "yaml"
import type { Config } from "../config/Config.js"
import type { Filter, RcptContext, MailContext, StageResult, Verdict, Rewrite } from "./Filter.js"

export interface Maps {
  /** Full addresses, and bare local parts valid at every local domain; lower-case. */
  readonly users: ReadonlySet<string>
  /** Address or "@domain" → targets. */
  readonly aliases: ReadonlyMap<string, ReadonlyArray<string>>
  /** Relay domain → accepted recipients. */
  readonly relay: ReadonlyMap<string, ReadonlySet<string>>
  /** Address or "@domain" → address or "@domain". */
  readonly canonical: ReadonlyMap<string, string>
  /** Submission login → addresses or "@domain" it may send as. */
  readonly logins: ReadonlyMap<string, ReadonlyArray<string>>
  readonly plusDelimiter: string
  readonly localDomains: ReadonlySet<string>
}

type Section = Config["filter"]

const lower = (s: string): string => s.trim().toLowerCase()
const domainOf = (a: string): string => a.slice(a.lastIndexOf("@") + 1)
const localOf = (a: string): string => (a.includes("@") ? a.slice(0, a.lastIndexOf("@")) : a)

interface Raw {
  users: Array<string>
  aliases: Record<string, ReadonlyArray<string>>
  relay: Record<string, ReadonlyArray<string>>
  canonical: Record<string, string>
  logins: Record<string, ReadonlyArray<string>>
}

const strings = (u: unknown, what: string): Array<string> => {
  if (Array.isArray(u) && u.every((x) => typeof x === "string")) return u as Array<string>
  if (typeof u === "string") return [u]
  throw new Error(`${what}: expected an address or a list of addresses`)
}

/** One map file: YAML with any of users, aliases, relay, canonical, logins. Throws with the file and key on a bad one. */
const readFile = (path: string): Partial<Raw> => {
  const doc = parseYaml(readFileSync(path, "utf8")) as unknown
  if (doc === null || doc === undefined) return {}
  if (typeof doc !== "object" || Array.isArray(doc))
    throw new Error(`${path}: expected a mapping of users, aliases, relay, canonical, logins`)
  const out: Partial<Raw> = {}
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    const at = `${path}: ${key}`
    if (key === "users") out.users = strings(value, at)
    else if (key === "aliases" || key === "relay" || key === "logins") {
      if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`${at}: expected a mapping`)
      out[key] = Object.fromEntries(Object.entries(value).map(([k, v]) => [k, strings(v, `${at}.${k}`)]))
    } else if (key === "canonical") {
      if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`${at}: expected a mapping`)
      out.canonical = Object.fromEntries(
        Object.entries(value).map(([k, v]) => {
          if (typeof v !== "string") throw new Error(`${at}.${k}: expected an address`)
          return [k, v]
        })
      )
    } else throw new Error(`${at}: unknown key (expected users, aliases, relay, canonical or logins)`)
  }
  return out
}

/** The maps of a configuration: its own keys, then each named file's merged over them. Throws on an unreadable file. */
export const load = (section: Section, localDomains: ReadonlyArray<string>): Maps => {
  const raw: Raw = {
    users: [...section.recipients.users],
    aliases: { ...section.recipients.aliases },
    relay: { ...section.recipients.relay },
    canonical: { ...section.senders.canonical },
    logins: { ...section.senders.logins }
  }
  for (const path of section.files) {
    const f = readFile(path)
    raw.users.push(...(f.users ?? []))
    Object.assign(raw.aliases, f.aliases)
    Object.assign(raw.relay, f.relay)
    Object.assign(raw.canonical, f.canonical)
    Object.assign(raw.logins, f.logins)
  }
  return {
    users: new Set(raw.users.map(lower)),
    aliases: new Map(Object.entries(raw.aliases).map(([k, v]) => [lower(k), v.map(lower)])),
    relay: new Map(Object.entries(raw.relay).map(([k, v]) => [lower(k), new Set(v.map(lower))])),
    canonical: new Map(Object.entries(raw.canonical).map(([k, v]) => [lower(k), lower(v)])),
    logins: new Map(Object.entries(raw.logins).map(([k, v]) => [k, v.map(lower)])),
    plusDelimiter: section.recipients.plus_delimiter,
    localDomains: new Set(localDomains.map(lower))
  }
}

/** Whether the maps check local recipients at all: with no users and no aliases, every local part is accepted. */
const checksLocal = (m: Maps): boolean => m.users.size > 0 || m.aliases.size > 0

/** "user+tag@domain" → "user@domain" (the first delimiter splits); unchanged without one. */
export const baseAddress = (m: Maps, address: string): string => {
  if (m.plusDelimiter === "") return address
  const local = localOf(address)
  const i = local.indexOf(m.plusDelimiter)
  return i <= 0 ? address : `${local.slice(0, i)}@${domainOf(address)}`
}

/** Canonical rewriting: the address's own entry, else its domain's ("@old" → "@new" keeps the local part). */
export const canonicalOf = (m: Maps, address: string): string => {
  const a = lower(address)
  const own = m.canonical.get(a)
  if (own !== undefined) return own.startsWith("@") ? `${localOf(address)}${own}` : own
  const byDomain = m.canonical.get(`@${domainOf(a)}`)
  if (byDomain === undefined) return address
  return byDomain.startsWith("@") ? `${localOf(address)}${byDomain}` : byDomain
}

export type RecipientCheck =
  { readonly ok: true; readonly recipients: ReadonlyArray<string>; readonly how: string } | { readonly ok: false; readonly reason: string }

const isUser = (m: Maps, a: string): boolean => m.users.has(a) || (m.localDomains.has(domainOf(a)) && m.users.has(localOf(a)))

/**
 * The RCPT check of one (canonical) recipient: what it delivers to, or why it is refused. Aliases expand recursively
 * (at most 10 levels; a loop ends at the address that closes it). Pure over the maps.
 */
export const checkRecipient = (m: Maps, recipient: string): RecipientCheck => {
  const a = lower(recipient)
  const domain = domainOf(a)
  if (!m.localDomains.has(domain)) {
    const list = m.relay.get(domain)
    if (list === undefined || list.has(a) || list.has(baseAddress(m, a))) return { ok: true, recipients: [recipient], how: "relay" }
    return { ok: false, reason: `not in the recipient list of relay domain ${domain}` }
  }
  if (localOf(a) === "postmaster" || !checksLocal(m)) return { ok: true, recipients: [recipient], how: "local" }
  const out: Array<string> = []
  const seen = new Set<string>()
  let how = "user"
  const expand = (addr: string, depth: number): boolean => {
    if (seen.has(addr) || depth > 10) {
      out.push(addr)
      return true
    }
    seen.add(addr)
    const base = baseAddress(m, addr)
    const targets = m.aliases.get(addr) ?? (base !== addr ? m.aliases.get(base) : undefined)
    if (targets !== undefined) {
      how = "alias"
      return targets.every((t) => expand(t, depth + 1))
    }
    if (isUser(m, addr)) return (out.push(addr), true)
    if (base !== addr && isUser(m, base)) return ((how = how === "alias" ? how : "plus"), out.push(base), true)
    if (!m.localDomains.has(domainOf(addr))) return (out.push(addr), true)
    const catchAll = m.aliases.get(`@${domainOf(addr)}`)
    if (catchAll !== undefined && depth === 0) {
      how = "catch-all"
      return catchAll.every((t) => expand(t.startsWith("@") ? `${localOf(addr)}${t}` : t, depth + 1))
    }
    return false
  }
  if (!expand(a, 0)) return { ok: false, reason: "no such user" }
  return { ok: true, recipients: [...new Set(out)], how }
}

/** Whether a submission login may use this sender; logins not in the map may use any. */
export const mayUse = (m: Maps, login: string, sender: string): boolean => {
  const allowed = m.logins.get(login)
  if (allowed === undefined) return true
  const a = lower(sender)
  return allowed.some((x) => x === a || (x.startsWith("@") && `@${domainOf(a)}` === x) || (x === "<>" && a === ""))
}

export const Replies = {
  unknownUser: { code: 550, enhanced: "5.1.1", text: "No such user here" },
  senderNotOwned: { code: 553, enhanced: "5.7.1", text: "Sender address not owned by the authenticated user" }
} as const

/** The rcpt step on its own (the suppression check and other RCPT hooks sit beside it in the stage). */
export const rcptStep =
  (maps: () => Maps) =>
  (c: RcptContext): StageResult => {
    const m = maps()
    const canonical = canonicalOf(m, c.recipient)
    const rewrites: Array<Rewrite> = []
    if (canonical !== c.recipient) rewrites.push({ kind: "recipient", before: c.recipient, after: [canonical], by: "canonical" })
    const r = checkRecipient(m, canonical)
    if (!r.ok) {
      const v: Verdict = {
        name: "recipient",
        stage: "rcpt",
        result: "unknown",
        action: "reject",
        reply: Replies.unknownUser,
        detail: `<${c.recipient}> ${r.reason}`
      }
      return { verdicts: [v] }
    }
    const changed = r.recipients.length !== 1 || r.recipients[0] !== canonical
    if (changed) rewrites.push({ kind: "recipient", before: canonical, after: r.recipients, by: r.how })
    return { verdicts: [], recipients: r.recipients, rewrites }
  }

export const mailStep =
  (maps: () => Maps) =>
  (c: MailContext): StageResult => {
    const m = maps()
    const user = c.session.user
    if (user !== undefined && c.session.listener === "submission" && !mayUse(m, user, c.sender)) {
      return {
        verdicts: [
          {
            name: "sender",
            stage: "mail",
            result: "not-owned",
            action: "reject",
            reply: Replies.senderNotOwned,
            detail: `${user} may not send as <${c.sender}>`
          }
        ]
      }
    }
    if (c.sender === "") return { verdicts: [] }
    const canonical = canonicalOf(m, c.sender)
    if (canonical === c.sender) return { verdicts: [] }
    return { verdicts: [], sender: canonical, rewrites: [{ kind: "sender", before: c.sender, after: [canonical], by: "canonical" }] }
  }

/** Whether the configuration asks for the address filter at all. */
export const configured = (section: Section): boolean =>
  section.files.length > 0 ||
  section.recipients.users.length > 0 ||
  Object.keys(section.recipients.aliases).length > 0 ||
  Object.keys(section.recipients.relay).length > 0 ||
  Object.keys(section.senders.canonical).length > 0 ||
  Object.keys(section.senders.logins).length > 0

export interface AddressFilter extends Filter {
  /** Swaps the maps for those of this configuration (re-reading its files); throws, keeping the old maps, on a bad file. */
  readonly reload: (section: Section) => Maps
  readonly maps: () => Maps
}

export const make = (section: Section, localDomains: ReadonlyArray<string>): AddressFilter => {
  let current = load(section, localDomains)
  const maps = () => current
  return {
    name: "addresses",
    mail: mailStep(maps),
    rcpt: rcptStep(maps),
    maps,
    reload: (next) => {
      current = load(next, localDomains)
      return current
    }
  }
}
