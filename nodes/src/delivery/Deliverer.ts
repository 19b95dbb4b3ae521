// The delivery role's front door: sends one attempt to its destination by kind (SMTP pool, LMTP, Maildir)
// and reports one reply per recipient, applying the recipient domain's TLS policy (MTA-STS) to SMTP.
// Must not decide retries or bounces (the message decider does).
import { readFileSync } from "node:fs"
import { rootCertificates } from "node:tls"
import { Route } from "@missive/core"
import type { Config } from "../config/Config.js"
import type { DnsResolver } from "../router/Resolver.js"
import { systemClock, type Clock } from "../runtime/Clock.js"
import type { Logger } from "../runtime/Log.js"
import type { DeliveryResult, Envelope } from "./Delivery.js"
import { makeLmtpClient } from "./Lmtp.js"
import { makeMaildir } from "./Maildir.js"
import * as Dane from "./Dane.js"
import * as Egress from "./Egress.js"
import * as MtaSts from "./MtaSts.js"
import { makeSmtpPool } from "./SmtpClient.js"
import * as TlsPolicy from "./TlsPolicy.js"

export interface Deliverer {
  deliver(destination: Route.Destination, envelope: Envelope, body: Buffer, id: string): Promise<DeliveryResult>
  close(): Promise<void>
}

/** What the deliverer needs besides the configuration: TXT lookups and a place for the MTA-STS cache. */
export interface DelivererDeps {
  readonly resolver?: DnsResolver | undefined
  readonly dataDir?: string | undefined
  readonly clock?: Clock | undefined
  readonly log?: Logger | undefined
  /** A site's own limits (Route.siteOf's key): its `messages_per_connection` governs its pooled connections. */
  readonly sites?: ((site: string) => { readonly messagesPerConnection?: number | undefined } | undefined) | undefined
}

export const makeDeliverer = (config: Config, deps: DelivererDeps = {}): Deliverer => {
  const extraCa = config.delivery.tls_ca_file === null ? undefined : [readFileSync(config.delivery.tls_ca_file, "utf8")]
  const txt = deps.resolver?.txt?.bind(deps.resolver)
  const clock = deps.clock ?? systemClock
  const egress: Egress.EgressOptions = {
    pools: Object.fromEntries(
      Object.entries(config.egress.pools).map(([name, members]) => [
        name,
        members.map((m) => ({ address: m.address, ehlo: m.ehlo ?? config.hostname, weight: m.weight ?? 1 }))
      ])
    ),
    default: config.egress.default,
    domains: Object.fromEntries(Object.entries(config.egress.domains).map(([d, p]) => [d.toLowerCase(), p]))
  }
  const daneResolver = config.delivery.dane_resolver
  const daneDomains = new Map(Object.entries(config.delivery.dane_domains).map(([d, m]) => [d.toLowerCase(), m]))
  const daneModeOf = (domain: string): TlsPolicy.DaneMode => daneDomains.get(domain.toLowerCase()) ?? config.delivery.dane
  const daneLookup = (server: Dane.Server) => (host: string, port: number) => Dane.lookupTlsa(server, host, port, config.dns.timeout)
  const mtaSts =
    config.delivery.mta_sts && txt
      ? MtaSts.make({
          txt,
          dataDir: deps.dataDir,
          extraCa,
          hosts: config.delivery.mta_sts_hosts,
          timeoutMs: config.delivery.connect_timeout,
          clock,
          log: deps.log ?? (() => undefined)
        })
      : undefined
  const smtp = makeSmtpPool({
    hostname: config.hostname,
    tls: config.delivery.tls,
    tlsOptions: extraCa ? { ca: [...rootCertificates, ...extraCa] } : undefined,
    connectTimeout: config.delivery.connect_timeout,
    commandTimeout: config.delivery.command_timeout,
    maxPerDestination: config.delivery.concurrency_per_destination,
    messagesPerConnection: config.delivery.messages_per_connection,
    messagesPerConnectionOf: deps.sites ? (site) => deps.sites?.(site)?.messagesPerConnection : undefined,
    idleMs: config.delivery.reuse_connections ? 5_000 : 0
  })
  const lmtp = makeLmtpClient({
    hostname: config.hostname,
    connectTimeout: config.delivery.connect_timeout,
    commandTimeout: config.delivery.command_timeout
  })
  const maildir = makeMaildir({ root: config.local.maildir, hostname: config.hostname })
  return {
    deliver: async (destination, envelope, body, id) => {
      switch (destination.kind) {
        case "smtp": {
          const from = Egress.choose(egress, Route.domainOf(envelope.to[0] ?? ""), id)
          const domain = TlsPolicy.domainOf(destination)
          // DANE first (RFC 8461 §2: a domain with DANE TLSA records is not subject to MTA-STS), then MTA-STS
          const dane =
            domain && daneResolver
              ? await TlsPolicy.fromDane(destination, daneModeOf(domain), daneLookup(daneResolver), clock.now)
              : undefined
          if (dane) return smtp.send(destination, envelope, body, dane, from)
          const sts = mtaSts && domain ? await mtaSts.policyFor(domain) : undefined
          return smtp.send(destination, envelope, body, sts ? TlsPolicy.fromMtaSts(sts, destination) : undefined, from)
        }
        case "lmtp":
          return lmtp.send(destination, envelope, body)
        case "maildir":
          return maildir.deliver(envelope, body)
        case "unroutable":
          return { host: "none", results: envelope.to.map((rcpt) => ({ rcpt, reply: destination.reply })) }
      }
    },
    close: async () => {
      await Promise.all([smtp.close(), lmtp.close()])
    }
  }
}
