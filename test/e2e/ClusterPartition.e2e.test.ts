// A network partition: one nats-server and its Missive node cut off from the other two, then healed, under load.
// Each of 3 network namespaces (src/Netns.ts; root only) holds nats-server k and node k; the cluster bridge carries
// routes and node↔server traffic, the service bridge carries SMTP between the test process and each node (clients in,
// deliveries out to the capture sink). Cutting ns-1 from the cluster bridge leaves server 1 and node 1 a minority
// that the test can still reach over SMTP. A 250 means the carrier reached a quorum of the R3 inbox shard, which the
// minority cannot have: node 1 must answer 4xx, never 250, to every transaction started after the cut, while nodes 2
// and 3 keep answering 250. After the heal every message answered 250 anywhere is delivered (lost 0); duplicates are
// reported (the at-least-once window). Two cuts and heals by default (MISSIVE_PARTITION_CYCLES): a loss seen on
// nats-server 2.10 came about once in 16 of them.
import { mkdirSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { spawn, type ChildProcess } from "node:child_process"
import { stringify } from "yaml"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startCapture, type CaptureServer } from "../src/CaptureServer.js"
import { linesMentioning, rawMessage, send, spawnNode, tempDir, testConfig, type ChildNode } from "../src/Harness.js"
import { checkSynced, jetStreamReady } from "../src/Nats.js"
import { createPartitionNet, type PartitionNet } from "../src/Netns.js"
import { connect } from "@nats-io/transport-node"
import { jetstreamManager } from "@nats-io/jetstream"
import { JetStreamInbox } from "@missive/events"

const N = 3
const LEASE_MS = 3000
const GRACE_MS = 2 * LEASE_MS
const WARMUP_MS = 5000
const PARTITION_MS = 15_000
const AFTER_HEAL_MS = 10_000
const CYCLES = Math.max(1, Number(process.env["MISSIVE_PARTITION_CYCLES"] ?? 2))
/**
 * SMTP clients per node. Nodes 2 and 3 get back-to-back load. Node 1 (the minority) answers a transaction only after
 * its accept commit has timed out on every inbox shard (3 × 3 s), so its clients are more, and each pauses a random
 * 0–3 s between transactions: some start right after the cut and are answered before the heal.
 */
const CLIENTS = [8, 2, 2]
const NODE1_GAP_MS = 3000
const SMTP_PORT = 2525
const NATS_PORT = 4222
const ROUTE_PORT = 6222
const MONITOR_PORT = 8222

const env = { from: "load@sender.test", to: ["x@sink.test"] }
const msg = (seq: number) =>
  rawMessage({ from: "load@sender.test", to: "x@sink.test", subject: `seq ${seq}`, headers: { "X-Seq": String(seq) } })
const seqOf = (raw: Buffer) => Number(/X-Seq: (\d+)/.exec(raw.toString("latin1"))?.[1])
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Server {
  readonly proc: ChildProcess
  readonly exited: Promise<void>
  err: string
}

/** nats-server k inside ns k: clients on every address of its namespace, routes and monitoring on its own bridges. */
const startServer = async (net: PartitionNet, dir: string, k: number): Promise<Server> => {
  const d = join(dir, `s${k}`)
  mkdirSync(d, { recursive: true })
  const all = Array.from({ length: N }, (_, i) => i + 1)
  const conf = join(d, "server.conf")
  writeFileSync(
    conf,
    [
      `server_name: s${k}`,
      `listen: 0.0.0.0:${NATS_PORT}`,
      `http: "${net.serviceAddress(k)}:${MONITOR_PORT}"`,
      `jetstream { store_dir: "${join(d, "js")}", max_file_store: 2G, max_memory_store: 256M, sync_interval: always }`,
      // Routes to all three, its own included (skipped by the server), as NATS documents.
      // no_advertise: clients keep the URLs they were given (node k: its own server, then the others' cluster addresses).
      `cluster { name: missive, listen: "${net.clusterAddress(k)}:${ROUTE_PORT}", no_advertise: true, routes: [${all.map((j) => `nats-route://${net.clusterAddress(j)}:${ROUTE_PORT}`).join(", ")}] }`
    ].join("\n")
  )
  const proc = spawn(net.exec(k)[0]!, [...net.exec(k).slice(1), "nats-server", "-c", conf], { stdio: ["ignore", "ignore", "pipe"] })
  const s: Server = { proc, exited: new Promise((done) => proc.once("exit", () => done())), err: "" }
  proc.stderr!.on("data", (b: Buffer) => {
    s.err = (s.err + b.toString()).slice(-4000)
  })
  const monitor = `http://${net.serviceAddress(k)}:${MONITOR_PORT}`
  for (let deadline = Date.now() + 15_000; ; await sleep(100)) {
    if (proc.exitCode !== null) throw new Error(`nats-server s${k} exited at start:\n${s.err}`)
    try {
      await checkSynced(`s${k}`, monitor)
      return s
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`nats-server s${k}: ${String(e)}\n${s.err}`)
    }
  }
}

const READY_MS = 30_000

/** A server's view of the cluster, for a failure message: its routes and JetStream meta group. */
const serverState = async (net: PartitionNet, k: number): Promise<string> => {
  const monitor = `http://${net.serviceAddress(k)}:${MONITOR_PORT}`
  try {
    const routez = (await (await fetch(`${monitor}/routez`, { signal: AbortSignal.timeout(2000) })).json()) as {
      num_routes?: number
      routes?: Array<{ remote_name?: string; ip?: string }>
    }
    const jsz = (await (await fetch(`${monitor}/jsz`, { signal: AbortSignal.timeout(2000) })).json()) as {
      meta_cluster?: { leader?: string; cluster_size?: number; replicas?: Array<{ name?: string; current?: boolean; offline?: boolean }> }
    }
    const names = [...new Set((routez.routes ?? []).map((r) => `${r.remote_name ?? "?"}@${r.ip ?? "?"}`))]
    return `routes ${routez.num_routes ?? 0} [${names.join(", ")}], meta ${JSON.stringify(jsz.meta_cluster ?? null)}`
  } catch (e) {
    return `monitor unreachable: ${String(e)}`
  }
}

interface Reply {
  readonly node: number
  readonly seq: number
  readonly start: number
  readonly end: number
  readonly cls: string
  readonly response: string
}
interface Arrival {
  readonly at: number
  readonly seq: number
  readonly node: number
}

/** The 250 a seq got, and the message id it named. */
const acceptOf = (replies: ReadonlyArray<Reply>, seq: number): { reply?: Reply; id?: string } => {
  const reply = replies.find((x) => x.seq === seq && x.cls === "2")
  const id = /queued as (\S+)/.exec(reply?.response ?? "")?.[1]
  return { ...(reply ? { reply } : {}), ...(id ? { id } : {}) }
}

/**
 * What each node logged about a lost message (at most three), by the id its 250 named: put in the assertion's message,
 * the part of a failed run CI keeps, since the log tails printed above are cut from it.
 */
const lostStory = (lost: ReadonlyArray<number>, replies: ReadonlyArray<Reply>, cutAt: number, healAt: number): string => {
  const lines: Array<string> = [`cut at 0 ms, healed at ${healAt - cutAt} ms`]
  for (const seq of lost.slice(0, 3)) {
    const { reply: r, id } = acceptOf(replies, seq)
    lines.push(
      `seq ${seq}: node-${r?.node} answered ${r?.start !== undefined ? r.start - cutAt : "?"}..${r?.end !== undefined ? r.end - cutAt : "?"} ms: ${r?.response}`
    )
    if (!id) continue
    for (const [i, c] of nodes.entries())
      for (const l of linesMentioning(c.output(), id, 12)) lines.push(`  node-${i + 1}: ${l.slice(0, 240)}`)
  }
  return lines.join("\n")
}

/**
 * Where a lost message's carrier is, seen from server k after the run: each inbox shard's stream and `drive` consumer
 * state (pending, waiting for an ack, redelivered, floors) and, per lost id, the shard and sequence holding it, or
 * "none". Tells a carrier the consumer never gave out (or a node holds forever) from one removed from the stream.
 */
const inboxStory = async (net: PartitionNet, k: number, ids: ReadonlyArray<string>): Promise<string> => {
  const nc = await connect({ servers: [`nats://${net.serviceAddress(k)}:${NATS_PORT}`], timeout: 3000 })
  try {
    const jsm = await jetstreamManager(nc, { checkAPI: false })
    const inbox = await JetStreamInbox.open({ nc, replicas: 3 })
    const lines: Array<string> = []
    for (const name of inbox.streams) {
      const si = await jsm.streams.info(name)
      const ci = await jsm.consumers.info(name, inbox.consumer)
      lines.push(
        `${name}: leader ${si.cluster?.leader} msgs ${si.state.messages} seq ${si.state.first_seq}..${si.state.last_seq}; ` +
          `drive: leader ${ci.cluster?.leader} delivered ${ci.delivered.stream_seq} ack floor ${ci.ack_floor.stream_seq} ` +
          `pending ${ci.num_pending} ack pending ${ci.num_ack_pending} redelivered ${ci.num_redelivered} waiting ${ci.num_waiting}`
      )
    }
    const it = await nc.requestMany("missive.cluster.status", "", { maxWait: 1500 })
    for await (const m of it) if (m.data.length > 0) lines.push(`status: ${m.string()}`)
    for (const id of ids) {
      const f = await inbox.find(id).catch((e: unknown) => String(e))
      lines.push(
        `${id}: ${f === null ? "no carrier" : typeof f === "string" ? f : `shard ${f.shard} seq ${f.seq}${f.inBatch ? " (batch)" : ""}`}`
      )
    }
    return lines.join("\n")
  } catch (e) {
    return `inbox unreadable from s${k}: ${String(e)}`
  } finally {
    await nc.close()
  }
}

const nodes: Array<ChildNode> = []

describe("cluster partition", () => {
  const dir = tempDir("missive-cpart-")
  let net: PartitionNet | undefined
  const servers: Array<Server> = []
  let sink: CaptureServer
  const arrivals: Array<Arrival> = []

  beforeAll(async () => {
    // A cluster that has not formed within READY_MS (seen once in CI: a meta leader, but R3 placement refused for
    // 90 s) is torn down with its namespaces, after its state is printed, and built again: up to 3 times.
    for (let round = 1; ; round++) {
      net = createPartitionNet(N)
      const n = net
      const roundDir = join(dir.path, `round-${round}`)
      for (let k = 1; k <= N; k++) servers.push(await startServer(n, roundDir, k))
      try {
        await jetStreamReady(
          Array.from({ length: N }, (_, i) => `nats://${n.serviceAddress(i + 1)}:${NATS_PORT}`),
          N,
          READY_MS
        )
        break
      } catch (e) {
        for (const [i, s] of servers.entries())
          console.log(`---- nats-server s${i + 1}, round ${round}: ${await serverState(n, i + 1)}\n${s.err}`)
        for (const s of servers.splice(0)) {
          s.proc.kill("SIGKILL")
          await s.exited
        }
        n.dispose()
        net = undefined
        if (round === 3) throw e
      }
    }
    const n = net!
    sink = await startCapture({
      host: n.host,
      onData: (m) => {
        arrivals.push({ at: Date.now(), seq: seqOf(m.raw), node: Number(/^n(\d+)\./.exec(m.helo)?.[1]) })
        return undefined
      }
    })
    for (let k = 1; k <= N; k++) {
      const others = Array.from({ length: N }, (_, i) => i + 1).filter((j) => j !== k)
      const path = join(dir.path, `node-${k}.yaml`)
      writeFileSync(
        path,
        stringify(
          testConfig(join(dir.path, `node-${k}`), {
            hostname: `n${k}.missive.test`,
            node_id: `node-${k}`,
            listeners: { smtp: { host: n.serviceAddress(k), port: SMTP_PORT }, submission: { enabled: false } },
            routes: { "sink.test": `${n.host}:${sink.port}` },
            relay: { relay_domains: ["sink.test"] },
            cluster: {
              nats: [`nats://127.0.0.1:${NATS_PORT}`, ...others.map((j) => `nats://${n.clusterAddress(j)}:${NATS_PORT}`)],
              lease: `${LEASE_MS}ms`,
              replicas: 3
            }
          })
        )
      )
      nodes.push(await spawnNode(path, n.exec(k)))
    }
  }, 180_000)

  afterAll(async () => {
    await Promise.all(nodes.map((c) => c.kill9()))
    for (const s of servers) s.proc.kill("SIGKILL")
    await Promise.all(servers.map((s) => s.exited))
    await sink?.close()
    net?.dispose()
    rmSync(dir.path, { recursive: true, force: true })
  })

  it(
    "one nats-server and its node cut off, then healed: the minority answers 4xx, never 250; 0 lost",
    async () => {
      const n = net!
      const replies: Array<Reply> = []
      let next = 0
      let running = true
      const clients = CLIENTS.flatMap((count, i) =>
        Array.from({ length: count }, async () => {
          const node = i + 1
          while (running) {
            const seq = next++
            const start = Date.now()
            const r = await send(SMTP_PORT, env, msg(seq), { host: n.serviceAddress(node) })
            const cls = r.ok ? "2" : (/^(\d)\d\d/.exec(r.response)?.[1] ?? "conn")
            replies.push({ node, seq, start, end: Date.now(), cls, response: r.response })
            if (node === 1) await sleep(Math.random() * NODE1_GAP_MS)
            else if (!r.ok) await sleep(100)
          }
        })
      )
      await sleep(WARMUP_MS)
      // More than one cut and heal (MISSIVE_PARTITION_CYCLES, default 2) for a longer hunt: every check below holds for
      // each cut (the minority put to the test: in at least one of them); the printed figures are the last one's.
      const cuts: Array<{ cut: number; heal: number }> = []
      for (let cycle = 0; cycle < CYCLES; cycle++) {
        const cut = Date.now()
        n.cut(1)
        await sleep(PARTITION_MS)
        const heal = Date.now()
        n.heal(1)
        cuts.push({ cut, heal })
        await sleep(AFTER_HEAL_MS)
      }
      const { cut: cutAt, heal: healAt } = cuts.at(-1)!
      const inAnyCut = (r: Reply, f: (c: { cut: number; heal: number }) => boolean) => r.node === 1 && cuts.some(f)
      running = false
      await Promise.all(clients)

      const acknowledged = new Set(replies.filter((r) => r.cls === "2").map((r) => r.seq))
      const delivered = () => new Set(arrivals.map((a) => a.seq))
      const stoppedAt = Date.now()
      for (let deadline = Date.now() + 60_000; Date.now() < deadline && [...acknowledged].some((s) => !delivered().has(s));)
        await sleep(250)
      const got = delivered()
      const drainedMs = Date.now() - stoppedAt
      const lost = [...acknowledged].filter((s) => !got.has(s)).sort((a, b) => a - b)
      const perSeq = new Map<number, number>()
      for (const a of arrivals) perSeq.set(a.seq, (perSeq.get(a.seq) ?? 0) + 1)
      const duplicates = [...perSeq.values()].reduce((d, c) => d + c - 1, 0)

      // During the partition: transactions started after the cut and answered before the heal. (One started during the
      // cut and answered after the heal may well get a 250: its publish can reach the quorum once the link is back.)
      const during = (k: number, only?: { cut: number; heal: number }) =>
        replies.filter((r) => r.node === k && (only ? [only] : cuts).some((c) => r.start >= c.cut && r.end <= c.heal))
      const classes = (rs: ReadonlyArray<Reply>) => {
        const m: Record<string, number> = {}
        for (const r of rs) m[r.cls] = (m[r.cls] ?? 0) + 1
        return m
      }
      // In flight at the cut: started before it, answered 250 after it (legitimate if the commit reached the quorum first).
      const inFlight250 = replies.filter((r) => r.cls === "2" && inAnyCut(r, (c) => r.start < c.cut && r.end >= c.cut))
      const late250 = inFlight250.filter((r) => inAnyCut(r, (c) => r.end > c.cut + GRACE_MS && r.end <= c.heal))
      const minority250 = during(1).filter((r) => r.cls === "2")
      const steady = (k: number) => replies.filter((r) => r.node === k && cuts.some((c) => r.start >= c.cut + GRACE_MS && r.end <= c.heal))
      const straddlingIn = (c: { cut: number; heal: number }) =>
        replies.filter((r) => r.node === 1 && r.start >= c.cut && r.start < c.heal && r.end > c.heal)
      const straddling = straddlingIn(cuts.at(-1)!)
      const latencies = during(1, cuts.at(-1))
        .map((r) => r.end - r.start)
        .sort((a, b) => a - b)
      const median = latencies.length ? latencies[Math.floor(latencies.length / 2)]! : 0
      const firstAfterHeal = replies.filter((r) => r.node === 1 && r.start >= healAt && r.cls === "2").sort((a, b) => a.end - b.end)[0]
      // Deliveries by node 1 while cut off, after its tokens' AckWait had run out: peers may have taken them over.
      const staleDeliveries = arrivals.filter((a) => a.node === 1 && cuts.some((c) => a.at > c.cut + LEASE_MS + 1000 && a.at < c.heal))
      const node1DuringCut = arrivals.filter((a) => a.node === 1 && a.at > cutAt && a.at < healAt)
      const share = (k: number) => {
        const rs = steady(k)
        return rs.length === 0 ? "-" : `${Math.round((100 * rs.filter((r) => r.cls === "2").length) / rs.length)}%`
      }
      console.log(
        `cluster partition: ${replies.length} transactions, ${acknowledged.size} answered 250, lost ${lost.length} ` +
          `(all delivered ${(drainedMs / 1000).toFixed(1)} s after the load stopped), duplicates ${duplicates}; ` +
          `during the ${PARTITION_MS / 1000} s cut: node-1 ${JSON.stringify(classes(during(1, cuts.at(-1))))} (250s started after the cut ${minority250.length}, ` +
          `in flight at the cut ${inFlight250.length}, of them after ${GRACE_MS} ms ${late250.length}; answer after median ${(median / 1000).toFixed(1)} s, ` +
          `max ${((latencies.at(-1) ?? 0) / 1000).toFixed(1)} s; started during the cut, answered after the heal ${JSON.stringify(classes(straddling))}), ` +
          `node-2 ${JSON.stringify(classes(during(2, cuts.at(-1))))}, node-3 ${JSON.stringify(classes(during(3, cuts.at(-1))))}; ` +
          `250 share after the grace: node-2 ${share(2)}, node-3 ${share(3)}; ` +
          `node-1 deliveries while cut ${node1DuringCut.length} (after its lease ${staleDeliveries.length}); ` +
          `node-1's first 250 ${firstAfterHeal ? `${((firstAfterHeal.end - healAt) / 1000).toFixed(1)} s` : "never"} after the heal; ` +
          `after the heal: ${[1, 2, 3].map((k) => `node-${k} ${JSON.stringify(classes(replies.filter((r) => r.node === k && r.start >= healAt)))}`).join(", ")}`
      )
      const other4xx = during(1).filter((r) => r.cls !== "4")
      if (minority250.length > 0 || late250.length > 0 || other4xx.length > 0 || lost.length > 0) {
        console.log(
          "node-1 transactions from the cut on (ms from the cut):",
          JSON.stringify(
            replies.filter((r) => r.node === 1 && r.end >= cutAt).map((r) => [r.start - cutAt, r.end - cutAt, r.response.slice(0, 80)])
          )
        )
        if (lost.length > 0) console.log("lost seqs:", lost.slice(0, 50).join(","))
        for (const [i, c] of nodes.entries()) console.log(`---- node-${i + 1} log (tail)\n${c.output().split("\n").slice(-80).join("\n")}`)
      }

      expect(minority250).toEqual([])
      expect(late250).toEqual([])
      // The minority was put to the test: transactions started during a cut were answered (on a loaded machine its 4xx
      // may come only after the heal, once the accept commit has timed out on every shard; in one cut of 21 here every
      // one still waiting then got its 250 after the heal, which is why more cuts count together).
      expect(during(1).length + cuts.flatMap(straddlingIn).filter((r) => r.cls === "4").length).toBeGreaterThan(0)
      expect(other4xx).toEqual([])
      for (const k of [2, 3]) expect(steady(k).filter((r) => r.cls === "2").length).toBeGreaterThan(0)
      expect(replies.some((r) => r.cls === "5")).toBe(false)
      const lostIds = lost.flatMap((seq) => acceptOf(replies, seq).id ?? [])
      const inbox = lost.length > 0 ? await inboxStory(n, 2, lostIds.slice(0, 3)) : ""
      if (inbox) console.log(`inbox after the run:\n${inbox}`)
      expect(lost, `${lostStory(lost, replies, cutAt, healAt)}\n${inbox}`).toEqual([])
      expect(acknowledged.size).toBeGreaterThan(100)
    },
    200_000 + (CYCLES - 1) * (PARTITION_MS + AFTER_HEAL_MS)
  )
})
