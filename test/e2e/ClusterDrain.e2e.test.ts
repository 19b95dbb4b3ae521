// Operating a cluster under load: a rolling restart — `missive cluster drain node-k`, the node exits 0, it is started
// again, then the next — while clients keep sending to all three nodes (a client whose node refuses or is down moves
// to the next node, as an MTA with several MX hosts would). Nothing acknowledged is lost, no 5xx; a fourth node that
// joins takes a share of the work at once. Loopback only.
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { missive, rawMessage, send, tempDir, waitFor } from "../src/Harness.js"
import { startMissiveCluster, type MissiveCluster } from "../src/MissiveCluster.js"
import { startNatsCluster, type NatsCluster } from "../src/Nats.js"

const seqOf = (raw: Buffer) => Number(/X-Seq: (\d+)/.exec(raw.toString())?.[1])
const msg = (seq: number) =>
  rawMessage({ from: "load@sender.test", to: "x@sink.test", subject: `seq ${seq}`, headers: { "X-Seq": String(seq) } })
const env = { from: "load@sender.test", to: ["x@sink.test"] }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe("cluster operations", () => {
  const dir = tempDir("missive-cdrain-")
  let nats: NatsCluster
  let sink: CaptureServer
  let cluster: MissiveCluster

  beforeAll(async () => {
    nats = await startNatsCluster(3)
    // The sink takes 30 ms per message, so a node always has deliveries in flight when it is drained.
    sink = await startCapture({ onData: () => new Promise((done) => setTimeout(() => done(undefined), 30)) })
    cluster = await startMissiveCluster({ dir: dir.path, nats: nats.urls, sinkPort: sink.port, size: 4, lease: "3s" })
    // The fourth node joins later (stopped now).
    await cluster.nodes[3]!.stop()
  }, 120_000)
  afterAll(async () => {
    await cluster?.stop()
    await sink?.close()
    await nats?.dispose()
    dir.remove()
  })

  it("rolling restart by drain under load: 0 lost, no 5xx, each drained node exits 0", async () => {
    const three = cluster.nodes.slice(0, 3)
    const acknowledged = new Set<number>()
    const replies = new Map<string, number>()
    let next = 0
    let running = true
    const clients = Array.from({ length: 6 }, async (_, w) => {
      let k = w % 3
      while (running) {
        const seq = next++
        for (let tries = 0; tries < 50; tries++) {
          const r = await send(three[k]!.port, env, msg(seq))
          const cls = r.ok ? "2" : (/^(\d)\d\d/.exec(r.response)?.[1] ?? "conn")
          replies.set(cls, (replies.get(cls) ?? 0) + 1)
          if (r.ok) {
            acknowledged.add(seq)
            break
          }
          k = (k + 1) % 3
          if (cls === "5") break
          await sleep(100)
        }
      }
    })
    const exits: Array<number | null> = []
    for (const node of three) {
      await sleep(3000)
      const child = node.proc()!
      const r = await missive("cluster", "drain", node.name, "--nats", nats.urls.join(","), "--timeout", "60")
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toContain(`${node.name}: drained and stopped`)
      exits.push(await child.exited)
      await node.start()
    }
    await sleep(2000)
    running = false
    await Promise.all(clients)
    const delivered = () => new Set(sink.messages.map((m) => seqOf(m.raw)))
    await waitFor("every acknowledged message delivered", () => [...acknowledged].every((s) => delivered().has(s)), 60_000).catch(
      () => undefined
    )
    const got = delivered()
    const lost = [...acknowledged].filter((s) => !got.has(s))
    const perSeq = new Map<number, number>()
    for (const m of sink.messages) perSeq.set(seqOf(m.raw), (perSeq.get(seqOf(m.raw)) ?? 0) + 1)
    const duplicates = [...perSeq.values()].reduce((n, c) => n + c - 1, 0)
    console.log(
      `cluster rolling restart: ${acknowledged.size} acknowledged, replies ${JSON.stringify(Object.fromEntries(replies))}, lost ${lost.length}, duplicates ${duplicates}, exit codes ${exits.join(",")}`
    )
    expect(exits).toEqual([0, 0, 0])
    expect(lost).toEqual([])
    expect(replies.get("5") ?? 0).toBe(0)
    expect(acknowledged.size).toBeGreaterThan(100)
  }, 300_000)

  it("a fourth node joining a running cluster takes a share of the work at once", async () => {
    const fourth = cluster.nodes[3]!
    await fourth.start()
    sink.messages.length = 0
    const sent: Array<Promise<unknown>> = []
    for (let seq = 100_000; seq < 100_120; seq++) sent.push(send(cluster.nodes[seq % 3]!.port, env, msg(seq)))
    await Promise.all(sent)
    await waitFor("120 delivered", () => new Set(sink.messages.map((m) => seqOf(m.raw))).size >= 120, 60_000)
    const byFourth = sink.messages.filter((m) => m.helo === fourth.helo).length
    console.log(`cluster join: 120 messages accepted by nodes 1-3, ${byFourth} delivered by the node that joined`)
    // The inbox consumer hands work to every node that pulls: the newcomer delivers some without any rebalancing.
    expect(byFourth).toBeGreaterThan(0)
  }, 120_000)
})
