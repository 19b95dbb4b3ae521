// DNSBL and DNSWL at connect, the Postscreen way: the client's address is looked up in every configured zone at once,
// the weights of the zones that list it are summed (an allowlist has a negative weight), and a client whose score
// reaches the threshold is refused with 554 5.7.1 before the greeting. Every lookup is kept as evidence.
// Resolves only through the node's configured DNS servers; a zone that times out or fails counts as not listing
// (as Postscreen does), and is recorded as such. Must not cache across sessions or look up anything but A records.
import { Resolver } from "node:dns/promises"
import ipaddr from "ipaddr.js"
import type { Message } from "@missive/core"
import type { Filter, Verdict } from "./Filter.js"

export interface Zone {
  readonly zone: string
  readonly weight: number
  /** Only these answers list the client; empty: any answer in 127.0.0.0/8. */
  readonly answers: ReadonlyArray<string>
}

export interface DnsblOptions {
  readonly zones: ReadonlyArray<Zone>
  readonly threshold: number
  readonly action: "reject" | "record"
  /** The node's resolvers ("ip" or "ip:port"); empty: the system's. */
  readonly servers: ReadonlyArray<string>
  readonly timeoutMs: number
}

/** The name looked up for `ip` in `zone`: reversed octets (IPv4) or nibbles (IPv6); undefined for a non-address. */
export const queryName = (ip: string, zone: string): string | undefined => {
  if (!ipaddr.isValid(ip)) return undefined
  let addr = ipaddr.parse(ip)
  if (addr.kind() === "ipv6" && (addr as ipaddr.IPv6).isIPv4MappedAddress()) addr = (addr as ipaddr.IPv6).toIPv4Address()
  const labels =
    addr.kind() === "ipv4"
      ? addr.toByteArray().map(String)
      : addr.toByteArray().flatMap((b) => [(b >> 4).toString(16), (b & 15).toString(16)])
  return `${labels.reverse().join(".")}.${zone}`
}

const rcodeOf = (e: NodeJS.ErrnoException): string =>
  e.code === "ENOTFOUND"
    ? "NXDOMAIN"
    : e.code === "ENODATA"
      ? "NODATA"
      : e.code === "ETIMEOUT"
        ? "TIMEOUT"
        : e.code === "ESERVFAIL"
          ? "SERVFAIL"
          : (e.code ?? "ERROR")

export interface Lookup {
  readonly zone: Zone
  readonly listed: boolean
  readonly evidence: Message.FilterEvidence
}

/** Looks the client up in every zone, in parallel. */
export const lookup = async (opts: DnsblOptions, ip: string): Promise<ReadonlyArray<Lookup>> => {
  const resolver = new Resolver({ timeout: opts.timeoutMs, tries: 1 })
  if (opts.servers.length > 0) resolver.setServers([...opts.servers])
  return Promise.all(
    opts.zones.map(async (zone): Promise<Lookup> => {
      const name = queryName(ip, zone.zone)
      if (name === undefined) return { zone, listed: false, evidence: { name: ip, type: "A", rcode: "NOTANADDRESS", answers: [] } }
      try {
        const answers = await resolver.resolve4(name)
        const listed = answers.some((a) => (zone.answers.length > 0 ? zone.answers.includes(a) : a.startsWith("127.")))
        return { zone, listed, evidence: { name, type: "A", rcode: "NOERROR", answers } }
      } catch (e) {
        return { zone, listed: false, evidence: { name, type: "A", rcode: rcodeOf(e as NodeJS.ErrnoException), answers: [] } }
      }
    })
  )
}

/** The verdict of the lookups: the summed weight, and a refusal when it reaches the threshold. */
export const verdictOf = (opts: DnsblOptions, ip: string, lookups: ReadonlyArray<Lookup>): Verdict => {
  const listedIn = lookups.filter((l) => l.listed)
  const score = listedIn.reduce((s, l) => s + l.zone.weight, 0)
  const blocked = score >= opts.threshold
  const blockers = listedIn.filter((l) => l.zone.weight > 0).map((l) => l.zone.zone)
  return {
    name: "dnsbl",
    stage: "connect",
    result: blocked ? "listed" : listedIn.length > 0 ? "below-threshold" : "pass",
    score,
    action: blocked && opts.action === "reject" ? "reject" : "accept",
    ...(blocked && opts.action === "reject"
      ? { reply: { code: 554, enhanced: "5.7.1", text: `Service unavailable; client [${ip}] blocked using ${blockers.join(", ")}` } }
      : {}),
    detail: listedIn.map((l) => `${l.zone.zone}(${l.zone.weight})`).join(" ") || "listed nowhere",
    evidence: lookups.map((l) => l.evidence)
  }
}

/** At connect on the smtp listener; submission clients (home users on listed dynamic addresses) and trusted networks are not looked up. */
export const filter = (opts: DnsblOptions): Filter => ({
  name: "dnsbl",
  connect: async (c) =>
    c.session.listener === "submission" || c.session.trusted
      ? { verdicts: [] }
      : { verdicts: [verdictOf(opts, c.session.ip, await lookup(opts, c.session.ip))] }
})
