// DANE for SMTP (RFC 7672): TLSA lookups through a configured validating resolver, trusting an answer only when the
// resolver set the AD bit (node:dns exposes no AD bit, so the query is dns2's packet over our own UDP socket), and the
// match of a TLSA RRset against the certificate chain a server presented: DANE-EE (3 x x) against the leaf, DANE-TA
// (2 x x) against a certificate of the chain, which must then issue the leaf (signatures checked here) and the leaf
// must name the MX host. PKIX usages (0, 1) are unusable for SMTP (§3.1.3). Must not connect to MX hosts.
// Security stance: the resolver is trusted configuration (loopback or a trusted link, RFC 7672 §2.1.1); an answer
// without AD is insecure, a failed lookup (SERVFAIL: a bogus signature, a timeout) is a failure, never "no TLSA".
import { createHash, randomInt, X509Certificate } from "node:crypto"
import { createSocket } from "node:dgram"
import type { DetailedPeerCertificate, TLSSocket } from "node:tls"
import dns2 from "dns2"

const { Packet } = dns2
const TYPE_TLSA = 52
const NOERROR = 0
const NXDOMAIN = 3
const RCODES: Readonly<Record<number, string>> = { 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED" }

export interface Tlsa {
  readonly usage: number
  readonly selector: number
  readonly mtype: number
  /** Certificate association data, lower-case hex. */
  readonly data: string
}

/** What a TLSA lookup found: DNSSEC-validated records, validated absence, an unsigned answer, or a failure. */
export type TlsaLookup =
  | { readonly kind: "secure"; readonly records: ReadonlyArray<Tlsa> }
  | { readonly kind: "absent" }
  | { readonly kind: "insecure" }
  | { readonly kind: "failed"; readonly rcode: string }

export interface Server {
  readonly host: string
  readonly port: number
}

/** One question with RD and AD set (RFC 6840 §5.7: AD in a query asks for AD in the answer), over UDP. */
const ask = (server: Server, name: string, type: number, timeoutMs: number): Promise<dns2.Packet | { error: string }> => {
  const query = new Packet()
  query.header.id = randomInt(0x10000)
  query.header.rd = 1
  ;(query.header as unknown as { ad: number }).ad = 1
  query.questions.push({ name, type, class: Packet.CLASS.IN } as never)
  const socket = createSocket(server.host.includes(":") ? "udp6" : "udp4")
  return new Promise((resolve) => {
    const done = (r: dns2.Packet | { error: string }): void => {
      clearTimeout(timer)
      socket.close()
      resolve(r)
    }
    const timer = setTimeout(() => done({ error: "TIMEOUT" }), timeoutMs)
    socket.on("error", (e) => done({ error: (e as { code?: string }).code ?? e.message }))
    socket.on("message", (msg, rinfo) => {
      if (rinfo.port !== server.port) return
      let p: dns2.Packet
      try {
        p = Packet.parse(msg)
      } catch {
        return done({ error: "FORMERR" })
      }
      if (p.header.id === query.header.id) done(p)
    })
    socket.send(query.toBuffer(), server.port, server.host)
  })
}

/** TLSA of `_<port>._tcp.<host>` (RFC 7672 §2.2). */
export const lookupTlsa = async (server: Server, host: string, port: number, timeoutMs = 5_000): Promise<TlsaLookup> => {
  const name = `_${port}._tcp.${host.toLowerCase().replace(/\.$/, "")}`
  const p = await ask(server, name, TYPE_TLSA, timeoutMs)
  if ("error" in p) return { kind: "failed", rcode: p.error }
  const header = p.header as unknown as { rcode: number; ad: number; tc: number }
  if (header.tc) return { kind: "failed", rcode: "TRUNCATED" }
  if (header.rcode !== NOERROR && header.rcode !== NXDOMAIN) return { kind: "failed", rcode: RCODES[header.rcode] ?? String(header.rcode) }
  if (!header.ad) return { kind: "insecure" }
  const records = p.answers
    .filter((a) => (a as unknown as { type: number }).type === TYPE_TLSA)
    .map((a) => (a as unknown as { data: Buffer }).data)
    .filter((d) => Buffer.isBuffer(d) && d.length >= 3)
    .map((d): Tlsa => ({ usage: d[0]!, selector: d[1]!, mtype: d[2]!, data: d.subarray(3).toString("hex") }))
  return records.length === 0 ? { kind: "absent" } : { kind: "secure", records }
}

/** RFC 7672 §3.1.3: only DANE-TA(2) and DANE-EE(3) with known selectors and matching types are usable. */
export const usable = (records: ReadonlyArray<Tlsa>): ReadonlyArray<Tlsa> =>
  records.filter((r) => (r.usage === 2 || r.usage === 3) && (r.selector === 0 || r.selector === 1) && r.mtype <= 2)

const associated = (cert: X509Certificate, r: Tlsa): boolean => {
  const selected = r.selector === 0 ? cert.raw : cert.publicKey.export({ type: "spki", format: "der" })
  const value =
    r.mtype === 0
      ? selected
      : createHash(r.mtype === 1 ? "sha256" : "sha512")
          .update(selected)
          .digest()
  return value.toString("hex") === r.data.toLowerCase()
}

/** The chain as the server presented it, leaf first. */
export const chainOf = (socket: TLSSocket): ReadonlyArray<X509Certificate> => {
  const out: X509Certificate[] = []
  let c: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true)
  const seen = new Set<string>()
  while (c && c.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256)
    out.push(new X509Certificate(c.raw))
    c = c.issuerCertificate
  }
  return out
}

/**
 * Why the chain does not satisfy the TLSA records for `name`, or undefined when it does. DANE-EE ignores names and
 * dates (§3.1.1); DANE-TA needs the chain from the leaf up to the matched certificate to verify, the leaf to name the
 * host and to be within its validity (§3.1.2).
 */
export const verify = (
  records: ReadonlyArray<Tlsa>,
  chain: ReadonlyArray<X509Certificate>,
  name: string,
  now: number
): string | undefined => {
  const leaf = chain[0]
  if (!leaf) return "no certificate"
  const usableRecords = usable(records)
  if (usableRecords.length === 0) return "no usable TLSA record"
  for (const r of usableRecords) {
    if (r.usage === 3 && associated(leaf, r)) return undefined
    if (r.usage !== 2) continue
    for (let k = 0; k < chain.length; k++) {
      if (!associated(chain[k]!, r)) continue
      let linked = true
      for (let i = 0; i < k; i++) {
        const child = chain[i]!
        const parent = chain[i + 1]!
        if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) linked = false
      }
      const inDate = Date.parse(leaf.validFrom) <= now && now <= Date.parse(leaf.validTo)
      if (linked && inDate && leaf.checkHost(name) !== undefined) return undefined
    }
  }
  return "no TLSA record matches the certificate chain"
}
