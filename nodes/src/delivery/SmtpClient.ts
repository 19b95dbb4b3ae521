// SMTP delivery of one message to one smtp destination: hops in order (connect failure → next hop), EHLO, STARTTLS
// as configured, MAIL/RCPT/DATA, one reply per recipient; sessions are pooled per destination key and reused.
// Must not decide retries or bounces: it reports replies, and a connection problem as a 4xx for every recipient.
// Security stance: remote servers are untrusted; "opportunistic" TLS encrypts without authenticating the peer.
import type { ConnectionOptions } from "node:tls"
import { Route } from "@missive/core"
import type { DeliveryResult, Envelope } from "./Delivery.js"
import { makePool, type SendPolicy } from "./internal/Pool.js"
import type { Endpoint, TlsMode } from "./internal/Session.js"

export type { TlsMode, VerifyPolicy, Endpoint } from "./internal/Session.js"
export type { SendPolicy } from "./internal/Pool.js"

/** An egress pool's member: the source address and the EHLO name that goes with it. */
export interface Egress {
  readonly address: string
  readonly ehlo: string
}

/** What a destination's TLS policy makes of one send: the hops it allows, the check, and its own pool of sessions. */
export interface DestinationPolicy extends SendPolicy {
  /** Sessions opened under this policy are pooled apart from others to the same destination ("mta-sts:enforce"). */
  readonly name: string
  readonly hops: ReadonlyArray<Endpoint>
}

export type SmtpDestination = Extract<Route.Destination, { kind: "smtp" }>

export interface SmtpPoolOptions {
  /** Our name in EHLO. */
  readonly hostname: string
  /** Default "opportunistic": STARTTLS when offered, any certificate accepted. */
  readonly tls?: TlsMode | undefined
  readonly tlsOptions?: ConnectionOptions | undefined
  /** TCP connect and greeting timeout, ms (default 30 s). */
  readonly connectTimeout?: number | undefined
  /** Longest wait for one reply, ms (default 5 min, RFC 5321 §4.5.3.2 asks up to 10 for the final dot). */
  readonly commandTimeout?: number | undefined
  /** Most sessions open at once towards one destination key (default 4). */
  readonly maxPerDestination?: number | undefined
  /** Messages sent over one session before it is closed (default 100). */
  readonly messagesPerConnection?: number | undefined
  /** A site's own messages per session (Route.siteOf's key), over `messagesPerConnection`; undefined: that. */
  readonly messagesPerConnectionOf?: ((site: string) => number | undefined) | undefined
  /** How long an idle session is kept for reuse, ms (default 5 s; 0 closes after every message). */
  readonly idleMs?: number | undefined
}

export interface SmtpPool {
  /** One transaction for `envelope`; never rejects. `host` is "host:port" of the hop that answered. */
  send(destination: SmtpDestination, envelope: Envelope, body: Buffer, policy?: DestinationPolicy, egress?: Egress): Promise<DeliveryResult>
  /** Stops reuse, QUITs idle sessions and waits for transactions in flight. */
  close(): Promise<void>
}

export const makeSmtpPool = (options: SmtpPoolOptions): SmtpPool => {
  const pool = makePool(
    {
      hostname: options.hostname,
      tls: options.tls ?? "opportunistic",
      tlsOptions: options.tlsOptions,
      connectTimeout: options.connectTimeout ?? 30_000,
      commandTimeout: options.commandTimeout ?? 300_000,
      lmtp: false
    },
    {
      maxPerDestination: options.maxPerDestination ?? 4,
      messagesPerConnection: options.messagesPerConnection ?? 100,
      idleMs: options.idleMs ?? 5_000
    }
  )
  const perSiteCache = new Map<string, number | undefined>()
  const perSite = (site: string): number | undefined => {
    if (!options.messagesPerConnectionOf) return undefined
    if (perSiteCache.has(site)) return perSiteCache.get(site)
    if (perSiteCache.size >= 10_000) perSiteCache.clear()
    const n = options.messagesPerConnectionOf(site)
    perSiteCache.set(site, n)
    return n
  }
  return {
    // pooled per site (the MX host set): domains that share MX hosts share sessions, as they share the site's limits
    // sessions from one egress address are pooled apart from another's
    // a site's own messages_per_connection governs its sessions (a bounded cache: the patterns are fixed)
    send: (destination, envelope, body, policy, egress) => {
      const siteKey = Route.siteOf(destination)
      const site = `${siteKey}${egress ? `|from:${egress.address}` : ""}`
      const messagesPerConnection = perSite(siteKey)
      return policy
        ? pool.send(`${site}|${policy.name}`, policy.hops, envelope, body, { ...policy, egress, messagesPerConnection })
        : pool.send(site, destination.hops, envelope, body, { egress, messagesPerConnection })
    },
    close: () => pool.close()
  }
}

/** One message over a fresh session, closed afterwards. */
export const deliverSmtp = async (
  options: SmtpPoolOptions,
  destination: SmtpDestination,
  envelope: Envelope,
  body: Buffer
): Promise<DeliveryResult> => {
  const pool = makeSmtpPool({ ...options, idleMs: 0 })
  try {
    return await pool.send(destination, envelope, body)
  } finally {
    await pool.close()
  }
}
