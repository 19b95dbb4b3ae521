// `missive cluster up`: starts an N-server NATS JetStream cluster (nats-server from PATH, data under
// <dir>/nats-K) and N Missive nodes (data under <dir>/node-K) on consecutive loopback ports, and stops them all
// (nodes first, so they drain and hand over) when asked. Loopback only; must not touch another cluster's data.
//
// JetStream writes are synced (`jetstream { sync_interval: always }`, nats-server 2.10.23+, checked on each server's
// /varz once it runs); a nats-server older than NATS_MIN (2.11.0) is refused unless `allowOldNats`. Each process
// writes its log to a file in its own directory (nats-K/nats-server.log, node-K/node.log); what the launcher prints is
// where things listen, when the cluster is ready, and afterwards only a process that went down.
import { execFileSync, spawn, type ChildProcess } from "node:child_process"
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join, relative, resolve } from "node:path"
import { stringify } from "yaml"
import * as Net from "../runtime/Net.js"

/** The first nats-server with `jetstream { sync_interval: always }` (an fsync per JetStream write). */
export const SYNC_ALWAYS_SINCE = "2.10.23"
/**
 * The oldest nats-server Missive's cluster runs on by default: 2.10's replicated consumers could move past a message
 * never delivered after a consumer leader change, and on a work-queue stream (the inbox) remove it — an acknowledged
 * message lost (seen in the partition test; fixed in 2.11.0, nats-server PR #6566).
 */
export const NATS_MIN = "2.11.0"

/** True for a nats-server version older than NATS_MIN ("2.10.27"); false for a newer one or none known. */
export const tooOld = (version: string | undefined): boolean => version !== undefined && !versionAtLeast(version, NATS_MIN)

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
  /** Run on a nats-server older than NATS_MIN (before 2.10.23 also with JetStream data fsynced only every 2 minutes). */
  readonly allowOldNats?: boolean
  /** Passes `--allow-root` to each node (`missive start` refuses root without it): the caller's own choice, forwarded. */
  readonly allowRoot?: boolean
  /** How long the NATS servers may take to form their JetStream meta group; default 60 s. */
  readonly formMs?: number
  readonly out: (line: string) => void
}

export interface Launched {
  readonly nats: ReadonlyArray<string>
  readonly nodes: ReadonlyArray<{ name: string; smtp: number; submission: number; config: string; log: string }>
  readonly servers: ReadonlyArray<{ name: string; url: string; monitor: string | undefined; log: string }>
  /** Whether every server runs with synced JetStream writes. */
  readonly synced: boolean
  stop(): Promise<void>
}

/** Refused before anything starts (too old a nats-server, none on the PATH): the message says why and what to do. */
export class LaunchRefused extends Error {}

export const versionAtLeast = (v: string, min: string): boolean => {
  const a = v.split(/[.-]/).map((x) => Number.parseInt(x, 10) || 0)
  const b = min.split(".").map(Number)
  for (let i = 0; i < b.length; i++) if ((a[i] ?? 0) !== b[i]) return (a[i] ?? 0) > b[i]!
  return true
}

/** `nats-server --version` of the one on the PATH ("2.10.27"); undefined when there is none. */
export const natsServerVersion = (): string | undefined => {
  try {
    const out = execFileSync("nats-server", ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
    return out.match(/\d+\.\d+\.\d+/)?.[0]
  } catch {
    return undefined
  }
}

const waitPort = (port: number, ms: number, proc: ChildProcess, what: string): Promise<void> =>
  Net.waitPort(port, { ms, what, alive: () => proc.exitCode === null && proc.signalCode === null })

const stopProc = (p: ChildProcess, ms: number) =>
  new Promise<void>((done) => {
    if (p.exitCode !== null || p.signalCode !== null) return done()
    const t = setTimeout(() => p.kill("SIGKILL"), ms)
    p.once("exit", () => {
      clearTimeout(t)
      done()
    })
    p.kill("SIGTERM")
  })

/** The last `n` non-empty lines of a log file, for a message about a process that went down. */
const tail = (file: string, n: number): Array<string> => {
  try {
    return readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .slice(-n)
  } catch {
    return []
  }
}

/** A server's monitoring URL from its ports file (`http: 127.0.0.1:-1`: a free port, named there). */
const monitorOf = async (portsDir: string, ms: number): Promise<string | undefined> => {
  const deadline = Date.now() + ms
  for (;;) {
    const file = existsSync(portsDir) ? readdirSync(portsDir).find((f) => f.endsWith(".ports")) : undefined
    if (file) {
      try {
        return (JSON.parse(readFileSync(join(portsDir, file), "utf8")) as { monitoring?: Array<string> }).monitoring?.[0]
      } catch {
        /* partially written: read again */
      }
    }
    if (Date.now() > deadline) return undefined
    await new Promise((r) => setTimeout(r, 50))
  }
}

interface MetaView {
  readonly server: string
  readonly leader: string | undefined
  readonly size: number | undefined
  readonly replicas: ReadonlyArray<{ name: string; current: boolean; offline?: boolean; active?: number }>
  readonly error?: string
}

/** Each server's view of the JetStream meta group (its /jsz): who leads, and the peers the leader sees. */
const metaViews = async (servers: ReadonlyArray<{ name: string; monitor: string | undefined }>): Promise<Array<MetaView>> =>
  Promise.all(
    servers.map(async (s): Promise<MetaView> => {
      try {
        const r = await fetch(`${s.monitor}/jsz`, { signal: AbortSignal.timeout(2_000) })
        const j = (await r.json()) as {
          meta_cluster?: {
            leader?: string
            cluster_size?: number
            replicas?: Array<{ name: string; current: boolean; offline?: boolean; active?: number }>
          }
        }
        return {
          server: s.name,
          leader: j.meta_cluster?.leader || undefined,
          size: j.meta_cluster?.cluster_size,
          replicas: j.meta_cluster?.replicas ?? []
        }
      } catch (e) {
        return { server: s.name, leader: undefined, size: undefined, replicas: [], error: String((e as Error).message ?? e) }
      }
    })
  )

/**
 * Waits until the servers' JetStream meta group has a leader that sees every other server as a current peer, so the
 * nodes' first replicated streams can be placed. Slow formation is reported (each server's view, every 15 s), and a
 * cluster that has not formed after `ms` stops the launch with the last views.
 */
const metaFormed = async (
  servers: ReadonlyArray<{ name: string; monitor: string | undefined }>,
  out: (line: string) => void,
  ms: number,
  rejoin: (name: string) => Promise<void>
): Promise<void> => {
  const t0 = Date.now()
  let told = t0
  let since = t0
  const show = (vs: ReadonlyArray<MetaView>) =>
    vs
      .map(
        (v) =>
          `${v.server}: ${v.error ? `no answer (${v.error})` : `leader ${v.leader ?? "none"}, size ${v.size ?? "?"}, peers [${v.replicas.map((p) => `${p.name}${p.current ? "" : " behind"}${p.offline ? " offline" : ""}`).join(", ")}]`}`
      )
      .join("; ")
  for (;;) {
    const vs = await metaViews(servers)
    const leader = vs.find((v) => v.leader !== undefined && v.leader === v.server)
    if (leader && leader.replicas.filter((p) => p.current && !p.offline).length >= servers.length - 1) return
    const now = Date.now()
    // A leader whose group has stayed without some server for 10 s will not take it in by itself: that server
    // joins again from a fresh state.
    const left = leader ? servers.filter((s) => s.name !== leader.server && !leader.replicas.some((p) => p.name === s.name)) : []
    if (left.length > 0 && now - since >= 10_000) {
      out(`missive cluster: the JetStream meta group formed without ${left.map((s) => s.name).join(", ")}; starting it again to join`)
      for (const s of left) await rejoin(s.name)
      since = Date.now()
      continue
    }
    if (now - t0 > ms) throw new Error(`the NATS servers formed no JetStream cluster in ${ms / 1000} s: ${show(vs)}`)
    if (now - told >= 15_000) {
      told = now
      out(`missive cluster: waiting for the JetStream meta group (${Math.round((now - t0) / 1000)} s): ${show(vs)}`)
    }
    await new Promise((r) => setTimeout(r, 250))
  }
}

export const up = async (o: LaunchOptions): Promise<Launched> => {
  const t0 = Date.now()
  const version = natsServerVersion()
  if (version === undefined)
    throw new LaunchRefused(`no nats-server on the PATH: cluster up needs nats-server ${NATS_MIN} or later (scripts/setup.sh installs it)`)
  const synced = versionAtLeast(version, SYNC_ALWAYS_SINCE)
  if (tooOld(version) && !o.allowOldNats)
    throw new LaunchRefused(
      `nats-server ${version} is older than ${NATS_MIN}: ` +
        (synced
          ? ""
          : `it cannot fsync each JetStream write (jetstream { sync_interval: always }), so mail acknowledged in the ` +
            `last 2 minutes could be lost if a majority of the servers lost power at once; and `) +
        `its replicated consumers can skip, and remove, a message never delivered after a consumer leader change ` +
        `(a partition healing), so an acknowledged message could be lost. Install nats-server ${NATS_MIN} or later ` +
        `(scripts/setup.sh does), or pass --allow-old-nats to run on it anyway.`
    )
  const dir = resolve(o.dir)
  const rel = (p: string) => relative(process.cwd(), p) || "."
  const servers: Array<ChildProcess> = []
  const nodes: Array<ChildProcess> = []
  const urls = Array.from({ length: o.nodes }, (_, k) => `nats://127.0.0.1:${o.natsPort + k}`)
  const routes = Array.from({ length: o.nodes }, (_, k) => (o.routePort ?? o.natsPort + 1000) + k)
  let stopping: Promise<void> | undefined
  const stop = () =>
    (stopping ??= (async () => {
      await Promise.all(nodes.map((p) => stopProc(p, 15_000)))
      await Promise.all(servers.map((p) => stopProc(p, 10_000)))
      process.off("exit", killAll)
    })())
  // Last resort if this process dies of an exception: no nats-server (detached, see below) or node left behind.
  const killAll = () => {
    for (const p of [...nodes, ...servers])
      if (p.exitCode === null && p.signalCode === null)
        try {
          p.kill("SIGKILL")
        } catch {
          /* gone */
        }
  }
  process.on("exit", killAll)
  /** Output after the start: only a process that ended while the cluster was not being stopped. */
  const watch = (p: ChildProcess, what: string, log: string) =>
    p.once("exit", (code, signal) => {
      if (stopping) return
      o.out(`missive cluster: ${what} is DOWN (${signal ? `killed by ${signal}` : `exit code ${code}`}); its log: ${rel(log)}`)
      if (code) for (const l of tail(log, 5)) o.out(`    ${l.length > 200 ? `${l.slice(0, 200)}…` : l}`)
    })
  const openLog = (file: string) => openSync(file, "a")
  const made: Array<{ name: string; url: string; monitor: string | undefined; log: string }> = []
  const spawnServer = (conf: string, log: string): ChildProcess => {
    const fd = openLog(log)
    // Its own process group: a Ctrl-C at the terminal must not stop NATS under nodes that are still draining;
    // stop() ends the servers after the nodes.
    const p = spawn("nats-server", ["-c", conf], { stdio: ["ignore", fd, fd], detached: true })
    closeSync(fd)
    return p
  }
  /**
   * A server the JetStream meta group left out (nats-server 2.10 can bootstrap a group of 2 of 3 that never takes the
   * third in): stopped, its fresh JetStream state removed, started again; it then joins the group as a new peer.
   * Only before any node has started, on a cluster this launch created.
   */
  const rejoin = async (name: string): Promise<void> => {
    const k = Number(name.slice(1)) - 1
    const sdir = join(dir, `nats-${k + 1}`)
    const old = servers[k]!
    await new Promise<void>((done) => {
      if (old.exitCode !== null || old.signalCode !== null) return done()
      old.once("exit", () => done())
      old.kill("SIGKILL")
    })
    rmSync(join(sdir, "js"), { recursive: true, force: true })
    rmSync(join(sdir, "ports"), { recursive: true, force: true })
    mkdirSync(join(sdir, "ports"))
    // The same monitoring port as before: the URL already printed stays true.
    const port = /:(\d+)$/.exec(made[k]!.monitor ?? "")?.[1]
    const conf = join(sdir, "server.conf")
    if (port) writeFileSync(conf, readFileSync(conf, "utf8").replace(`http: "127.0.0.1:-1"`, `http: "127.0.0.1:${port}"`))
    servers[k] = spawnServer(conf, made[k]!.log)
    await waitPort(o.natsPort + k, 15_000, servers[k]!, `nats-server ${name} (log ${rel(made[k]!.log)})`)
    made[k]!.monitor = await monitorOf(join(sdir, "ports"), 5_000)
  }
  try {
    o.out(
      `missive cluster: nats-server ${version}, ${synced ? "JetStream writes synced (sync_interval: always)" : "UNSYNCED JetStream writes (--allow-old-nats: fsync every 2 minutes)"}; data and logs in ${rel(dir)}/`
    )
    for (let k = 0; k < o.nodes; k++) {
      const sdir = join(dir, `nats-${k + 1}`)
      mkdirSync(sdir, { recursive: true })
      const portsDir = join(sdir, "ports")
      rmSync(portsDir, { recursive: true, force: true })
      mkdirSync(portsDir)
      const conf = join(sdir, "server.conf")
      writeFileSync(
        conf,
        [
          `server_name: s${k + 1}`,
          `listen: 127.0.0.1:${o.natsPort + k}`,
          `http: "127.0.0.1:-1"`,
          `ports_file_dir: "${portsDir}"`,
          `jetstream { store_dir: "${join(sdir, "js")}"${synced ? ", sync_interval: always" : ""} }`,
          ...(o.nodes > 1
            ? [
                // Every server's routes list all N, itself included (the server skips its own), as NATS documents.
                // (A new 3-server cluster can still bootstrap a JetStream meta group of 2 that never takes the third
                // in: metaFormed below notices and has that server join again.)
                `cluster { name: missive-${routes[0]}, listen: 127.0.0.1:${routes[k]}, routes: [${routes
                  .map((p) => `nats-route://127.0.0.1:${p}`)
                  .join(", ")}] }`
              ]
            : [])
        ].join("\n")
      )
      const log = join(sdir, "nats-server.log")
      servers.push(spawnServer(conf, log))
      made.push({ name: `s${k + 1}`, url: urls[k]!, monitor: undefined, log })
    }
    await Promise.all(servers.map((p, k) => waitPort(o.natsPort + k, 15_000, p, `nats-server s${k + 1} (log ${rel(made[k]!.log)})`)))
    for (let k = 0; k < o.nodes; k++) {
      const s = made[k]!
      s.monitor = await monitorOf(join(dir, `nats-${k + 1}`, "ports"), 5_000)
      if (synced) {
        // What the server runs with, not what we wrote: its /varz.
        const varz = s.monitor
          ? await fetch(`${s.monitor}/varz`)
              .then((r) => r.json() as Promise<{ jetstream?: { config?: { sync_always?: boolean } } }>)
              .catch(() => undefined)
          : undefined
        if (varz?.jetstream?.config?.sync_always !== true)
          throw new Error(
            `nats-server ${s.name} does not report synced JetStream writes (${s.monitor ?? "no monitoring endpoint"}/varz jetstream.config.sync_always is ${String(varz?.jetstream?.config?.sync_always ?? "absent")})`
          )
      }
      o.out(`  NATS ${s.name.padEnd(6)} ${s.url.padEnd(22)}  monitor ${s.monitor ?? "-"}  log ${rel(s.log)}`)
    }
    if (o.nodes > 1) await metaFormed(made, o.out, o.formMs ?? 60_000, rejoin)
    for (const [k, s] of made.entries()) watch(servers[k]!, `NATS server ${s.name} (${s.url})`, s.log)
    const nodesMade: Array<{ name: string; smtp: number; submission: number; config: string; log: string }> = []
    for (let k = 0; k < o.nodes; k++) {
      const name = `node-${k + 1}`
      const ndir = join(dir, name)
      mkdirSync(ndir, { recursive: true })
      const config = join(ndir, "missive.yaml")
      const smtp = o.smtpPort + k
      const submission = o.submissionPort + k
      writeFileSync(
        config,
        stringify({
          ...o.base,
          node_id: name,
          data_dir: ndir,
          // The admin HTTP listener on any free port (nodes share the host): `cluster status --json` shows each one's.
          listeners: {
            smtp: { host: "127.0.0.1", port: smtp },
            submission: { host: "127.0.0.1", port: submission },
            http: { host: "127.0.0.1", port: 0 }
          },
          cluster: { ...((o.base["cluster"] as object | undefined) ?? {}), nats: urls }
        })
      )
      const log = join(ndir, "node.log")
      const fd = openLog(log)
      const p = spawn(process.execPath, [o.missive, "start", "--config", config, ...(o.allowRoot ? ["--allow-root"] : [])], {
        stdio: ["ignore", fd, fd]
      })
      closeSync(fd)
      nodes.push(p)
      nodesMade.push({ name, smtp, submission, config, log })
    }
    await Promise.all(
      nodes.map((p, k) =>
        waitPort(o.smtpPort + k, 60_000, p, `${nodesMade[k]!.name} (log ${rel(nodesMade[k]!.log)})`).catch((e: Error) => {
          throw new Error(
            `${e.message}${tail(nodesMade[k]!.log, 5)
              .map((l) => `\n    ${l}`)
              .join("")}`
          )
        })
      )
    )
    for (const [k, n] of nodesMade.entries()) {
      o.out(`  ${n.name.padEnd(11)} smtp 127.0.0.1:${n.smtp}  submission 127.0.0.1:${n.submission}  log ${rel(n.log)}`)
      watch(nodes[k]!, `${n.name} (smtp 127.0.0.1:${n.smtp})`, n.log)
    }
    const replicas = Number((o.base["cluster"] as { replicas?: unknown } | undefined)?.replicas ?? 0) || (o.nodes >= 3 ? 3 : 1)
    o.out(
      `missive cluster: ready in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${o.nodes} NATS server${o.nodes > 1 ? "s" : ""} (JetStream R${replicas}) and ${o.nodes} node${o.nodes > 1 ? "s" : ""}; any node accepts and delivers mail`
    )
    return { nats: urls, nodes: nodesMade, servers: made, synced, stop }
  } catch (e) {
    await stop()
    throw e
  }
}
