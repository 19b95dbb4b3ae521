// Delay notices (Postfix's delay_warning_time): a message still deferred `bounce.delay_warning` after arrival gets
// one RFC 3464 report with Action: delayed; the DelayNotified event keeps it at one through further retries and a
// restart of the node. Real SMTP on both sides: the sink defers the recipient and receives the notice.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { EventStore } from "@missive/events"
import type { Node } from "@missive/node"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { rawMessage, send, startNode, tempDir, testConfig, waitFor } from "../src/Harness.js"

describe("delay notices", () => {
  let sink: CaptureServer
  let node: Node.RunningNode | undefined
  const dir = tempDir()
  let slowTries = 0

  beforeAll(async () => {
    sink = await startCapture({
      onRcpt: (rcpt) => {
        if (rcpt !== "slow@sink.test") return undefined
        slowTries += 1
        return { code: 451, text: "4.2.2 Mailbox full, try later" }
      }
    })
  })
  afterAll(async () => {
    await node?.stop()
    await sink?.close()
    dir.remove()
  })

  it("sends one Action: delayed report once the delay has passed, never a second, also after a restart", async () => {
    const config = testConfig(`${dir.path}/data`, {
      routes: { "sink.test": `127.0.0.1:${sink.port}` },
      relay: { relay_domains: ["sink.test"] },
      retry: { initial: "300ms", max: "300ms", multiplier: 1, jitter: 0, lifetime: "1h" },
      bounce: { delay_warning: "1500ms" }
    })
    node = await startNode(config)
    const r = await send(
      node.ports["smtp"]!,
      { from: "app@sink.test", to: ["slow@sink.test"] },
      rawMessage({ from: "app@sink.test", to: "slow@sink.test", subject: "slow one" })
    )
    expect(r.ok).toBe(true)
    const notices = () => sink.messages.filter((m) => m.to.includes("app@sink.test"))
    const notice = await waitFor("the delay notice", () => notices()[0], 30_000)
    const text = notice.raw.toString("utf8")
    expect(notice.from).toBe("")
    expect(text).toContain("Subject: Delayed Mail (still being retried)")
    expect(text).toContain("Content-Type: multipart/report; report-type=delivery-status")
    expect(text).toMatch(/Final-Recipient: rfc822; slow@sink\.test\r\nAction: delayed\r\nStatus: 4\.2\.2/)
    expect(text).toContain("Will-Retry-Until: ")
    expect(text).toContain(`X-Missive-Queue-ID: ${r.id}`)
    const stream = async () => (await node!.store.events.read(EventStore.streamOf(r.id!))).map((e) => e.event)
    expect((await stream()).filter((e) => e.type === "DelayNotified").length).toBe(1)

    // More retries, then a restart: the message is still deferred, the notice is not sent again.
    const triesAtNotice = slowTries
    await waitFor("three more retries", () => slowTries >= triesAtNotice + 3, 20_000)
    await node.stop()
    node = await startNode(config)
    await waitFor("retries after the restart", () => slowTries >= triesAtNotice + 6, 20_000)
    expect(notices().length).toBe(1)
    expect((await stream()).filter((e) => e.type === "DelayNotified").length).toBe(1)
    expect((await stream()).some((e) => e.type === "MessageCompleted")).toBe(false)
  }, 90_000)
})
