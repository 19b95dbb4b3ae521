// Delivery events pushed out: a real node process publishes SES-style events in batches (JSON arrays) to a real HTTP
// receiver in this test (which checks every HMAC signature and answers some batches 503 to force retries) and to a
// JSON-lines file.
// The node is killed with SIGKILL mid-stream and started again: every event of every acknowledged message arrives
// at least once, and the checkpoint keeps the restart from replaying what was already acknowledged.
import { createHmac, timingSafeEqual } from "node:crypto"
import { existsSync, readFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { freePort, rawMessage, send, spawnNode, tempDir, testConfig, waitFor, writeConfig, type ChildNode } from "../src/Harness.js"

const SECRET = "a-test-secret-of-some-length"

interface Received {
  readonly eventId: string
  readonly eventType: string
  readonly mail: { readonly messageId: string; readonly source: string; readonly destination: ReadonlyArray<string> }
  readonly [k: string]: unknown
}

describe("event publishing", () => {
  let sink: CaptureServer
  let http: Server
  let hookPort = 0
  let node: ChildNode | undefined
  const dir = tempDir()
  const seen = new Map<string, number>()
  const events = new Map<string, Received>()
  let badSignatures = 0
  let malformed = 0
  const batchSizes: Array<number> = []
  let refusedOnce = 0
  const refused = new Set<string>()

  beforeAll(async () => {
    // later@ gets "mailbox full" once, then is accepted; gone@ does not exist.
    const full = new Set<string>()
    sink = await startCapture({
      onRcpt: (rcpt) => {
        if (rcpt === "gone@sink.test") return { code: 550, text: "5.1.1 No such user" }
        if (rcpt === "later@sink.test" && !full.has(rcpt)) {
          full.add(rcpt)
          return { code: 452, text: "4.2.2 Mailbox full" }
        }
        return undefined
      }
    })
    http = createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (c: Buffer) => chunks.push(c))
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8")
        const ts = String(req.headers["x-missive-timestamp"] ?? "")
        const given = Buffer.from(String(req.headers["x-missive-signature"] ?? ""))
        const want = Buffer.from(`sha256=${createHmac("sha256", SECRET).update(`${ts}.${body}`).digest("hex")}`)
        if (given.length !== want.length || !timingSafeEqual(given, want)) {
          badSignatures += 1
          res.writeHead(401).end()
          return
        }
        const batch = JSON.parse(body) as Array<Received>
        if (!Array.isArray(batch) || req.headers["x-missive-event-count"] !== String(batch.length)) {
          malformed += 1
          res.writeHead(400).end()
          return
        }
        batchSizes.push(batch.length)
        // A batch holding an event of every seventh log position is refused once: the publisher must send the
        // whole batch again, not skip it.
        const refuse = batch.filter((e) => Number(e.eventId.split(".")[0]) % 7 === 0 && !refused.has(e.eventId))
        if (refuse.length > 0) {
          for (const e of refuse) refused.add(e.eventId)
          refusedOnce += 1
          res.writeHead(503).end()
          return
        }
        for (const e of batch) {
          seen.set(e.eventId, (seen.get(e.eventId) ?? 0) + 1)
          events.set(e.eventId, e)
        }
        res.writeHead(204).end()
      })
    })
    await new Promise<void>((done) => http.listen(0, "127.0.0.1", done))
    hookPort = (http.address() as { port: number }).port
  })
  afterAll(async () => {
    await node?.stop()
    await sink?.close()
    await new Promise((done) => http?.close(done))
    dir.remove()
  })

  const byType = (type: string, id: string) => [...events.values()].filter((e) => e.eventType === type && e.mail.messageId === id)

  it("delivers every event at least once across a kill -9, signed, from a checkpoint", async () => {
    const port = await freePort()
    const file = `${dir.path}/events.jsonl`
    const config = writeConfig(
      dir.path,
      testConfig(`${dir.path}/data`, {
        listeners: { smtp: { host: "127.0.0.1", port }, submission: { enabled: false } },
        routes: { "sink.test": `127.0.0.1:${sink.port}` },
        relay: { relay_domains: ["sink.test"] },
        events: {
          destinations: [
            { name: "hook", webhook: `http://127.0.0.1:${hookPort}/ses`, secret: SECRET, batch_max: 5, batch_wait: "300ms" },
            { name: "archive", file, types: ["delivery", "bounce"] }
          ]
        }
      })
    )
    node = await spawnNode(config)
    const mail = (to: string, seq: number) =>
      send(port, { from: "load@sink.test", to: [to] }, rawMessage({ from: "load@sink.test", to, subject: `seq ${seq}` }))

    const gone = await mail("gone@sink.test", 0)
    const later = await mail("later@sink.test", 1)
    expect(gone.ok && later.ok).toBe(true)
    const acknowledged: Array<string> = []
    let killed = false
    let preKill = 0
    for (let seq = 2; seq < 80; seq++) {
      const r = await mail(`x${seq}@sink.test`, seq)
      if (r.ok && r.id) acknowledged.push(r.id)
      if (!killed && seq === 50) {
        await waitFor("events published before the kill", () => seen.size >= 40)
        preKill = seen.size
        killed = true
        await node.kill9()
        node = await spawnNode(config)
      }
    }
    expect(killed).toBe(true)
    expect(acknowledged.length).toBeGreaterThanOrEqual(70)

    // Every acknowledged message: its Send and its Delivery, whichever side of the kill they happened.
    await waitFor(
      "a Send and a Delivery event for every acknowledged message",
      () => acknowledged.every((id) => byType("Send", id).length === 1 && byType("Delivery", id).length >= 1),
      60_000
    )
    const bounce = await waitFor("the bounce event", () => byType("Bounce", gone.id!)[0])
    expect(bounce["bounce"]).toMatchObject({
      bounceType: "Permanent",
      bounceSubType: "NoEmail",
      bouncedRecipients: [{ emailAddress: "gone@sink.test", action: "failed", status: "5.1.1" }]
    })
    const delay = await waitFor("the delivery delay", () => byType("DeliveryDelay", later.id!)[0])
    expect(delay["deliveryDelay"]).toMatchObject({ delayType: "MailboxFull", delayedRecipients: [{ emailAddress: "later@sink.test" }] })
    expect(byType("Deferred", later.id!).length).toBe(1)
    await waitFor("the delayed message's delivery", () => byType("Delivery", later.id!)[0])

    expect(badSignatures).toBe(0)
    expect(malformed).toBe(0)
    // Batches: never more than batch_max events, and events that arrived together went in one request.
    expect(Math.max(...batchSizes)).toBe(5)
    expect(batchSizes.length).toBeLessThan(seen.size)
    expect(refusedOnce).toBeGreaterThan(0)
    // At-least-once: copies only for what followed the last checkpoint before the kill, never a replay of everything.
    const duplicates = [...seen.values()].filter((n) => n > 1).length
    expect(duplicates).toBeLessThan(preKill)
    expect(existsSync(`${dir.path}/data/publish/hook.checkpoint`)).toBe(true)

    // The file destination has the types it asked for, one JSON object per line.
    await waitFor("the file destination to catch up", () => {
      const lines = existsSync(file) ? readFileSync(file, "utf8").trim().split("\n") : []
      const parsed = lines.map((l) => JSON.parse(l) as Received)
      const ids = new Set(parsed.filter((e) => e.eventType === "Delivery").map((e) => e.mail.messageId))
      return parsed.every((e) => e.eventType === "Delivery" || e.eventType === "Bounce") && acknowledged.every((id) => ids.has(id))
    })
    console.log(
      `events: ${seen.size} distinct in ${batchSizes.length} requests, ${duplicates} delivered twice after the kill (${preKill} before it), ${refusedOnce} batches retried after a 503`
    )
  }, 180_000)
})
