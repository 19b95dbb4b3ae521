// The `cluster:N` target's processes: N nats-servers as one JetStream cluster and N Missive node processes, started by
// the cluster launcher (`Launcher.up` of @missive/node, used as is) in a temp directory on free loopback ports, plus
// what a simulation needs on top of it: each node's SMTP endpoint, kill -9 and restart of one node (a fault), the CPU
// time of every process, and quiet output (node and NATS logs go to files in the run's directory, not the terminal).
import { spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { delimiter, join, resolve } from "node:path"
import { Launcher, Net } from "@missive/node"

const BIN = resolve(import.meta.dirname, "../bin")
const NODE_SCRIPT = join(BIN, "sim-node.mjs")
const TICK = 100 // USER_HZ on Linux

export interface ClusterNode {
  readonly name: string
  readonly config: string
  readonly smtp: number
}

export interface SimCluster {
  readonly dir: string
  readonly nodes: ReadonlyArray<ClusterNode>
  readonly nats: ReadonlyArray<string>
  /** kill -9 of node k (1-based); resolves when it is gone. */
  kill(k: number): Promise<void>
  /** Starts node k again with the same configuration and data; resolves when it listens. */
  restart(k: number): Promise<void>
  running(k: number): boolean
  /** utime+stime of every process of the cluster (live and ended), ms. */
  cpuMs(): number
  stop(): Promise<void>
}

const canBind = (port: number): Promise<boolean> =>
  new Promise((done) => {
    const s = createServer()
    s.once("error", () => done(false))
    s.listen(port, "127.0.0.1", () => s.close(() => done(true)))
  })

/** A base port P such that P + k for every offset and k < n is free on 127.0.0.1 (consecutive, as the launcher wants). */
const freeRange = async (n: number, offsets: ReadonlyArray<number>, taken: Set<number>): Promise<number> => {
  for (let tries = 0; tries < 200; tries++) {
    const base = 20_000 + Math.floor(Math.random() * 20_000)
    const ports = offsets.flatMap((o) => Array.from({ length: n }, (_, k) => base + o + k))
    if (ports.some((p) => taken.has(p))) continue
    let ok = true
    for (const p of ports) if (!(ok = await canBind(p))) break
    if (ok) {
      for (const p of ports) taken.add(p)
      return base
    }
  }
  throw new Error("no free range of loopback ports for the cluster")
}

const stat = (pid: number): { ppid: number; cpu: number; cmd: string } | undefined => {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8")
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ")
    return { ppid: Number(f[1]), cpu: ((Number(f[11]) + Number(f[12])) * 1000) / TICK, cmd: readFileSync(`/proc/${pid}/cmdline`, "utf8") }
  } catch {
    return undefined
  }
}

/** Whether a process has ended (no longer in /proc, or a zombie waiting to be reaped). */
const gonePid = (pid: number): boolean => {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8")
    return s[s.lastIndexOf(")") + 2] === "Z"
  } catch {
    return true
  }
}

/** Our child processes (the launcher's and ours), with their command lines. */
const children = (): Array<{ pid: number; cpu: number; cmd: string }> => {
  const out: Array<{ pid: number; cpu: number; cmd: string }> = []
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue
    const s = stat(Number(p))
    if (s && s.ppid === process.pid) out.push({ pid: Number(p), cpu: s.cpu, cmd: s.cmd })
  }
  return out
}

export const start = async (o: { nodes: number; base: Record<string, unknown>; logLevel?: string | undefined }): Promise<SimCluster> => {
  const dir = mkdtempSync(join(tmpdir(), "missive-simcluster-"))
  const taken = new Set<number>()
  const natsPort = await freeRange(o.nodes, [0, 1000], taken)
  const smtpPort = await freeRange(o.nodes, [0], taken)
  const submissionPort = await freeRange(o.nodes, [0], taken)
  const nodeLog = join(dir, "nodes.log")
  const env = {
    MISSIVE_SIM_NODE_LOG: nodeLog,
    MISSIVE_SIM_NATS_LOG: join(dir, "nats.log"),
    MISSIVE_SIM_NATS_PATH: process.env["PATH"] ?? "/usr/bin:/bin:/usr/sbin:/sbin",
    MISSIVE_LOG_LEVEL: o.logLevel ?? process.env["MISSIVE_LOG_LEVEL"] ?? "warn",
    PATH: `${BIN}${delimiter}${process.env["PATH"] ?? ""}`
  }
  // The launcher spawns with this process's environment: set ours for the duration of the start only.
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]))
  Object.assign(process.env, env)
  let launched: Launcher.Launched
  try {
    launched = await Launcher.up({
      nodes: o.nodes,
      dir,
      natsPort,
      smtpPort,
      submissionPort,
      base: o.base,
      missive: NODE_SCRIPT,
      out: () => undefined
    })
  } catch (e) {
    rmSync(dir, { recursive: true, force: true })
    throw e
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
  const nodes = launched.nodes.map((n) => ({ name: n.name, config: n.config, smtp: n.smtp }))
  /** Processes we started ourselves (restarts), by node index. */
  const ours = new Map<number, ChildProcess>()
  const dead = new Set<number>()
  /** CPU of processes that ended (killed nodes), ms. */
  let endedCpu = 0
  const pidOf = (k: number): number | undefined => {
    const mine = ours.get(k)
    if (mine) return mine.exitCode === null && mine.signalCode === null ? mine.pid : undefined
    if (dead.has(k)) return undefined
    return children().find((c) => c.cmd.split("\0").includes(nodes[k - 1]!.config))?.pid
  }
  const cpuMs = (): number => endedCpu + children().reduce((a, c) => a + c.cpu, 0)

  const kill = async (k: number): Promise<void> => {
    if (k < 1 || k > nodes.length) throw new Error(`no node ${k} in a ${nodes.length}-node cluster`)
    const pid = pidOf(k)
    if (pid === undefined) return
    endedCpu += stat(pid)?.cpu ?? 0
    const mine = ours.get(k)
    const gone = mine ? new Promise<void>((done) => mine.once("exit", () => done())) : undefined
    process.kill(pid, "SIGKILL")
    dead.add(k)
    if (gone) await gone
    else for (let i = 0; i < 250 && !gonePid(pid); i++) await new Promise((r) => setTimeout(r, 20))
  }

  const restart = async (k: number): Promise<void> => {
    if (pidOf(k) !== undefined) return
    const n = nodes[k - 1]!
    const p = spawn(process.execPath, [NODE_SCRIPT, "start", "--config", n.config], {
      stdio: "ignore",
      env: { ...process.env, ...env }
    })
    ours.set(k, p)
    dead.delete(k)
    await Net.waitPort(n.smtp, { ms: 60_000, what: n.name, alive: () => p.exitCode === null && p.signalCode === null })
  }

  return {
    dir,
    nodes,
    nats: launched.nats,
    kill,
    restart,
    cpuMs,
    running: (k) => pidOf(k) !== undefined,
    stop: async () => {
      await Promise.all(
        [...ours.values()].map(
          (p) =>
            new Promise<void>((done) => {
              if (p.exitCode !== null || p.signalCode !== null) return done()
              const t = setTimeout(() => p.kill("SIGKILL"), 15_000)
              p.once("exit", () => {
                clearTimeout(t)
                done()
              })
              p.kill("SIGTERM")
            })
        )
      )
      await launched.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
