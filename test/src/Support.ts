// The test kit's small shared helpers, one copy each, for tests and benchmarks: free ports and waiting for one,
// a child process started until its output says it is ready (and its CPU time), percentiles of measurements, and
// the hashing and seeded randomness the product itself uses. Must not start a node or a server itself (Harness.ts,
// Nats.ts, CaptureServer.ts do); where production code has the helper, this re-exports it rather than copying it.
import { spawn, type ChildProcess } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { Hash } from "@missive/core"
import { Clock, Net } from "@missive/node"
import { Random, Report } from "@missive/simulations"

/** A free port on `host` (default 127.0.0.1), and waiting until something listens on one: the node's own. */
export const freePort = Net.freePort
export const waitPort = Net.waitPort

/** 32-bit FNV-1a (the policy hash and the JetStream partition and shard keys use it). */
export const fnv1a32 = Hash.fnv1a32
/** Seeded randomness: the node's generator (mulberry32), and the simulations' streams and keyed draws. */
export const seededRandom = Clock.seededRandom
export const randomStream = Random.stream
export const keyedDraw = Random.keyed

/** The nearest-rank `p`-th percentile (0–100) of ascending values; NaN when there are none. */
export const percentile = (sorted: ReadonlyArray<number>, p: number): number => Report.quantile(sorted, p / 100)
/** p50, p90, p99 and max of unsorted values. */
export const percentiles = Report.percentiles

const TICKS = 100 // USER_HZ on Linux

/** utime + stime of a process (and its waited-for children), ms. */
export const cpuMs = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  const [utime, stime, cutime, cstime] = [11, 12, 13, 14].map((i) => Number(fields[i]))
  return ((utime! + stime! + cutime! + cstime!) * 1000) / TICKS
}

/** CPU ms of each of a process's threads, summed by thread name (/proc/PID/task/TID: comm and stat). */
export const threadCpu = (pid: number): Map<string, number> => {
  const out = new Map<string, number>()
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim()
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8")
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS
      const kind = tid === String(pid) ? "main" : comm
      out.set(kind, (out.get(kind) ?? 0) + ms)
    } catch {
      // a thread that ended between the listing and the read
    }
  }
  return out
}

/**
 * Bytes a process (all its threads, and its waited-for children) caused to be written to storage: /proc/PID/io
 * `write_bytes` less `cancelled_write_bytes` (dirty pages of a file truncated or deleted before they reached the disk).
 */
export const writtenBytes = (pid: number): number => {
  const io = readFileSync(`/proc/${pid}/io`, "utf8")
  const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, "m").exec(io)?.[1] ?? 0)
  return field("write_bytes") - field("cancelled_write_bytes")
}

/** The machine's CPU time so far, in ticks: busy (everything but idle and iowait) and total, over all cores. */
export const machineTicks = (): { readonly busy: number; readonly total: number } => {
  const cpu = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number)
  const total = cpu.reduce((a, b) => a + b, 0)
  return { busy: total - cpu[3]! - cpu[4]!, total }
}

export interface Child {
  readonly proc: ChildProcess
  output(): string
  stop(signal?: NodeJS.Signals): Promise<void>
}

/** Starts `cmd` and resolves once `ready(output so far)`; fails when it exits first or is not ready in time. */
export const startChild = async (
  cmd: string,
  args: ReadonlyArray<string>,
  ready: (out: string) => boolean,
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}
): Promise<Child> => {
  const proc = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] })
  let out = ""
  const keep = (b: Buffer) => {
    out = (out + b.toString()).slice(-200_000)
  }
  proc.stdout!.on("data", keep)
  proc.stderr!.on("data", keep)
  const exited = new Promise<void>((done) => proc.once("exit", () => done()))
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000)
  while (!ready(out)) {
    if (proc.exitCode !== null) throw new Error(`${cmd} exited early:\n${out}`)
    if (Date.now() > deadline) {
      proc.kill("SIGKILL")
      throw new Error(`${cmd} not ready in time:\n${out}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    proc,
    output: () => out,
    stop: async (signal = "SIGTERM") => {
      if (proc.exitCode === null) proc.kill(signal)
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))])
      if (proc.exitCode === null) {
        proc.kill("SIGKILL")
        await exited
      }
    }
  }
}
