// DANE (RFC 7672) end to end against real DNSSEC: a zone signed with ldnsutils, served by one unbound and validated by
// another (test/src/Unbound.ts), which the node uses both for routing and as its DANE resolver (delivery.dane_resolver,
// trusted for its AD bit). Receivers on loopback present certificates from a throw-away CA. DANE-EE (3 1 1) and DANE-TA
// (2 0 1) records that match deliver over verified TLS; a TLSA record tampered with after signing (bogus: the resolver
// answers SERVFAIL) and a record that matches nothing both fail closed; "dane-only" refuses a domain without TLSA.
import { Message } from "@missive/core"
import type { Node } from "@missive/node"
import { createHash, X509Certificate } from "node:crypto"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { rawMessage, send, startNode, tempDir, testConfig, waitFor } from "../src/Harness.js"
import { makeCa } from "../src/Pki.js"
import { freePort } from "../src/Support.js"
import { startSignedZone, type SignedZone } from "../src/Unbound.js"

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex")
const spki = (pem: string): Buffer => new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" })

describe("DANE", () => {
  const dir = tempDir()
  const pki = tempDir("missive-pki-")
  const zoneDir = tempDir("missive-zone-")
  let ee: CaptureServer
  let ta: CaptureServer
  let zone: SignedZone
  let node: Node.RunningNode

  beforeAll(async () => {
    const ca = makeCa(pki.path)
    const port = await freePort()
    const eeCert = ca.issue(["mx.ee.dane.test"])
    const taLeaf = ca.issue(["mx.ta.dane.test"])
    ee = await startCapture({ host: "127.0.0.5", port, certificate: eeCert })
    // DANE-TA: the server sends its chain (leaf, then the CA the TLSA record names)
    ta = await startCapture({ host: "127.0.0.6", port, certificate: { key: taLeaf.key, cert: `${taLeaf.cert.trim()}\n${ca.cert}` } })
    const other = makeCa(zoneDir.path, "Unrelated").issue(["mx.wrong.dane.test"])
    const eeHash = sha256(spki(eeCert.cert))
    zone = await startSignedZone(
      zoneDir.path,
      "dane.test",
      [
        ...["ee", "ta", "bogus", "wrong", "plain"].map((d) => `${d} IN MX 10 mx.${d}`),
        "mx.ee IN A 127.0.0.5",
        "mx.ta IN A 127.0.0.6",
        "mx.bogus IN A 127.0.0.5",
        "mx.wrong IN A 127.0.0.5",
        "mx.plain IN A 127.0.0.5",
        `_${port}._tcp.mx.ee IN TLSA 3 1 1 ${eeHash}`,
        `_${port}._tcp.mx.ta IN TLSA 2 0 1 ${sha256(new X509Certificate(ca.cert).raw)}`,
        `_${port}._tcp.mx.bogus IN TLSA 3 1 1 ${eeHash}`,
        `_${port}._tcp.mx.wrong IN TLSA 3 1 1 ${sha256(spki(other.cert))}`
      ],
      // after signing, the bogus host's TLSA record is changed to the wrong key: its RRSIG no longer verifies
      (signed) => {
        const tampered = signed.replace(
          new RegExp(`^(_${port}\\._tcp\\.mx\\.bogus\\.dane\\.test\\.\\s+\\d+\\s+IN\\s+TLSA\\s+3 1 1 )${eeHash}`, "mi"),
          `$1${sha256(spki(other.cert))}`
        )
        if (tampered === signed) throw new Error("the TLSA record to tamper with was not found in the signed zone")
        return tampered
      }
    )
    node = await startNode(
      testConfig(dir.path, {
        dns: { servers: [zone.resolver], timeout: "2s" },
        relay: { local_domains: ["missive.test"], trusted_networks: ["127.0.0.0/8"] },
        retry: { initial: "300ms", max: "1s", multiplier: 2, jitter: 0, lifetime: "1h" },
        delivery: {
          port,
          tls: "opportunistic",
          mta_sts: false,
          dane: "may",
          dane_resolver: zone.resolver,
          dane_domains: { "plain.dane.test": "dane-only" }
        }
      })
    )
  }, 60_000)
  afterAll(async () => {
    await node?.stop()
    await Promise.all([ee?.close(), ta?.close(), zone?.close()])
    for (const d of [dir, pki, zoneDir]) d.remove()
  })

  const submit = async (rcpt: string, subject: string): Promise<string> => {
    const r = await send(
      node.ports["smtp"]!,
      { from: "sender@missive.test", to: [rcpt] },
      rawMessage({ from: "sender@missive.test", to: rcpt, subject })
    )
    expect(r.ok).toBe(true)
    return r.id!
  }
  const eventsOf = async (id: string): Promise<ReadonlyArray<Message.Event>> =>
    (await node.store.events.read(`message-${id}`)).map((e) => e.event)
  const first = <T extends Message.EventType>(id: string, type: T, count = 1) =>
    waitFor(`${count} ${type} of ${id}`, async () => {
      const found = (await eventsOf(id)).filter((e): e is Message.EventOf<T> => e.type === type)
      return found.length >= count ? found : undefined
    })

  it("DANE-EE (3 1 1) and DANE-TA (2 0 1) records that match: delivered over verified TLS", async () => {
    const [a, b] = await Promise.all([submit("alice@ee.dane.test", "dane ee"), submit("bob@ta.dane.test", "dane ta")])
    for (const id of [a, b]) {
      const [ok] = await first(id, "AttemptSucceeded")
      expect(ok?.trace?.tls).toMatchObject({ policy: "dane", mode: "may", tls: true, verified: true })
    }
    expect(ee.messages.find((m) => m.raw.includes("dane ee"))?.secure).toBe(true)
    expect(ta.messages.find((m) => m.raw.includes("dane ta"))?.secure).toBe(true)
  })

  it("a tampered TLSA record (bogus, SERVFAIL from the validating resolver) fails closed: the host is never dialled", async () => {
    const before = ee.connections
    const id = await submit("carol@bogus.dane.test", "dane bogus")
    const deferred = await first(id, "AttemptDeferred", 2)
    for (const d of deferred) {
      expect(d.reply).toMatchObject({ code: 451, enhanced: "4.7.5" })
      expect(d.trace?.hops).toEqual([
        expect.objectContaining({ name: "mx.bogus.dane.test", outcome: "policy-excluded", detail: expect.stringContaining("SERVFAIL") })
      ])
    }
    expect(ee.connections).toBe(before)
    expect(ee.messages.some((m) => m.raw.includes("dane bogus"))).toBe(false)
  })

  it("a validated TLSA record that matches no certificate of the chain: deferred, not delivered", async () => {
    const id = await submit("dave@wrong.dane.test", "dane wrong")
    const [d] = await first(id, "AttemptDeferred")
    expect(d?.reply.enhanced).toBe("4.7.5")
    expect(d?.trace?.hops).toEqual([expect.objectContaining({ name: "mx.wrong.dane.test", outcome: "tls-failed" })])
    expect(d?.trace?.tls).toMatchObject({
      policy: "dane",
      tls: true,
      verified: false,
      reason: "no TLSA record matches the certificate chain"
    })
    expect(ee.messages.some((m) => m.raw.includes("dane wrong"))).toBe(false)
  })

  it("dane-only: a domain whose MX has no TLSA record is not delivered to", async () => {
    const id = await submit("erin@plain.dane.test", "dane plain")
    const [d] = await first(id, "AttemptDeferred")
    expect(d?.reply.enhanced).toBe("4.7.5")
    expect(d?.trace?.hops).toEqual([
      expect.objectContaining({
        name: "mx.plain.dane.test",
        outcome: "policy-excluded",
        detail: "no DNSSEC-validated TLSA record (dane-only)"
      })
    ])
    expect(ee.messages.some((m) => m.raw.includes("dane plain"))).toBe(false)
  })
})
