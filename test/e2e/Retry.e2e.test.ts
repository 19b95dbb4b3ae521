// Retries and expiry end to end: a receiver that answers 451 then 250, and one that never stops answering 451.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { rawMessage, send, startNode, tempDir, testConfig, waitFor } from "../src/Harness.js"
import type { Node } from "@missive/node"

describe("retries and expiry", () => {
  let flaky: CaptureServer
  let down: CaptureServer
  let senderMx: CaptureServer
  let node: Node.RunningNode
  const dir = tempDir()
  const attemptsByMessage = new Map<string, number>()

  beforeAll(async () => {
    flaky = await startCapture({
      onData: (m) => {
        const key = /Subject: (.*)/.exec(m.raw.toString())?.[1] ?? ""
        const n = (attemptsByMessage.get(key) ?? 0) + 1
        attemptsByMessage.set(key, n)
        return n <= 2 ? { code: 451, text: "4.3.2 Try again later" } : undefined
      }
    })
    down = await startCapture({ onRcpt: () => ({ code: 451, text: "4.7.1 Greylisted forever" }) })
    senderMx = await startCapture()
    node = await startNode(
      testConfig(dir.path, {
        routes: {
          "flaky.test": `127.0.0.1:${flaky.port}`,
          "down.test": `127.0.0.1:${down.port}`,
          "sender.test": `127.0.0.1:${senderMx.port}`
        },
        relay: { relay_domains: ["flaky.test", "down.test"] },
        retry: { initial: "300ms", max: "1s", multiplier: 2, jitter: 0, lifetime: "3s" }
      })
    )
  })
  afterAll(async () => {
    await node?.stop()
    await Promise.all([flaky?.close(), down?.close(), senderMx?.close()])
    dir.remove()
  })

  it("delivers on the third attempt after 451 twice, with each attempt in the log", async () => {
    const r = await send(
      node.ports["smtp"]!,
      { from: "a@sender.test", to: ["b@flaky.test"] },
      rawMessage({ from: "a@sender.test", to: "b@flaky.test", subject: "third time" })
    )
    expect(r.ok, r.response).toBe(true)
    await waitFor("delivery", () => flaky.messages.find((m) => m.raw.includes("third time")))
    await waitFor("completion", async () =>
      (await node.store.events.read(`message-${r.id}`)).some((e) => e.event.type === "MessageCompleted")
    )
    const types = (await node.store.events.read(`message-${r.id}`)).map((e) => e.event.type)
    expect(types.filter((t) => t === "AttemptStarted").length).toBe(3)
    expect(types.filter((t) => t === "AttemptDeferred").length).toBe(2)
    expect(types.filter((t) => t === "RecipientDelivered").length).toBe(1)
    expect(attemptsByMessage.get("third time")).toBe(3)
    const deferred = (await node.store.events.read(`message-${r.id}`)).map((e) => e.event).find((e) => e.type === "AttemptDeferred")
    expect(deferred?.type === "AttemptDeferred" && deferred.reply).toEqual({ code: 451, enhanced: "4.3.2", text: "Try again later" })
  })

  it("expires a message that is deferred past its lifetime and sends a DSN", async () => {
    const r = await send(
      node.ports["smtp"]!,
      { from: "late@sender.test", to: ["b@down.test"] },
      rawMessage({ from: "late@sender.test", to: "b@down.test", subject: "never" })
    )
    expect(r.ok, r.response).toBe(true)
    const dsn = await waitFor("DSN after expiry", () => senderMx.messages.find((m) => m.to.includes("late@sender.test")), 30_000)
    const text = dsn.raw.toString()
    expect(text).toMatch(/Final-Recipient: rfc822; b@down.test/)
    expect(text).toMatch(/Status: 4\.7\.1/)
    expect(text).toMatch(/Greylisted forever/)
    const types = (await node.store.events.read(`message-${r.id}`)).map((e) => e.event.type)
    expect(types).toContain("RecipientExpired")
    expect(types).toContain("BounceQueued")
    expect(types[types.length - 1]).toBe("MessageCompleted")
  })
})
