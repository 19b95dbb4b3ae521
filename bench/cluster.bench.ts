// Cluster benchmark: relay throughput and CPU per message of a 3-node Missive cluster on a 3-server NATS JetStream
// cluster (R3), against one embedded node in the same run (smtp-source → Missive → smtp-sink, loopback); then the
// failover time: kill -9 of a node that holds accepted-but-undelivered mail (its deliveries hang at a slow sink)
// until a peer delivers the first of that node's messages, repeated. Everything real processes; loopback only.
import { execFile } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { promisify } from "node:util"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import { stringify } from "yaml"
import { startCapture } from "../test/src/CaptureServer.js"
import { opsBetween, streams, workLeft, type Ops } from "../test/src/JetStreamState.js"
import { startNatsCluster, startNatsServer, type NatsCluster, type NatsServer } from "../test/src/Nats.js"
import { runLoad } from "./lib/Load.js"
import * as Postfix from "./Postfix.js"
import { JetStreamInbox } from "@missive/events"
import { ClusterRuntime, ClusterWork, Placement } from "@missive/node"
import type { Message } from "@missive/core"
import { headers } from "@nats-io/transport-node"
import { startRelay } from "./relay.bench.js"
import { cpuMs, fnv1a32, freePort, percentile, startChild, type Child } from "../test/src/Support.js"

const exec = promisify(execFile)
const ROOT = resolve(import.meta.dirname, "..")
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const LEASE_MS = 4_000

interface Sink {
  readonly port: number
  readonly child: Child
  count(): number
}

/** smtp-sink with running counters (-c): the last `mesg=N` on its output is the number of messages received. */
const startSink = async (): Promise<Sink> => {
  const port = await freePort()
  const child = await startChild("smtp-sink", ["-c", "-u", "nobody", `127.0.0.1:${port}`, "1024"], () => true)
  await sleep(300)
  return {
    port,
    child,
    count: () => {
      const out = child.output()
      const i = out.lastIndexOf("mesg=")
      return i < 0 ? 0 : parseInt(out.slice(i + 5), 10)
    }
  }
}

const waitUntil = async (what: string, f: () => boolean | Promise<boolean>, ms: number): Promise<number> => {
  const deadline = performance.now() + ms
  while (!(await f())) {
    if (performance.now() > deadline) throw new Error(`${what}: not reached in ${ms} ms`)
    await sleep(20)
  }
  return performance.now()
}

interface ClusterNode {
  readonly name: string
  readonly helo: string
  readonly port: number
  readonly config: string
  child: Child | undefined
}

const startClusterNode = async (n: ClusterNode): Promise<void> => {
  n.child = await startChild(
    process.execPath,
    [join(ROOT, "bin/missive.mjs"), "start", "--config", n.config, "--allow-root"],
    (o) => o.includes("listening on"),
    { cwd: ROOT, timeoutMs: 90_000 }
  )
}

const configNodes = async (
  dir: string,
  nats: ReadonlyArray<string>,
  sinkPort: number,
  slowPort: number,
  latPort: number
): Promise<Array<ClusterNode>> => {
  const out: Array<ClusterNode> = []
  for (let k = 1; k <= 3; k++) {
    const port = await freePort()
    const dataDir = join(dir, `node-${k}`)
    mkdirSync(dataDir, { recursive: true })
    const helo = `n${k}.missive.test`
    const config = join(dir, `node-${k}.yaml`)
    writeFileSync(
      config,
      stringify({
        hostname: helo,
        node_id: `node-${k}`,
        data_dir: dataDir,
        listeners: { smtp: { host: "127.0.0.1", port }, submission: { enabled: false } },
        relay: { relay_domains: ["sink.test", "slow.test", "lat.test"] },
        routes: { "sink.test": `127.0.0.1:${sinkPort}`, "slow.test": `127.0.0.1:${slowPort}`, "lat.test": `127.0.0.1:${latPort}` },
        limits: { max_connections: 1000, max_connections_per_ip: 1000 },
        delivery: { tls: "none", concurrency_per_destination: 20 },
        cluster: { nats: [...nats], lease: `${LEASE_MS}ms` }
      })
    )
    out.push({ name: `node-${k}`, helo, port, config, child: undefined })
  }
  return out
}

interface Row {
  readonly name: string
  readonly messages: number
  readonly perSecond: number
  readonly cpuPerMsg: number
  readonly natsCpuPerMsg?: number
  readonly perNode?: string
  /** "." → 250 and 250 → at the sink, ms (raw-client runs only). */
  readonly p99Accept?: number
  readonly p50Accept?: number
  readonly p99Delivered?: number
  readonly p50Delivered?: number
  readonly ops?: Ops
  readonly workAfter?: number
  /** Answered 250 and not at the sink 2 minutes after the load (raw-client runs). */
  readonly undelivered?: number
}

/** What the servers run with, from /varz: version and JetStream sync setting. */
const serverSettings = async (servers: ReadonlyArray<NatsServer>): Promise<string> => {
  const seen = new Set<string>()
  for (const s of servers) {
    try {
      const v = (await (await fetch(`${s.monitor()}/varz`)).json()) as {
        version: string
        jetstream?: { config?: { sync_interval?: number; sync_always?: boolean } }
      }
      const c = v.jetstream?.config
      seen.add(
        `nats-server ${v.version}, ${c?.sync_always ? "sync_interval: always (fsync on every write)" : `sync_interval ${c?.sync_interval !== undefined ? `${c.sync_interval / 1e9} s` : "default (2 min)"}`}`
      )
    } catch {
      seen.add("nats-server (no /varz)")
    }
  }
  return [...seen].join("; ")
}

/** The same smtp-source load through a private Postfix instance relaying to the same smtp-sink (needs root). */
const postfixRow = async (sink: Sink, messages: number): Promise<Row | string> => {
  const why = Postfix.available()
  if (why) return why
  const port = await freePort()
  const pf = Postfix.start({ port, routes: new Map([["sink.test", "127.0.0.1"]]), receiversPort: sink.port })
  try {
    const one = async (name: string, m: number): Promise<Row> => {
      const before = sink.count()
      const cpu0 = pf.cpuMs()
      const t0 = performance.now()
      await source(port, m)
      const t1 = await waitUntil("postfix delivered", () => sink.count() >= before + m, 300_000)
      return { name, messages: m, perSecond: (m * 1000) / (t1 - t0), cpuPerMsg: (pf.cpuMs() - cpu0) / m }
    }
    await one("warm-up", Math.max(60, Math.round(messages / 10)))
    return await one("Postfix 3.7, 1 process tree (queue files, fsync), 4 KB", messages)
  } finally {
    pf.stop()
  }
}

const source = (port: number, messages: number) =>
  exec(
    "smtp-source",
    ["-s", "20", "-m", String(messages), "-l", "4096", "-f", "bench@src.test", "-t", "x@sink.test", "-M", "src.test", `127.0.0.1:${port}`],
    { maxBuffer: 1 << 24 }
  )

/**
 * Node memory for deferred messages: commits N carriers (due in 1–4 days) to an inbox on one nats-server (R1 and the
 * server's default sync: the load is faster; neither changes what a node holds), then lets one node's ClusterWork
 * take every one of them from the consumer and defer it (a NAK delayed by a day), as the host does with a deferred
 * message, and reports the node's heap growth after a forced GC: what a deferred message costs a node.
 */
export const deferredMemory = async (n: number): Promise<string> => {
  const dir = mkdtempSync(join(tmpdir(), "missive-defer-"))
  const port = await freePort()
  const server = await startChild("nats-server", ["-js", "-sd", dir, "-a", "127.0.0.1", "-p", String(port)], (out) =>
    out.includes("Server is ready")
  )
  const nc = await connect({ servers: `127.0.0.1:${port}` })
  try {
    const inbox = await JetStreamInbox.open({ nc, prefix: "mem", shards: 1, ackWaitMs: 30_000 })
    const js = jetstream(nc)
    const t0 = performance.now()
    const now = Date.now()
    const body = Buffer.alloc(200, "x")
    for (let i = 0; i < n; i += 5000) {
      await Promise.all(
        Array.from({ length: Math.min(5000, n - i) }, (_, j) => {
          const id = `01DEFERRED${String(i + j).padStart(16, "0")}`
          const ev = {
            type: "MessageReceived",
            v: 1,
            at: now,
            node: "bench",
            policy: "p",
            id,
            sender: "a@src.test",
            recipients: ["b@dst.test"],
            size: body.length,
            digest: "sha256:0",
            client: { ip: "127.0.0.1", helo: "h", tls: false }
          } as unknown as Message.Event
          const h = headers()
          h.set(JetStreamInbox.KIND, "carrier")
          h.set(JetStreamInbox.ID, id)
          h.set(JetStreamInbox.AT, String(now))
          return js.publish(`mem.in.0.${id}`, JetStreamInbox.encodeCarrier([ev], body), { headers: h })
        })
      )
    }
    const loadS = (performance.now() - t0) / 1000
    setFlagsFromString("--expose-gc")
    const gc = runInNewContext("gc") as (() => void) | undefined
    gc?.()
    const h0 = process.memoryUsage().heapUsed
    const work = await ClusterWork.open({ nc, inbox, now: () => Date.now(), fetchBody: async () => body, prefetch: 512 })
    let deferred = 0
    const ts = performance.now()
    const drain = async () => {
      for (;;) {
        const items = await work.claim(Date.now(), 1000, "bench", 0)
        if (items.length === 0) return
        for (const it of items) {
          await work.schedule(it.id, Date.now() + 86_400_000 * (1 + (deferred % 4)))
          deferred++
        }
      }
    }
    let running = Promise.resolve()
    work.onAvailable(() => {
      running = running.then(drain)
    })
    await waitUntil("every carrier deferred", () => deferred >= n, 600_000)
    await running
    const deferS = (performance.now() - ts) / 1000
    await sleep(500)
    gc?.()
    const mem = process.memoryUsage()
    const heapMB = (mem.heapUsed - h0) / 2 ** 20
    const held = work.held()
    const pending = (await jetstreamManager(nc).then((m) => m.consumers.info(inbox.streams[0]!, inbox.consumer))).num_ack_pending
    await work.close()
    const f = (x: number, d = 1) => x.toFixed(d)
    return [
      `**Deferred messages and node memory** (${n} carriers committed in ${f(loadS)} s to one R1 server; one node took each from the consumer and deferred it by 1–4 days with a delayed NAK in ${f(deferS)} s, ${f(n / deferS, 0)} messages/s; heap of the benchmark process, which is the node here, after a forced GC):`,
      ``,
      `| deferred messages | held by the node afterwards | pending on the server (num_ack_pending) | node heap growth MB | bytes per deferred message | process RSS MB |`,
      `| ---: | ---: | ---: | ---: | ---: | ---: |`,
      `| ${n} | ${held} | ${pending} | ${f(heapMB)} | ${f(Math.max(0, heapMB * 2 ** 20) / n, 1)} | ${f(mem.rss / 2 ** 20)} |`
    ].join("\n")
  } finally {
    await nc.close()
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

interface Floor {
  readonly name: string
  readonly ops: number
  readonly perSecond: number
  readonly cpuPerOp: number
}

/**
 * What JetStream itself costs on this machine, without Missive: server CPU per R3 synced 4 KB publish (20 in flight,
 * as the nodes' appends are) and per work-queue fetch + ack (the ack removes the message on every replica). Measured
 * on the benchmark's own servers before the nodes start, on streams of its own that it removes afterwards.
 */
const jetStreamFloor = async (cluster: NatsCluster, n: number): Promise<Array<Floor>> => {
  const nc = await connect({ servers: [...cluster.urls] })
  const jsm = await jetstreamManager(nc)
  const js = jetstream(nc)
  const cpu = () => cluster.servers.reduce((s, x) => s + cpuMs(x.pid()!), 0)
  const out: Array<Floor> = []
  const measure = async (name: string, ops: number, f: () => Promise<void>) => {
    const c0 = cpu()
    const t0 = performance.now()
    await f()
    const t1 = performance.now()
    await sleep(300)
    out.push({ name, ops, perSecond: (ops * 1000) / (t1 - t0), cpuPerOp: (cpu() - c0) / ops })
  }
  const inParallel = async (count: number, k: number, f: (i: number) => Promise<unknown>) => {
    let i = 0
    await Promise.all(
      Array.from({ length: k }, async () => {
        while (i < count) await f(i++)
      })
    )
  }
  const body = new Uint8Array(4096)
  try {
    await jsm.streams.add({ name: "FLOOR_LOG", subjects: ["floor.log.>"], num_replicas: 3 })
    await jsm.streams.add({ name: "FLOOR_WQ", subjects: ["floor.wq.>"], num_replicas: 3, retention: RetentionPolicy.Workqueue })
    await jsm.consumers.add("FLOOR_WQ", { durable_name: "d", ack_policy: AckPolicy.Explicit })
    await measure("R3 publish, 4 KB, 20 in flight", n, () => inParallel(n, 20, (i) => js.publish(`floor.log.m${i}`, body)))
    await measure("R3 publish, 4 KB, 1 in flight", Math.max(50, n / 4), () =>
      inParallel(Math.max(50, n / 4), 1, (i) => js.publish(`floor.log.s${i}`, body))
    )
    await inParallel(n, 20, (i) => js.publish(`floor.wq.m${i}`, body))
    const c = await js.consumers.get("FLOOR_WQ", "d")
    await measure("R3 work-queue fetch + ack (removes the message)", n, async () => {
      for (let got = 0; got < n;) {
        const it = await c.fetch({ max_messages: 100, expires: 2000 })
        for await (const m of it) {
          await m.ackAck()
          got++
        }
      }
    })
  } finally {
    await jsm.streams.delete("FLOOR_LOG").catch(() => undefined)
    await jsm.streams.delete("FLOOR_WQ").catch(() => undefined)
    await nc.close()
  }
  return out
}

export const run = async (): Promise<string> => {
  const scale = Number(process.env["MISSIVE_BENCH_SCALE"] ?? 1)
  const n = (x: number) => Math.max(60, Math.round((x * scale) / 3) * 3)
  const dir = mkdtempSync(join(tmpdir(), "missive-cbench-"))
  const sink = await startSink()
  const rows: Array<Row> = []
  const failover: Array<number> = []
  let failoverLost = 0
  let failoverMsgs = 0
  let nats: NatsCluster | undefined
  let nodes: Array<ClusterNode> = []
  let settings = ""
  let postfix: Row | string = "not run"
  let floor: Array<Floor> = []
  try {
    postfix = await postfixRow(sink, n(3000))
    // ---- one embedded node --------------------------------------------------------------------
    {
      mkdirSync(join(dir, "embedded"), { recursive: true })
      const node = await startRelay(join(dir, "embedded"), sink.port)
      try {
        const run1 = async (name: string, messages: number) => {
          const before = sink.count()
          const cpu0 = cpuMs(node.child.proc.pid!)
          const done0 = node.completed()
          const t0 = performance.now()
          await source(node.port, messages)
          const t1 = await waitUntil("embedded delivered", () => sink.count() >= before + messages, 300_000)
          await waitUntil("embedded completed", () => node.completed() >= done0 + messages, 60_000)
          return { name, messages, perSecond: (messages * 1000) / (t1 - t0), cpuPerMsg: (cpuMs(node.child.proc.pid!) - cpu0) / messages }
        }
        await run1("warm-up", n(300))
        rows.push(await run1("embedded, 1 node (SQLite), 4 KB", n(3000)))
      } finally {
        await node.stop()
      }
    }
    // ---- 3-node cluster on 3 nats-servers ------------------------------------------------------
    nats = await startNatsCluster(3, join(dir, "nats"))
    floor = await jetStreamFloor(nats, (n(3000) / 3) * 2)
    // Tags node-1 was delivering when it died: any node may drive what any node accepted, so failover is measured
    // on the messages node-1 actually held (its deliveries to slow.test hang); peers' deliveries are accepted.
    const victimHeld = new Set<string>()
    const slow = await startCapture({
      onData: (m) => {
        if (m.helo !== "n1.missive.test") return undefined
        const tag = /X-Tag: (\S+)/.exec(m.raw.toString())?.[1]
        if (tag) victimHeld.add(tag)
        return new Promise(() => {})
      }
    })
    // The latency sink: when each raw-client message (by recipient) reached it.
    const arrived = new Map<string, number>()
    const lat = await startCapture({
      onData: (m) => {
        for (const r of m.to) arrived.set(r, performance.now())
        return undefined
      }
    })
    nodes = await configNodes(dir, nats.urls, sink.port, slow.port, lat.port)
    await Promise.all(nodes.map(startClusterNode))
    // Spread the raft leaders over the servers (what `missive cluster balance` does) before measuring.
    {
      const pc = await connect({ servers: [...nats.urls] })
      const inbox = await JetStreamInbox.open({ nc: pc, prefix: "missive" })
      await Placement.spread(pc, ClusterRuntime.placementOf("missive", inbox)).catch(() => undefined)
      await pc.close()
      await sleep(5_000) // pulls that waited at a stepped-down leader are renewed (they expire every 4 s)
    }
    settings = await serverSettings(nats.servers)
    const nc = await connect({ servers: [...nats.urls], maxReconnectAttempts: -1 })
    await jetstreamManager(nc)
    const drained = async () => (await workLeft(nc)).every((w) => w.left === 0)
    const natsCpu = () => nats!.servers.reduce((s, x) => s + cpuMs(x.pid()!), 0)
    try {
      // `raw`: the raw-socket client (20 sessions per node) to lat.test, with each message's 250 and sink arrival.
      const runCluster = async (name: string, messages: number, raw = false, pace?: number): Promise<Row> => {
        const before = sink.count()
        arrived.clear()
        const accepted = new Map<string, number>()
        const accept: Array<number> = []
        const cpu0 = nodes.map((x) => cpuMs(x.child!.proc.pid!))
        const ncpu0 = natsCpu()
        const s0 = await streams(nc)
        const t0 = performance.now()
        let t1: number
        let undelivered = 0
        if (raw) {
          await Promise.all(
            nodes.map(async (x, k) => {
              const r = await runLoad({
                port: x.port,
                sessions: 20,
                messages: messages / 3,
                size: 4096,
                recipients: 1,
                from: "bench@src.test",
                to: (i) => `n${k}.${i}@lat.test`,
                onReply: (i, code, at) => {
                  if (code === "250") accepted.set(`n${k}.${i}@lat.test`, at)
                },
                ...(pace ? { perSecond: pace / 3 } : {})
              })
              accept.push(...r.latenciesMs)
            })
          )
          // A 250-answered message that never reaches the sink is reported (undelivered), not fatal to the run.
          t1 = await waitUntil("cluster delivered (lat)", () => [...accepted.keys()].every((r) => arrived.has(r)), 120_000).catch(() => {
            undelivered = [...accepted.keys()].filter((r) => !arrived.has(r)).length
            return performance.now()
          })
        } else {
          await Promise.all(nodes.map((x) => source(x.port, messages / 3)))
          t1 = await waitUntil("cluster delivered", () => sink.count() >= before + messages, 300_000)
        }
        // Work entries still there after the deliveries (messages not completed): waited for, then reported.
        const workAfter = await waitUntil("cluster work drained", drained, 30_000).then(
          () => 0,
          async () => (await workLeft(nc)).reduce((n, w) => n + w.left, 0)
        )
        await sleep(500) // the last completions' acks and deletes
        const ops = opsBetween(s0, await streams(nc))
        const cpu = nodes.map((x, i) => cpuMs(x.child!.proc.pid!) - cpu0[i]!)
        const total = cpu.reduce((a, b) => a + b, 0)
        const delivered = [...accepted]
          .filter(([r]) => arrived.has(r))
          .map(([r, at]) => arrived.get(r)! - at)
          .sort((a, b) => a - b)
        accept.sort((a, b) => a - b)
        return {
          name,
          messages,
          perSecond: (messages * 1000) / (t1 - t0),
          cpuPerMsg: total / messages,
          natsCpuPerMsg: (natsCpu() - ncpu0) / messages,
          perNode: cpu.map((c) => (c / messages).toFixed(2)).join(" / "),
          ops,
          workAfter,
          undelivered,
          ...(raw
            ? {
                p50Accept: percentile(accept, 50),
                p99Accept: percentile(accept, 99),
                p50Delivered: percentile(delivered, 50),
                p99Delivered: percentile(delivered, 99)
              }
            : {})
        }
      }
      await runCluster("warm-up", n(300))
      rows.push(await runCluster("cluster, 3 nodes (JetStream R3), 4 KB", n(3000)))
      const full = await runCluster("cluster, 3 nodes (JetStream R3), 4 KB, raw client", n(1500), true)
      rows.push(full)
      // The latency targets are at 80 % of the cluster's maximum: the same client paced at 80 % of the full-load rate.
      const pace = Math.max(10, Math.round(full.perSecond * 0.8))
      rows.push(await runCluster(`cluster, 3 nodes (JetStream R3), 4 KB, raw client paced at ${pace} msgs/s (80 %)`, n(1500), true, pace))

      // ---- failover ------------------------------------------------------------------------------
      const victim = nodes[0]!
      const reps = Number(process.env["MISSIVE_BENCH_FAILOVER_REPS"] ?? 7)
      for (let rep = 0; rep < reps; rep++) {
        const batch = 10
        const tag = `r${rep}-`
        const base = slow.messages.length
        const tagOf = (m: { raw: Buffer }) => m.raw.toString().match(/X-Tag: (\S+)/)?.[1] ?? ""
        const held = () => [...victimHeld].filter((t) => t.startsWith(tag))
        const peerOf = (from: number) => slow.messages.slice(from).filter((m) => m.helo !== victim.helo && held().includes(tagOf(m)))
        // Mail accepted by node-1, driven by whichever node the inbox hands it to; node-1's attempts hang.
        // The accepts share batch carriers, each pulled by one node: when none came to node-1, send more.
        for (let more = 0; held().length === 0; more++) {
          if (more === 5) throw new Error("node-1 delivering some of the batch: not reached after 5 sends")
          await sendRaw(victim.port, batch, `${tag}${more}-`)
          await waitUntil("node-1 delivering some of the batch", () => held().length > 0, 5_000).catch(() => undefined)
        }
        await sleep(300)
        const t0 = performance.now()
        victim.child!.proc.kill("SIGKILL")
        await new Promise((r) => victim.child!.proc.once("exit", r))
        const t1 = await waitUntil("first peer delivery", () => peerOf(base).length > 0, 60_000)
        failover.push(t1 - t0)
        const mine = held().length
        await waitUntil("all that node-1 held delivered by peers", () => new Set(peerOf(base).map(tagOf)).size >= mine, 60_000).catch(
          () => undefined
        )
        const got = new Set(peerOf(base).map(tagOf))
        failoverMsgs += mine
        failoverLost += mine - got.size
        await startClusterNode(victim)
        await sleep(1000)
      }
    } finally {
      await nc.close()
      await Promise.all(nodes.map((x) => x.child?.stop()))
      await slow.close()
      await lat.close()
    }
  } finally {
    await nats?.dispose()
    await sink.child.stop("SIGKILL")
    rmSync(dir, { recursive: true, force: true })
  }
  const memory = await deferredMemory(Number(process.env["MISSIVE_BENCH_DEFERRED"] ?? 1_000_000))
  const sorted = [...failover].sort((a, b) => a - b)
  const f = (x: number | undefined, d = 1) => (x === undefined ? "–" : x.toFixed(d))
  const emb = rows.find((r) => r.name.startsWith("embedded"))!
  const cl = rows.find((r) => r.ops !== undefined)
  const clRaw = rows.find((r) => r.p99Accept !== undefined)
  if (typeof postfix !== "string") rows.push(postfix)
  const perMsg = (x: number, m: number) => (x / m).toFixed(2)
  const opsTable = (r: Row) =>
    [
      `| stream | messages stored / msg | consumer acks / msg | consumer deliveries / msg |`,
      `| --- | ---: | ---: | ---: |`,
      ...r.ops!.byStream.map(
        (s) => `| ${s.name} | ${perMsg(s.writes, r.messages)} | ${perMsg(s.acks, r.messages)} | ${perMsg(s.deliveries, r.messages)} |`
      ),
      `| **total** | **${perMsg(r.ops!.writes, r.messages)}** | **${perMsg(r.ops!.acks, r.messages)}** | |`
    ].join("\n")
  return [
    `## Cluster relay throughput and failover (\`npm run bench -- cluster\`)`,
    ``,
    `Load: smtp-source, 20 sessions per node, one 4 KB message per session (split evenly over the 3 cluster nodes) → Missive → smtp-sink, loopback, 2 cores shared by everything, ${new Date().toISOString().slice(0, 10)}.`,
    `Cluster: 3 Missive node processes on a 3-server JetStream cluster (${settings}), every stream and bucket R3, lease ${LEASE_MS / 1000} s; \`delivery.concurrency_per_destination: 20\` (per node for the embedded node, cluster-wide for the cluster).`,
    `msgs/s is end to end (first connection → last message at the sink); CPU is user+system time from /proc/<pid>/stat per message: Missive nodes summed (per node in brackets), and the 3 nats-servers summed.`,
    ``,
    `The raw-client row uses bench/lib/Load.ts (20 sessions per node) to a capture sink: 250 is "." → 250 at the client; delivered is 250 → the message at the sink. JetStream ops are per delivered message: messages stored in each stream (last_seq delta: events, KV and object-store streams, any work stream; R3, so each is a replicated write) and acknowledgements by explicit-ack consumers (ack_floor delta).`,
    ``,
    `| run | messages | msgs/s | Missive CPU ms/msg | nats-server CPU ms/msg | total CPU ms/msg | 250 p50 / p99 ms | 250 → delivered p50 / p99 ms | JetStream writes + acks / msg |`,
    `| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`,
    ...rows.map(
      (r) =>
        `| ${r.name} | ${r.messages} | ${f(r.perSecond, 0)} | ${f(r.cpuPerMsg, 2)}${r.perNode ? ` (${r.perNode})` : ""} | ${f(r.natsCpuPerMsg, 2)} | ${f(r.cpuPerMsg + (r.natsCpuPerMsg ?? 0), 2)} | ${r.p99Accept !== undefined ? `${f(r.p50Accept, 1)} / ${f(r.p99Accept, 1)}` : "–"} | ${r.p99Delivered !== undefined ? `${f(r.p50Delivered, 0)} / ${f(r.p99Delivered, 0)}` : "–"} | ${r.ops ? `${perMsg(r.ops.writes, r.messages)} + ${perMsg(r.ops.acks, r.messages)}` : "–"} |`
    ),
    ``,
    typeof postfix === "string"
      ? `Postfix side by side: not run (${postfix}).`
      : `Postfix: a private instance (Debian's 3.7), same smtp-source load and smtp-sink, same run; CPU is its master and all children.`,
    ``,
    ...(cl ? [`**JetStream operations per delivered message** (${cl.name}, ${cl.messages} messages):`, ``, opsTable(cl), ``] : []),
    ...rows
      .filter((r) => (r.undelivered ?? 0) > 0)
      .map((r) => `**Not delivered** 2 min after the load of "${r.name}": ${r.undelivered} messages answered 250.\n`),
    ...rows
      .filter((r) => (r.workAfter ?? 0) > 0)
      .map(
        (r) =>
          `Work left 30 s after the last delivery of "${r.name}": ${r.workAfter} entries (messages delivered but not completed, or not delivered).\n`
      ),
    ...(clRaw
      ? [
          `Same, raw-client run (${clRaw.messages} messages): ${perMsg(clRaw.ops!.writes, clRaw.messages)} stored + ${perMsg(clRaw.ops!.acks, clRaw.messages)} acks per message.`,
          ``
        ]
      : []),
    `The cluster does ${f(cl ? cl.perSecond / emb.perSecond : undefined, 2)}× the embedded node's throughput on this 2-core machine; every carrier, append and ack there is a replicated JetStream write, fsynced on each of 3 replicas, instead of one group-committed SQLite fsync.`,
    ``,
    `**JetStream alone on the same servers** (before the nodes start; server CPU of the 3 nats-servers per operation, each a replicated write fsynced on every replica): what a message's writes cost at the least.`,
    ``,
    `| operation | operations | ops/s | nats-server CPU ms/op |`,
    `| --- | ---: | ---: | ---: |`,
    ...floor.map((x) => `| ${x.name} | ${x.ops} | ${f(x.perSecond, 0)} | ${f(x.cpuPerOp, 2)} |`),
    ``,
    `**Failover** (10 messages sent to node-1 and driven by whichever node the inbox hands each to; kill -9 of node-1 while its deliveries of its share hang at a slow receiver → first of the messages node-1 held delivered by a peer), ${failover.length} runs, lease ${LEASE_MS / 1000} s:`,
    ``,
    `| p50 s | p99 s | min s | max s | messages | lost |`,
    `| ---: | ---: | ---: | ---: | ---: | ---: |`,
    `| ${f(percentile(sorted, 50) / 1000, 2)} | ${f(percentile(sorted, 99) / 1000, 2)} | ${f(sorted[0]! / 1000, 2)} | ${f(sorted[sorted.length - 1]! / 1000, 2)} | ${failoverMsgs} | ${failoverLost} |`,
    ``,
    `Failover is bounded by the lease: the inbox consumer redelivers the dead node's messages once their AckWait (the lease, extended by in-progress acks every lease/3) has passed; a peer's pull gets them at once.`,
    ``,
    memory
  ].join("\n")
}

/** Sends `count` messages to slow.test over one raw SMTP session each (nodemailer-free, so the bench stays lean). */
const sendRaw = async (port: number, count: number, tag: string): Promise<void> => {
  const { connect: tcp } = await import("node:net")
  await Promise.all(
    Array.from(
      { length: count },
      (_, i) =>
        new Promise<void>((done, fail) => {
          const s = tcp(port, "127.0.0.1")
          const script = [
            "EHLO bench.src.test",
            "MAIL FROM:<bench@src.test>",
            "RCPT TO:<x@slow.test>",
            "DATA",
            `From: <bench@src.test>\r\nTo: <x@slow.test>\r\nSubject: failover ${tag}${i}\r\nX-Tag: ${tag}${i}\r\n\r\nhello\r\n.`,
            "QUIT"
          ]
          let step = 0
          let buf = ""
          s.setEncoding("utf8")
          s.on("data", (d: string) => {
            buf += d
            for (;;) {
              const m = /^(\d{3}) .*\r\n/m.exec(buf)
              if (!m) return
              buf = buf.slice(m.index + m[0].length)
              if (m[1]!.startsWith("4") || m[1]!.startsWith("5")) {
                s.destroy()
                return fail(new Error(`refused: ${m[0]}`))
              }
              if (step >= script.length) return
              s.write(`${script[step++]}\r\n`)
            }
          })
          s.on("close", () => (step >= script.length ? done() : fail(new Error("closed early"))))
          s.on("error", fail)
        })
    )
  )
}
