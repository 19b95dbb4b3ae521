// The cost of delivery events pushed out: the relay benchmark's load (smtp-source, 20 sessions → Missive →
// smtp-sink, loopback) through one node without an events destination and one with a webhook subscriber (an HTTP
// server in this process that checks nothing and answers 204), on fresh data directories: in each round both nodes
// side by side, loaded at the same moments (the default; on a shared machine the others' load then weighs on both
// alike), or with MISSIVE_BENCH_PUBLISH_MODE=alternate one after the other. Reports throughput, the node's CPU per
// message (read once the webhook has every event), per thread, and how far the webhook was behind when the last
// message completed. The webhook takes the defaults: batches of up to 100, 200 ms linger.
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createServer } from "node:http"
import { loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { cpuMs, freePort, startChild, threadCpu } from "../test/src/Support.js"
import { load, startRelay, type RelayNode } from "./relay.bench.js"

interface Round {
  readonly perSecond: number
  readonly cpuPerMsg: number
  /** The node's CPU per message when the last message completed (before waiting for the webhook). */
  readonly cpuAtDone: number
  /** CPU ms per message by thread kind (main, V8 helpers, libuv pool, the SQLite writer), over the whole round. */
  readonly threads: Readonly<Record<string, number>>
  readonly behind: number
  /** POSTs the webhook got for the measured load. */
  readonly posts: number
}

export const run = async (): Promise<string> => {
  const sinkPort = await freePort()
  const sink = await startChild("smtp-sink", ["-u", "nobody", `127.0.0.1:${sinkPort}`, "1024"], () => true)
  let received = 0
  let posts = 0
  const hook = createServer((req, res) => {
    req.resume()
    req.on("end", () => {
      received += Number(req.headers["x-missive-event-count"] ?? 1)
      posts += 1
      res.writeHead(204).end()
    })
  })
  await new Promise<void>((done) => hook.listen(0, "127.0.0.1", done))
  const hookPort = (hook.address() as { port: number }).port
  const scale = Number(process.env["MISSIVE_BENCH_SCALE"] ?? 1)
  const messages = Math.max(200, Math.round(3000 * scale))
  const rounds = Math.max(1, Number(process.env["MISSIVE_BENCH_ROUNDS"] ?? 3))
  const warmUp = Math.max(100, Math.round(messages / 5))
  const load0 = loadavg()[0]!

  // "alternate": one node at a time, the two kinds in turn. "paired": in each round both kinds run side by side,
  // loaded at the same moments, so that the rest of a shared machine weighs on both alike (the default).
  const mode = process.env["MISSIVE_BENCH_PUBLISH_MODE"] === "alternate" ? "alternate" : "paired"

  type Started = { readonly node: RelayNode; readonly dir: string; readonly webhook: boolean; readonly port: number }
  const start = async (webhook: boolean): Promise<Started> => {
    const dir = mkdtempSync(join(tmpdir(), "missive-bench-publish-"))
    // Ports of its own for each node (two run at once): its SMTP listener, and its admin listener, which serves the
    // metrics (both nodes have it).
    const port = await freePort()
    const listeners = {
      smtp: { host: "127.0.0.1", port },
      submission: { enabled: false },
      http: { host: "127.0.0.1", port: await freePort() }
    }
    const events = { destinations: [{ name: "hook", webhook: `http://127.0.0.1:${hookPort}/`, secret: "bench-secret-0123456789" }] }
    return { node: await startRelay(dir, sinkPort, webhook ? { listeners, events } : { listeners }), dir, webhook, port }
  }
  const stop = async (s: Started) => {
    await s.node.stop()
    rmSync(s.dir, { recursive: true, force: true })
  }
  /** Waits (at most 60 s) until the webhook has `n` events; fails when it does not. */
  const webhookHas = async (n: number, what: string) => {
    const deadline = performance.now() + 60_000
    while (received < n && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    if (received !== n) throw new Error(`the webhook got ${received} of ${what}'s ${n} events`)
  }

  /** One measured load on each node at once (one node in "alternate" mode). */
  const measure = async (nodes: ReadonlyArray<Started>): Promise<Array<Round>> => {
    const hooked = nodes.some((s) => s.webhook)
    // A warm-up (not measured), as the relay benchmark has: the node's code paths, the publisher's among them, are
    // compiled and its connections open before the CPU is counted, so the figures are the steady state's. Every node
    // rests a second after it (and until the webhook has the warm-up's events).
    received = 0
    await Promise.all(nodes.map((s) => load(s.node, { messages: warmUp, size: 4096, port: s.port })))
    await new Promise((r) => setTimeout(r, 1000))
    if (hooked) await webhookHas(2 * warmUp, "the warm-up")
    received = 0
    posts = 0
    const pids = nodes.map((s) => s.node.child.proc.pid!)
    const cpu0 = pids.map(cpuMs)
    const threads0 = pids.map(threadCpu)
    const done = await Promise.all(
      nodes.map(async (s, i) => {
        const ms = await load(s.node, { messages, size: 4096, port: s.port })
        return { ms, cpu: cpuMs(pids[i]!) - cpu0[i]!, behind: s.webhook ? 2 * messages - received : 0 }
      })
    )
    // Each message gives two events (Send, Delivery). The CPU is read once the webhook has them all, at the same
    // moment for every node, so that it includes every request the publisher made.
    if (hooked) await webhookHas(2 * messages, "the load")
    return nodes.map((s, i) => {
      const t0 = threads0[i]!
      const threads = Object.fromEntries(
        [...threadCpu(pids[i]!)].map(([kind, t]) => [kind, (t - (t0.get(kind) ?? 0)) / messages] as const).filter(([, t]) => t > 0)
      )
      return {
        perSecond: (messages * 1000) / done[i]!.ms,
        cpuPerMsg: (cpuMs(pids[i]!) - cpu0[i]!) / messages,
        cpuAtDone: done[i]!.cpu / messages,
        threads,
        behind: done[i]!.behind,
        posts: s.webhook ? posts : 0
      }
    })
  }

  const plain: Array<Round> = []
  const hooked: Array<Round> = []
  try {
    for (let i = 0; i < rounds; i++) {
      if (mode === "paired") {
        // Which of the two starts first alternates between rounds.
        const kinds = i % 2 === 0 ? [false, true] : [true, false]
        const nodes: Array<Started> = []
        try {
          for (const k of kinds) nodes.push(await start(k))
          const rs = await measure(nodes)
          nodes.forEach((s, j) => (s.webhook ? hooked : plain).push(rs[j]!))
        } catch (e) {
          for (const s of nodes) console.error(`node ${s.webhook ? "with" : "without"} the webhook:\n${s.node.child.output().slice(-3000)}`)
          throw e
        } finally {
          for (const s of nodes) await stop(s)
        }
      } else
        for (const k of [false, true]) {
          const s = await start(k)
          try {
            ;(k ? hooked : plain).push((await measure([s]))[0]!)
          } finally {
            await stop(s)
          }
        }
    }
  } finally {
    await new Promise((done) => hook.close(done))
    await sink.stop()
  }
  const load1 = loadavg()[0]!
  const mean = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0) / xs.length
  const median = (xs: ReadonlyArray<number>) => {
    const s = [...xs].sort((a, b) => a - b)
    return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
  }
  const f = (xs: ReadonlyArray<number>, d: number) => xs.map((x) => x.toFixed(d)).join(" / ")
  const row = (name: string, rs: ReadonlyArray<Round>) => {
    const rate = rs.map((r) => r.perSecond)
    const cpu = rs.map((r) => r.cpuPerMsg)
    const done = rs.map((r) => r.cpuAtDone)
    return `| ${name} | ${f(rate, 0)} | ${median(rate).toFixed(0)} | ${f(cpu, 2)} | ${median(cpu).toFixed(2)} | ${mean(cpu).toFixed(2)} | ${median(done).toFixed(2)} | ${rs.map((r) => r.behind).join(" / ")} | ${rs.map((r) => r.posts).join(" / ")} |`
  }
  const kinds = [...new Set([...plain, ...hooked].flatMap((r) => Object.keys(r.threads)))].sort()
  const threadRow = (name: string, rs: ReadonlyArray<Round>) =>
    `| ${name} | ${kinds.map((k) => median(rs.map((r) => r.threads[k] ?? 0)).toFixed(3)).join(" | ")} |`
  const change = (a: number, b: number) => b / a - 1
  const pct = (x: number, more: string, less: string) => `${Math.abs(x * 100).toFixed(1)} % ${x >= 0 ? more : less}`
  const rateChange = change(median(plain.map((r) => r.perSecond)), median(hooked.map((r) => r.perSecond)))
  const cpuChange = change(median(plain.map((r) => r.cpuPerMsg)), median(hooked.map((r) => r.cpuPerMsg)))
  const cpuMeanChange = change(mean(plain.map((r) => r.cpuPerMsg)), mean(hooked.map((r) => r.cpuPerMsg)))
  return [
    `### Relay with a webhook subscriber (\`npm run bench -- publish\`)`,
    ``,
    `${messages} messages of 4 KB per round after a warm-up of ${warmUp} (not measured), smtp-source 20 sessions → Missive → smtp-sink, loopback, ${rounds} ${mode === "paired" ? "rounds of the two nodes side by side (loaded at once)" : "alternating rounds"}, ${new Date().toISOString().slice(0, 16)} UTC, load average ${load0.toFixed(1)} at the start, ${load1.toFixed(1)} at the end.`,
    ``,
    `| node | msgs/s per round | median | CPU ms per message per round | median | mean | median at the last completion | events not yet at the webhook when the last message completed | POSTs |`,
    `| --- | --- | --- | --- | --- | --- | --- | --- | --- |`,
    row("no events destination", plain),
    row("one webhook (Send + Delivery per message)", hooked),
    ``,
    `CPU ms per message by thread (medians; \`main\` is the event loop, \`node\`/\`V8 …\` V8's helpers (JIT, GC), \`libuv-worker\` the file system pool, the SQLite writer a worker thread):`,
    ``,
    `| node | ${kinds.join(" | ")} |`,
    `| --- | ${kinds.map(() => "---").join(" | ")} |`,
    threadRow("no events destination", plain),
    threadRow("one webhook", hooked),
    ``,
    `With the webhook (medians): throughput ${pct(rateChange, "higher", "lower")}, CPU per message ${pct(cpuChange, "higher", "lower")} (means: ${pct(cpuMeanChange, "higher", "lower")}).`
  ].join("\n")
}
