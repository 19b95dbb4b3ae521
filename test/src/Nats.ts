// Real nats-server processes for tests: one JetStream server, or a 3-server JetStream cluster, each with a temp
// store_dir, `port: -1` and a ports file (as nats.js's own test launcher does), and synced JetStream writes
// (`sync_interval: always`, checked on each server's /varz at start). Never a mock. Loopback only.
// stop() is SIGTERM and wait, kill() is SIGKILL, restart() starts the same server again on the same ports and store.
import { execFileSync, spawn, type ChildProcess } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { jetstreamManager } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import { join } from "node:path"
import { Launcher } from "@missive/node"
import { freePort } from "./Support.js"

export interface NatsServer {
  readonly name: string
  /** "nats://127.0.0.1:PORT" (the same after a restart). */
  readonly url: string
  readonly port: number
  readonly pid: () => number | undefined
  /** The monitoring endpoint ("http://127.0.0.1:PORT", e.g. for /jsz, /varz); a new port after each restart. */
  readonly monitor: () => string | undefined
  readonly running: () => boolean
  stop(): Promise<void>
  kill(): Promise<void>
  restart(): Promise<void>
  /** Stops the server and removes its store. */
  dispose(): Promise<void>
}

export interface NatsCluster {
  readonly servers: ReadonlyArray<NatsServer>
  /** Every server's client URL, comma-separated, for `--nats`. */
  readonly urls: ReadonlyArray<string>
  dispose(): Promise<void>
}

/** Waits until the cluster can create a stream with `replicas` replicas (meta leader elected, peers known). */
export const jetStreamReady = async (urls: ReadonlyArray<string>, replicas: number, ms = 60_000): Promise<void> => {
  const nc = await connect({ servers: [...urls], maxReconnectAttempts: -1 })
  try {
    const jsm = await jetstreamManager(nc, { checkAPI: false })
    const deadline = Date.now() + ms
    for (let i = 0; ; i++) {
      try {
        const name = `READY_${process.pid}_${i}`
        await jsm.streams.add({ name, subjects: [`ready.${process.pid}.${i}`], num_replicas: replicas })
        await jsm.streams.delete(name)
        return
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`JetStream cluster not ready after ${ms} ms: ${String(e)}`)
        await new Promise((r) => setTimeout(r, 250))
      }
    }
  } finally {
    await nc.close()
  }
}

interface Spec {
  readonly name: string
  readonly dir: string
  port: number
  readonly cluster?: { readonly name: string; readonly port: number; readonly routes: ReadonlyArray<number> }
}

const configOf = (s: Spec): string =>
  [
    `server_name: ${s.name}`,
    `listen: 127.0.0.1:${s.port}`,
    `http: "127.0.0.1:-1"`,
    `ports_file_dir: "${join(s.dir, "ports")}"`,
    `jetstream { store_dir: "${join(s.dir, "js")}", max_file_store: 2G, max_memory_store: 256M, sync_interval: always }`,
    ...(s.cluster
      ? [
          `cluster { name: ${s.cluster.name}, listen: 127.0.0.1:${s.cluster.port}, routes: [${s.cluster.routes.map((p) => `nats-route://127.0.0.1:${p}`).join(", ")}] }`
        ]
      : [])
  ].join("\n")

/** The tests need Missive's own minimum (Launcher.NATS_MIN, 2.11.0; `sync_interval: always` came in 2.10.23). */
const { NATS_MIN, tooOld } = Launcher

/**
 * Every test server runs with synced JetStream writes: checked on the server itself (its /varz: `version` and
 * `jetstream.config.sync_always`), not on the file we wrote, so a too-old nats-server on the PATH or a config the
 * server ignored fails here with what to do instead of as a flaky durability test.
 */
export const checkSynced = async (name: string, monitor: string | undefined): Promise<void> => {
  if (!monitor) throw new Error(`nats-server ${name}: no monitoring endpoint in its ports file (config has http: …)`)
  const varz = (await (await fetch(`${monitor}/varz`)).json()) as { version?: string; jetstream?: { config?: { sync_always?: boolean } } }
  const v = varz.version ?? "?"
  if (tooOld(v))
    throw new Error(`nats-server ${name} is ${v}: Missive's tests need nats-server >= ${NATS_MIN}; scripts/setup.sh installs it`)
  if (varz.jetstream?.config?.sync_always !== true)
    throw new Error(
      `nats-server ${name} (${v}) reports jetstream.config.sync_always = ${String(varz.jetstream?.config?.sync_always ?? "absent")} at ${monitor}/varz: its JetStream writes are not synced (the config needs jetstream { sync_interval: always })`
    )
}

let binaryChecked = false
/** Before the first start: an older nats-server would only say "unknown field" about the config. */
const checkBinary = (): void => {
  if (binaryChecked) return
  let out: string
  try {
    out = execFileSync("nats-server", ["--version"], { encoding: "utf8" })
  } catch (e) {
    throw new Error(
      `no nats-server on the PATH (${(e as Error).message}); Missive's tests need nats-server >= ${NATS_MIN}: scripts/setup.sh installs it`
    )
  }
  const v = out.match(/\d+\.\d+\.\d+/)?.[0] ?? out.trim()
  if (tooOld(v))
    throw new Error(`nats-server on the PATH is ${v}: Missive's tests need nats-server >= ${NATS_MIN}; scripts/setup.sh installs it`)
  binaryChecked = true
}

const launch = async (spec: Spec): Promise<{ proc: ChildProcess; port: number; monitor: string | undefined; exited: Promise<void> }> => {
  const portsDir = join(spec.dir, "ports")
  rmSync(portsDir, { recursive: true, force: true })
  mkdirSync(portsDir, { recursive: true })
  const conf = join(spec.dir, "server.conf")
  writeFileSync(conf, configOf(spec))
  checkBinary()
  const proc = spawn("nats-server", ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] })
  let err = ""
  proc.stderr!.on("data", (b: Buffer) => {
    err = (err + b.toString()).slice(-4000)
  })
  const exited = new Promise<void>((done) => proc.once("exit", () => done()))
  let dead = false
  void exited.then(() => {
    dead = true
  })
  const deadline = Date.now() + 15_000
  let parsed: { port: number; monitor: string | undefined } | undefined
  for (;;) {
    if (dead) throw new Error(`nats-server ${spec.name} exited at start:\n${err}`)
    const file = existsSync(portsDir) ? readdirSync(portsDir).find((f) => f.endsWith(".ports")) : undefined
    if (file) {
      try {
        const ports = JSON.parse(readFileSync(join(portsDir, file), "utf8")) as { nats: Array<string>; monitoring?: Array<string> }
        const port = Number(new URL(ports.nats[0]!.replace(/^nats:/, "http:")).port)
        parsed = { port, monitor: ports.monitoring?.[0] }
      } catch {
        /* partially written: read again */
      }
    }
    if (parsed) {
      try {
        await checkSynced(spec.name, parsed.monitor)
      } catch (e) {
        proc.kill("SIGKILL")
        throw e
      }
      return { proc, ...parsed, exited }
    }
    if (Date.now() > deadline) {
      proc.kill("SIGKILL")
      throw new Error(`nats-server ${spec.name} wrote no ports file:\n${err}`)
    }
    await new Promise((r) => setTimeout(r, 25))
  }
}

const serverOf = async (spec: Spec): Promise<NatsServer> => {
  let cur = await launch(spec)
  spec.port = cur.port
  let alive = true
  void cur.exited.then(() => {
    alive = false
  })
  const signal = async (sig: NodeJS.Signals) => {
    if (!alive) return
    cur.proc.kill(sig)
    await cur.exited
  }
  const self: NatsServer = {
    name: spec.name,
    port: spec.port,
    url: `nats://127.0.0.1:${spec.port}`,
    pid: () => (alive ? cur.proc.pid : undefined),
    monitor: () => (alive ? cur.monitor : undefined),
    running: () => alive,
    stop: () => signal("SIGTERM"),
    kill: () => signal("SIGKILL"),
    restart: async () => {
      await signal("SIGTERM")
      cur = await launch(spec)
      alive = true
      void cur.exited.then(() => {
        alive = false
      })
    },
    dispose: async () => {
      await signal("SIGKILL")
      rmSync(spec.dir, { recursive: true, force: true })
    }
  }
  return self
}

/** One JetStream-enabled nats-server on a free loopback port; its store under `root` (default the temp dir). */
export const startNatsServer = async (root = tmpdir()): Promise<NatsServer> => {
  const dir = mkdtempSync(join(root, "missive-nats-"))
  return serverOf({ name: "n1", dir, port: -1 })
}

/**
 * A JetStream cluster of `n` servers. Client ports come from `port: -1` and the ports file; cluster (route) ports
 * must be known to every server's routes beforehand, so they are picked free first.
 */
let clusters = 0

export const startNatsCluster = async (n = 3, root?: string): Promise<NatsCluster> => {
  // A route port picked free can be taken again before its server binds it (loopback connections churn through the
  // same ephemeral range): a cluster that does not form is started again on new ports, up to three times.
  for (let attempt = 1; ; attempt++) {
    const base = root ? join(root, `try${attempt}`) : mkdtempSync(join(tmpdir(), "missive-natsc-"))
    const routePorts: Array<number> = []
    while (routePorts.length < n) {
      const p = await freePort()
      if (!routePorts.includes(p)) routePorts.push(p)
    }
    const cluster = `missive-${process.pid}-${++clusters}`
    // Routes to all N servers, each its own included (skipped by the server), as NATS documents. A new cluster can
    // still bootstrap a JetStream meta group of 2 that never takes the third in (R3 never placed): the readiness
    // check below then fails and the cluster is started again.
    const specs: Array<Spec> = routePorts.map((p, i) => {
      const dir = join(base, `s${i + 1}`)
      mkdirSync(dir, { recursive: true })
      return { name: `s${i + 1}`, dir, port: -1, cluster: { name: cluster, port: p, routes: routePorts } }
    })
    const servers = await Promise.all(specs.map(serverOf))
    const dispose = async () => {
      await Promise.all(servers.map((s) => s.kill()))
      rmSync(base, { recursive: true, force: true })
    }
    try {
      await jetStreamReady(
        servers.map((s) => s.url),
        n,
        attempt < 3 ? 30_000 : 60_000
      )
    } catch (e) {
      await dispose().catch(() => {})
      if (attempt >= 3) throw e
      continue
    }
    return { servers, urls: servers.map((s) => s.url), dispose }
  }
}
