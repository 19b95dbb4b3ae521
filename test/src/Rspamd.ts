// A real rspamd (Debian's package) for tests: a private configuration directory that includes the packaged rules, no
// network and no redis (its DNS is the given loopback server, so lookups end at once instead of waiting on the
// internet), the normal worker (HTTP /checkv2), the controller and, when asked, the proxy worker in milter mode, each on
// a free 127.0.0.1 port. Never a mock. Hyperscan is off and the TLD list is a short one written here: that is what
// keeps its start near a second instead of ~25 s. stop() is SIGTERM and wait, kill() is SIGKILL of its process group.
import { spawn, type ChildProcess } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { connect } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freePort } from "./Support.js"

export interface Rspamd {
  /** The normal worker: POST /checkv2 at http://127.0.0.1:PORT. */
  readonly port: number
  readonly url: string
  readonly controllerPort: number
  /** The proxy worker in milter mode (scanning itself), when started with `milter: true`. */
  readonly milterPort: number | undefined
  readonly pid: () => number | undefined
  readonly running: () => boolean
  /** The last lines of rspamd's own log (for a failing test's message). */
  readonly log: () => string
  stop(): Promise<void>
  kill(): Promise<void>
  /** Stops rspamd and removes its directory. */
  dispose(): Promise<void>
}

export interface RspamdOptions {
  /** The DNS server rspamd asks, "127.0.0.1:PORT" (test/src/DnsServer.ts). */
  readonly dns: string
  /** Lua added as rspamd.local.lua: rules a test needs (e.g. one that forces an action). */
  readonly lua?: string | undefined
  /** Also start the proxy worker in milter mode (self-scan), for the milter client's tests. */
  readonly milter?: boolean | undefined
  /** Extra lines in local.d/options.inc. */
  readonly options?: string | undefined
  /** Other local.d files by name (e.g. { "milter_headers.conf": "..." }). */
  readonly localD?: Readonly<Record<string, string>> | undefined
}

/** rspamd's own test patterns (enabled here by `enable_test_patterns`): the message that carries it gets `reject`. */
export const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

/** Top-level domains the URL matcher knows (the packaged list of ~9,600 takes ~25 s to compile at start). */
const TLDS = ["com", "net", "org", "test", "example", "invalid", "localhost"]

const configOf = (dir: string, ports: { normal: number; controller: number; milter: number | undefined }): string =>
  [
    `.include "$CONFDIR/common.conf"`,
    `options {`,
    `  pidfile = "$RUNDIR/rspamd.pid";`,
    `  .include "$CONFDIR/options.inc"`,
    `  .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"`,
    `}`,
    `logging { type = "file"; filename = "${join(dir, "rspamd.log")}"; level = "notice"; }`,
    `worker "normal" {`,
    `  bind_socket = "127.0.0.1:${ports.normal}";`,
    `  .include "$CONFDIR/worker-normal.inc"`,
    `  count = 1;`,
    `}`,
    `worker "controller" {`,
    `  bind_socket = "127.0.0.1:${ports.controller}";`,
    `  .include "$CONFDIR/worker-controller.inc"`,
    `  count = 1;`,
    `}`,
    ...(ports.milter === undefined
      ? []
      : [
          `worker "rspamd_proxy" {`,
          `  bind_socket = "127.0.0.1:${ports.milter}";`,
          `  milter = yes;`,
          `  timeout = 30s;`,
          `  upstream "local" { default = yes; self_scan = yes; }`,
          `  count = 1;`,
          `}`
        ])
  ].join("\n")

export const startRspamd = async (opts: RspamdOptions): Promise<Rspamd> => {
  const dir = mkdtempSync(join(tmpdir(), "missive-rspamd-"))
  for (const d of ["local.d", "db", "run"]) mkdirSync(join(dir, d))
  const tld = join(dir, "tld.dat")
  writeFileSync(tld, TLDS.join("\n") + "\n")
  writeFileSync(
    join(dir, "local.d", "options.inc"),
    [
      `dns { nameserver = ["${opts.dns}"]; timeout = 0.5s; retransmits = 1; }`,
      `disable_hyperscan = true;`,
      `enable_test_patterns = true;`,
      `url_tld = "${tld}";`,
      // Loopback is where every test client is: rspamd must score it like any other sender.
      `local_addrs = [];`,
      opts.options ?? ""
    ].join("\n")
  )
  if (opts.lua !== undefined) writeFileSync(join(dir, "rspamd.local.lua"), opts.lua)
  for (const [name, text] of Object.entries(opts.localD ?? {})) writeFileSync(join(dir, "local.d", name), text)
  const ports = {
    normal: await freePort(),
    controller: await freePort(),
    milter: opts.milter ? await freePort() : undefined
  }
  const conf = join(dir, "rspamd.conf")
  writeFileSync(conf, configOf(dir, ports))
  const url = `http://127.0.0.1:${ports.normal}`

  let proc: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()
  const logTail = (): string => {
    try {
      return readFileSync(join(dir, "rspamd.log"), "utf8").slice(-4000)
    } catch {
      return ""
    }
  }
  const running = (): boolean => proc !== undefined && proc.exitCode === null && proc.signalCode === null

  const launch = async (): Promise<void> => {
    const args = ["-f", "-i", "-c", conf]
    for (const [k, v] of Object.entries({ LOCAL_CONFDIR: dir, DBDIR: join(dir, "db"), RUNDIR: join(dir, "run"), LOGDIR: dir }))
      args.push("--var", `${k}=${v}`)
    let out = ""
    // Its own process group: kill() ends the main process and its workers together.
    const p = spawn("rspamd", args, { stdio: ["ignore", "pipe", "pipe"], detached: true })
    p.on("error", (e) => {
      out += `\n${e.message}`
    })
    p.stdout!.on("data", (b: Buffer) => (out = (out + b.toString()).slice(-4000)))
    p.stderr!.on("data", (b: Buffer) => (out = (out + b.toString()).slice(-4000)))
    proc = p
    exited = new Promise<void>((done) => p.once("exit", () => done()))
    const deadline = Date.now() + 30_000
    for (;;) {
      if (p.exitCode !== null || p.signalCode !== null)
        throw new Error(`rspamd exited at start (is Debian's rspamd installed? scripts/setup.sh):\n${out}\n${logTail()}`)
      const ready = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(1000) }).then(
        (r) => r.ok,
        () => false
      )
      const milterReady = ports.milter === undefined || (await tcpOpen(ports.milter))
      if (ready && milterReady) return
      if (Date.now() > deadline) {
        await killGroup()
        throw new Error(`rspamd not ready after 30 s:\n${out}\n${logTail()}`)
      }
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  const signalGroup = (signal: NodeJS.Signals): void => {
    if (proc?.pid === undefined) return
    try {
      process.kill(-proc.pid, signal)
    } catch {
      // the group is already gone
    }
  }
  const killGroup = async (): Promise<void> => {
    signalGroup("SIGKILL")
    await exited
  }

  await launch()
  return {
    port: ports.normal,
    url,
    controllerPort: ports.controller,
    milterPort: ports.milter,
    pid: () => proc?.pid,
    running,
    log: logTail,
    stop: async () => {
      if (!running()) return
      signalGroup("SIGTERM")
      const done = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 10_000))])
      if (!done) await killGroup()
      // workers that outlived the main process
      signalGroup("SIGKILL")
    },
    kill: killGroup,
    // Its state is thrown away with its directory: no need for its graceful stop (seconds).
    dispose: async () => {
      await killGroup()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

const tcpOpen = (port: number): Promise<boolean> =>
  new Promise<boolean>((done) => {
    const s = connect(port, "127.0.0.1")
    s.once("connect", () => {
      s.destroy()
      done(true)
    })
    s.once("error", () => done(false))
  })
