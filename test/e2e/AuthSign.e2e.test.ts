// DKIM signing end to end: `missive dkim keygen` makes an RSA-2048 and an Ed25519 key and prints their TXT records;
// the records are served by the DNS server on loopback; mail from an authenticated submission user of a local domain
// leaves signed with both, and mailauth verifies both signatures against those records. Relayed mail from an
// unauthenticated client is not signed.
import { Resolver } from "node:dns/promises"
import { join } from "node:path"
import { dkimVerify } from "mailauth"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Config, type Node } from "@missive/node"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { startDnsServer, type DnsServer } from "../src/DnsServer.js"
import { missive, rawMessage, send, startNode, tempDir, testConfig, waitFor } from "../src/Harness.js"

/** The TXT record keygen printed, its quoted strings joined. */
const txtOf = (stdout: string): string => {
  const line = stdout.split("\n").find((l) => l.includes(" IN TXT ")) ?? ""
  return [...line.matchAll(/"([^"]*)"/g)].map((m) => m[1]).join("")
}

describe("DKIM signing of local domains' mail", () => {
  let dest: CaptureServer
  let dns: DnsServer
  let node: Node.RunningNode
  const dir = tempDir()
  const keys = join(dir.path, "keys")

  beforeAll(async () => {
    dest = await startCapture()
    const rsa = await missive("dkim", "keygen", "missive.test", "r2026", "--dir", keys)
    expect(rsa.code, rsa.stderr).toBe(0)
    const ed = await missive("dkim", "keygen", "missive.test", "e2026", "--type", "ed25519", "--dir", keys)
    expect(ed.code, ed.stderr).toBe(0)
    expect(txtOf(rsa.stdout)).toMatch(/^v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]{300,}$/)
    expect(txtOf(ed.stdout)).toMatch(/^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/=]{44}$/)
    expect((await missive("dkim", "keygen", "missive.test", "r2026", "--dir", keys)).code).toBe(1)
    dns = await startDnsServer({
      "r2026._domainkey.missive.test": { txt: [txtOf(rsa.stdout)] },
      "e2026._domainkey.missive.test": { txt: [txtOf(ed.stdout)] }
    })
    node = await startNode(
      testConfig(join(dir.path, "data"), {
        dns: { servers: [dns.server], timeout: "1s" },
        relay: { local_domains: ["missive.test"], relay_domains: ["dest.test"] },
        routes: { "dest.test": `127.0.0.1:${dest.port}` },
        auth: { require_tls: false, users: [{ name: "alice", password: await Config.hashPassword("s3cret") }] },
        filter: {
          dkim: {
            keys: [
              { domain: "missive.test", selector: "r2026", key: join(keys, "missive.test.r2026.pem") },
              { domain: "missive.test", selector: "e2026", key: join(keys, "missive.test.e2026.pem") }
            ]
          }
        }
      })
    )
  })
  afterAll(async () => {
    await node?.stop()
    await Promise.all([dest?.close(), dns?.close()])
    dir.remove()
  })

  it("signs submission mail with both keys; mailauth verifies both against the TXT records on the loopback DNS", async () => {
    const raw = rawMessage({ from: "alice@missive.test", to: "r@dest.test", subject: "signed please", body: "Body line.\r\n" })
    const r = await send(node.ports["submission"]!, { from: "alice@missive.test", to: ["r@dest.test"] }, raw, {
      auth: { user: "alice", pass: "s3cret" }
    })
    expect(r.ok, r.response).toBe(true)
    const got = await waitFor("delivery", () => dest.messages.find((m) => m.raw.includes("signed please")))
    const resolver = new Resolver({ timeout: 1000, tries: 1 })
    resolver.setServers([dns.server])
    const v = await dkimVerify(got.raw, { resolver: (name: string, rr: string) => resolver.resolve(name, rr) } as never)
    const results = v.results.map((x) => `${x.selector}:${x.algo}:${x.status.result}`).sort()
    expect(results).toEqual(["e2026:ed25519-sha256:pass", "r2026:rsa-sha256:pass"])
  })

  it("does not sign mail relayed for an unauthenticated client", async () => {
    const raw = rawMessage({ from: "alice@missive.test", to: "r@dest.test", subject: "not ours to sign" })
    const r = await send(node.ports["smtp"]!, { from: "alice@missive.test", to: ["r@dest.test"] }, raw)
    expect(r.ok, r.response).toBe(true)
    const got = await waitFor("delivery", () => dest.messages.find((m) => m.raw.includes("not ours to sign")))
    expect(got.raw.toString("latin1")).not.toMatch(/^DKIM-Signature:/im)
  })
})
