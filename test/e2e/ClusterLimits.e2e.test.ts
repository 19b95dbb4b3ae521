// Per-destination concurrency holds cluster-wide: 3 nodes with `delivery.concurrency_per_destination: 2` never have
// more than 2 connections open at once to one receiver (the capture server counts its open sessions), while mail
// accepted by all three nodes is delivered.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { rawMessage, send, tempDir, waitFor } from "../src/Harness.js"
import { startMissiveCluster, type MissiveCluster } from "../src/MissiveCluster.js"
import { startNatsCluster, type NatsCluster } from "../src/Nats.js"

const seqOf = (raw: Buffer) => Number(/X-Seq: (\d+)/.exec(raw.toString())?.[1])
const env = { from: "load@sender.test", to: ["x@sink.test"] }

describe("cluster-wide destination limits", () => {
  const dir = tempDir("missive-climit-")
  let nats: NatsCluster
  let sink: CaptureServer
  let cluster: MissiveCluster
  let maxOpen = 0
  let inData = 0
  let maxInData = 0

  beforeAll(async () => {
    nats = await startNatsCluster(3)
    sink = await startCapture({
      onData: () => {
        inData += 1
        maxInData = Math.max(maxInData, inData)
        return new Promise((done) =>
          setTimeout(() => {
            inData -= 1
            done(undefined)
          }, 150)
        )
      }
    })
    cluster = await startMissiveCluster({
      dir: dir.path,
      nats: nats.urls,
      sinkPort: sink.port,
      lease: "3s",
      extra: { delivery: { concurrency_per_destination: 2 } }
    })
  }, 120_000)
  afterAll(async () => {
    await cluster?.stop()
    await sink?.close()
    await nats?.dispose()
    dir.remove()
  })

  it("3 nodes with concurrency_per_destination 2 never open more than 2 connections to one receiver", async () => {
    const sampler = setInterval(() => {
      maxOpen = Math.max(maxOpen, sink.open)
    }, 2)
    try {
      const total = 60
      await Promise.all(
        Array.from({ length: total }, async (_, seq) => {
          const r = await send(
            cluster.nodes[seq % 3]!.port,
            env,
            rawMessage({ from: env.from, to: "x@sink.test", subject: `seq ${seq}`, headers: { "X-Seq": String(seq) } })
          )
          expect(r.response).toMatch(/^250/)
        })
      )
      await waitFor("all delivered", () => new Set(sink.messages.map((m) => seqOf(m.raw))).size === total, 90_000)
      // Connections stay pooled for a few seconds after the last message: keep sampling until they close.
      await waitFor("connections closed", () => sink.open === 0, 30_000)
    } finally {
      clearInterval(sampler)
    }
    const byHelo = new Map<string, number>()
    for (const m of sink.messages) byHelo.set(m.helo, (byHelo.get(m.helo) ?? 0) + 1)
    console.log(
      `cluster limits: 60 messages via 3 nodes, limit 2: at most ${maxOpen} connections open and ${maxInData} in DATA at once; connections ${sink.connections}; delivered by ${JSON.stringify(Object.fromEntries(byHelo))}`
    )
    expect(maxOpen).toBeLessThanOrEqual(2)
    expect(maxInData).toBeLessThanOrEqual(2)
    expect(maxOpen).toBeGreaterThan(0)
  }, 180_000)
})
