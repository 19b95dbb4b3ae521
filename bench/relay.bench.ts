// Relay throughput of one embedded node, durable settings (WAL, synchronous=FULL): smtp-source (20 sessions, one
// message per session) → Missive → smtp-sink, all on loopback; plus a raw-socket client for the 250 latency.
import Database from "better-sqlite3"
import { execFile } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { promisify } from "node:util"
import { stringify } from "yaml"
import { runLoad } from "./lib/Load.js"
import { cpuMs, freePort, machineTicks, percentile, startChild, threadCpu, writtenBytes, type Child } from "../test/src/Support.js"
import * as Postfix from "./Postfix.js"
import { existsSync, readFileSync } from "node:fs"

const exec = promisify(execFile)
const ROOT = resolve(import.meta.dirname, "..")

export interface RelayNode {
  readonly port: number
  readonly child: Child
  completed(): number
  stop(): Promise<void>
}

/** Starts smtp-sink and a Missive node (a real process) relaying to it. */
export const startRelay = async (dir: string, sinkPort: number, extra: Record<string, unknown> = {}): Promise<RelayNode> => {
  const port = await freePort()
  const dataDir = join(dir, "data")
  const config = {
    hostname: "bench.missive.test",
    node_id: "bench",
    data_dir: dataDir,
    // The admin listener on a free port too: a node already running on its default 8025 must not stop the bench.
    listeners: { smtp: { host: "127.0.0.1", port }, submission: { enabled: false }, http: { host: "127.0.0.1", port: await freePort() } },
    relay: { relay_domains: ["sink.test"] },
    routes: { "sink.test": `127.0.0.1:${sinkPort}` },
    limits: { max_connections: 1000, max_connections_per_ip: 1000 },
    // the main thread unless a case asks otherwise: the 4 KB case runs on both
    delivery: { tls: "none", concurrency_per_destination: 20, thread: "main" },
    ...extra
  }
  const path = join(dir, "missive.yaml")
  mkdirSync(dir, { recursive: true })
  writeFileSync(path, stringify(config))
  const child = await startChild(
    process.execPath,
    [join(ROOT, "bin/missive.mjs"), "start", "--config", path, "--allow-root"],
    (o) => o.includes("listening on"),
    { cwd: ROOT }
  )
  const db = new Database(join(dataDir, "missive.db"), { readonly: true })
  const q = db.prepare<[], { n: number }>("SELECT count(*) AS n FROM events WHERE type = 'MessageCompleted'")
  return {
    port,
    child,
    completed: () => q.get()!.n,
    stop: async () => {
      db.close()
      await child.stop()
    }
  }
}

const waitCompleted = async (node: RelayNode, target: number, timeoutMs: number): Promise<number> => {
  const deadline = performance.now() + timeoutMs
  while (node.completed() < target) {
    if (performance.now() > deadline) throw new Error(`only ${node.completed()} of ${target} messages completed in time`)
    await new Promise((r) => setTimeout(r, 20))
  }
  return performance.now()
}

interface Row {
  readonly name: string
  readonly messages: number
  readonly perSecond: number
  readonly cpuPerMsg: number
  /** Bytes the MTA caused to be written to storage per message (/proc/PID/io). */
  readonly bytesPerMsg: number
  /** The machine's busy share over the run, % of both cores. */
  readonly busy: number
  readonly p50?: number
  readonly p90?: number
  readonly p99?: number
  /** The node's CPU ms per message by thread: main, the SQLite writer ("WorkerThread"), V8's helpers, libuv's pool. */
  readonly threads?: Readonly<Record<string, number>>
}

/** smtp-source's load: 20 sessions, one message each, from src.test to x@sink.test, into `port`; resolves when sent. */
export const runSmtpSource = async (port: number, o: { readonly messages: number; readonly size: number; readonly rcpts?: number }) => {
  const rcpts = o.rcpts ?? 1
  await exec(
    "smtp-source",
    [
      "-s",
      "20",
      "-m",
      String(o.messages),
      "-l",
      String(o.size),
      "-r",
      String(rcpts),
      ...(rcpts > 1 ? ["-N"] : []),
      "-f",
      "bench@src.test",
      "-t",
      "x@sink.test",
      "-M",
      "src.test",
      `127.0.0.1:${port}`
    ],
    { maxBuffer: 1 << 24 }
  )
}

/**
 * One smtp-source load into a node that returns once the node has completed all of it (up to 5 minutes): the time
 * from the first connection, ms. The other single-node benchmarks (auth, scan, metrics, publish) run their rounds
 * with it.
 */
export const load = async (
  node: RelayNode,
  o: { readonly messages: number; readonly size: number; readonly rcpts?: number; readonly port?: number }
): Promise<number> => {
  const before = node.completed()
  const t0 = performance.now()
  await runSmtpSource(o.port ?? node.port, o)
  return (await waitCompleted(node, before + o.messages, 300_000)) - t0
}

/** What a run cost the MTA (CPU, bytes written) and the machine (busy share), from `start()` to the returned call. */
const costs = (cpu: () => number, written: () => number) => {
  const c0 = cpu()
  const w0 = written()
  const m0 = machineTicks()
  return (messages: number) => {
    const m1 = machineTicks()
    return {
      cpuPerMsg: (cpu() - c0) / messages,
      bytesPerMsg: (written() - w0) / messages,
      busy: (100 * (m1.busy - m0.busy)) / Math.max(1, m1.total - m0.total)
    }
  }
}

const nodeCosts = (node: RelayNode) =>
  costs(
    () => cpuMs(node.child.proc.pid!),
    () => writtenBytes(node.child.proc.pid!)
  )

const smtpSource = async (node: RelayNode, o: { messages: number; size: number; rcpts: number; name: string }): Promise<Row> => {
  const cost = nodeCosts(node)
  const t0 = threadCpu(node.child.proc.pid!)
  const ms = await load(node, o)
  const threads = Object.fromEntries(
    [...threadCpu(node.child.proc.pid!)]
      .map(([kind, t]) => [kind, (t - (t0.get(kind) ?? 0)) / o.messages] as const)
      .filter(([, t]) => t > 0)
  )
  return { name: o.name, messages: o.messages, perSecond: (o.messages * 1000) / ms, ...cost(o.messages), threads }
}

const rawClient = async (node: RelayNode, o: { messages: number; size: number; rcpts: number; name: string }): Promise<Row> => {
  const before = node.completed()
  const cost = nodeCosts(node)
  const t0 = performance.now()
  const r = await runLoad({
    port: node.port,
    sessions: 20,
    messages: o.messages,
    size: o.size,
    recipients: o.rcpts,
    from: "bench@src.test",
    to: (i, k) => `x${i}.${k}@sink.test`
  })
  if (r.accepted !== o.messages) throw new Error(`${o.messages - r.accepted} messages refused: ${JSON.stringify([...r.replies])}`)
  const t1 = await waitCompleted(node, before + o.messages, 300_000)
  return {
    name: o.name,
    messages: o.messages,
    perSecond: (o.messages * 1000) / (t1 - t0),
    ...cost(o.messages),
    p50: percentile(r.latenciesMs, 50),
    p90: percentile(r.latenciesMs, 90),
    p99: percentile(r.latenciesMs, 99)
  }
}

/** A private Postfix instance relaying to the same smtp-sink, and one smtp-source load through it. */
const startPostfix = async (sinkPort: number) => {
  const port = await freePort()
  const pf = Postfix.start({ port, routes: new Map([["sink.test", "127.0.0.1"]]), receiversPort: sinkPort })
  const sent = () => {
    const log = join(pf.dir, "maillog")
    return existsSync(log) ? (readFileSync(log, "utf8").match(/ status=sent /g) ?? []).length : 0
  }
  const one = async (o: { name: string; messages: number; size: number; rcpts: number }): Promise<Row> => {
    const before = sent()
    const cost = costs(pf.cpuMs, pf.writtenBytes)
    const t0 = performance.now()
    await runSmtpSource(port, o)
    const deadline = performance.now() + 300_000
    while (sent() < before + o.messages * o.rcpts) {
      if (performance.now() > deadline) throw new Error(`postfix: only ${sent() - before} of ${o.messages * o.rcpts} deliveries in time`)
      await new Promise((r) => setTimeout(r, 50))
    }
    const t1 = performance.now()
    return { name: `Postfix: ${o.name}`, messages: o.messages, perSecond: (o.messages * 1000) / (t1 - t0), ...cost(o.messages) }
  }
  return { one, stop: () => pf.stop() }
}

export const run = async (): Promise<string> => {
  const dir = mkdtempSync(join(tmpdir(), "missive-bench-"))
  const sinkPort = await freePort()
  const sink = await startChild("smtp-sink", ["-u", "nobody", `127.0.0.1:${sinkPort}`, "1024"], () => true)
  await new Promise((r) => setTimeout(r, 300))
  const node = await startRelay(dir, sinkPort)
  // The same node with its delivery role in a thread of its own (`delivery.thread: worker`), for the 4 KB case.
  const threaded = await startRelay(join(dir, "threaded"), sinkPort, {
    delivery: { tls: "none", concurrency_per_destination: 20, thread: "worker" }
  })
  const scale = Number(process.env["MISSIVE_BENCH_SCALE"] ?? 1)
  const n = (x: number) => Math.max(50, Math.round(x * scale))
  const postfixMissing = Postfix.available()
  const postfix = postfixMissing ? undefined : await startPostfix(sinkPort)
  try {
    await smtpSource(node, { name: "warm-up", messages: n(500), size: 4096, rcpts: 1 })
    await smtpSource(threaded, { name: "warm-up", messages: n(500), size: 4096, rcpts: 1 })
    await postfix?.one({ name: "warm-up", messages: n(500), size: 4096, rcpts: 1 })
    // Each smtp-source case runs on Missive, then at once on Postfix (both stay up, idle in turn), so that the two
    // sides of a ratio see the same load from the rest of this shared machine.
    const rows: Array<Row> = []
    const pair = async (o: { name: string; messages: number; size: number; rcpts: number }) => {
      rows.push(await smtpSource(node, o))
      if (postfix) rows.push(await postfix.one(o))
    }
    await pair({ name: "smtp-source, 4 KB, 1 rcpt", messages: n(5000), size: 4096, rcpts: 1 })
    rows.push(await smtpSource(threaded, { name: "smtp-source, 4 KB, 1 rcpt, delivery thread", messages: n(5000), size: 4096, rcpts: 1 }))
    rows.push(await rawClient(node, { name: "raw client, 4 KB, 1 rcpt", messages: n(3000), size: 4096, rcpts: 1 }))
    await pair({ name: "smtp-source, 100 KB, 1 rcpt", messages: n(1000), size: 102_400, rcpts: 1 })
    rows.push(await rawClient(node, { name: "raw client, 100 KB, 1 rcpt", messages: n(1000), size: 102_400, rcpts: 1 }))
    await pair({ name: "smtp-source, 4 KB, 5 rcpts", messages: n(2000), size: 4096, rcpts: 5 })
    rows.push(await rawClient(node, { name: "raw client, 4 KB, 5 rcpts", messages: n(2000), size: 4096, rcpts: 5 }))
    const f = (x: number | undefined, d = 1) => (x === undefined ? "–" : x.toFixed(d))
    const ratio = (name: string) => {
      const m = rows.find((r) => r.name === name)
      const p = rows.find((r) => r.name === `Postfix: ${name}`)
      return m && p
        ? `${(m.perSecond / p.perSecond).toFixed(2)}× the messages/s at ${(m.cpuPerMsg / p.cpuPerMsg).toFixed(2)}× the CPU ` +
            `and ${(m.bytesPerMsg / p.bytesPerMsg).toFixed(2)}× the bytes written per message`
        : "n/a"
    }
    return [
      `## Relay throughput, one embedded node (\`npm run bench -- relay\`)`,
      ``,
      `Load: 20 concurrent sessions, one message per session, → Missive (SQLite WAL, synchronous=FULL, group commit) → smtp-sink, loopback, ${new Date().toISOString().slice(0, 10)}.`,
      `msgs/s is end to end (first connection → last message completed in the log); CPU is the node process's user+system time per message; ` +
        `disk is the bytes the MTA caused to be written to storage per message (/proc/PID/io write_bytes less cancelled_write_bytes); ` +
        `busy is the machine's (both cores') busy share during the run; latency is "." → 250 as the client saw it.`,
      ``,
      `| run | messages | msgs/s | CPU ms/msg | disk KB/msg | busy % | 250 p50 ms | p90 ms | p99 ms |`,
      `| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |`,
      ...rows.map(
        (r) =>
          `| ${r.name} | ${r.messages} | ${f(r.perSecond, 0)} | ${f(r.cpuPerMsg, 2)} | ${f(r.bytesPerMsg / 1024)} | ${f(r.busy, 0)} | ` +
          `${f(r.p50)} | ${f(r.p90)} | ${f(r.p99)} |`
      ),
      ``,
      `The node's CPU per message by thread (ms): ` +
        rows
          .filter((r) => r.threads)
          .map(
            (r) =>
              `${r.name}: ${Object.entries(r.threads!)
                .sort((a, b) => b[1] - a[1])
                .map(([k, v]) => `${k} ${v.toFixed(3)}`)
                .join(", ")}`
          )
          .join("; ") +
        ".",
      ``,
      postfixMissing
        ? `Postfix side by side: not run (${postfixMissing}).`
        : `Postfix 3.7 (Debian's, a private instance in a temp directory, same smtp-source load and smtp-sink, each case right after Missive's; ` +
          `CPU and disk are master + all its children). ` +
          `Missive vs Postfix, 4 KB: ${ratio("smtp-source, 4 KB, 1 rcpt")}; ` +
          `100 KB: ${ratio("smtp-source, 100 KB, 1 rcpt")}; ` +
          `5 rcpts: ${ratio("smtp-source, 4 KB, 5 rcpts")}; ` +
          `4 KB with the delivery thread: ${(rows.find((r) => r.name.endsWith("delivery thread"))!.perSecond / rows.find((r) => r.name === "Postfix: smtp-source, 4 KB, 1 rcpt")!.perSecond).toFixed(2)}× the messages/s.`
    ].join("\n")
  } finally {
    postfix?.stop()
    await node.stop()
    await threaded.stop()
    await sink.stop("SIGKILL")
    rmSync(dir, { recursive: true, force: true })
  }
}
