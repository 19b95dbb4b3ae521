// Content scanning end to end with the real daemons: a node relays through ClamAV (clamd) and rspamd started from
// Debian's packages on loopback, a real SMTP client sends, a capture server is the destination. A virus gets 554 at
// the end of DATA, spam gets rspamd's action, a scanner that is down, silent or answers garbage gives 451 (or, with
// on_failure: accept, the message passes tagged) within the scanner's timeout, never a hung session.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import type { Message } from "@missive/core"
import type { Node } from "@missive/node"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { EICAR, EICAR_SIGNATURE, startClamd, type Clamd } from "../src/Clamd.js"
import { startDnsServer, type DnsServer } from "../src/DnsServer.js"
import { rawMessage, send, startNode, tempDir, testConfig, waitFor } from "../src/Harness.js"
import { GTUBE, startRspamd, type Rspamd } from "../src/Rspamd.js"
import { misbehaving } from "../src/Misbehaving.js"

/** A prefilter that forces the action named in X-Test-Action, so every rspamd action can be asked for. */
const FORCE_ACTION = `
rspamd_config:register_symbol({
  name = 'MISSIVE_TEST_ACTION', type = 'prefilter', priority = 10,
  callback = function(task)
    local h = task:get_header('X-Test-Action')
    if h then task:set_pre_result(h, 'forced by the test: ' .. h, 'missive-test') end
  end
})
`

describe("content scanning with rspamd and clamd", () => {
  let dns: DnsServer
  let rspamd: Rspamd
  let clamd: Clamd
  let dest: CaptureServer
  const dirs = [tempDir(), tempDir(), tempDir()]
  const nodes: Node.RunningNode[] = []
  const closers: Array<() => Promise<void>> = []

  const nodeWith = async (i: number, filter: Record<string, unknown>): Promise<Node.RunningNode> => {
    const node = await startNode(
      testConfig(dirs[i]!.path, {
        dns: { servers: [dns.server], timeout: "1s" },
        routes: { "dest.test": `127.0.0.1:${dest.port}` },
        relay: { local_domains: ["missive.test"], trusted_networks: ["127.0.0.0/8"] },
        filter
      })
    )
    nodes.push(node)
    return node
  }

  const sendTo = (node: Node.RunningNode, subject: string, body: string, headers: Record<string, string> = {}) =>
    send(
      node.ports["smtp"]!,
      { from: "a@client.test", to: ["b@dest.test"] },
      rawMessage({ from: "a@client.test", to: "b@dest.test", subject, body, headers })
    )

  const delivered = (subject: string) => dest.messages.find((m) => m.raw.toString("latin1").includes(`Subject: ${subject}`))

  let scanned: Node.RunningNode

  beforeAll(async () => {
    dns = await startDnsServer()
    ;[rspamd, clamd, dest] = await Promise.all([startRspamd({ dns: dns.server, lua: FORCE_ACTION }), startClamd(), startCapture()])
    scanned = await nodeWith(0, {
      clamav: { address: `127.0.0.1:${clamd.port}`, timeout: "5s" },
      rspamd: { url: rspamd.url, timeout: "5s" }
    })
  })

  afterAll(async () => {
    await Promise.all(nodes.map((n) => n.stop()))
    await Promise.all([...closers.map((c) => c()), rspamd?.dispose(), clamd?.dispose(), dest?.close()])
    await dns?.close()
    for (const d of dirs) d.remove()
  })

  it("delivers clean mail with rspamd's and ClamAV's headers", async () => {
    const r = await sendTo(scanned, "clean one", "See you at noon.\r\n")
    expect(r.ok, r.response).toBe(true)
    const got = await waitFor("clean delivery", () => delivered("clean one"))
    const text = got.raw.toString("latin1")
    expect(text).toMatch(/\r\nX-Rspamd-Action: no action\r\n/)
    expect(text).toMatch(/\r\nX-Rspamd-Score: -?\d+\.\d\d \/ \d+\.\d\d\r\n/)
    expect(text).toMatch(/\r\nX-Rspamd-Symbols: [A-Z_]+\(/)
    expect(text).toContain("\r\nX-Virus-Scanned: ClamAV at mx.missive.test\r\n")
  })

  it("refuses EICAR with 554 5.7.0 at the end of DATA and delivers nothing of it", async () => {
    const r = await sendTo(scanned, "with virus", `Attachment follows.\r\n${EICAR}\r\n`)
    expect(r.ok).toBe(false)
    expect(r.response).toMatch(/^554 5\.7\.0 Message contains a virus/)
    expect(r.response).toContain(EICAR_SIGNATURE)
    // A message sent after it is delivered; the refused one never is.
    expect((await sendTo(scanned, "after virus", "fine\r\n")).ok).toBe(true)
    await waitFor("the next delivery", () => delivered("after virus"))
    expect(delivered("with virus")).toBeUndefined()
  })

  it("gives rspamd's action: GTUBE rejected 550 5.7.1, soft reject and greylist 451 4.7.1, add header tagged, subject rewritten", async () => {
    const spam = await sendTo(scanned, "gtube", `${GTUBE}\r\n`)
    expect(spam.response).toMatch(/^550 5\.7\.1 /)
    const soft = await sendTo(scanned, "soft", "x\r\n", { "X-Test-Action": "soft reject" })
    expect(soft.response).toMatch(/^451 4\.7\.1 forced by the test: soft reject/)
    const grey = await sendTo(scanned, "grey", "x\r\n", { "X-Test-Action": "greylist" })
    expect(grey.response).toMatch(/^451 4\.7\.1 Greylisted/)
    const tagged = await sendTo(scanned, "tagged", "x\r\n", { "X-Test-Action": "add header" })
    expect(tagged.ok, tagged.response).toBe(true)
    const got = await waitFor("tagged delivery", () => delivered("tagged"))
    expect(got.raw.toString("latin1")).toMatch(/^(?:[^\r]*\r\n)*X-Spam: Yes\r\n/)
    const rewritten = await sendTo(scanned, "rewrite me", "x\r\n", { "X-Test-Action": "rewrite subject" })
    expect(rewritten.ok, rewritten.response).toBe(true)
    await waitFor("rewritten delivery", () => delivered("*** SPAM *** rewrite me"))
    expect(delivered("gtube") ?? delivered("soft") ?? delivered("grey")).toBeUndefined()
  })

  it("records each scanner's verdict, score and own reply in MessageFiltered, for refused mail too", async () => {
    const filtered = async () =>
      (await scanned.store.events.readAll(0, 10_000))
        .map((e) => e.event)
        .filter((e): e is Message.EventOf<"MessageFiltered"> => e.type === "MessageFiltered")
    const virus = await waitFor("the virus's MessageFiltered", async () =>
      (await filtered()).find((e) => e.verdicts.some((v) => v.name === "clamav" && v.result === "virus"))
    )
    expect(virus.action).toBe("reject")
    expect(virus.reply?.code).toBe(554)
    expect(virus.verdicts.find((v) => v.name === "clamav")?.detail).toContain(`${EICAR_SIGNATURE} FOUND`)
    const clean = (await filtered()).find((e) => e.verdicts.some((v) => v.name === "rspamd" && v.result === "no action"))
    expect(clean?.action).toBe("accept")
    expect(typeof clean?.verdicts.find((v) => v.name === "rspamd")?.score).toBe("number")
    expect(clean?.verdicts.find((v) => v.name === "clamav")?.result).toBe("clean")
    const gtube = (await filtered()).find((e) => e.verdicts.some((v) => v.name === "rspamd" && v.result === "reject"))
    expect(gtube?.reply).toMatchObject({ code: 550, enhanced: "5.7.1" })
  })

  it("answers 451 while clamd is killed, and scans again once it is back", async () => {
    await clamd.kill()
    const r = await sendTo(scanned, "clamd down", "x\r\n")
    expect(r.response).toMatch(/^451 4\.3\.0 Content scanner clamav unavailable/)
    await clamd.restart()
    const again = await sendTo(scanned, "clamd back", `${EICAR}\r\n`)
    expect(again.response).toMatch(/^554 5\.7\.0 /)
  })

  it("a scanner that answers garbage: accepted and tagged when on_failure is accept", async () => {
    const garbage = await misbehaving((s) => s.on("data", () => s.end("220 hello, I am not clamd\r\n\0")))
    closers.push(garbage.close)
    const node = await nodeWith(1, { clamav: { address: `127.0.0.1:${garbage.port}`, timeout: "2s", on_failure: "accept" } })
    const r = await sendTo(node, "unscanned", "x\r\n")
    expect(r.ok, r.response).toBe(true)
    const got = await waitFor("tagged delivery", () => delivered("unscanned"))
    expect(got.raw.toString("latin1")).toMatch(
      /\r\nX-Missive-Unscanned: clamav \(garbage: unexpected reply: "220 hello, I am not clamd"\)\r\n/
    )
  })

  it("a scanner that never answers: 451 after its timeout, never a hung session", async () => {
    const silent = await misbehaving(() => undefined)
    closers.push(silent.close)
    const node = await nodeWith(2, { rspamd: { url: `http://127.0.0.1:${silent.port}`, timeout: "500ms" } })
    const r = await sendTo(node, "silent", "x\r\n")
    expect(r.response).toMatch(/^451 4\.3\.0 Content scanner rspamd unavailable/)
  })
})
