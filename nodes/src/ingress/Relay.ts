// Relay control at RCPT: which recipients a client may hand us, from the recipient's domain,
// the client's network and whether the session authenticated. Decides only; never replies.
// Security: never an open relay — anything not local, not a relay domain, not from a trusted
// network and not authenticated is denied.

import { domainToUnicode } from "node:url"
import ipaddr from "ipaddr.js"

export interface RelayOptions {
  readonly localDomains: readonly string[]
  readonly relayDomains: readonly string[]
  /** CIDR ranges ("10.0.0.0/8", "::1/128"); a bare address stands for itself. */
  readonly trustedNetworks: readonly string[]
}

export type RelayDecision = "local" | "relay-domain" | "trusted-network" | "authenticated" | "denied"

export interface RelayPolicy {
  /** The recipient as it will be recorded: bare `postmaster` is qualified with the first local domain. */
  readonly qualify: (address: string) => string
  readonly isPostmaster: (address: string) => boolean
  readonly decide: (address: string, client: { readonly ip: string; readonly authenticated: boolean }) => RelayDecision
  readonly isTrusted: (ip: string) => boolean
}

type Range = [ipaddr.IPv4 | ipaddr.IPv6, number]

const parseRange = (cidr: string): Range => {
  const text = cidr.trim()
  if (ipaddr.isValidCIDR(text)) return ipaddr.parseCIDR(text)
  if (ipaddr.isValid(text)) {
    const addr = ipaddr.process(text)
    return [addr, addr.kind() === "ipv4" ? 32 : 128]
  }
  throw new Error(`relay.trustedNetworks: not a CIDR range or IP address: ${JSON.stringify(cidr)}`)
}

/** Domains compare in their Unicode, lower-case form: smtp-server hands us addresses decoded from punycode. */
const normalizeDomain = (domain: string): string => {
  const trimmed = domain.trim().replace(/\.$/, "").toLowerCase()
  return domainToUnicode(trimmed) || trimmed
}

const domainOf = (address: string): string | undefined => {
  const at = address.lastIndexOf("@")
  return at < 0 ? undefined : normalizeDomain(address.slice(at + 1))
}

export const make = (options: RelayOptions, hostname: string): RelayPolicy => {
  const local = new Set(options.localDomains.map(normalizeDomain))
  const relay = new Set(options.relayDomains.map(normalizeDomain))
  const ranges = options.trustedNetworks.map(parseRange)
  const postmasterDomain = options.localDomains[0] ?? hostname

  const isTrusted = (ip: string): boolean => {
    if (!ipaddr.isValid(ip)) return false
    const addr = ipaddr.process(ip)
    return ranges.some((range) => range[0].kind() === addr.kind() && addr.match(range))
  }

  const isPostmaster = (address: string): boolean => {
    const at = address.lastIndexOf("@")
    if (at < 0) return address.toLowerCase() === "postmaster"
    const domain = domainOf(address)
    return address.slice(0, at).toLowerCase() === "postmaster" && domain !== undefined && local.has(domain)
  }

  const qualify = (address: string): string => (address.toLowerCase() === "postmaster" ? `postmaster@${postmasterDomain}` : address)

  const decide: RelayPolicy["decide"] = (address, client) => {
    if (isPostmaster(address)) return "local"
    const domain = domainOf(address)
    if (domain !== undefined && local.has(domain)) return "local"
    if (domain !== undefined && relay.has(domain)) return "relay-domain"
    if (isTrusted(client.ip)) return "trusted-network"
    if (client.authenticated) return "authenticated"
    return "denied"
  }

  return { qualify, isPostmaster, decide, isTrusted }
}
