// DNS lookups for routing (MX, A, AAAA) through node:dns with configurable servers and a timeout.
// Never rejects: every failure becomes a DnsEvidence rcode, so the router decides what it means. Does no policy itself.
// Network stance: queries only the configured servers; answers are treated as untrusted data (exchange names are
// lower-cased and stripped of the trailing dot, nothing else is interpreted). The resolver is the router's DNS
// service (`DnsService`): `layerSystem(options)` in a node, `layer(resolver)` for a test's or a simulation's answers.
import { Context, Layer } from "effect"
import { Resolver as NodeResolver } from "node:dns/promises"
import type { Route } from "@missive/core"

export interface MxRecord {
  readonly preference: number
  /** "." for the null MX of RFC 7505. */
  readonly exchange: string
}

export interface Lookup<T> {
  readonly records: ReadonlyArray<T>
  readonly evidence: Route.DnsEvidence
  /** Smallest TTL of the answers, seconds, when the lookup exposes it (node's MX lookup does not). */
  readonly ttl?: number | undefined
}

export interface DnsResolver {
  mx(name: string): Promise<Lookup<MxRecord>>
  a(name: string): Promise<Lookup<string>>
  aaaa(name: string): Promise<Lookup<string>>
  /**
   * TXT records (each record's strings joined) for TLS policy discovery (MTA-STS). Optional: a resolver without it
   * (canned answers, the simulated world) means no MTA-STS lookups at all.
   */
  txt?(name: string): Promise<{ readonly records: ReadonlyArray<string>; readonly rcode: string }>
}

export interface ResolverOptions {
  /** "ip" or "ip:port" ("[v6]:port"); the system's servers when omitted. */
  readonly servers?: ReadonlyArray<string> | undefined
  /** Per-try timeout, ms (default 2000). */
  readonly timeoutMs?: number | undefined
  /** Tries per server (default 2). */
  readonly tries?: number | undefined
}

/** node:dns error codes to DNS rcodes; anything else (ECONNREFUSED, EBADRESP, ...) keeps its name without the E. */
const RCODES: Readonly<Record<string, string>> = {
  ENOTFOUND: "NXDOMAIN",
  ENODATA: "NODATA",
  ESERVFAIL: "SERVFAIL",
  ETIMEOUT: "TIMEOUT",
  EREFUSED: "REFUSED",
  EFORMERR: "FORMERR"
}

export const rcodeOf = (err: unknown): string => {
  const code = typeof err === "object" && err !== null && "code" in err ? String((err as { code: unknown }).code) : ""
  return RCODES[code] ?? (code.startsWith("E") ? code.slice(1) : code || "SERVFAIL")
}

const normName = (name: string): string => name.toLowerCase().replace(/\.$/, "")

/** The exchange of a null MX arrives as "" from c-ares; everything else is a host name. */
const normExchange = (exchange: string): string => (exchange === "" || exchange === "." ? "." : normName(exchange))

export const makeResolver = (options: ResolverOptions = {}): DnsResolver => {
  const resolver = new NodeResolver({ timeout: options.timeoutMs ?? 2000, tries: options.tries ?? 2 })
  if (options.servers && options.servers.length > 0) resolver.setServers([...options.servers])

  const lookup = async <R, T>(
    name: string,
    type: Route.DnsEvidence["type"],
    run: () => Promise<ReadonlyArray<R>>,
    toRecord: (r: R) => T,
    show: (t: T) => string,
    ttlOf?: (r: R) => number
  ): Promise<Lookup<T>> => {
    const qname = normName(name)
    try {
      const raw = await run()
      const records = raw.map(toRecord)
      const ttl = ttlOf && raw.length > 0 ? Math.min(...raw.map(ttlOf)) : undefined
      const rcode = records.length === 0 ? "NODATA" : "NOERROR"
      return { records, ttl, evidence: { name: qname, type, rcode, answers: records.map(show) } }
    } catch (err) {
      return { records: [], evidence: { name: qname, type, rcode: rcodeOf(err), answers: [] } }
    }
  }

  return {
    mx: (name) =>
      lookup(
        name,
        "MX",
        () => resolver.resolveMx(normName(name)),
        (r): MxRecord => ({ preference: r.priority, exchange: normExchange(r.exchange) }),
        (m) => `${m.preference} ${m.exchange}`
      ),
    a: (name) =>
      lookup(
        name,
        "A",
        () => resolver.resolve4(normName(name), { ttl: true }),
        (r) => r.address,
        (a) => a,
        (r) => r.ttl
      ),
    aaaa: (name) =>
      lookup(
        name,
        "AAAA",
        () => resolver.resolve6(normName(name), { ttl: true }),
        (r) => r.address,
        (a) => a,
        (r) => r.ttl
      ),
    txt: async (name) => {
      try {
        const records = (await resolver.resolveTxt(normName(name))).map((chunks) => chunks.join(""))
        return { records, rcode: records.length === 0 ? "NODATA" : "NOERROR" }
      } catch (err) {
        return { records: [], rcode: rcodeOf(err) }
      }
    }
  }
}

/** The DNS the router asks, as a service. */
export class DnsService extends Context.Service<DnsService, DnsResolver>()("missive/Dns") {}

export const layerSystem = (options: ResolverOptions = {}): Layer.Layer<DnsService> => Layer.sync(DnsService, () => makeResolver(options))
export const layer = (resolver: DnsResolver): Layer.Layer<DnsService> => Layer.succeed(DnsService, resolver)
