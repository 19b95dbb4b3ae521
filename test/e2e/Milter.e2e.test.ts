// The milter client against a real milter: rspamd's proxy worker in milter mode (Debian's rspamd, started by
// test/src/Rspamd.ts), through a running node and a real SMTP client. Its decisions (reject, tempfail, accept with
// header edits) become the node's replies; a milter that is down or speaks garbage gives 451.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Node } from "@missive/node"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { startDnsServer, type DnsServer } from "../src/DnsServer.js"
import { rawMessage, send, startNode, tempDir, testConfig, waitFor } from "../src/Harness.js"
import { misbehaving } from "../src/Misbehaving.js"
import { GTUBE, startRspamd, type Rspamd } from "../src/Rspamd.js"
import { freePort } from "../src/Support.js"

/** A prefilter that forces the action named in X-Test-Action (as in Scan.e2e.test.ts). */
const FORCE_ACTION = `
rspamd_config:register_symbol({
  name = 'MISSIVE_TEST_ACTION', type = 'prefilter', priority = 10,
  callback = function(task)
    local h = task:get_header('X-Test-Action')
    if h then task:set_pre_result(h, 'forced by the test: ' .. h, 'missive-test') end
  end
})
`

describe("milter client against rspamd's milter", () => {
  let dns: DnsServer
  let rspamd: Rspamd
  let dest: CaptureServer
  const dirs = [tempDir(), tempDir(), tempDir()]
  const nodes: Node.RunningNode[] = []
  let node: Node.RunningNode

  const nodeWith = async (i: number, milters: ReadonlyArray<Record<string, unknown>>) => {
    const n = await startNode(
      testConfig(dirs[i]!.path, {
        dns: { servers: [dns.server], timeout: "1s" },
        routes: { "dest.test": `127.0.0.1:${dest.port}` },
        relay: { local_domains: ["missive.test"], trusted_networks: ["127.0.0.0/8"] },
        filter: { milters }
      })
    )
    nodes.push(n)
    return n
  }

  const sendTo = (n: Node.RunningNode, subject: string, body: string, headers: Record<string, string> = {}) =>
    send(
      n.ports["smtp"]!,
      { from: "a@client.test", to: ["b@dest.test"] },
      rawMessage({ from: "a@client.test", to: "b@dest.test", subject, body, headers })
    )
  const delivered = (subject: string) => dest.messages.find((m) => m.raw.toString("latin1").includes(`Subject: ${subject}\r\n`))

  beforeAll(async () => {
    dns = await startDnsServer()
    ;[rspamd, dest] = await Promise.all([
      startRspamd({
        dns: dns.server,
        lua: FORCE_ACTION,
        milter: true,
        // rspamd's milter adds these to every message it lets through (loopback clients too: skip_local off)
        localD: { "milter_headers.conf": `use = ["x-spamd-result", "x-rspamd-queue-id"];\nskip_local = false;\n` }
      }),
      startCapture()
    ])
    node = await nodeWith(0, [{ address: `127.0.0.1:${rspamd.milterPort}`, timeout: "10s" }])
  })

  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()))
    await Promise.all([rspamd?.dispose(), dest?.close()])
    await dns?.close()
    for (const d of dirs) d.remove()
  })

  it("delivers clean mail with the headers the milter added", async () => {
    const r = await sendTo(node, "milter clean", "Lunch at noon?\r\n")
    expect(r.ok, r.response).toBe(true)
    const got = await waitFor("delivery", () => delivered("milter clean"))
    const text = got.raw.toString("latin1")
    expect(text).toMatch(/\r\nX-Spamd-Result: default: False \[/)
    expect(text).toMatch(/\r\nX-Rspamd-Queue-Id: \S+/)
  })

  it("answers the milter's reject, tempfail and reply codes, and applies its header changes", async () => {
    expect((await sendTo(node, "milter gtube", `${GTUBE}\r\n`)).response).toMatch(/^5\d\d 5\.7\.1 /)
    expect((await sendTo(node, "milter soft", "x\r\n", { "X-Test-Action": "soft reject" })).response).toMatch(/^4\d\d /)
    const tagged = await sendTo(node, "milter tagged", "x\r\n", { "X-Test-Action": "add header" })
    expect(tagged.ok, tagged.response).toBe(true)
    const got = await waitFor("tagged delivery", () => delivered("milter tagged"))
    expect(got.raw.toString("latin1")).toMatch(/\r\nX-Spam: Yes\r\n/)
    expect(delivered("milter gtube") ?? delivered("milter soft")).toBeUndefined()
  })

  it("a milter that is down or speaks garbage: 451, within its timeout", async () => {
    const garbage = await misbehaving((s) => s.on("data", () => s.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x4f]))))
    try {
      const speaksGarbage = await nodeWith(1, [{ address: `127.0.0.1:${garbage.port}`, timeout: "2s" }])
      expect((await sendTo(speaksGarbage, "milter garbage", "x\r\n")).response).toMatch(
        /^451 4\.3\.0 Content scanner milter:127\.0\.0\.1:\d+ unavailable/
      )
      const down = await nodeWith(2, [{ address: `127.0.0.1:${await freePort()}`, timeout: "2s" }])
      expect((await sendTo(down, "milter down", "x\r\n")).response).toMatch(
        /^451 4\.3\.0 Content scanner milter:127\.0\.0\.1:\d+ unavailable/
      )
    } finally {
      await garbage.close()
    }
  })
})
