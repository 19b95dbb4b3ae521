// The suppression list and sending quotas through real SMTP clients: a hard bounce puts the recipient on the list,
// submission then refuses it at RCPT (550 5.1.1 with the reason), relayed mail to it is bounced at once without an
// attempt; the CLI lists, adds, removes and imports entries (as events). A user over its 24-hour quota gets 451 4.7.1
// at MAIL, and keeps it across a restart (the window is rebuilt from the log).
import { writeFileSync } from "node:fs"
import { readdir } from "node:fs/promises"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { EventStore } from "@missive/events"
import { Config, Http, type Node } from "@missive/node"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { missive, rawMessage, send, startNode, tempDir, testConfig, waitFor, writeConfig } from "../src/Harness.js"

const ADMIN = "admin-secret-0123456789"

describe("suppression list and quotas", () => {
  let sink: CaptureServer
  let node: Node.RunningNode | undefined
  const dir = tempDir()
  const rcpts: Array<string> = []
  let config: Record<string, unknown>
  let configPath = ""

  beforeAll(async () => {
    sink = await startCapture({
      onRcpt: (rcpt) => {
        rcpts.push(rcpt)
        return rcpt === "gone@sink.test" ? { code: 550, text: "5.1.1 No such user" } : undefined
      }
    })
    const hash = await Config.hashPassword("s3cret")
    config = testConfig(`${dir.path}/data`, {
      routes: { "sink.test": `127.0.0.1:${sink.port}` },
      relay: { relay_domains: ["sink.test"] },
      auth: {
        users: [
          { name: "alice", password: hash },
          { name: "bob", password: hash }
        ]
      },
      quotas: { users: { bob: { per_day: 3 } } },
      suppression: { feedback_address: "fbl@missive.test" },
      listeners: { http: { host: "127.0.0.1", port: 0 } },
      http: { tokens: [{ name: "ops", scope: "admin", hash: Http.hashToken(ADMIN) }] }
    })
    configPath = writeConfig(dir.path, config)
    node = await startNode(config)
  })
  afterAll(async () => {
    await node?.stop()
    await sink?.close()
    dir.remove()
  })

  const relay = (to: string, subject: string) =>
    send(node!.ports["smtp"]!, { from: "app@sink.test", to: [to] }, rawMessage({ from: "app@sink.test", to, subject }))
  const submit = (user: string, to: string, subject: string) =>
    send(node!.ports["submission"]!, { from: `${user}@sink.test`, to: [to] }, rawMessage({ from: `${user}@sink.test`, to, subject }), {
      auth: { user, pass: "s3cret" }
    })
  const listed = async (): Promise<Array<{ address: string; reason: string; source?: string }>> => {
    const r = await missive("suppression", "list", "--config", configPath, "--json")
    expect(r.code).toBe(0)
    return JSON.parse(r.stdout)
  }
  const eventsOf = async (id: string) => (await node!.store.events.read(EventStore.streamOf(id))).map((e) => e.event)

  it("a hard bounce suppresses the recipient: refused at RCPT on submission, bounced at once when relayed", async () => {
    const first = await relay("gone@sink.test", "first")
    expect(first.ok).toBe(true)
    const entry = await waitFor("gone@ on the list", async () => (await listed()).find((e) => e.address === "gone@sink.test"))
    expect(entry).toMatchObject({ reason: "bounce", source: first.id })

    const refused = await submit("alice", "gone@sink.test", "refused")
    expect(refused.ok).toBe(false)
    expect(refused.response).toMatch(/^550 5\.1\.1 Recipient address suppressed \(bounce\)/)

    const attemptsBefore = rcpts.filter((r) => r === "gone@sink.test").length
    const again = await relay("gone@sink.test", "again")
    expect(again.ok).toBe(true)
    const bounced = await waitFor("the relayed copy bounced", async () =>
      (await eventsOf(again.id!)).find((e) => e.type === "RecipientBounced")
    )
    expect(bounced).toMatchObject({ reply: { code: 550, enhanced: "5.1.1", text: "Recipient address suppressed (bounce)" } })
    expect((await eventsOf(again.id!)).some((e) => e.type === "AttemptStarted")).toBe(false)
    expect(rcpts.filter((r) => r === "gone@sink.test").length).toBe(attemptsBefore)
  })

  it("the CLI adds, removes and imports entries, each an event in the suppression stream", async () => {
    expect((await missive("suppression", "add", "manual@sink.test", "--config", configPath, "--by", "ops")).code).toBe(0)
    const r = await submit("alice", "manual@sink.test", "manual")
    expect(r.response).toMatch(/^550 5\.1\.1 Recipient address suppressed \(manual\)/)

    expect((await missive("suppression", "remove", "manual@sink.test", "--config", configPath)).code).toBe(0)
    expect((await submit("alice", "manual@sink.test", "after removal")).ok).toBe(true)
    const notListed = await missive("suppression", "remove", "nobody@sink.test", "--config", configPath)
    expect(notListed.code).toBe(1)
    expect(notListed.stderr).toContain("nobody@sink.test is not on the suppression list")

    const file = `${dir.path}/import.csv`
    writeFileSync(file, "emailAddress,reason\n# from the old MTA\na@sink.test,BOUNCE\nb@sink.test,COMPLAINT\nc@sink.test\n")
    const imported = await missive("suppression", "import", file, "--config", configPath)
    expect(imported.code).toBe(0)
    expect(imported.stdout).toContain("3 address(es) added")
    const bad = `${dir.path}/bad.csv`
    writeFileSync(bad, "not an address\n")
    expect((await missive("suppression", "import", bad, "--config", configPath)).code).toBe(2)

    const list = await listed()
    expect(list.map((e) => [e.address, e.reason])).toEqual([
      ["a@sink.test", "bounce"],
      ["b@sink.test", "complaint"],
      ["c@sink.test", "manual"],
      ["gone@sink.test", "bounce"]
    ])
    const stream = (await node!.store.events.read("suppression")).map((e) => e.event.type)
    expect(stream).toEqual([
      "SuppressionAdded",
      "SuppressionAdded",
      "SuppressionRemoved",
      "SuppressionAdded",
      "SuppressionAdded",
      "SuppressionAdded"
    ])
    const text = await missive("suppression", "list", "--config", configPath)
    expect(text.stdout).toMatch(/gone@sink\.test\s+bounce/)
  })

  it("the HTTP API adds, lists and removes entries, recorded with the token's name", async () => {
    const api = (method: string, path: string, body?: unknown) =>
      fetch(`http://127.0.0.1:${node!.ports["http"]}${path}`, {
        method,
        headers: { authorization: `Bearer ${ADMIN}`, ...(body ? { "content-type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined
      }).then(async (r) => ({ status: r.status, json: (await r.json()) as Record<string, any> }))
    const added = await api("POST", "/api/v1/suppression", { entries: [{ address: "api@sink.test", reason: "complaint" }] })
    expect(added).toEqual({ status: 200, json: { added: 1, alreadyListed: 0, by: "ops" } })
    expect((await submit("alice", "api@sink.test", "api")).response).toMatch(/^550 5\.1\.1 Recipient address suppressed \(complaint\)/)
    const list = await api("GET", "/api/v1/suppression")
    expect(list.json["entries"].find((e: { address: string }) => e.address === "api@sink.test")).toMatchObject({
      reason: "complaint",
      by: "ops"
    })
    expect((await api("POST", "/api/v1/suppression", { addresses: ["not an address"] })).status).toBe(400)
    expect(await api("POST", "/api/v1/suppression/remove", { addresses: ["api@sink.test"] })).toEqual({
      status: 200,
      json: { removed: 1, by: "ops" }
    })
    expect((await api("POST", "/api/v1/suppression/remove", { addresses: ["api@sink.test"] })).status).toBe(404)
    expect((await submit("alice", "api@sink.test", "api again")).ok).toBe(true)
  })

  it("an ARF report at the feedback address is matched to its message: a complaint event and a suppression", async () => {
    const original = await submit("alice", "carol@sink.test", "newsletter")
    expect(original.ok).toBe(true)
    const delivered = await waitFor("the original at the sink", () => sink.messages.find((m) => m.raw.toString().includes("newsletter")))
    const headers = delivered.raw.toString("utf8").split("\r\n\r\n")[0]!
    const boundary = "arf-boundary"
    const report = [
      "From: <fbl@isp.test>",
      "To: <fbl@missive.test>",
      "Subject: FW: newsletter",
      "Message-ID: <report-1@isp.test>",
      "MIME-Version: 1.0",
      `Content-Type: multipart/report; report-type=feedback-report; boundary="${boundary}"`,
      "",
      `--${boundary}`,
      "Content-Type: text/plain",
      "",
      "This is an email abuse report.",
      `--${boundary}`,
      "Content-Type: message/feedback-report",
      "",
      "Feedback-Type: abuse",
      "User-Agent: ISP-FBL/1.0",
      "Version: 1",
      "Original-Rcpt-To: <carol@sink.test>",
      "Arrival-Date: Mon, 30 Nov 2026 02:00:00 +0000",
      "",
      `--${boundary}`,
      "Content-Type: text/rfc822-headers",
      "",
      headers,
      "",
      `--${boundary}--`,
      ""
    ].join("\r\n")
    // Sent twice (feedback loops resend): recorded once.
    for (let i = 0; i < 2; i++) {
      const r = await send(node!.ports["smtp"]!, { from: "fbl@isp.test", to: ["fbl@missive.test"] }, report)
      expect(r.ok).toBe(true)
    }
    const complaint = await waitFor("the complaint on the original's stream", async () =>
      (await eventsOf(original.id!)).find((e) => e.type === "ComplaintReceived")
    )
    expect(complaint).toMatchObject({
      reportId: "<report-1@isp.test>",
      rcpts: ["carol@sink.test"],
      feedbackType: "abuse",
      userAgent: "ISP-FBL/1.0"
    })
    const entry = await waitFor("carol on the list", async () => (await listed()).find((e) => e.address === "carol@sink.test"))
    expect(entry).toMatchObject({ reason: "complaint", source: original.id })
    const refused = await submit("alice", "carol@sink.test", "after the complaint")
    expect(refused.response).toMatch(/^550 5\.1\.1 Recipient address suppressed \(complaint\)/)
    // The second copy of the report has been handled too (both delivered to the mailbox), and added nothing.
    await waitFor(
      "both reports delivered",
      async () => (await readdir(`${dir.path}/data/maildir/missive.test/fbl/new`).catch(() => [])).length === 2
    )
    expect((await eventsOf(original.id!)).filter((e) => e.type === "ComplaintReceived").length).toBe(1)
  })

  it("a user over its 24-hour quota gets 451 4.7.1 at MAIL, also after a restart", async () => {
    for (let i = 0; i < 3; i++) expect((await submit("bob", `q${i}@sink.test`, `quota ${i}`)).ok).toBe(true)
    const over = await submit("bob", "q3@sink.test", "quota 3")
    expect(over.ok).toBe(false)
    expect(over.response).toMatch(/^451 4\.7\.1 Sending quota exceeded: 3 messages per 24 hours/)
    // Other users have no quota.
    expect((await submit("alice", "q4@sink.test", "no quota")).ok).toBe(true)

    await node!.stop()
    node = await startNode(config)
    const afterRestart = await submit("bob", "q5@sink.test", "quota after restart")
    expect(afterRestart.response).toMatch(/^451 4\.7\.1/)
  })
})
