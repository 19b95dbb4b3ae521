// Benchmark helpers: CPU time of a process from /proc, child processes started and stopped, free ports.
import { spawn, type ChildProcess } from "node:child_process"
import { readFileSync } from "node:fs"
import { createServer } from "node:net"

const TICKS = 100 // USER_HZ on Linux

/** utime + stime of a process (and its waited-for children), ms. */
export const cpuMs = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  const [utime, stime, cutime, cstime] = [11, 12, 13, 14].map((i) => Number(fields[i]))
  return ((utime! + stime! + cutime! + cstime!) * 1000) / TICKS
}

export const freePort = (host = "127.0.0.1"): Promise<number> => new Promise((done, fail) => {
  const s = createServer()
  s.once("error", fail)
  s.listen(0, host, () => {
    const port = (s.address() as { port: number }).port
    s.close(() => done(port))
  })
})

export interface Child {
  readonly proc: ChildProcess
  output(): string
  stop(signal?: NodeJS.Signals): Promise<void>
}

export const startChild = async (cmd: string, args: ReadonlyArray<string>, ready: (out: string) => boolean, opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Child> => {
  const proc = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] })
  let out = ""
  const keep = (b: Buffer) => { out = (out + b.toString()).slice(-200_000) }
  proc.stdout!.on("data", keep)
  proc.stderr!.on("data", keep)
  const exited = new Promise<void>((done) => proc.once("exit", () => done()))
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000)
  while (!ready(out)) {
    if (proc.exitCode !== null) throw new Error(`${cmd} exited early:\n${out}`)
    if (Date.now() > deadline) { proc.kill("SIGKILL"); throw new Error(`${cmd} not ready in time:\n${out}`) }
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    proc,
    output: () => out,
    stop: async (signal = "SIGTERM") => {
      if (proc.exitCode === null) proc.kill(signal)
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))])
      if (proc.exitCode === null) { proc.kill("SIGKILL"); await exited }
    }
  }
}

export const percentile = (sorted: ReadonlyArray<number>, p: number): number =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
