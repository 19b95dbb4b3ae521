// The cost of delivery events pushed out: the relay benchmark's load (smtp-source, 20 sessions → Missive →
// smtp-sink, loopback) through one node without an events destination and one with a webhook subscriber (an HTTP
// server in this process that checks nothing and answers 204), in alternating rounds on fresh data directories.
// Reports throughput, the node's CPU per message (read once the webhook has every event), and how far the webhook
// was behind when the last message completed. The webhook takes the defaults: batches of up to 100, 200 ms linger.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { createServer } from "node:http"
import { loadavg, tmpdir } from "node:os"
import { join } from "node:path"
import { cpuMs, freePort, startChild } from "../test/src/Support.js"
import { load, startRelay } from "./relay.bench.js"

interface Round {
  readonly perSecond: number
  readonly cpuPerMsg: number
  /** The node's CPU per message when the last message completed (before waiting for the webhook). */
  readonly cpuAtDone: number
  /** CPU ms per message by thread kind (main, V8 helpers, libuv pool, the SQLite writer), over the whole round. */
  readonly threads: Readonly<Record<string, number>>
  readonly behind: number
}

/** CPU ms of each of a process's threads, summed by thread name (/proc/PID/task/TID: comm and stat). */
const threadCpu = (pid: number): Map<string, number> => {
  const out = new Map<string, number>()
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim()
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
      const kind = tid === String(pid) ? "main" : comm
      out.set(kind, (out.get(kind) ?? 0) + ms)
    } catch {
      // a thread that ended between the listing and the read
    }
  }
  return out
}

export const run = async (): Promise<string> => {
  const sinkPort = await freePort()
  const sink = await startChild("smtp-sink", ["-u", "nobody", `127.0.0.1:${sinkPort}`, "1024"], () => true)
  let received = 0
  const hook = createServer((req, res) => {
    req.resume()
    req.on("end", () => {
      received += Number(req.headers["x-missive-event-count"] ?? 1)
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

  const round = async (webhook: boolean): Promise<Round> => {
    const dir = mkdtempSync(join(tmpdir(), "missive-bench-publish-"))
    const extra = webhook
      ? { events: { destinations: [{ name: "hook", webhook: `http://127.0.0.1:${hookPort}/`, secret: "bench-secret-0123456789" }] } }
      : {}
    const node = await startRelay(dir, sinkPort, extra)
    try {
      // A warm-up (not measured), as the relay benchmark has: the node's code paths, the publisher's among them, are
      // compiled and its connections open before the CPU is counted, so the figures are the steady state's.
      received = 0
      await load(node, { messages: warmUp, size: 4096 })
      // Both kinds of node rest a second after it (the webhook's node until the webhook has the warm-up's events).
      const rested = performance.now() + 1000
      const warmDeadline = performance.now() + 60_000
      while ((performance.now() < rested || (webhook && received < 2 * warmUp)) && performance.now() < warmDeadline)
        await new Promise((r) => setTimeout(r, 20))
      if (webhook && received !== 2 * warmUp) throw new Error(`the webhook got ${received} of the warm-up's ${2 * warmUp} events`)
      received = 0
      const pid = node.child.proc.pid!
      const cpu0 = cpuMs(pid)
      const threads0 = threadCpu(pid)
      const ms = await load(node, { messages, size: 4096 })
      const cpuAtDone = cpuMs(pid) - cpu0
      // Each message gives two events (Send, Delivery). The CPU is read once the webhook has them all (at most 60 s
      // later), so that it includes every request the publisher made.
      const behind = webhook ? 2 * messages - received : 0
      const deadline = performance.now() + 60_000
      while (webhook && received < 2 * messages && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      if (webhook && received < 2 * messages) throw new Error(`the webhook got ${received} of ${2 * messages} events`)
      const cpu = cpuMs(pid) - cpu0
      const threads = Object.fromEntries(
        [...threadCpu(pid)].map(([kind, t]) => [kind, (t - (threads0.get(kind) ?? 0)) / messages] as const).filter(([, t]) => t > 0)
      )
      return { perSecond: (messages * 1000) / ms, cpuPerMsg: cpu / messages, cpuAtDone: cpuAtDone / messages, threads, behind }
    } finally {
      await node.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }

  const plain: Array<Round> = []
  const hooked: Array<Round> = []
  try {
    for (let i = 0; i < rounds; i++) {
      plain.push(await round(false))
      hooked.push(await round(true))
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
    return `| ${name} | ${f(rate, 0)} | ${median(rate).toFixed(0)} | ${f(cpu, 2)} | ${median(cpu).toFixed(2)} | ${mean(cpu).toFixed(2)} | ${median(done).toFixed(2)} | ${rs.map((r) => r.behind).join(" / ")} |`
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
    `${messages} messages of 4 KB per round after a warm-up of ${warmUp} (not measured), smtp-source 20 sessions → Missive → smtp-sink, loopback, ${rounds} alternating rounds, ${new Date().toISOString().slice(0, 16)} UTC, load average ${load0.toFixed(1)} at the start, ${load1.toFixed(1)} at the end.`,
    ``,
    `| node | msgs/s per round | median | CPU ms per message per round | median | mean | median at the last completion | events not yet at the webhook when the last message completed |`,
    `| --- | --- | --- | --- | --- | --- | --- | --- |`,
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
