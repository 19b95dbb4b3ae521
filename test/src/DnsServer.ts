// The test DNS server is the simulations' one (`Dns` of @missive/simulations): one copy of the loopback authoritative
// server, re-exported here so end-to-end tests keep importing it from their helpers.
import { Dns } from "@missive/simulations"

export type DnsServer = Dns.DnsServer
export type Zone = Dns.Zone
export type Zones = Dns.Zones
export const { nullMx, startDnsServer } = Dns
