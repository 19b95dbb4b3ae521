// Where a recipient goes: the closed set of destinations and the DNS evidence a routing decision used.
// Pure: the router role does the lookups and hands the answers in as data.
import type { Reply } from "./Reply.js"

export interface Hop {
  readonly host: string
  readonly port: number
  /** MX preference (lower first); routes and A fallback use 0. */
  readonly preference: number
  /** The MX host name (or the domain, for the A fallback) this address was found for: what TLS policies name. */
  readonly name?: string | undefined
}

export type Destination =
  | { readonly kind: "maildir"; readonly key: string; readonly mailbox: string }
  | { readonly kind: "lmtp"; readonly key: string; readonly host: string; readonly port: number }
  | { readonly kind: "smtp"; readonly key: string; readonly hops: ReadonlyArray<Hop>; readonly via: "route" | "mx" | "a" }
  | { readonly kind: "unroutable"; readonly key: string; readonly reply: Reply }

/**
 * The site a destination belongs to (KumoMTA's "site name"): for MX routing, the set of MX host names, so that two
 * domains hosted by the same MX hosts share one site's limits; any other destination is its own site (its key).
 */
export const siteOf = (d: Destination): string => {
  if (d.kind !== "smtp" || d.via === "route") return d.key
  const names = [...new Set(d.hops.map((h) => (h.name ?? h.host).toLowerCase()))].sort()
  return names.length === 0 ? d.key : `site:${names.join(",")}`
}

/** What DNS said when the decision was made: enough to explain and to replay it. */
export interface DnsEvidence {
  readonly name: string
  readonly type: "MX" | "A" | "AAAA"
  /** "NOERROR", "NXDOMAIN", "NODATA", "SERVFAIL", "TIMEOUT", ... */
  readonly rcode: string
  readonly answers: ReadonlyArray<string>
}

export interface RouteDecision {
  readonly rcpt: string
  readonly destination: Destination
  readonly dns?: ReadonlyArray<DnsEvidence> | undefined
}

export const domainOf = (address: string): string => {
  const at = address.lastIndexOf("@")
  return at < 0 ? "" : address.slice(at + 1).toLowerCase()
}

export const localPartOf = (address: string): string => {
  const at = address.lastIndexOf("@")
  return at < 0 ? address : address.slice(0, at)
}

/** Orders MX hops by preference; equal preferences keep their given order (the caller shuffles with its seed). */
export const orderHops = (hops: ReadonlyArray<Hop>): ReadonlyArray<Hop> =>
  hops
    .map((h, i) => [h, i] as const)
    .sort((a, b) => a[0].preference - b[0].preference || a[1] - b[1])
    .map(([h]) => h)
