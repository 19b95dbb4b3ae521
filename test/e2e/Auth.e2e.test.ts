// Sender authentication end to end: a node whose smtp listener checks SPF, DKIM, ARC and DMARC through the DNS server
// on loopback, enforcing DMARC (p=reject → 550 5.7.1 at the end of DATA, p=quarantine → held), honouring strict
// alignment, stamping Authentication-Results: and removing a forged one; a second node only records. Every verdict is
// in the message's MessageFiltered event.
import { generateKeyPairSync } from "node:crypto"
import { dkimSign } from "mailauth"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Message } from "@missive/core"
import type { Node } from "@missive/node"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { startDnsServer, type DnsServer } from "../src/DnsServer.js"
import { missive, rawMessage, send, startNode, tempDir, testConfig, waitFor, writeConfig } from "../src/Harness.js"

const key = generateKeyPairSync("ed25519")
const pem = key.privateKey.export({ type: "pkcs8", format: "pem" }).toString()
const publicTxt = `v=DKIM1; k=ed25519; p=${Buffer.from((key.publicKey.export({ format: "jwk" }) as { x: string }).x, "base64url").toString("base64")}`

const sign = async (raw: string, domain: string): Promise<string> => {
  const r = await dkimSign(raw, {
    canonicalization: "relaxed/relaxed",
    signatureData: [{ signingDomain: domain, selector: "s1", privateKey: pem, algorithm: "ed25519-sha256" }]
  } as never)
  return r.signatures + raw
}

/** Every event of every stream the node wrote, by type. */
const eventsOf = async (node: Node.RunningNode): Promise<Array<Message.Event>> => {
  const all = await node.store.events.readAll(0, 10_000)
  return all.map((e) => e.event)
}

const filteredFor = async (node: Node.RunningNode, subject: string, find: (e: Message.EventOf<"MessageFiltered">) => boolean) =>
  waitFor(`MessageFiltered for ${subject}`, async () =>
    (await eventsOf(node)).find((e): e is Message.EventOf<"MessageFiltered"> => e.type === "MessageFiltered" && find(e))
  )

describe("sender authentication (SPF, DKIM, ARC, DMARC) at the filter stage", () => {
  let dest: CaptureServer
  let dns: DnsServer
  let enforcing: Node.RunningNode
  let recording: Node.RunningNode
  let enforcingConfig: string
  let recordingConfig: string
  const dirs = [tempDir(), tempDir()]

  beforeAll(async () => {
    dest = await startCapture()
    dns = await startDnsServer({
      // passes everything: SPF for 127.0.0.1, a DKIM key, p=reject
      "good.test": { txt: ["v=spf1 ip4:127.0.0.1 -all"] },
      "s1._domainkey.good.test": { txt: [publicTxt] },
      "_dmarc.good.test": { txt: ["v=DMARC1; p=reject"] },
      // SPF fails from loopback, no signature
      "forged.test": { txt: ["v=spf1 ip4:192.0.2.1 -all"] },
      "_dmarc.forged.test": { txt: ["v=DMARC1; p=reject"] },
      "quarantined.test": { txt: ["v=spf1 ip4:192.0.2.1 -all"] },
      "_dmarc.quarantined.test": { txt: ["v=DMARC1; p=quarantine"] },
      // signed by a subdomain, SPF passes for another domain: aligned only under relaxed alignment
      "strict.test": { txt: ["v=spf1 -all"] },
      "mail.strict.test": { txt: ["v=spf1 ip4:127.0.0.1 -all"] },
      "s1._domainkey.mail.strict.test": { txt: [publicTxt] },
      "_dmarc.strict.test": { txt: ["v=DMARC1; p=reject; adkim=s; aspf=s"] },
      "relaxed.test": { txt: ["v=spf1 -all"] },
      "mail.relaxed.test": { txt: ["v=spf1 ip4:127.0.0.1 -all"] },
      "s1._domainkey.mail.relaxed.test": { txt: [publicTxt] },
      "_dmarc.relaxed.test": { txt: ["v=DMARC1; p=reject; adkim=r; aspf=r"] },
      // DNS never answers
      "silent.test": { drop: true },
      "_dmarc.silent.test": { drop: true }
    })
    const base = (enforce: boolean) => ({
      dns: { servers: [dns.server], timeout: "300ms" },
      relay: { local_domains: ["missive.test"], relay_domains: ["dest.test"] },
      routes: { "dest.test": `127.0.0.1:${dest.port}` },
      filter: { auth: { smtp: { verify: true, dmarc: enforce ? "enforce" : "record", temperror: enforce ? "tempfail" : "record" } } }
    })
    const config = testConfig(dirs[0]!.path, base(true))
    enforcingConfig = writeConfig(dirs[0]!.path, config)
    enforcing = await startNode(config)
    const recordingOnly = testConfig(dirs[1]!.path, base(false))
    recordingConfig = writeConfig(dirs[1]!.path, recordingOnly)
    recording = await startNode(recordingOnly)
  })
  afterAll(async () => {
    await Promise.all([enforcing?.stop(), recording?.stop()])
    await Promise.all([dest?.close(), dns?.close()])
    for (const d of dirs) d.remove()
  })

  const smtp = (node: Node.RunningNode, from: string, raw: string) => send(node.ports["smtp"]!, { from, to: ["b@dest.test"] }, raw)

  it("passes an aligned, signed message, stamps Authentication-Results: for this host and removes a forged one", async () => {
    const raw = rawMessage({
      from: "a@good.test",
      to: "b@dest.test",
      subject: "auth pass",
      headers: { "Authentication-Results": "mx.missive.test; dkim=pass header.d=forged.example; dmarc=pass" }
    })
    const r = await smtp(enforcing, "a@good.test", await sign(raw, "good.test"))
    expect(r.ok, r.response).toBe(true)
    const got = await waitFor("delivery", () => dest.messages.find((m) => m.raw.includes("auth pass")))
    const text = got.raw.toString("utf8")
    const ours = text.match(/^Authentication-Results: mx\.missive\.test;[^\r]*(\r\n[ \t][^\r]*)*/gim) ?? []
    expect(ours).toHaveLength(1)
    expect(ours[0]).toMatch(/dkim=pass/)
    expect(ours[0]).toMatch(/spf=pass/)
    expect(ours[0]).toMatch(/dmarc=pass/)
    expect(text).not.toContain("forged.example")
    const f = await filteredFor(enforcing, "auth pass", (e) => e.verdicts.some((v) => v.name === "dkim" && v.result === "pass"))
    expect(f.action).toBe("accept")
    expect(f.verdicts.map((v) => `${v.name}=${v.result}`)).toEqual(["spf=pass", "dkim=pass", "arc=none", "dmarc=pass"])
    // the DNS answers each verdict rested on
    expect(f.verdicts.find((v) => v.name === "spf")?.evidence).toContainEqual({
      name: "good.test",
      type: "TXT",
      rcode: "NOERROR",
      answers: ["v=spf1 ip4:127.0.0.1 -all"]
    })
    expect(f.verdicts.find((v) => v.name === "dkim")?.evidence?.[0]?.name).toBe("s1._domainkey.good.test")
  })

  it("p=reject enforced: 550 5.7.1 at the end of DATA, nothing delivered, the rejection recorded", async () => {
    const raw = rawMessage({ from: "a@forged.test", to: "b@dest.test", subject: "forged reject" })
    const r = await smtp(enforcing, "a@forged.test", raw)
    expect(r.ok).toBe(false)
    expect(r.response).toMatch(/^550 5\.7\.1 .*DMARC/)
    const f = await filteredFor(enforcing, "forged", (e) => e.action === "reject")
    expect(f.reply?.code).toBe(550)
    expect(f.verdicts.find((v) => v.name === "dmarc")).toMatchObject({ result: "fail", action: "reject" })
    expect(f.verdicts.find((v) => v.name === "spf")).toMatchObject({ result: "fail" })
    await new Promise((res) => setTimeout(res, 300))
    expect(dest.messages.some((m) => m.raw.includes("forged reject"))).toBe(false)
  })

  it("strict alignment (adkim=s, aspf=s) is honoured: a subdomain's signature does not align; relaxed does", async () => {
    const strict = rawMessage({ from: "a@strict.test", to: "b@dest.test", subject: "strict align" })
    const r1 = await smtp(enforcing, "bounce@mail.strict.test", await sign(strict, "mail.strict.test"))
    expect(r1.response).toMatch(/^550 5\.7\.1/)
    const relaxed = rawMessage({ from: "a@relaxed.test", to: "b@dest.test", subject: "relaxed align" })
    const r2 = await smtp(enforcing, "bounce@mail.relaxed.test", await sign(relaxed, "mail.relaxed.test"))
    expect(r2.ok, r2.response).toBe(true)
    const f = await filteredFor(enforcing, "relaxed", (e) => e.verdicts.some((v) => v.name === "dmarc" && v.result === "pass"))
    expect(f.verdicts.find((v) => v.name === "dkim")?.result).toBe("pass")
  })

  it("p=quarantine enforced: accepted, held in quarantine, delivered once released", async () => {
    const raw = rawMessage({ from: "a@quarantined.test", to: "b@dest.test", subject: "quarantine me" })
    const r = await smtp(enforcing, "a@quarantined.test", raw)
    expect(r.ok, r.response).toBe(true)
    const id = r.id!
    const state = await waitFor("quarantined state", async () => {
      const s = Message.fold((await enforcing.store.events.read(`message-${id}`)).map((e) => e.event))
      return s.status === "active" && s.quarantined ? s : undefined
    })
    expect(state.status === "active" && state.quarantined).toBe("dmarc=fail")
    await new Promise((res) => setTimeout(res, 500))
    expect(dest.messages.some((m) => m.raw.includes("quarantine me"))).toBe(false)
    // the operator's view: queue list --quarantine, then queue release (recorded with who asked)
    const list = await missive("queue", "list", "--quarantine", "--json", "--config", enforcingConfig)
    expect(list.code, list.stderr).toBe(0)
    const rows = JSON.parse(list.stdout) as Array<{ id: string; quarantined?: string }>
    expect(rows.map((x) => [x.id, x.quarantined])).toEqual([[id, "dmarc=fail"]])
    const released = await missive("queue", "release", id, "--by", "ops@missive.test", "--config", enforcingConfig)
    expect(released.code, released.stderr).toBe(0)
    await waitFor("delivery after release", () => dest.messages.find((m) => m.raw.includes("quarantine me")))
    const events = (await enforcing.store.events.read(`message-${id}`)).map((e) => e.event)
    expect(events.find((e) => e.type === "MessageReleased")).toMatchObject({ by: "ops@missive.test" })
    const after = await missive("queue", "list", "--quarantine", "--json", "--config", enforcingConfig)
    expect(JSON.parse(after.stdout)).toEqual([])
  })

  it("a DNS timeout gives 451 4.4.3 at MAIL when temperror is tempfail", async () => {
    const r = await smtp(enforcing, "a@silent.test", rawMessage({ from: "a@silent.test", to: "b@dest.test", subject: "dns timeout" }))
    expect(r.ok).toBe(false)
    expect(r.response).toMatch(/^451 4\.4\.3/)
  })

  it("record only: a DMARC failure and a DNS timeout are recorded, the message accepted and delivered", async () => {
    const r = await smtp(recording, "a@forged.test", rawMessage({ from: "a@forged.test", to: "b@dest.test", subject: "recorded forgery" }))
    expect(r.ok, r.response).toBe(true)
    await waitFor("delivery", () => dest.messages.find((m) => m.raw.includes("recorded forgery")))
    const f = await filteredFor(recording, "recorded", (e) => e.verdicts.some((v) => v.name === "dmarc" && v.result === "fail"))
    expect(f.action).toBe("accept")
    expect(f.verdicts.find((v) => v.name === "dmarc")?.detail).toMatch(/policy=reject/)
    const t = await smtp(recording, "a@silent.test", rawMessage({ from: "a@silent.test", to: "b@dest.test", subject: "recorded timeout" }))
    expect(t.ok, t.response).toBe(true)
    const ft = await filteredFor(recording, "timeout", (e) => e.verdicts.some((v) => v.name === "spf" && v.result === "temperror"))
    expect(ft.verdicts.find((v) => v.name === "spf")?.evidence?.[0]?.rcode).toBe("TIMEOUT")
    // what-if: the same recorded verdicts under DMARC enforced and temperror answered 451
    const w = await missive(
      "replay",
      "what-if",
      "--filter-dmarc",
      "enforce",
      "--filter-temperror",
      "tempfail",
      "--from",
      "-1h",
      "--to",
      "now",
      "--config",
      recordingConfig,
      "--json"
    )
    expect(w.code, w.stderr).toBe(0)
    const changes = (JSON.parse(w.stdout) as { changes: Array<{ id: string; recorded: string; alternative: string }> }).changes
    expect(changes).toContainEqual(expect.objectContaining({ id: f.id, recorded: "accept", alternative: "reject" }))
    expect(changes).toContainEqual(expect.objectContaining({ id: ft.id, recorded: "accept", alternative: "tempfail" }))
  })
})
