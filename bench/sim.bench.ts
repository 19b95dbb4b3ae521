// Throughput through the simulation harness: the harness's own ceiling (senders straight into the simulated receivers,
// no MTA), Missive as one node process and as the embedded node (in the harness's process), and Postfix (a private
// instance in a temp dir) side by side on the same closed-loop traffic in the same run. Reports msgs/s, CPU per message,
// latency percentiles and the ratios. Measures; asserts nothing.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { stringify } from "yaml"
import { ROOT } from "../test/src/Harness.js"
import { Run, Scenario, Target as Targets, type Report, type Target } from "@missive/simulations"
import { cpuMs, freePort, startChild } from "../test/src/Support.js"
import * as Postfix from "./Postfix.js"

const N = Number(process.env["SIM_BENCH_MESSAGES"] ?? 3000)
/** The ceiling run sends more: at several thousand msgs/s, N messages last well under a second. */
const CEILING = N * 4

const scenario = (messages: number): Scenario.Scenario => {
  const r = Scenario.parse(`
name: bench
description: closed loop, 16 connections, 2 KB messages, one recipient each, one well-behaved destination
drain: 120s
senders: { connections: 16, loop: closed, messages: ${messages}, sizes: [{ size: 2KB }], recipients: { min: 1, max: 1 }, domains: [bench-sender.sim] }
destinations:
  - { domain: bench.sim, weight: 1 }
`)
  if (!r.ok) throw new Error(r.errors.join("\n"))
  return r.scenario
}

const postfixTarget = (): Target.Spec => ({
  kind: "custom",
  name: "postfix",
  start: async (world) => {
    const routes = new Map<string, string>([...world.hosts].map(([d, a]) => [d, a[0]!]))
    const pf = Postfix.start({ port: await freePort(), routes, receiversPort: world.port })
    return { endpoint: { host: "127.0.0.1", port: pf.port }, cpuMs: () => pf.cpuMs(), stop: async () => pf.stop() }
  }
})

/** Missive as its own process (`missive start`), configured exactly like the embedded target, its CPU from /proc. */
const nodeProcessTarget = (): Target.Spec => ({
  kind: "custom",
  name: "missive (1 node process)",
  start: async (world) => {
    const dir = mkdtempSync(join(tmpdir(), "missive-simbench-"))
    const port = await freePort()
    const config = await Targets.embeddedConfig(scenario(N), world, join(dir, "data"))
    const path = join(dir, "missive.yaml")
    writeFileSync(path, stringify({ ...config, listeners: { smtp: { host: "127.0.0.1", port }, submission: { enabled: false } } }))
    const child = await startChild(
      process.execPath,
      [join(ROOT, "bin/missive.mjs"), "start", "--config", path, "--allow-root"],
      (out) => out.includes("listening on"),
      { cwd: ROOT, env: { ...process.env, MISSIVE_LOG_LEVEL: "warn" }, timeoutMs: 60_000 }
    )
    const pid = child.proc.pid!
    return {
      endpoint: { host: "127.0.0.1", port },
      cpuMs: () => cpuMs(pid),
      stop: async () => {
        await child.stop()
        rmSync(dir, { recursive: true, force: true })
      }
    }
  }
})

interface Row {
  readonly name: string
  readonly r: Report.Report
  readonly cpuPerMsg: string
}

const fmt = (x: number): string => x.toFixed(x >= 100 ? 0 : 1)

export const run = async (): Promise<string> => {
  const rows: Array<Row> = []
  const notes: Array<string> = []
  const direct = await Run.run({ scenario: scenario(CEILING), target: { kind: "direct" } })
  const harnessCpu = (direct.cpuMs ?? 0) / Math.max(1, direct.counts.accepted)
  rows.push({ name: "harness ceiling (direct, no MTA)", r: direct, cpuPerMsg: `${harnessCpu.toFixed(2)} (harness)` })
  const missive = await Run.run({ scenario: scenario(N), target: nodeProcessTarget() })
  rows.push({
    name: "Missive, 1 node process",
    r: missive,
    cpuPerMsg: `${((missive.targetCpuMs ?? 0) / Math.max(1, missive.counts.accepted)).toFixed(2)} node`
  })
  const embedded = await Run.run({ scenario: scenario(N), target: { kind: "embedded" } })
  const mTotal = (embedded.cpuMs ?? 0) / Math.max(1, embedded.counts.accepted)
  rows.push({
    name: "Missive, embedded node (in the harness's process)",
    r: embedded,
    cpuPerMsg: `${mTotal.toFixed(2)} total, ≈${(mTotal - harnessCpu).toFixed(2)} node`
  })
  try {
    // The 3-node cluster on a 3-server NATS JetStream cluster (R3): every acknowledged message is on a quorum.
    const cluster = await Run.run({ scenario: scenario(N), target: { kind: "cluster", nodes: 3 } })
    rows.push({
      name: "Missive, 3-node cluster (NATS JetStream R3)",
      r: cluster,
      cpuPerMsg:
        cluster.targetCpuMs === undefined ? "–" : `${(cluster.targetCpuMs / Math.max(1, cluster.counts.accepted)).toFixed(2)} nodes`
    })
  } catch (e) {
    notes.push(`Cluster not measured: ${(e as Error).message.split("\n")[0]}`)
  }
  const why = Postfix.available()
  let postfix: Report.Report | undefined
  if (why) notes.push(`Postfix not measured: ${why}.`)
  else {
    try {
      postfix = await Run.run({ scenario: scenario(N), target: postfixTarget() })
      rows.push({
        name: "Postfix 3.7 (private instance)",
        r: postfix,
        cpuPerMsg: `${((postfix.targetCpuMs ?? 0) / Math.max(1, postfix.counts.accepted)).toFixed(2)} postfix`
      })
    } catch (e) {
      notes.push(`Postfix not measured: ${(e as Error).message.split("\n")[0]}`)
    }
  }
  const table = [
    "| target | accepted msgs/s | delivered msgs/s | CPU ms/msg | accept p50 / p99 ms | end-to-end p50 / p99 ms | lost |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rows.map(
      ({ name, r, cpuPerMsg }) =>
        `| ${name} | ${fmt(r.acceptRate)} | ${fmt(r.deliverRate)} | ${cpuPerMsg} | ${fmt(r.acceptLatency.p50)} / ${fmt(r.acceptLatency.p99)} | ${r.endToEnd.count ? `${fmt(r.endToEnd.p50)} / ${fmt(r.endToEnd.p99)}` : "-"} | ${r.counts.lost} |`
    )
  ]
  const ratios = [
    `The harness ceiling is ${(direct.acceptRate / missive.acceptRate).toFixed(1)}× Missive's rate (1 node process): Missive reaches ${((missive.acceptRate / direct.acceptRate) * 100).toFixed(0)}% of it, so the harness is not what limits the measurement.`,
    ...(postfix
      ? [
          `Missive / Postfix: ${(missive.acceptRate / postfix.acceptRate).toFixed(2)}× accepted msgs/s, ${(missive.deliverRate / postfix.deliverRate).toFixed(2)}× delivered msgs/s.`
        ]
      : [])
  ]
  return [
    "## Simulation harness: throughput (single node)",
    "",
    `Closed loop, 16 sender connections, 2 KB messages with one recipient, one well-behaved simulated destination; ${N} messages (${CEILING} for the ceiling). ` +
      "Same host, 2 cores shared by senders, receivers and the MTA. Command: `npm run bench -- sim` (SIM_BENCH_MESSAGES to change N).",
    "",
    ...table,
    "",
    ...ratios,
    "",
    "CPU per message: the node process's utime+stime (/proc/PID/stat). The harness and the embedded node share one process (process.cpuUsage), so its node share is that total minus the harness's own per-message cost from the ceiling run (there too each message is sent and received once); the embedded node also shares the harness's event loop, which is why the node process is the figure to compare. Postfix's is the sum of utime+stime of its master and children. Missive runs with synchronous=FULL (an fsync per group commit); Postfix fsyncs each queue file.",
    ...notes.map((n) => `\n${n}`)
  ].join("\n")
}
