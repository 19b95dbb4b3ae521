// An authoritative DNS server on loopback for simulations and tests: answers MX, A, AAAA and TXT from an in-memory
// zone map over UDP. It is not a resolver, follows no CNAMEs, and must never listen beyond loopback (127.0.0.0/8).
// Unknown names get NXDOMAIN; a known name without records of the asked type gets NOERROR with no answers (NODATA).
import dns2 from "dns2"

const { Packet } = dns2
/** RFC 1035 §4.1.1 response codes (dns2 has them at run time but not in its types). */
const RCODE = { FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3 } as const

export interface MxRecord {
  readonly preference: number
  /** "." is the null MX of RFC 7505. */
  readonly exchange: string
}

/** What the server knows about one name. */
export interface Zone {
  readonly mx?: ReadonlyArray<MxRecord> | undefined
  readonly a?: ReadonlyArray<string> | undefined
  readonly aaaa?: ReadonlyArray<string> | undefined
  /** TXT records, one string each (MTA-STS's "v=STSv1; id=..."). */
  readonly txt?: ReadonlyArray<string> | undefined
  /** Answer every question about this name with SERVFAIL. */
  readonly servfail?: boolean | undefined
  /** Never answer questions about this name (the client times out). */
  readonly drop?: boolean | undefined
  /** TTL of the records, seconds (default 300). */
  readonly ttl?: number | undefined
}

export type Zones = Readonly<Record<string, Zone>>

export interface Query {
  readonly name: string
  readonly type: "MX" | "A" | "AAAA" | "TXT" | "OTHER"
}

export interface DnsServer {
  readonly port: number
  /** "address:port", ready for `Resolver.setServers`. */
  readonly server: string
  /** Every question received, in order. */
  readonly queries: ReadonlyArray<Query>
  /** Replaces (or with undefined removes) the zone of one name. */
  setZone(name: string, zone: Zone | undefined): void
  close(): Promise<void>
}

/** A zone whose only MX is the null MX: the domain accepts no mail (RFC 7505). */
export const nullMx: Zone = { mx: [{ preference: 0, exchange: "." }] }

const norm = (name: string): string => name.toLowerCase().replace(/\.$/, "")

const typeName = (t: number): Query["type"] =>
  t === Packet.TYPE.MX ? "MX" : t === Packet.TYPE.A ? "A" : t === Packet.TYPE.AAAA ? "AAAA" : t === Packet.TYPE.TXT ? "TXT" : "OTHER"

export interface DnsOptions {
  /** A loopback address (default 127.0.0.1). */
  readonly host?: string | undefined
  /** Default 0: any free port. */
  readonly port?: number | undefined
}

export const startDnsServer = async (zones: Zones = {}, options: DnsOptions = {}): Promise<DnsServer> => {
  const host = options.host ?? "127.0.0.1"
  if (!host.startsWith("127.")) throw new Error(`the simulated DNS server listens on loopback only, not ${host}`)
  const table = new Map<string, Zone>(Object.entries(zones).map(([k, v]) => [norm(k), v]))
  const queries: Query[] = []
  const server = new dns2.UDPServer({ type: "udp4" })

  server.on("request", (request, reply) => {
    // a reply that cannot be sent (the client went away) is not the test's concern
    const send = (p: dns2.Packet): void => void reply(p).catch(() => undefined)
    const response = Packet.createResponseFromRequest(request)
    response.header.aa = 1
    const q = request.questions[0]
    if (!q) {
      response.header.rcode = RCODE.FORMERR
      send(response)
      return
    }
    const name = norm(q.name)
    queries.push({ name, type: typeName(q.type) })
    const zone = table.get(name)
    if (zone?.drop) return
    if (!zone) {
      response.header.rcode = RCODE.NXDOMAIN
    } else if (zone.servfail) {
      response.header.rcode = RCODE.SERVFAIL
    } else {
      const ttl = zone.ttl ?? 300
      const base = { name: q.name, class: Packet.CLASS.IN, ttl }
      if (q.type === Packet.TYPE.MX) {
        for (const mx of zone.mx ?? []) {
          response.answers.push({
            ...base,
            type: Packet.TYPE.MX,
            priority: mx.preference,
            exchange: mx.exchange === "." ? "" : mx.exchange
          } as never)
        }
      } else if (q.type === Packet.TYPE.A) {
        for (const address of zone.a ?? []) response.answers.push({ ...base, type: Packet.TYPE.A, address } as never)
      } else if (q.type === Packet.TYPE.AAAA) {
        for (const address of zone.aaaa ?? []) response.answers.push({ ...base, type: Packet.TYPE.AAAA, address } as never)
      } else if (q.type === Packet.TYPE.TXT) {
        // a string longer than 255 octets (a DKIM RSA key) goes out as several character-strings (RFC 1035 3.3.14)
        for (const data of zone.txt ?? [])
          response.answers.push({ ...base, type: Packet.TYPE.TXT, data: data.match(/[\s\S]{1,255}/g) ?? [""] } as never)
      }
    }
    send(response)
  })

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.bind(options.port ?? 0, host, () => {
      server.off("error", reject)
      resolve()
    })
  })
  const port = server.address().port

  return {
    port,
    server: `${host}:${port}`,
    queries,
    setZone: (name, zone) => {
      if (zone === undefined) table.delete(norm(name))
      else table.set(norm(name), zone)
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
