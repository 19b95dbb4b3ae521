// The cost of delivery events pushed out: the relay benchmark's load (smtp-source, 20 sessions → Missive →
// smtp-sink, loopback) through one node without an events destination and one with a webhook subscriber (an HTTP
// server in this process that checks nothing and answers 204), in alternating rounds on fresh data directories.
// Reports throughput, the node's CPU per message (read once the webhook has every event), and how far the webhook
// was behind when the last message completed. The webhook takes the defaults: batches of up to 100, 200 ms linger.
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { cpuMs, freePort, startChild } from "../test/src/Support.js"
import { load, startRelay } from "./relay.bench.js"

interface Round {
  readonly perSecond: number
  readonly cpuPerMsg: number
  readonly behind: number
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

  const round = async (webhook: boolean): Promise<Round> => {
    const dir = mkdtempSync(join(tmpdir(), "missive-bench-publish-"))
    const extra = webhook
      ? { events: { destinations: [{ name: "hook", webhook: `http://127.0.0.1:${hookPort}/`, secret: "bench-secret-0123456789" }] } }
      : {}
    const node = await startRelay(dir, sinkPort, extra)
    try {
      received = 0
      const cpu0 = cpuMs(node.child.proc.pid!)
      const ms = await load(node, { messages, size: 4096 })
      // Each message gives two events (Send, Delivery). The CPU is read once the webhook has them all (at most 60 s
      // later), so that it includes every request the publisher made.
      const behind = webhook ? 2 * messages - received : 0
      const deadline = performance.now() + 60_000
      while (webhook && received < 2 * messages && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      if (webhook && received < 2 * messages) throw new Error(`the webhook got ${received} of ${2 * messages} events`)
      const cpu = cpuMs(node.child.proc.pid!) - cpu0
      return { perSecond: (messages * 1000) / ms, cpuPerMsg: cpu / messages, behind }
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
  const mean = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0) / xs.length
  const row = (name: string, rs: ReadonlyArray<Round>) =>
    `| ${name} | ${rs.map((r) => r.perSecond.toFixed(0)).join(" / ")} | ${mean(rs.map((r) => r.perSecond)).toFixed(0)} | ${mean(rs.map((r) => r.cpuPerMsg)).toFixed(2)} | ${rs.map((r) => r.cpuPerMsg.toFixed(2)).join(" / ")} | ${rs.map((r) => r.behind).join(" / ")} |`
  const slower = 1 - mean(hooked.map((r) => r.perSecond)) / mean(plain.map((r) => r.perSecond))
  const cpuMore = mean(hooked.map((r) => r.cpuPerMsg)) / mean(plain.map((r) => r.cpuPerMsg)) - 1
  return [
    `### Relay with a webhook subscriber (\`npm run bench -- publish\`)`,
    ``,
    `${messages} messages of 4 KB per round, smtp-source 20 sessions → Missive → smtp-sink, loopback, ${rounds} alternating rounds, ${new Date().toISOString().slice(0, 10)}.`,
    ``,
    `| node | msgs/s per round | mean msgs/s | CPU ms per message (mean) | per round | events not yet at the webhook when the last message completed |`,
    `| --- | --- | --- | --- | --- | --- |`,
    row("no events destination", plain),
    row("one webhook (Send + Delivery per message)", hooked),
    ``,
    `With the webhook: throughput ${Math.abs(slower * 100).toFixed(1)} % ${slower >= 0 ? "lower" : "higher"}, CPU per message ${Math.abs(cpuMore * 100).toFixed(1)} % ${cpuMore >= 0 ? "higher" : "lower"}.`
  ].join("\n")
}
