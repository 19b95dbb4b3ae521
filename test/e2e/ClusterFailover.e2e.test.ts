// kill -9 of one node of a 3-node cluster that is NOT restarted: every message it held — deliveries in flight
// (hanging at the receiver when it died) and retries it had scheduled (deferred by a 451) — is delivered by the live
// peers. Any node may drive what any node accepted (the inbox consumer hands messages out), so the victim holds its
// share of the 20. No timing assertion: the failover time is measured by bench/cluster.bench.ts.
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { rawMessage, send, tempDir, waitFor } from "../src/Harness.js"
import { startMissiveCluster, type MissiveCluster } from "../src/MissiveCluster.js"
import { startNatsCluster, type NatsCluster } from "../src/Nats.js"
import { streams } from "../src/JetStreamState.js"
import { connect } from "@nats-io/transport-node"

const seqOf = (raw: Buffer) => Number(/X-Seq: (\d+)/.exec(raw.toString())?.[1])
const msg = (seq: number) =>
  rawMessage({ from: "load@sender.test", to: "x@sink.test", subject: `seq ${seq}`, headers: { "X-Seq": String(seq) } })
const env = { from: "load@sender.test", to: ["x@sink.test"] }

describe("cluster failover without restart", () => {
  const dir = tempDir("missive-cfail-")
  let nats: NatsCluster
  let sink: CaptureServer
  let cluster: MissiveCluster
  /** Attempts seen per seq, by helo. */
  const attempts = new Map<number, Array<string>>()

  beforeAll(async () => {
    nats = await startNatsCluster(3)
    sink = await startCapture({
      onData: (m) => {
        const seq = seqOf(m.raw)
        const seen = attempts.get(seq) ?? []
        attempts.set(seq, [...seen, m.helo])
        // Even seqs: the first attempt gets 451 (a scheduled retry). Odd seqs: node-1's attempts hang (in flight).
        if (seq % 2 === 0 && seen.length === 0) return { code: 451, text: "4.7.1 try again later" }
        if (seq % 2 === 1 && m.helo === "n1.missive.test") return new Promise(() => {})
        return undefined
      }
    })
    cluster = await startMissiveCluster({
      dir: dir.path,
      nats: nats.urls,
      sinkPort: sink.port,
      lease: "3s",
      extra: { retry: { initial: "8s", max: "20s", multiplier: 2, jitter: 0, lifetime: "1h" } }
    })
  }, 120_000)
  afterAll(async () => {
    await cluster?.stop()
    await sink?.close()
    await nats?.dispose()
    dir.remove()
  })

  it("kill -9 of a node, not restarted: its in-flight and scheduled-retry mail is delivered by the live peers", async () => {
    const victim = cluster.nodes[0]!
    const seqs = Array.from({ length: 20 }, (_, i) => i)
    for (const seq of seqs) {
      const r = await send(victim.port, env, msg(seq))
      expect(r.response).toMatch(/^250/)
    }
    // Every message has been tried: the even ones are deferred (retry due in 8 s), node-1's odd ones hang in DATA.
    await waitFor("all 20 attempted", () => seqs.every((s) => (attempts.get(s) ?? []).length > 0), 30_000)
    const victimHeld = seqs.filter((s) => (attempts.get(s) ?? []).includes(victim.helo))
    await victim.kill9()
    const delivered = () => new Set(sink.messages.map((m) => seqOf(m.raw)))
    await waitFor("all 20 delivered by the live peers", () => seqs.every((s) => delivered().has(s)), 90_000).catch(() => undefined)
    const got = delivered()
    const lost = seqs.filter((s) => !got.has(s))
    const byVictim = sink.messages.filter((m) => m.helo === victim.helo).length
    const perSeq = new Map<number, number>()
    for (const m of sink.messages) perSeq.set(seqOf(m.raw), (perSeq.get(seqOf(m.raw)) ?? 0) + 1)
    const duplicates = [...perSeq.values()].reduce((n, c) => n + c - 1, 0)
    console.log(
      `cluster kill -9 without restart: 20 accepted by node-1, ${victimHeld.length} of them tried by node-1 before it died, delivered ${got.size} (${sink.messages.length - byVictim} by peers), lost ${lost.length}, duplicates ${duplicates}`
    )
    if (lost.length > 0)
      console.log(`lost seqs and who tried them: ${lost.map((s) => `${s}:[${(attempts.get(s) ?? []).join(",")}]`).join(" ")}`)
    // On a loss, what the live peers logged about it (warnings and errors) says where it stopped.
    if (lost.length > 0)
      for (const n of cluster.nodes.slice(1))
        console.log(
          `---- ${n.name} (warn/error, last 30)\n` +
            (n.proc()?.output() ?? "")
              .split("\n")
              .filter((l) => /"level":"(warn|error)"/.test(l) && !l.includes("admin listener"))
              .slice(-30)
              .map((l) => l.slice(0, 400))
              .join("\n")
        )
    if (lost.length > 0 && process.env["MISSIVE_TEST_DUMP"])
      for (const n of cluster.nodes.slice(1))
        writeFileSync(join(process.env["MISSIVE_TEST_DUMP"], `${n.name}.log`), n.proc()?.output() ?? "")
    // …and where JetStream holds the work: the inbox consumers' pending and unacknowledged counts.
    if (lost.length > 0) {
      const nc = await connect({ servers: [...nats.urls] })
      for (const s of await streams(nc))
        if (s.workQueue) console.log(`---- ${s.name}: ${s.messages} stored, leader ${s.leader}; consumers ${JSON.stringify(s.consumers)}`)
      await nc.close()
    }
    expect(victimHeld.length).toBeGreaterThan(0)
    expect(lost).toEqual([])
    expect(byVictim).toBe(0)
  }, 180_000)
})
