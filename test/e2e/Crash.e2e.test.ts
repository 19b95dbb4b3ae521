// Nothing acknowledged is lost: 200 messages into a real node process, kill -9 mid-stream, restart,
// and every message that got a 250 is delivered. Duplicates (at-least-once) are counted and reported.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { freePort, rawMessage, send, spawnNode, tempDir, testConfig, waitFor, writeConfig, type ChildNode } from "../src/Harness.js"

describe("crash recovery", () => {
  let sink: CaptureServer
  let node: ChildNode | undefined
  const dir = tempDir()

  beforeAll(async () => {
    sink = await startCapture()
  })
  afterAll(async () => {
    await node?.stop()
    await sink?.close()
    dir.remove()
  })

  it("delivers every 250-answered message after kill -9 and restart", async () => {
    const port = await freePort()
    const config = writeConfig(
      dir.path,
      testConfig(`${dir.path}/data`, {
        listeners: { smtp: { host: "127.0.0.1", port }, submission: { enabled: false } },
        routes: { "sink.test": `127.0.0.1:${sink.port}` },
        relay: { relay_domains: ["sink.test"] }
      })
    )
    node = await spawnNode(config)
    const acknowledged = new Set<number>()
    const total = 200
    let next = 0
    let killed = false
    const worker = async () => {
      while (next < total) {
        const seq = next++
        const r = await send(
          port,
          { from: "load@sender.test", to: ["x@sink.test"] },
          rawMessage({ from: "load@sender.test", to: "x@sink.test", subject: `seq ${seq}`, headers: { "X-Seq": String(seq) } })
        )
        if (r.ok) acknowledged.add(seq)
        if (!killed && acknowledged.size >= 100) {
          killed = true
          await node!.kill9()
        }
      }
    }
    await Promise.all(Array.from({ length: 8 }, worker))
    expect(killed).toBe(true)
    const beforeRestart = acknowledged.size
    node = await spawnNode(config)
    // The rest of the traffic goes to the restarted node.
    for (let seq = total; seq < total + 20; seq++) {
      const r = await send(
        port,
        { from: "load@sender.test", to: ["x@sink.test"] },
        rawMessage({ from: "load@sender.test", to: "x@sink.test", subject: `seq ${seq}`, headers: { "X-Seq": String(seq) } })
      )
      if (r.ok) acknowledged.add(seq)
    }
    const seqOf = (raw: Buffer) => Number(/X-Seq: (\d+)/.exec(raw.toString())?.[1])
    await waitFor(
      "every acknowledged message delivered",
      () => {
        const got = new Set(sink.messages.map((m) => seqOf(m.raw)))
        return [...acknowledged].every((s) => got.has(s))
      },
      60_000
    )
    const counts = new Map<number, number>()
    for (const m of sink.messages) counts.set(seqOf(m.raw), (counts.get(seqOf(m.raw)) ?? 0) + 1)
    const lost = [...acknowledged].filter((s) => !counts.has(s))
    const duplicates = [...counts.values()].reduce((n, c) => n + (c - 1), 0)
    console.log(
      `crash test: acknowledged ${acknowledged.size} (${beforeRestart} before the kill), delivered ${counts.size} distinct, lost ${lost.length}, duplicates ${duplicates}`
    )
    expect(lost).toEqual([])
  }, 120_000)
})
