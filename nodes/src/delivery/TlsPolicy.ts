// The TLS policy of one SMTP destination, from what the receiving domain publishes: MTA-STS (RFC 8461) today.
// Turns a policy into the hops to try and the certificate check to apply; must not connect anywhere itself.
// Security stance: under "enforce" nothing is sent to an MX host outside the policy or over a session whose
// certificate does not verify for the MX host name; "testing" delivers as before and only records the verdict.
import type { Route, Trace } from "@missive/core"
import type { TLSSocket } from "node:tls"
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
