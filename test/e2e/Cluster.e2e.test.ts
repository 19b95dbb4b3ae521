// A 3-node Missive cluster on a 3-server NATS JetStream cluster (R3): every node accepts and mail accepted by each
// is delivered; then kill -9 of one node while mail flows, and its messages are delivered by the others.
// Summary lines report acknowledged, delivered, lost and duplicates; lost must be 0.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { rawMessage, send, tempDir, waitFor } from "../src/Harness.js"
import { startMissiveCluster, type MissiveCluster } from "../src/MissiveCluster.js"
import { startNatsCluster, type NatsCluster } from "../src/Nats.js"

const seqOf = (raw: Buffer) => Number(/X-Seq: (\d+)/.exec(raw.toString())?.[1])
const msg = (seq: number) =>
  rawMessage({ from: "load@sender.test", to: "x@sink.test", subject: `seq ${seq}`, headers: { "X-Seq": String(seq) } })
const env = { from: "load@sender.test", to: ["x@sink.test"] }

describe("cluster", () => {
  const dir = tempDir("missive-cluster-")
  let nats: NatsCluster
  let sink: CaptureServer
  let cluster: MissiveCluster

  beforeAll(async () => {
    nats = await startNatsCluster(3)
    sink = await startCapture()
    cluster = await startMissiveCluster({ dir: dir.path, nats: nats.urls, sinkPort: sink.port, lease: "3s" })
  }, 120_000)
  afterAll(async () => {
    await cluster?.stop()
    await sink?.close()
    await nats?.dispose()
    dir.remove()
  })

  const counts = () => {
    const c = new Map<number, number>()
    for (const m of sink.messages) c.set(seqOf(m.raw), (c.get(seqOf(m.raw)) ?? 0) + 1)
    return c
  }

  it("delivers mail accepted by every node", async () => {
    const acked: Array<number> = []
    for (let seq = 0; seq < 30; seq++) {
      const node = cluster.nodes[seq % 3]!
      const r = await send(node.port, env, msg(seq))
      expect(r.response).toMatch(/^250/)
      acked.push(seq)
    }
    await waitFor("all 30 delivered", () => acked.every((s) => counts().has(s)), 60_000)
    const byHelo = new Map<string, number>()
    for (const m of sink.messages) byHelo.set(m.helo, (byHelo.get(m.helo) ?? 0) + 1)
    console.log(`cluster delivery: 30 accepted (10 per node), delivered by ${JSON.stringify(Object.fromEntries(byHelo))}`)
    expect(byHelo.size).toBe(3)
  }, 120_000)

  it("kill -9 of a node while mail flows: every 250-answered message is delivered by the others", async () => {
    sink.messages.length = 0
    const total = Number(process.env["MISSIVE_CLUSTER_LOAD"] ?? 1000)
    const acknowledged = new Set<number>()
    let next = 100_000
    const end = next + total
    let kills = 0
    const killer = (async () => {
      // kill -9 one node every few seconds (node-2, then node-3, …), restarting it after.
      for (let k = 0; next < end && k < 6; k++) {
        await new Promise((r) => setTimeout(r, 3000))
        if (next >= end) break
        const victim = cluster.nodes[1 + (k % 2)]!
        await victim.kill9()
        kills += 1
        await new Promise((r) => setTimeout(r, 1500))
        await victim.start()
      }
    })()
    const worker = async (w: number) => {
      while (next < end) {
        const seq = next++
        const node = cluster.nodes[(seq + w) % 3]!
        if (!node.proc()) {
          next--
          await new Promise((r) => setTimeout(r, 50))
          continue
        }
        const r = await send(node.port, env, msg(seq))
        if (r.ok) acknowledged.add(seq)
      }
    }
    await Promise.all(Array.from({ length: 8 }, (_, w) => worker(w)))
    await killer
    await waitFor("every acknowledged message delivered", () => [...acknowledged].every((s) => counts().has(s)), 90_000).catch(
      () => undefined
    )
    const c = counts()
    const lost = [...acknowledged].filter((s) => !c.has(s))
    const duplicates = [...c.values()].reduce((n, x) => n + (x - 1), 0)
    console.log(
      `cluster kill -9: ${total} sent, ${acknowledged.size} answered 250, ${kills} kills, delivered ${c.size} distinct, lost ${lost.length}, duplicates ${duplicates}`
    )
    expect(kills).toBeGreaterThan(0)
    expect(lost).toEqual([])
  }, 240_000)
})
