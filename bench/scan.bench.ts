// Relay throughput with content scanning: the relay benchmark's node (smtp-source, 20 sessions → Missive → smtp-sink)
// without filters, then with rspamd and ClamAV (Debian's daemons, started as the tests start them: loopback, no
// network, rspamd's DNS a loopback server, clamd with only the EICAR signature). CPU of the node, of rspamd (its main
// process and workers) and of clamd, each per message.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startClamd } from "../test/src/Clamd.js"
import { startDnsServer } from "../test/src/DnsServer.js"
import { startRspamd } from "../test/src/Rspamd.js"
import { cpuMs, freePort, startChild } from "../test/src/Support.js"
import { load, startRelay } from "./relay.bench.js"

/** utime + stime of every process in a process group (rspamd's main process and its workers), ms. */
const groupCpuMs = (pgid: number): number => {
  let total = 0
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (Number(fields[2]) !== pgid) continue
      total += cpuMs(Number(pid))
    } catch {
      // the process ended meanwhile
    }
  }
  return total
}

interface Row {
  readonly name: string
  readonly messages: number
  readonly perSecond: number
  readonly nodeCpu: number
  readonly rspamdCpu?: number | undefined
  readonly clamdCpu?: number | undefined
}

export const run = async (): Promise<string> => {
  const dir = mkdtempSync(join(tmpdir(), "missive-bench-scan-"))
  const sinkPort = await freePort()
  const sink = await startChild("smtp-sink", ["-u", "nobody", `127.0.0.1:${sinkPort}`, "1024"], () => true)
  await new Promise((r) => setTimeout(r, 300))
  const dns = await startDnsServer()
  const [rspamd, clamd] = await Promise.all([startRspamd({ dns: dns.server }), startClamd()])
  const scale = Number(process.env["MISSIVE_BENCH_SCALE"] ?? 1)
  const n = (x: number) => Math.max(50, Math.round(x * scale))
  const rows: Array<Row> = []
  try {
    for (const scanning of [false, true]) {
      const nodeDir = join(dir, scanning ? "scan" : "plain")
      mkdirSync(nodeDir)
      const node = await startRelay(
        nodeDir,
        sinkPort,
        scanning ? { filter: { rspamd: { url: rspamd.url }, clamav: { address: `127.0.0.1:${clamd.port}` } } } : {}
      )
      try {
        await load(node, { messages: n(300), size: 4096 })
        for (const size of [4096, 102_400]) {
          const messages = n(size > 10_000 ? 1000 : 3000)
          const c0 = { node: cpuMs(node.child.proc.pid!), rspamd: groupCpuMs(rspamd.pid()!), clamd: cpuMs(clamd.pid()!) }
          const ms = await load(node, { messages, size })
          const per = (x: number) => x / messages
          rows.push({
            name: `${scanning ? "rspamd + ClamAV" : "no filters"}, ${size / 1024} KB`,
            messages,
            perSecond: (messages * 1000) / ms,
            nodeCpu: per(cpuMs(node.child.proc.pid!) - c0.node),
            ...(scanning ? { rspamdCpu: per(groupCpuMs(rspamd.pid()!) - c0.rspamd), clamdCpu: per(cpuMs(clamd.pid()!) - c0.clamd) } : {})
          })
        }
      } finally {
        await node.stop()
      }
    }
  } finally {
    await Promise.all([rspamd.dispose(), clamd.dispose(), sink.stop("SIGKILL")])
    await dns.close()
    rmSync(dir, { recursive: true, force: true })
  }
  const f = (x: number | undefined, d = 2) => (x === undefined ? "–" : x.toFixed(d))
  const slower = (kb: number) => {
    const a = rows.find((r) => r.name === `no filters, ${kb} KB`)
    const b = rows.find((r) => r.name === `rspamd + ClamAV, ${kb} KB`)
    return a && b ? `${((1 - b.perSecond / a.perSecond) * 100).toFixed(0)} %` : "n/a"
  }
  return [
    `## Relay throughput with rspamd and ClamAV (\`npm run bench -- scan\`)`,
    ``,
    `Load: smtp-source, 20 sessions, one message per session → Missive → smtp-sink, loopback, ${new Date().toISOString().slice(0, 10)}; ` +
      `rspamd ${"3.4"} (Debian's packaged rules, one normal worker, no redis, hyperscan off) and clamd 1.4 (one signature) on the same machine.`,
    `CPU is user+system time per message: the node process, rspamd's process group, clamd.`,
    ``,
    `| run | messages | msgs/s | node CPU ms/msg | rspamd CPU ms/msg | clamd CPU ms/msg |`,
    `| --- | ---: | ---: | ---: | ---: | ---: |`,
    ...rows.map((r) => `| ${r.name} | ${r.messages} | ${f(r.perSecond, 0)} | ${f(r.nodeCpu)} | ${f(r.rspamdCpu)} | ${f(r.clamdCpu)} |`),
    ``,
    `Throughput lost to scanning: ${slower(4)} at 4 KB, ${slower(100)} at 100 KB.`
  ].join("\n")
}
