// Relay throughput with sender authentication: the relay benchmark's node (smtp-source, 20 sessions → Missive →
// smtp-sink) with no filters, then with filter.auth.smtp.verify (SPF at MAIL, DKIM and ARC verification, DMARC at the
// end of DATA, Authentication-Results:) against records served by a DNS server on loopback. smtp-source's messages
// carry no DKIM signature, so the DKIM step parses the header section and finds nothing to check: the figure is
// SPF + DMARC lookups and the header work, not RSA verification.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startDnsServer } from "../test/src/DnsServer.js"
import { cpuMs, freePort, startChild } from "../test/src/Support.js"
import { load, startRelay } from "./relay.bench.js"

export const run = async (): Promise<string> => {
  const dir = mkdtempSync(join(tmpdir(), "missive-bench-auth-"))
  const sinkPort = await freePort()
  const sink = await startChild("smtp-sink", ["-u", "nobody", `127.0.0.1:${sinkPort}`, "1024"], () => true)
  await new Promise((r) => setTimeout(r, 300))
  const dns = await startDnsServer({
    "src.test": { txt: ["v=spf1 ip4:127.0.0.1 -all"] },
    "_dmarc.src.test": { txt: ["v=DMARC1; p=reject"] }
  })
  const scale = Number(process.env["MISSIVE_BENCH_SCALE"] ?? 1)
  const n = (x: number) => Math.max(50, Math.round(x * scale))
  const rows: Array<{ name: string; messages: number; perSecond: number; nodeCpu: number }> = []
  try {
    for (const verify of [false, true]) {
      const nodeDir = join(dir, verify ? "auth" : "plain")
      mkdirSync(nodeDir)
      const node = await startRelay(
        nodeDir,
        sinkPort,
        verify
          ? { dns: { servers: [dns.server], timeout: "2s" }, filter: { auth: { smtp: { verify: true, dmarc: "enforce" } } } }
          : { dns: { servers: [dns.server], timeout: "2s" } }
      )
      try {
        await load(node, { messages: n(300), size: 4096 })
        const messages = n(3000)
        const c0 = cpuMs(node.child.proc.pid!)
        const ms = await load(node, { messages, size: 4096 })
        rows.push({
          name: verify ? "SPF + DKIM + ARC + DMARC" : "no filters",
          messages,
          perSecond: (messages * 1000) / ms,
          nodeCpu: (cpuMs(node.child.proc.pid!) - c0) / messages
        })
      } finally {
        await node.stop()
      }
    }
  } finally {
    await sink.stop("SIGKILL")
    await dns.close()
    rmSync(dir, { recursive: true, force: true })
  }
  const [a, b] = rows
  const slower = a && b ? `${((1 - b.perSecond / a.perSecond) * 100).toFixed(0)} %` : "n/a"
  return [
    `## Relay throughput with sender authentication (\`npm run bench -- auth\`)`,
    ``,
    `Load: smtp-source, 20 sessions, 4 KB messages → Missive → smtp-sink, loopback, ${new Date().toISOString().slice(0, 10)}; ` +
      `SPF and DMARC records served by the loopback DNS server (unsigned messages: DKIM finds no signature).`,
    ``,
    `| run | messages | msgs/s | node CPU ms/msg |`,
    `| --- | ---: | ---: | ---: |`,
    ...rows.map((r) => `| ${r.name} | ${r.messages} | ${r.perSecond.toFixed(0)} | ${r.nodeCpu.toFixed(2)} |`),
    ``,
    `Throughput lost to sender authentication: ${slower}.`
  ].join("\n")
}
