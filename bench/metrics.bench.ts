// The cost of the admin listener and its metrics: the relay benchmark's load (smtp-source, 20 sessions → Missive →
// smtp-sink, loopback) through one node with `listeners.http` disabled and one with it enabled and /metrics scraped
// every second (the event-derived view folding every event), in alternating rounds on fresh data directories.
// Reports throughput and the node's CPU per message, each round and the medians.
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Http } from "@missive/node"
import { cpuMs, freePort, startChild } from "../test/src/Support.js"
import { load, startRelay } from "./relay.bench.js"

const TOKEN = "bench-metrics-token-0123456789"

interface Round {
  readonly perSecond: number
  readonly cpuPerMsg: number
  readonly scrapes: number
}

export const run = async (): Promise<string> => {
  const sinkPort = await freePort()
  const sink = await startChild("smtp-sink", ["-u", "nobody", `127.0.0.1:${sinkPort}`, "1024"], () => true)
  const scale = Number(process.env["MISSIVE_BENCH_SCALE"] ?? 1)
  const messages = Math.max(200, Math.round(3000 * scale))
  const rounds = Math.max(1, Number(process.env["MISSIVE_BENCH_ROUNDS"] ?? 3))

  const round = async (metrics: boolean): Promise<Round> => {
    const dir = mkdtempSync(join(tmpdir(), "missive-bench-metrics-"))
    const smtp = await freePort()
    const http = await freePort()
    const node = await startRelay(dir, sinkPort, {
      listeners: {
        smtp: { host: "127.0.0.1", port: smtp },
        submission: { enabled: false },
        http: metrics ? { port: http } : { enabled: false }
      },
      http: { tokens: [{ name: "prometheus", scope: "read", hash: Http.hashToken(TOKEN) }] }
    })
    let scrapes = 0
    const scrape = () =>
      fetch(`http://127.0.0.1:${http}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
        .then((r) => r.text())
        .then(() => void (scrapes += 1))
        .catch(() => {})
    const scraper = metrics ? setInterval(() => void scrape(), 1000) : undefined
    try {
      const cpu0 = cpuMs(node.child.proc.pid!)
      const ms = await load(node, { messages, size: 4096, port: smtp })
      return { perSecond: (messages * 1000) / ms, cpuPerMsg: (cpuMs(node.child.proc.pid!) - cpu0) / messages, scrapes }
    } finally {
      if (scraper) clearInterval(scraper)
      await node.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }

  const off: Array<Round> = []
  const on: Array<Round> = []
  try {
    for (let i = 0; i < rounds; i++) {
      off.push(await round(false))
      on.push(await round(true))
    }
  } finally {
    await sink.stop()
  }
  const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const row = (name: string, rs: ReadonlyArray<Round>) =>
    `| ${name} | ${rs.map((r) => r.perSecond.toFixed(0)).join(" / ")} | ${median(rs.map((r) => r.perSecond)).toFixed(0)} | ${rs.map((r) => r.cpuPerMsg.toFixed(3)).join(" / ")} | ${median(rs.map((r) => r.cpuPerMsg)).toFixed(3)} |`
  const cpuDelta = (median(on.map((r) => r.cpuPerMsg)) / median(off.map((r) => r.cpuPerMsg)) - 1) * 100
  const rateDelta = (median(on.map((r) => r.perSecond)) / median(off.map((r) => r.perSecond)) - 1) * 100
  return [
    `## Admin listener and metrics (\`npm run bench -- metrics\`)`,
    ``,
    `Load: smtp-source, 20 sessions, ${messages} messages of 4 KiB per round, → Missive (one node, SQLite) → smtp-sink, loopback; ${rounds} alternating rounds, fresh data directory each, ${new Date().toISOString().slice(0, 10)}, load average ${(await import("node:os")).loadavg()[0]!.toFixed(1)} at the end.`,
    ``,
    `| listeners.http | msgs/s per round | median | node CPU ms/msg per round | median |`,
    `| --- | --- | --- | --- | --- |`,
    row("disabled", off),
    row(`enabled, /metrics scraped every second (${on.map((r) => r.scrapes).join("/")} scrapes)`, on),
    ``,
    `With the listener and scrapes: ${cpuDelta >= 0 ? "+" : ""}${cpuDelta.toFixed(1)} % CPU per message, ${rateDelta >= 0 ? "+" : ""}${rateDelta.toFixed(1)} % throughput (medians).`
  ].join("\n")
}
