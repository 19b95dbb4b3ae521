// `missive cluster up`: starts an N-server NATS JetStream cluster (nats-server from PATH, data under
// <dir>/nats-K) and N Missive nodes (data under <dir>/node-K) on consecutive loopback ports, and stops them all
// (nodes first, so they drain and hand over) when asked. Loopback only; must not touch another cluster's data.
import { spawn, type ChildProcess } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { connect as netConnect } from "node:net"
import { join, resolve } from "node:path"
import { stringify } from "yaml"

export interface LaunchOptions {
  readonly nodes: number
  readonly dir: string
  /** First NATS client port. */
  readonly natsPort: number
  /** First NATS route (cluster) port; default natsPort + 1000. */
  readonly routePort?: number
  /** First SMTP port; submission ports start at submissionPort. */
  readonly smtpPort: number
  readonly submissionPort: number
  /** Extra configuration merged under each node's (YAML object). */
  readonly base: Record<string, unknown>
  readonly missive: string
  readonly out: (line: string) => void
}

export interface Launched {
  readonly nats: ReadonlyArray<string>
  readonly nodes: ReadonlyArray<{ name: string; smtp: number; submission: number; config: string }>
  stop(): Promise<void>
}

const waitPort = async (port: number, ms: number, proc: ChildProcess): Promise<void> => {
  const deadline = Date.now() + ms
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`process exited (${proc.exitCode}) before listening on ${port}`)
    const ok = await new Promise<boolean>((done) => {
      const s = netConnect(port, "127.0.0.1")
      s.once("connect", () => { s.destroy(); done(true) })
      s.once("error", () => done(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port} after ${ms} ms`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

const stopProc = (p: ChildProcess, ms: number) => new Promise<void>((done) => {
  if (p.exitCode !== null || p.signalCode !== null) return done()
  const t = setTimeout(() => p.kill("SIGKILL"), ms)
  p.once("exit", () => { clearTimeout(t); done() })
  p.kill("SIGTERM")
})

export const up = async (o: LaunchOptions): Promise<Launched> => {
  const dir = resolve(o.dir)
  const servers: Array<ChildProcess> = []
  const nodes: Array<ChildProcess> = []
  const urls = Array.from({ length: o.nodes }, (_, k) => `nats://127.0.0.1:${o.natsPort + k}`)
  const routes = Array.from({ length: o.nodes }, (_, k) => (o.routePort ?? o.natsPort + 1000) + k)
  let stopping: Promise<void> | undefined
  const stop = () => (stopping ??= (async () => {
    await Promise.all(nodes.map((p) => stopProc(p, 15_000)))
    await Promise.all(servers.map((p) => stopProc(p, 10_000)))
    process.off("exit", killAll)
  })())
  // Last resort if this process dies of an exception: no nats-server (detached, see below) or node left behind.
  const killAll = () => { for (const p of [...nodes, ...servers]) if (p.exitCode === null && p.signalCode === null) try { p.kill("SIGKILL") } catch { /* gone */ } }
  process.on("exit", killAll)
  try {
    for (let k = 0; k < o.nodes; k++) {
      const sdir = join(dir, `nats-${k + 1}`)
      mkdirSync(sdir, { recursive: true })
      const conf = join(sdir, "server.conf")
      writeFileSync(conf, [
        `server_name: s${k + 1}`, `listen: 127.0.0.1:${o.natsPort + k}`,
        `jetstream { store_dir: "${join(sdir, "js")}" }`,
        ...(o.nodes > 1 ? [`cluster { name: missive, listen: 127.0.0.1:${routes[k]}, routes: [${routes.filter((_, j) => j !== k).map((p) => `nats-route://127.0.0.1:${p}`).join(", ")}] }`] : [])
      ].join("\n"))
      // Its own process group: a Ctrl-C at the terminal must not stop NATS under nodes that are still draining;
      // stop() ends the servers after the nodes.
      const p = spawn("nats-server", ["-c", conf], { stdio: ["ignore", "ignore", "inherit"], detached: true })
      servers.push(p)
    }
    await Promise.all(servers.map((p, k) => waitPort(o.natsPort + k, 15_000, p)))
    const made: Array<{ name: string; smtp: number; submission: number; config: string }> = []
    for (let k = 0; k < o.nodes; k++) {
      const name = `node-${k + 1}`
      const ndir = join(dir, name)
      mkdirSync(ndir, { recursive: true })
      const config = join(ndir, "missive.yaml")
      const smtp = o.smtpPort + k
      const submission = o.submissionPort + k
      writeFileSync(config, stringify({
        ...o.base, node_id: name, data_dir: ndir,
        listeners: { smtp: { host: "127.0.0.1", port: smtp }, submission: { host: "127.0.0.1", port: submission } },
        cluster: { ...((o.base["cluster"] as object | undefined) ?? {}), nats: urls }
      }))
      const p = spawn(process.execPath, [o.missive, "start", "--config", config], { stdio: ["ignore", "inherit", "inherit"] })
      nodes.push(p)
      made.push({ name, smtp, submission, config })
    }
    await Promise.all(nodes.map((p, k) => waitPort(o.smtpPort + k, 60_000, p)))
    o.out(`missive cluster: ${o.nodes} NATS servers (${urls.join(", ")}), data in ${dir}`)
    for (const n of made) o.out(`  ${n.name}: smtp 127.0.0.1:${n.smtp}, submission 127.0.0.1:${n.submission} (config ${n.config})`)
    return { nats: urls, nodes: made, stop }
  } catch (e) {
    await stop()
    throw e
  }
}
