// Re-injection into a real SMTP server on loopback: recorded timing order, stored bodies when the body store still
// has them, synthetic bodies of the recorded size otherwise, and DSNs left out.
import { Message } from "@missive/core"
import { BodyStore, EventStore } from "@missive/events"
import { describe, expect, it } from "vitest"
import { startCapture } from "../../test/src/CaptureServer.js"
import * as Inject from "../src/replay/Inject.js"
import { Clock } from "@missive/node"

const received = (id: string, at: number, o: { digest: string; size: number; dsnOf?: string; rcpts?: Array<string> }): Message.Event => ({
  v: 1,
  at,
  node: "n",
  policy: "p",
  type: "MessageReceived",
  id,
  sender: o.dsnOf ? "" : `s-${id}@x.test`,
  recipients: o.rcpts ?? [`r-${id}@y.test`],
  size: o.size,
  digest: o.digest,
  client: { ip: "127.0.0.1", helo: "h", tls: false },
  ...(o.dsnOf ? { dsnOf: o.dsnOf } : {})
})

describe("replay inject", () => {
  it("re-sends arrivals in recorded order with stored or synthetic bodies, scaled in time", async () => {
    const target = await startCapture()
    try {
      const events = EventStore.makeMemory()
      const bodies = BodyStore.makeMemory()
      const kept = Buffer.from("From: <s-A@x.test>\r\nSubject: kept body\r\n\r\nThe original text.\r\n")
      const digest = await bodies.put(kept)
      await events.append("message-A", 0, [received("A", 10_000, { digest, size: kept.length })])
      await events.append("message-B", 0, [received("B", 70_000, { digest: "sha256:gone", size: 5000, rcpts: ["p@y.test", "q@y.test"] })])
      await events.append("message-C", 0, [received("C", 80_000, { digest: "sha256:gone2", size: 900, dsnOf: "A" })])
      const clock = Clock.manualClock(1_000_000)
      const slept: Array<number> = []
      const sleep = async (ms: number) => {
        slept.push(ms)
        clock.advance(ms)
      }
      const r = await Inject.inject(events, bodies, {
        from: 0,
        to: 100_000,
        host: "127.0.0.1",
        port: target.port,
        speed: 10,
        syntheticBodies: false,
        clock,
        sleep,
        concurrency: 1
      })
      expect(r).toMatchObject({ messages: 2, sent: 2, failed: 0, storedBodies: 1, syntheticBodies: 1 })
      expect(slept).toEqual([6000])
      expect(target.messages.map((m) => m.from)).toEqual(["s-A@x.test", "s-B@x.test"])
      expect(target.messages[0]!.raw.equals(kept)).toBe(true)
      const synthetic = target.messages[1]!
      expect(synthetic.to).toEqual(["p@y.test", "q@y.test"])
      expect(synthetic.raw.length).toBe(5000)
      expect(synthetic.raw.toString()).toMatch(/X-Missive-Replay: synthetic body, 5000 bytes/)

      const forced = await Inject.inject(events, bodies, {
        from: 0,
        to: 100_000,
        host: "127.0.0.1",
        port: target.port,
        speed: 1000,
        syntheticBodies: true,
        clock,
        sleep
      })
      expect(forced).toMatchObject({ sent: 2, storedBodies: 0, syntheticBodies: 2 })
      // A's recorded size (62) is below a synthetic message's own headers: it gets just the headers.
      const sizes = target.messages
        .slice(2)
        .map((m) => m.raw.length)
        .sort((a, b) => a - b)
      expect(sizes[1]).toBe(5000)
      expect(sizes[0]).toBeLessThan(200)
    } finally {
      await target.close()
    }
  })

  it("synthetic bodies have exactly the recorded size (or just their headers when that is smaller)", () => {
    for (const size of [300, 301, 302, 303, 4096, 100_003])
      expect(Inject.syntheticBody({ id: "X", sender: "a@b.test", recipients: ["c@d.test"], size }).length).toBe(size)
    expect(Inject.syntheticBody({ id: "X", sender: "a@b.test", recipients: ["c@d.test"], size: 10 }).length).toBeLessThan(200)
  })
})
