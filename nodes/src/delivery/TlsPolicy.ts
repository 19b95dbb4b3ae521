// The TLS policy of one SMTP destination, from what the receiving domain publishes: DANE (RFC 7672) when its MX hosts
// have DNSSEC-validated TLSA records, else MTA-STS (RFC 8461). Turns a policy into the hops to try and the certificate
// check to apply; must not connect to MX hosts itself.
// Security stance: under "enforce" nothing is sent to an MX host outside the policy or over a session whose
// certificate does not verify for the MX host name; "testing" delivers as before and only records the verdict.
import type { Route, Trace } from "@missive/core"
import type { TLSSocket } from "node:tls"
import * as Dane from "./Dane.js"
import * as MtaSts from "./MtaSts.js"
import type { DestinationPolicy, Endpoint } from "./SmtpClient.js"

type SmtpDestination = Extract<Route.Destination, { kind: "smtp" }>

/** The recipient domain of an MX-routed destination ("mx:example.com"); routes to a relay have none. */
export const domainOf = (d: SmtpDestination): string | undefined =>
  d.via !== "route" && d.key.startsWith("mx:") ? d.key.slice(3) : undefined

const endpointOf = (h: Route.Hop): Endpoint => ({ host: h.host, port: h.port, ...(h.name ? { name: h.name } : {}) })

/** The chain and the MX host name as Node verified them, then the host name against the policy's mx patterns. */
const stsCheck =
  (policy: MtaSts.StsPolicy) =>
  (socket: TLSSocket, endpoint: Endpoint): string | undefined => {
    if (!socket.authorized) return String(socket.authorizationError ?? "certificate not verified")
    if (!endpoint.name || !MtaSts.mxMatches(policy.mx, endpoint.name)) return "MX host not in the MTA-STS policy"
    return undefined
  }

/** What an MTA-STS policy makes of a send to `d`. */
export const fromMtaSts = (policy: MtaSts.StsPolicy, d: SmtpDestination): DestinationPolicy => {
  const enforce = policy.mode === "enforce"
  const allowed = d.hops.filter((h) => h.name !== undefined && MtaSts.mxMatches(policy.mx, h.name))
  const excluded: Trace.HopTried[] = enforce
    ? d.hops
        .filter((h) => !allowed.includes(h))
        .map((h) => ({
          hop: h.host.includes(":") ? `[${h.host}]:${h.port}` : `${h.host}:${h.port}`,
          ...(h.name ? { name: h.name } : {}),
          outcome: "policy-excluded" as const,
          detail: "MX host not in the MTA-STS policy"
        }))
    : []
  return {
    name: `mta-sts:${policy.mode}`,
    hops: (enforce ? allowed : d.hops).map(endpointOf),
    excluded,
    verify: { source: "mta-sts", mode: policy.mode, enforce, check: stsCheck(policy) }
  }
}

export type DaneMode = "off" | "may" | "dane-only"

const excludedHop = (h: Route.Hop, detail: string): Trace.HopTried => ({
  hop: h.host.includes(":") ? `[${h.host}]:${h.port}` : `${h.host}:${h.port}`,
  ...(h.name ? { name: h.name } : {}),
  outcome: "policy-excluded",
  detail
})

/**
 * What DANE (RFC 7672) makes of a send to `d`: each MX host's TLSA RRset is looked up (`lookup`, through the
 * validating resolver). A host whose lookup failed is never dialled (§2.1.1). When some host has validated TLSA
 * records, only such hosts are dialled, over TLS, and each must present a chain its records match; under
 * "dane-only" a destination without any is not delivered to at all. Undefined: DANE has nothing to say (no host has
 * TLSA records and none failed, under "may"). Stricter than §2.2 in one case, named in README: under "may", hosts
 * without TLSA records are not tried while another MX host of the destination has them.
 */
export const fromDane = async (
  d: SmtpDestination,
  mode: DaneMode,
  lookup: (host: string, port: number) => Promise<Dane.TlsaLookup>,
  now: () => number
): Promise<DestinationPolicy | undefined> => {
  if (mode === "off") return undefined
  const results = new Map<string, Promise<Dane.TlsaLookup>>()
  const of = (h: Route.Hop): Promise<Dane.TlsaLookup> => {
    const key = `${h.name ?? ""}:${h.port}`
    let r = results.get(key)
    if (!r) results.set(key, (r = h.name ? lookup(h.name, h.port) : Promise.resolve({ kind: "insecure" as const })))
    return r
  }
  const found = await Promise.all(d.hops.map(async (h) => ({ hop: h, tlsa: await of(h) })))
  const secure = found.filter((f) => f.tlsa.kind === "secure" && Dane.usable(f.tlsa.records).length > 0)
  const failed = found.filter((f) => f.tlsa.kind === "failed")
  const plain = found.filter((f) => !secure.includes(f) && !failed.includes(f))
  if (mode === "may" && secure.length === 0 && failed.length === 0) return undefined
  const excluded: Trace.HopTried[] = failed.map((f) =>
    excludedHop(f.hop, `TLSA lookup failed (${f.tlsa.kind === "failed" ? f.tlsa.rcode : ""}): not delivered to this host`)
  )
  if (secure.length === 0 && mode === "may") {
    // only failures: the hosts without TLSA are tried as before, the failed ones not at all
    return { name: "dane:may", hops: plain.map((f) => endpointOf(f.hop)), excluded }
  }
  for (const f of plain)
    excluded.push(
      excludedHop(f.hop, mode === "dane-only" ? "no DNSSEC-validated TLSA record (dane-only)" : "no TLSA record (another MX host has DANE)")
    )
  const records = new Map(secure.map((f) => [`${f.hop.host}|${f.hop.port}`, f.tlsa.kind === "secure" ? f.tlsa.records : []]))
  return {
    name: `dane:${mode}`,
    hops: secure.map((f) => endpointOf(f.hop)),
    excluded,
    verify: {
      source: "dane",
      mode,
      enforce: true,
      check: (socket, endpoint) =>
        Dane.verify(records.get(`${endpoint.host}|${endpoint.port}`) ?? [], Dane.chainOf(socket), endpoint.name ?? endpoint.host, now())
    }
  }
}
