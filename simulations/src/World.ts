// The simulated world of one run: an authoritative DNS server, a receiver per MX host of every destination domain and a
// DSN collector per sender domain, each on its own loopback address (127.77.0.x) and all on one common port, so an MTA
// routes to them through its real MX code path with only `delivery.port` set. Owns their lifetimes; sends no mail.
import { generate } from "selfsigned"
import { Net } from "@missive/node"
import * as Dns from "./Dns.js"
import * as Ledger from "./Ledger.js"
import * as Receiver from "./Receiver.js"
import type * as Scenario from "./Scenario.js"
import type { Now } from "./Time.js"

export interface World {
  readonly dns: Dns.DnsServer
  /** The port every simulated receiver listens on. */
  readonly port: number
  /** Addresses of the MX hosts per domain (destinations and sender domains). */
  readonly hosts: ReadonlyMap<string, ReadonlyArray<string>>
  readonly ledger: Ledger.Ledger
  close(): Promise<void>
}

/** The k-th address of the simulated world (k from 0). */
export const addressOf = (k: number): string => `127.77.${Math.floor((k + 2) / 250)}.${((k + 2) % 250) + 1}`

let certificate: Promise<{ key: string; cert: string }> | undefined
const selfSigned = (): Promise<{ key: string; cert: string }> =>
  (certificate ??= generate([{ name: "commonName", value: "mx.sim" }], { keySize: 2048 }).then((p) => ({ key: p.private, cert: p.cert })))

export const start = async (scenario: Scenario.Scenario, now: Now, ledger: Ledger.Ledger = Ledger.make()): Promise<World> => {
  const tls = scenario.destinations.some((d) => d.tls) ? await selfSigned() : undefined
  const hosts = new Map<string, Array<string>>()
  let k = 0
  for (const d of scenario.destinations)
    hosts.set(
      d.domain,
      Array.from({ length: d.mx }, () => addressOf(k++))
    )
  for (const domain of scenario.senders.domains) hosts.set(domain, [addressOf(k++)])

  const zones: Record<string, Dns.Zone> = {}
  for (const [domain, addresses] of hosts) {
    zones[domain] = { mx: addresses.map((_, j) => ({ preference: 10, exchange: `mx${j + 1}.${domain}` })), ttl: 60 }
    addresses.forEach((a, j) => {
      zones[`mx${j + 1}.${domain}`] = { a: [a], ttl: 60 }
    })
  }

  // One port for all: taken free on the first address, then bound on the others; another process may hold it on
  // one of them, so a clash starts over with a new port.
  for (let tries = 0; ; tries++) {
    const port = await Net.freePort(addressOf(0))
    const started: Array<Receiver.Receiver> = []
    try {
      for (const d of scenario.destinations) {
        const state = Receiver.destinationState()
        for (const address of hosts.get(d.domain)!) {
          started.push(await Receiver.startDestination(d, state, { address, port, seed: scenario.seed, now, ledger, tls }))
        }
      }
      for (const domain of scenario.senders.domains) {
        started.push(await Receiver.startDsnCollector(domain, { address: hosts.get(domain)![0]!, port, seed: scenario.seed, now, ledger }))
      }
    } catch (e) {
      await Promise.all(started.map((r) => r.close()))
      if ((e as NodeJS.ErrnoException).code === "EADDRINUSE" && tries < 5) continue
      throw e
    }
    const dns = await Dns.startDnsServer(zones)
    return {
      dns,
      port,
      hosts,
      ledger,
      close: async () => {
        await Promise.all(started.map((r) => r.close()))
        await dns.close()
      }
    }
  }
}
