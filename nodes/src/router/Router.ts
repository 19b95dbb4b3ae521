// The router role: turns one recipient into a RouteDecision (local maildir/LMTP, configured relay route, or MX/A per
// RFC 5321 §5.1 and RFC 7505), carrying the DNS evidence it used. Temporary DNS failures come back as an outcome, never
// a throw. It must not deliver, queue or retry: the message actor records the decision and acts on it.
import { isIP } from "node:net"
import { Reply, Route } from "@missive/core"
import { mailboxPath } from "../delivery/Maildir.js"
import { systemClock, type Clock } from "../runtime/Clock.js"
import type { DnsResolver, Lookup, MxRecord } from "./Resolver.js"

/** A decision, or a temporary failure (4xx) the caller records as a deferral with the evidence that caused it. */
export type RouteOutcome =
  { readonly ok: Route.RouteDecision } | { readonly temporary: Reply.Reply; readonly dns: ReadonlyArray<Route.DnsEvidence> }

export interface DnsCache {
  /** A cached lookup still fresh at this moment, if any. */
  get(key: string): Lookup<unknown> | undefined
  set(key: string, lookup: Lookup<unknown>): void
  clear(): void
}

export interface DnsCacheOptions {
  /** Longest time an answer is kept, ms (default 60 s); a shorter record TTL wins. */
  readonly maxTtlMs?: number | undefined
  readonly maxEntries?: number | undefined
  /** Only ages cache entries (default: the system clock). */
  readonly clock?: Clock | undefined
}

/** Rcodes that are facts about the domain and may be cached; SERVFAIL, TIMEOUT and the like are retried. */
const CACHEABLE = new Set(["NOERROR", "NODATA", "NXDOMAIN"])

export const makeDnsCache = (options: DnsCacheOptions = {}): DnsCache => {
  const maxTtlMs = options.maxTtlMs ?? 60_000
  const maxEntries = options.maxEntries ?? 10_000
  const clock = options.clock ?? systemClock
  const now = (): number => clock.now()
  const entries = new Map<string, { lookup: Lookup<unknown>; expiresAt: number }>()
  return {
    get: (key) => {
      const e = entries.get(key)
      if (!e) return undefined
      if (e.expiresAt <= now()) {
        entries.delete(key)
        return undefined
      }
      return e.lookup
    },
    set: (key, lookup) => {
      if (!CACHEABLE.has(lookup.evidence.rcode)) return
      const ttlMs = Math.min(maxTtlMs, lookup.ttl !== undefined ? lookup.ttl * 1000 : maxTtlMs)
      if (ttlMs <= 0) return
      if (entries.size >= maxEntries) {
        const oldest = entries.keys().next()
        if (!oldest.done) entries.delete(oldest.value)
      }
      entries.set(key, { lookup, expiresAt: now() + ttlMs })
    },
    clear: () => entries.clear()
  }
}

/** Wraps a resolver so repeated questions within their TTL are answered from the cache. */
export const cachedResolver = (resolver: DnsResolver, cache: DnsCache): DnsResolver => {
  const via = <T>(type: string, name: string, run: () => Promise<Lookup<T>>): Promise<Lookup<T>> => {
    const key = `${type} ${name.toLowerCase()}`
    const hit = cache.get(key)
    if (hit) return Promise.resolve(hit as Lookup<T>)
    return run().then((lookup) => {
      cache.set(key, lookup)
      return lookup
    })
  }
  return {
    mx: (name) => via("MX", name, () => resolver.mx(name)),
    a: (name) => via("A", name, () => resolver.a(name)),
    aaaa: (name) => via("AAAA", name, () => resolver.aaaa(name))
  }
}

export interface RouterOptions {
  /** Domains delivered here (compared case-insensitively). */
  readonly localDomains: ReadonlyArray<string>
  /** Domain (or "*" for a smarthost) to "host:port" ("[v6]:port"; port 25 when omitted). */
  readonly relayRoutes: Readonly<Record<string, string>>
  /** "host:port" of an LMTP server taking local mail instead of the maildir, or null. */
  readonly lmtp: string | null
  readonly maildirRoot: string
  /** Port of remote MX hosts (25, or a test server's port). */
  readonly mxPort: number
  readonly resolver: DnsResolver
  /** A cache shared between routers, or false to ask DNS every time (tests). A fresh 60 s cache by default. */
  readonly cache?: DnsCache | false | undefined
  /** Also route to IPv6 addresses of MX hosts (default true); IPv4 hops come first within one MX host. */
  readonly ipv6?: boolean | undefined
}

export interface Router {
  route(rcpt: string): Promise<RouteOutcome>
}

/** Parses "host:port", "[v6]:port" or "host" (port 25). Throws on a malformed configuration value. */
export const parseHostPort = (value: string): { host: string; port: number } => {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(value)
  const m = v6 ?? /^([^:[\]]+)(?::(\d+))?$/.exec(value)
  const host = m?.[1]
  const port = m?.[2] === undefined ? 25 : Number(m[2])
  if (!host || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`invalid host:port ${JSON.stringify(value)}`)
  return { host: host.toLowerCase(), port }
}

const showHostPort = (host: string, port: number): string => (isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`)

const TEMPORARY = (rcode: string): boolean => !CACHEABLE.has(rcode)

export const makeRouter = (options: RouterOptions): Router => {
  const local = new Set(options.localDomains.map((d) => d.toLowerCase()))
  const routes = new Map(Object.entries(options.relayRoutes).map(([d, hp]) => [d.toLowerCase(), parseHostPort(hp)]))
  const lmtp = options.lmtp === null ? null : parseHostPort(options.lmtp)
  const dns = options.cache === false ? options.resolver : cachedResolver(options.resolver, options.cache ?? makeDnsCache())
  const ipv6 = options.ipv6 ?? true

  const decided = (rcpt: string, destination: Route.Destination, evidence?: ReadonlyArray<Route.DnsEvidence>): RouteOutcome => ({
    ok: { rcpt, destination, ...(evidence ? { dns: evidence } : {}) }
  })

  /** A and AAAA of one host: addresses in order, the evidence, and whether a temporary failure hid some. */
  const addresses = async (host: string) => {
    if (isIP(host)) return { ips: [host], evidence: [] as Route.DnsEvidence[], temporary: false }
    const [a, aaaa] = await Promise.all([dns.a(host), ipv6 ? dns.aaaa(host) : Promise.resolve(undefined)])
    const lookups = aaaa ? [a, aaaa] : [a]
    return {
      ips: lookups.flatMap((l) => l.records),
      evidence: lookups.map((l) => l.evidence),
      temporary: lookups.some((l) => TEMPORARY(l.evidence.rcode))
    }
  }

  const viaMx = async (rcpt: string, domain: string, mx: Lookup<MxRecord>): Promise<RouteOutcome> => {
    const key = `mx:${domain}`
    const evidence: Route.DnsEvidence[] = [mx.evidence]
    const tempFail = (): RouteOutcome => ({ temporary: Reply.Replies.dnsTempFail, dns: evidence })
    const unroutable = (reply: Reply.Reply): RouteOutcome => decided(rcpt, { kind: "unroutable", key, reply }, evidence)

    switch (mx.evidence.rcode) {
      case "NXDOMAIN":
        return unroutable(Reply.Replies.noSuchDomain)
      case "NODATA": {
        // RFC 5321 §5.1: no MX records, the domain itself is the implicit MX with preference 0
        const self = await addresses(domain)
        evidence.push(...self.evidence)
        if (self.ips.length > 0) {
          return decided(
            rcpt,
            { kind: "smtp", key, via: "a", hops: self.ips.map((host) => ({ host, port: options.mxPort, preference: 0, name: domain })) },
            evidence
          )
        }
        return self.temporary ? tempFail() : unroutable(Reply.Replies.noSuchDomain)
      }
      case "NOERROR":
        break
      default:
        return tempFail()
    }

    // RFC 7505: a single MX "." with preference 0 says the domain accepts no mail
    if (mx.records.length === 1 && mx.records[0]?.exchange === ".") return unroutable(Reply.Replies.nullMx)
    const ordered = [...mx.records]
      .filter((r) => r.exchange !== ".")
      .map((r, i) => [r, i] as const)
      .sort((x, y) => x[0].preference - y[0].preference || x[1] - y[1])
      .map(([r]) => r)
    const seen = new Set<string>()
    const unique = ordered.filter((r) => !seen.has(r.exchange) && (seen.add(r.exchange), true))
    const resolved = await Promise.all(unique.map((r) => addresses(r.exchange)))
    const hops: Route.Hop[] = []
    unique.forEach((r, i) => {
      const res = resolved[i]
      if (!res) return
      evidence.push(...res.evidence)
      for (const host of res.ips) hops.push({ host, port: options.mxPort, preference: r.preference, name: r.exchange })
    })
    if (hops.length === 0) {
      // No MX host has an address. A lame MX may be repaired, so this defers rather than bounces; the queue
      // lifetime bounds the wait.
      return tempFail()
    }
    return decided(rcpt, { kind: "smtp", key, via: "mx", hops: Route.orderHops(hops) }, evidence)
  }

  return {
    route: async (rcpt) => {
      const domain = Route.domainOf(rcpt)
      if (domain === "") return decided(rcpt, { kind: "unroutable", key: "unroutable", reply: Reply.Replies.badSyntax })
      if (local.has(domain)) {
        if (lmtp)
          return decided(rcpt, { kind: "lmtp", key: `lmtp:${showHostPort(lmtp.host, lmtp.port)}`, host: lmtp.host, port: lmtp.port })
        const mailbox = mailboxPath(options.maildirRoot, rcpt)
        return mailbox === null
          ? decided(rcpt, { kind: "unroutable", key: "local", reply: Reply.Replies.mailboxUnavailable })
          : decided(rcpt, { kind: "maildir", key: "local", mailbox })
      }
      const route = routes.get(domain) ?? routes.get("*")
      if (route) {
        return decided(rcpt, {
          kind: "smtp",
          via: "route",
          key: `route:${showHostPort(route.host, route.port)}`,
          hops: [{ host: route.host, port: route.port, preference: 0 }]
        })
      }
      return viaMx(rcpt, domain, await dns.mx(domain))
    }
  }
}
