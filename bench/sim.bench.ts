// Throughput through the simulation harness: the harness's own ceiling (senders straight into the simulated receivers,
// no MTA), a single embedded Missive node, and Postfix (a private instance in a temp dir) side by side on the same
// closed-loop traffic. Reports msgs/s, CPU per message, latency percentiles and the ratios. Measures; asserts nothing.
import { freePort } from "../test/src/Harness.js"
import { Run, Scenario, type Report, type Target } from "../simulations/src/index.js"
import * as Postfix from "./Postfix.js"

const N = Number(process.env["SIM_BENCH_MESSAGES"] ?? 3000)

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
  kind: "custom", name: "postfix",
  start: async (world) => {
    const routes = new Map<string, string>([...world.hosts].map(([d, a]) => [d, a[0]!]))
    const pf = Postfix.start({ port: await freePort(), routes, receiversPort: world.port })
    return { endpoint: { host: "127.0.0.1", port: pf.port }, cpuMs: () => pf.cpuMs(), stop: async () => pf.stop() }
  }
})

interface Row { readonly name: string; readonly r: Report.Report; readonly cpuPerMsg: string }

const fmt = (x: number): string => x.toFixed(x >= 100 ? 0 : 1)

export const run = async (): Promise<string> => {
  const rows: Array<Row> = []
  const notes: Array<string> = []
  const direct = await Run.run({ scenario: scenario(N * 2), target: { kind: "direct" } })
  const harnessCpu = (direct.cpuMs ?? 0) / Math.max(1, direct.counts.accepted)
  rows.push({ name: "harness ceiling (direct, no MTA)", r: direct, cpuPerMsg: `${harnessCpu.toFixed(2)} (harness)` })
  const missive = await Run.run({ scenario: scenario(N), target: { kind: "embedded" } })
  const mTotal = (missive.cpuMs ?? 0) / Math.max(1, missive.counts.accepted)
  rows.push({ name: "Missive, 1 embedded node", r: missive, cpuPerMsg: `${mTotal.toFixed(2)} total, ≈${(mTotal - harnessCpu).toFixed(2)} node` })
  const why = Postfix.available()
  let postfix: Report.Report | undefined
  if (why) notes.push(`Postfix not measured: ${why}.`)
  else {
    try {
      postfix = await Run.run({ scenario: scenario(N), target: postfixTarget() })
      rows.push({ name: "Postfix 3.7 (private instance)", r: postfix, cpuPerMsg: `${((postfix.targetCpuMs ?? 0) / Math.max(1, postfix.counts.accepted)).toFixed(2)} postfix` })
    } catch (e) {
      notes.push(`Postfix not measured: ${(e as Error).message.split("\n")[0]}`)
    }
  }
  const table = [
    "| target | accepted msgs/s | delivered msgs/s | CPU ms/msg | accept p50 / p99 ms | end-to-end p50 / p99 ms | lost |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rows.map(({ name, r, cpuPerMsg }) =>
      `| ${name} | ${fmt(r.acceptRate)} | ${fmt(r.deliverRate)} | ${cpuPerMsg} | ${fmt(r.acceptLatency.p50)} / ${fmt(r.acceptLatency.p99)} | ${r.endToEnd.count ? `${fmt(r.endToEnd.p50)} / ${fmt(r.endToEnd.p99)}` : "-"} | ${r.counts.lost} |`)
  ]
  const ratios = [
    `Missive reaches ${((missive.acceptRate / direct.acceptRate) * 100).toFixed(0)}% of the harness ceiling (accepted msgs/s).`,
    ...(postfix ? [`Missive / Postfix: ${(missive.acceptRate / postfix.acceptRate).toFixed(2)}× accepted msgs/s, ${(missive.deliverRate / postfix.deliverRate).toFixed(2)}× delivered msgs/s.`] : [])
  ]
  return [
    "## Simulation harness: throughput (single node)",
    "",
    `Closed loop, 16 sender connections, 2 KB messages with one recipient, one well-behaved simulated destination; ${N} messages (${N * 2} for the ceiling). ` +
      "Same host, 2 cores shared by senders, receivers and the MTA. Command: `npm run bench -- sim` (SIM_BENCH_MESSAGES to change N).",
    "",
    ...table,
    "",
    ...ratios,
    "",
    "CPU per message: the harness and the embedded node share one process (process.cpuUsage); the node's share is that total minus the harness's own per-message cost from the ceiling run (there too each message is sent and received once). Postfix's is the sum of utime+stime of its master and children (/proc/PID/stat). Missive runs with synchronous=FULL (an fsync per group commit); Postfix fsyncs each queue file.",
    ...notes.map((n) => `\n${n}`)
  ].join("\n")
}
