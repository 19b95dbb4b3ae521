// A real clamd (Debian's clamav-daemon) for tests: TCP on a free 127.0.0.1 port, foreground, and a database
// directory holding only the signatures the test writes (by default the EICAR test file as an .ndb body signature),
// so no freshclam download and a start of a second or so. Never a mock. stop() is SIGTERM and wait, kill() is SIGKILL,
// restart() starts it again on the same port with the same signatures.
import { spawn, type ChildProcess } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freePort } from "./Support.js"

/** The EICAR anti-virus test file (eicar.org): harmless, and detected by every scanner that loads its signature. */
export const EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

/** The name clamd reports for EICAR with the default database written here (".UNOFFICIAL": an unsigned database). */
export const EICAR_SIGNATURE = "Missive.Test.EICAR.UNOFFICIAL"

/** An extended (.ndb) body signature for EICAR: `name:target type (0 = any):offset (* = anywhere):hex`. */
export const eicarNdb = (): string => `Missive.Test.EICAR:0:*:${Buffer.from(EICAR, "latin1").toString("hex")}\n`

export interface Clamd {
  readonly port: number
  readonly pid: () => number | undefined
  readonly running: () => boolean
  readonly log: () => string
  stop(): Promise<void>
  kill(): Promise<void>
  restart(): Promise<void>
  dispose(): Promise<void>
}

export interface ClamdOptions {
  /** Database files by name (e.g. { "test.ndb": eicarNdb() }); default: the EICAR signature only. */
  readonly signatures?: Readonly<Record<string, string>> | undefined
  /** clamd's StreamMaxLength (INSTREAM data beyond it ends the stream with "size limit exceeded"). */
  readonly streamMaxLength?: string | undefined
}

/** One clamd command ("zPING\0" style) and its reply up to the NUL, or undefined when nothing answers. */
const ask = (port: number, command: string): Promise<string | undefined> =>
  new Promise((done) => {
    const s = connect(port, "127.0.0.1")
    let reply = ""
    const finish = (v: string | undefined) => {
      s.destroy()
      done(v)
    }
    s.setTimeout(1000, () => finish(undefined))
    s.once("connect", () => s.write(`z${command}\0`))
    s.on("data", (b: Buffer) => {
      reply += b.toString("latin1")
      if (reply.includes("\0")) finish(reply.slice(0, reply.indexOf("\0")))
    })
    s.once("error", () => finish(undefined))
    s.once("end", () => finish(reply || undefined))
  })

export const startClamd = async (opts: ClamdOptions = {}): Promise<Clamd> => {
  const dir = mkdtempSync(join(tmpdir(), "missive-clamd-"))
  const db = join(dir, "db")
  mkdirSync(db)
  for (const [name, text] of Object.entries(opts.signatures ?? { "test.ndb": eicarNdb() })) writeFileSync(join(db, name), text)
  const port = await freePort()
  const conf = join(dir, "clamd.conf")
  writeFileSync(
    conf,
    [
      `Foreground yes`,
      `TCPSocket ${port}`,
      `TCPAddr 127.0.0.1`,
      `DatabaseDirectory ${db}`,
      `LogFile ${join(dir, "clamd.log")}`,
      `PidFile ${join(dir, "clamd.pid")}`,
      `StreamMaxLength ${opts.streamMaxLength ?? "25M"}`,
      `MaxThreads 4`,
      `SelfCheck 3600`,
      ``
    ].join("\n")
  )

  let proc: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()
  const running = (): boolean => proc !== undefined && proc.exitCode === null && proc.signalCode === null
  const logTail = (): string => {
    try {
      return readFileSync(join(dir, "clamd.log"), "utf8").slice(-4000)
    } catch {
      return ""
    }
  }

  const launch = async (): Promise<void> => {
    let out = ""
    const p = spawn("clamd", ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] })
    p.on("error", (e) => {
      out += `\n${e.message}`
    })
    p.stdout!.on("data", (b: Buffer) => (out = (out + b.toString()).slice(-4000)))
    p.stderr!.on("data", (b: Buffer) => (out = (out + b.toString()).slice(-4000)))
    proc = p
    exited = new Promise<void>((done) => p.once("exit", () => done()))
    const deadline = Date.now() + 30_000
    for (;;) {
      if (!running()) throw new Error(`clamd exited at start (is clamav-daemon installed? scripts/setup.sh):\n${out}\n${logTail()}`)
      if ((await ask(port, "PING")) === "PONG") return
      if (Date.now() > deadline) {
        p.kill("SIGKILL")
        await exited
        throw new Error(`clamd not ready after 30 s:\n${out}\n${logTail()}`)
      }
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  const stop = async (): Promise<void> => {
    if (!running()) return
    proc!.kill("SIGTERM")
    const done = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))])
    if (!done) {
      proc!.kill("SIGKILL")
      await exited
    }
  }

  await launch()
  return {
    port,
    pid: () => proc?.pid,
    running,
    log: logTail,
    stop,
    kill: async () => {
      if (!running()) return
      proc!.kill("SIGKILL")
      await exited
    },
    restart: async () => {
      await stop()
      await launch()
    },
    dispose: async () => {
      await stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
